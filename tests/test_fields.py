"""Any field gets what save() would store, read back through the ORM as the application reads it."""

from __future__ import annotations

import random
import re
import threading
import uuid
import warnings
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.hashers import check_password, identify_hasher
from django.core.management import CommandError
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

import rotator.sql
from rotator.generators import resolve_generator
from rotator.models import Run
from rotator.service.rotation import Options, rotate
from rotator.sql.generic import GenericBuilder
from rotator.target import resolve_target
from rotator.values import packs_uuid4
from tests.conftest import run
from tests.fieldapp import generators
from tests.fieldapp.models import (
    ConstrainedKey,
    Door,
    HashedSecret,
    HexToken,
    Hideable,
    OptionalKey,
    Pin,
    Reading,
    SealedSecret,
    SharedKey,
    ShortCode,
    seal,
)
from tests.support import Stop

pytestmark = pytest.mark.django_db(transaction=True)


def raw(model: type, column: str) -> dict:
    """pk -> the column as the database holds it (no field conversion)."""
    qn = connection.ops.quote_name
    table, pk = model._meta.db_table, model._meta.pk.column
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {qn(pk)}, {qn(column)} FROM {qn(table)}")
        return dict(cursor.fetchall())


def values(model: type, field: str) -> dict:
    """pk -> the field's value as the application reads it, from every row."""
    return dict(QuerySet(model=model).values_list("pk", field))


def changed_everywhere(before: dict, after: dict) -> bool:
    return before.keys() == after.keys() and all(after[k] != before[k] for k in before)


@pytest.mark.postgresql
def test_a_value_too_long_for_the_column_is_refused_not_cut_on_postgresql(builder):
    ShortCode.objects.bulk_create(ShortCode(code=f"c{i:07d}") for i in range(200))
    before = raw(ShortCode, "code")
    with pytest.raises(CommandError) as refused:
        run("rotate_field", "fieldapp.ShortCode.code", "--batch-size", "50")
    message = str(refused.value)
    assert "\n" not in message
    assert message == (
        "generator 'tests.fieldapp.models.hex32' for 'fieldapp.ShortCode.code' made a value "
        "of 32 characters (value withheld), too long for the varchar(8) column; save() fails on "
        "postgresql and rotator never cuts a value: make shorter values or widen the column; "
        "nothing was changed"
    )
    assert raw(ShortCode, "code") == before
    assert not Run.objects.exists()


@pytest.mark.sqlite
def test_a_value_too_long_for_the_column_is_stored_whole_on_sqlite_as_save_does():
    ShortCode.objects.bulk_create(ShortCode(code=f"c{i:07d}") for i in range(200))
    before = values(ShortCode, "code")
    run("rotate_field", "fieldapp.ShortCode.code", "--batch-size", "50")
    after = values(ShortCode, "code")
    assert changed_everywhere(before, after)
    assert all(re.fullmatch(r"[0-9a-f]{32}", code) for code in after.values())


def test_uuid4_into_a_field_that_stores_hex_gets_hex():
    for _ in range(300):  # not bulk_create: on PostgreSQL it cannot insert into char(32)
        HexToken.objects.create()
    before = values(HexToken, "token")
    run(
        "rotate_field", "fieldapp.HexToken.token", "--generator", "uuid.uuid4", "--batch-size", "64"
    )
    after = values(HexToken, "token")
    assert changed_everywhere(before, after)
    assert all(re.fullmatch(r"[0-9a-f]{32}", text) for text in raw(HexToken, "token").values())
    for pk, token in random.sample(sorted(after.items()), 20):
        assert isinstance(token, uuid.UUID) and token.version == 4
        assert HexToken.objects.get(token=token).pk == pk


def test_uuid4_into_an_encrypting_field_is_encrypted(builder):
    SealedSecret.objects.bulk_create(SealedSecret() for _ in range(300))
    before = values(SealedSecret, "secret")
    run(
        "rotate_field",
        "fieldapp.SealedSecret.secret",
        "--generator",
        "uuid.uuid4",
        "--batch-size",
        "64",
        "--workers",
        "1",  # one writer: the portable fallback on SQLite has no IMMEDIATE mode on Django 4.2
    )
    after = values(SealedSecret, "secret")  # decrypted by the field, as the app reads it
    assert changed_everywhere(before, after)
    assert all(str(uuid.UUID(text)) == text for text in after.values())
    stored = raw(SealedSecret, "secret")
    assert all(stored[pk] == seal(after[pk]) for pk in after)
    for pk, secret in random.sample(sorted(after.items()), 20):
        assert SealedSecret.objects.get(secret=secret).pk == pk


