"""The admin's run list costs the same few queries however many runs it shows."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import fill, run

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/rotator/run/"


def queries_for_the_list(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(CHANGELIST).status_code == 200
    return len(captured.captured_queries)


def test_the_run_list_does_not_query_per_run(client):
    User.objects.create_superuser("operator", "op@example.com", "pw-for-tests")
    client.login(username="operator", password="pw-for-tests")
    fill(100)
    run("regenerate_token_async", "--workers", "2")
    one = queries_for_the_list(client)
    for _ in range(4):
        run("regenerate_token_async", "--workers", "2", "--restart", "--yes")
    assert queries_for_the_list(client) == one
