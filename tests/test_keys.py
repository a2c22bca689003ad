from __future__ import annotations

import pytest
from django.db import connection

from rotator.models import Run, Shard
from tests.conftest import run
from tests.testapp.models import ApiKey, Badge

pytestmark = pytest.mark.django_db(transaction=True)


def keys() -> dict:
    return dict(ApiKey.objects.values_list("pk", "key"))


def test_uuid_primary_keys_and_string_secrets_rotate_once_each():
    ApiKey.objects.bulk_create(ApiKey(label=f"k{i}") for i in range(3_000))
    before = keys()

    out, err = run(
        "rotate_field",
        "testapp.ApiKey.key",
        "--workers",
        "3",
        "--shards",
        "7",
        "--batch-size",
        "200",
    )

    after = keys()
    assert after.keys() == before.keys()
    assert all(after[pk] != before[pk] for pk in before)
    assert len(set(after.values())) == len(after)
    assert set(ApiKey.objects.values_list("label", flat=True)) == {f"k{i}" for i in range(3_000)}
    run_ = Run.objects.get()
    assert run_.state == Run.State.FINISHED
    assert sum(Shard.objects.values_list("rows_done", flat=True)) == 3_000
    # Boundaries are real UUID keys, stored as the database's own values (text):
    # dashed in a native uuid column (PostgreSQL, MariaDB 10.7+), 32 hex digits in char(32).
    native = ApiKey._meta.pk.db_type(connection) == "uuid"
    stored = {str(pk) for pk in before} if native else {pk.hex for pk in before}
    assert stored >= set(Shard.objects.values_list("upper", flat=True))
    assert "Rotated 3,000 rows of testapp.ApiKey.key" in out


def test_a_unique_field_without_a_default_needs_a_generator():
    Badge.objects.create(code="a")
    with pytest.raises(Exception) as info:
        run("rotate_field", "testapp.Badge.code")
    assert str(info.value) == (
        "'testapp.Badge.code' has no callable default to make new values; "
        "pass --generator dotted.path.to.callable"
    )
    assert list(Badge.objects.values_list("code", flat=True)) == ["a"]
    assert not Run.objects.exists()


def test_a_generator_path_gives_values_to_a_field_without_default():
    Badge.objects.bulk_create(Badge(code=f"c{i}") for i in range(50))
    run("rotate_field", "testapp.Badge.code", "--generator", "tests.test_keys.badge_code")
    codes = list(Badge.objects.values_list("code", flat=True))
    assert len(set(codes)) == 50 and all(c.startswith("n-") for c in codes)


def badge_code() -> str:
    import secrets

    return "n-" + secrets.token_hex(8)