@pytest.mark.parametrize(
    ("label", "plain"),
    [
        ("tickets.Ticket.token", True),
        ("fieldapp.HexToken.token", False),
        ("fieldapp.SealedSecret.secret", False),
    ],
)
def test_the_uuid4_fast_path_is_only_for_a_plain_uuidfield_on_a_native_uuid_column(label, plain):
    target = resolve_target(label, "default")
    native = connection.features.has_native_uuid_field
    assert packs_uuid4(target, connection, uuid.uuid4) == (plain and native)
    assert packs_uuid4(target, connection, lambda: uuid.uuid4()) is False
    if native:  # raw bytes into the column: only where save() stores exactly that
        assert resolve_generator(target, "uuid.uuid4").packed == plain


@pytest.fixture(params=["own builder", "generic builder"])
def builder(request, monkeypatch):
    """The database's own builder, or the portable fallback (the ORM's bulk_update)."""
    if request.param == "generic builder":
        monkeypatch.delitem(rotator.sql.BUILDERS, connection.vendor)
        assert isinstance(rotator.sql.builder_for(connection), GenericBuilder)


def test_a_hashing_field_stores_hashes_of_the_new_values_that_verify(builder):
    # Stored as oauth-toolkit's ClientSecretField.pre_save() stores them: hashed.
    HashedSecret.objects.bulk_create(HashedSecret(secret=f"old-{i}") for i in range(60))
    before = values(HashedSecret, "secret")
    generators.MADE.clear()
    out, _ = run(
        "rotate_field",
        "fieldapp.HashedSecret.secret",
        "--generator",
        "tests.fieldapp.generators.recorded",
        "--batch-size",
        "16",
        "--workers",
        "1",
    )
    after = values(HashedSecret, "secret")
    assert changed_everywhere(before, after)
    made = set(generators.MADE)
    for stored in after.values():
        assert identify_hasher(stored).algorithm == "md5"  # tests.settings.PASSWORD_HASHERS
        assert stored not in made  # never the plaintext
        assert sum(check_password(plain, stored) for plain in made) == 1
    assert len(set(after.values())) == len(after)


def test_the_dry_run_says_a_hashing_field_keeps_no_plaintext():
    HashedSecret.objects.bulk_create(HashedSecret(secret=f"old-{i}") for i in range(5))
    before = values(HashedSecret, "secret")
    out, _ = run("rotate_field", "fieldapp.HashedSecret.secret", "--dry-run")
    assert (
        "Stored values: what ClientSecretField.pre_save() makes of each new value (as save() "
        "stores it); the new plaintext values are not kept"
    ) in out.splitlines()
    assert values(HashedSecret, "secret") == before


def test_a_unique_constraint_counts_as_unique():
    assert resolve_target("fieldapp.ConstrainedKey.key", "default").unique is True
    assert resolve_target("tickets.Ticket.token", "default").unique is True
    assert resolve_target("fieldapp.SharedKey.api_key", "default").unique is False
    ConstrainedKey.objects.bulk_create(ConstrainedKey() for _ in range(100))
    before = values(ConstrainedKey, "key")
    run("rotate_field", "fieldapp.ConstrainedKey.key", "--batch-size", "30")
    after = values(ConstrainedKey, "key")
    assert changed_everywhere(before, after)
    for pk, key in after.items():
        assert ConstrainedKey.objects.get(key=key).pk == pk


def test_a_non_unique_secret_column_rotates():
    # Duplicates already there: nothing may insist on uniqueness.
    SharedKey.objects.bulk_create(SharedKey(api_key=f"shared-{i % 10}") for i in range(200))
    before = values(SharedKey, "api_key")
    out, _ = run("rotate_field", "fieldapp.SharedKey.api_key", "--batch-size", "50")
    after = values(SharedKey, "api_key")
    assert changed_everywhere(before, after)
    assert "Rotated 200 rows of fieldapp.SharedKey.api_key" in out
    for pk, key in after.items():
        assert SharedKey.objects.get(api_key=key).pk == pk


@pytest.fixture
def optional_keys():
    OptionalKey.objects.bulk_create(
        OptionalKey(key=None if i % 4 == 0 else f"old-{i}") for i in range(100)
    )
    return values(OptionalKey, "key")


def test_null_stays_null_by_default(optional_keys):
    before = optional_keys
    run("rotate_field", "fieldapp.OptionalKey.key", "--batch-size", "30")
    after = values(OptionalKey, "key")
    assert {pk for pk, key in after.items() if key is None} == {
        pk for pk, key in before.items() if key is None
    }
    assert all(after[pk] != key for pk, key in before.items() if key is not None)


def test_fill_nulls_gives_null_rows_a_value(optional_keys):
    before = optional_keys
    run("rotate_field", "fieldapp.OptionalKey.key", "--batch-size", "30", "--fill-nulls")
    after = values(OptionalKey, "key")
    assert changed_everywhere(before, after)
    assert None not in after.values()


