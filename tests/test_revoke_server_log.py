"""No token, revoked or kept, reaches the PostgreSQL server log during revoke_rows."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from tests.test_server_log import server_log  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]


@pytest.fixture
def keys() -> list[str]:
    """Made before the log is watched: the test's own INSERTs carry the keys."""
    users = User.objects.bulk_create(User(username=f"u{i}", password="!") for i in range(400))
    Token.objects.bulk_create(Token(user=u, key=Token.generate_key()) for u in users)
    return list(Token.objects.values_list("key", flat=True))


def test_no_key_reaches_the_server_log(keys, server_log, tmp_path: Path):  # noqa: F811
    path = tmp_path / "dump.txt"
    path.write_text("".join(f"{k}\n" for k in keys[:300]))
    call_command(
        "revoke_rows", "authtoken.Token", "--leaked", str(path), "--batch-size", "50",
        stdout=StringIO(), stderr=StringIO(),
    )  # fmt: skip
    assert Token.objects.count() == 100
    log = server_log()
    assert "rotator_revocationkey" in log  # the batches were logged, with their parameters
    assert not [k for k in keys if k in log]
