from __future__ import annotations

import pytest

from tests.conftest import fill, rows, run

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_token_changes_and_nothing_else():
    fill(5_000)
    before = rows()
    out, err = run("regenerate_token_async", "--workers", "3", "--batch-size", "700")
    after = rows()
    assert after.keys() == before.keys()
    assert all(after[k][0] != before[k][0] for k in before)
    assert len({v[0] for v in after.values()}) == len(after)
    assert all(after[k][1:] == before[k][1:] for k in before)
    assert "Rotated 5,000 rows of tickets.Ticket.token" in out
