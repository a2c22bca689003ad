"""The portable fallback builder revokes exactly the planned rows, through the ORM."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token

from tests.test_generic_builder import generic, skip_concurrent_writers_on_old_sqlite  # noqa: F401
from tests.test_revoke import command, dump, make_tokens

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_portable_fallback_revokes_the_leaked_rows(generic, workers, tmp_path):  # noqa: F811
    skip_concurrent_writers_on_old_sqlite(workers)
    keys = make_tokens(300)
    path = dump(tmp_path / "dump.txt", keys[100:])
    out, _ = command(
        "revoke_rows", "authtoken.Token", "--leaked", path, "--batch-size", "30",
        "--workers", str(workers),
    )  # fmt: skip
    assert out.splitlines()[-1].startswith("Revoked 200 rows of authtoken.Token")
    assert sorted(Token.objects.values_list("key", flat=True)) == sorted(keys[:100])