def test_the_dry_run_and_the_plan_count_null_rows(optional_keys):
    out, _ = run("rotate_field", "fieldapp.OptionalKey.key", "--dry-run")
    assert "NULL rows: 25, kept NULL (--fill-nulls fills)" in out.splitlines()
    out, _ = run("rotate_field", "fieldapp.OptionalKey.key", "--dry-run", "--fill-nulls")
    assert "NULL rows: 25, filled (--fill-nulls)" in out.splitlines()
    assert values(OptionalKey, "key") == optional_keys
    out, _ = run("rotate_field", "fieldapp.OptionalKey.key", "--batch-size", "30")
    lines = out.splitlines()
    planned = next(i for i, line in enumerate(lines) if line.startswith("Planned run"))
    assert "NULL rows: 25, kept NULL (--fill-nulls fills)" in lines[planned + 1 :]


def test_a_filtering_base_manager_hides_no_rows():
    Hideable.objects.bulk_create(Hideable(hidden=i % 3 == 0) for i in range(300))
    before = values(Hideable, "token")
    out, _ = run("rotate_field", "fieldapp.Hideable.token", "--batch-size", "40")
    after = dict(Hideable.objects.values_list("pk", "token"))
    assert changed_everywhere(before, after)
    assert "Rotated 300 rows of fieldapp.Hideable.token" in out
    assert Run.objects.get().total_rows == 300


def test_a_proxy_and_its_model_are_one_target():
    Door.objects.bulk_create(Door() for _ in range(200))
    before = values(Door, "key")
    with pytest.raises(Stop):
        _rotate_directly("fieldapp.FrontDoor.key", batch_size=25, workers=1, stop_after=3)
    first = {pk for pk, key in values(Door, "key").items() if key != before[pk]}
    assert len(first) == 50
    middle = values(Door, "key")
    out, _ = run("rotate_field", "fieldapp.Door.key", "--batch-size", "25")
    assert "Resuming run" in out and "Rotated 150 rows of fieldapp.Door.key" in out
    after = values(Door, "key")
    assert changed_everywhere(before, after)
    assert all(after[pk] == middle[pk] for pk in first)  # not rotated twice
    assert all(after[pk] != middle[pk] for pk in before.keys() - first)
    with pytest.raises(CommandError, match=r"rotated"):
        run("rotate_field", "fieldapp.FrontDoor.key")
    assert values(Door, "key") == after


def test_dense_unique_codes_rotate():
    # 20,000 six-digit codes: 2% of the space is taken, so a batch of 1,000 new codes
    # nearly always hits an existing one; only the colliding rows may be retried.
    codes = random.sample(range(10**6), 20_000)
    Pin.objects.bulk_create((Pin(code=f"{c:06d}") for c in codes), batch_size=5_000)
    before = values(Pin, "code")
    out, _ = run("rotate_field", "fieldapp.Pin.code", "--batch-size", "1000", "--workers", "2")
    after = values(Pin, "code")
    assert Run.objects.get().state == Run.State.FINISHED
    assert len(set(after.values())) == 20_000
    assert all(re.fullmatch(r"\d{6}", code) for code in after.values())
    assert sum(after[pk] != before[pk] for pk in before) > 19_000


def _rotate_directly(
    label: str, *, stop_after: int | None = None, **options: object
) -> tuple[object, int]:
    """rotate() on ``label``; a hook counts batches and stops after ``stop_after``."""
    lock = threading.Lock()
    batches = 0

    def hook(lease: object) -> None:
        nonlocal batches
        with lock:
            batches += 1
            if stop_after is not None and batches > stop_after:
                raise Stop(f"batch {batches}")

    report = rotate(
        resolve_target(label, "default"), Options(verbosity=0, batch_hook=hook, **options)
    )
    return report, batches


@pytest.mark.parametrize("zone", ["America/New_York", "UTC"])
def test_datetime_keys_round_trip_in_any_time_zone(settings, zone):
    settings.TIME_ZONE = zone
    start = timezone.make_aware(datetime(2026, 3, 7, 22, 0), timezone.get_current_timezone())
    Reading.objects.bulk_create(Reading(at=start + timedelta(minutes=37 * i)) for i in range(120))
    before = values(Reading, "token")
    # 40 batches of 3 rows (and one that finds the shard empty); a cursor that does
    # not round-trip repeats windows, and at this size never ends: stop it at 50.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            report, batches = _rotate_directly(
                "fieldapp.Reading.token", batch_size=3, workers=1, shards=1, stop_after=50
            )
        except Stop:
            pytest.fail("more than 50 batches of 3 for 120 rows: windows repeat")
    after = values(Reading, "token")
    assert changed_everywhere(before, after)
    assert report.rows == 120
    assert batches <= 41
    # Under UTC the symptom was a RuntimeWarning (naive datetime) per batch.
    naive = [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)]
    assert not naive, naive[0]
