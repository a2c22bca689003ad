"""Targets and generators that can never give right values: one line up front, nothing changed.

Each refusal holds for --dry-run too, and never shows a value the generator made.
"""

from __future__ import annotations

import itertools
import re
import secrets
from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.db.models import QuerySet
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application

from rotator.models import Run
from tests.conftest import run
from tests.fieldapp import generators
from tests.fieldapp.models import (
    Account,
    Credential,
    HexToken,
    Login,
    OptionalKey,
    ServiceCredential,
    ShortCode,
    Tagged,
    Uuid,
)

pytestmark = pytest.mark.django_db(transaction=True)

MODELS = [
    Account,
    Login,
    Credential,
    ServiceCredential,
    OptionalKey,
    Uuid,
    Application,
    AccessToken,
]


def snapshot() -> dict[str, list[tuple]]:
    return {m._meta.label: list(QuerySet(model=m).order_by("pk").values_list()) for m in MODELS}


@pytest.fixture
def tables():
    """A few rows in every table of these cases; afterwards, the same rows and no run."""
    for i in range(5):
        account = Account.objects.create()
        Login.objects.create(account=account)
        Credential.objects.create()
        ServiceCredential.objects.create(service=f"s{i}")
        OptionalKey.objects.create(key=None if i == 0 else f"k{i}")
        Uuid.objects.create()
        app = Application.objects.create(
            name=f"app {i}",
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
            hash_client_secret=i % 2 == 0,
        )
        AccessToken.objects.create(
            token=f"access-{i}", application=app, expires=timezone.now() + timedelta(hours=1)
        )
    before = snapshot()
    yield
    assert snapshot() == before
    assert not Run.objects.exists()


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as failed:
        run(*args)
    message = str(failed.value)
    assert failed.value.returncode != 0
    assert message and "\n" not in message
    assert generators.LEAK not in message
    return message


CASES = {
    "a multi-table child's field on the parent table": (
        ["fieldapp.ServiceCredential.token"],
        "'fieldapp.ServiceCredential.token' lives on the parent table 'fieldapp_credential'; "
        "rotate 'fieldapp.Credential.token' instead (it covers every "
        "fieldapp.ServiceCredential row)",
    ),
    "a column another table's ForeignKey points to": (
        ["fieldapp.Account.login"],
        "'fieldapp.Account.login' is referenced by fieldapp.Login.account (to_field='login'); "
        "new values would break those references: rotate a column no ForeignKey points to",
    ),
    "a ForeignKey": (
        ["fieldapp.Login.account"],
        "'fieldapp.Login.account' is a ForeignKey (a reference to fieldapp.Account), not a "
        "secret; rotate a column that holds a secret",
    ),
    "a checksum computed from another column in pre_save": (
        ["oauth2_provider.AccessToken.token_checksum", "--generator", "secrets.token_hex"],
        "'oauth2_provider.AccessToken.token_checksum' cannot rotate: TokenChecksumField."
        "pre_save() computes the stored value from other columns (token), which rotator does "
        "not read, so save() may store something else per row; change it with save() instead; "
        "nothing was changed",
    ),
    "the column a checksum is computed from": (
        ["oauth2_provider.AccessToken.token", "--generator", "secrets.token_hex"],
        "'oauth2_provider.AccessToken.token' cannot rotate alone: TokenChecksumField "
        "oauth2_provider.AccessToken.token_checksum is computed from it in pre_save(), and "
        "would no longer match (the application looks rows up by it); nothing was changed",
    ),
    "a hashing field whose pre_save reads a per-row flag": (
        ["oauth2_provider.Application.client_secret"],
        "'oauth2_provider.Application.client_secret' cannot rotate: ClientSecretField."
        "pre_save() computes the stored value from other columns (hash_client_secret), which "
        "rotator does not read, so save() may store something else per row; change it with "
        "save() instead; nothing was changed",
    ),
    "a generator that returns None": (
        ["fieldapp.OptionalKey.key", "--generator", "tests.fieldapp.generators.none"],
        "generator 'tests.fieldapp.generators.none' for 'fieldapp.OptionalKey.key' returned "
        "None; a rotation never replaces a secret with NULL; nothing was changed",
    ),
    "a generator that raises": (
        ["fieldapp.Uuid.token", "--generator", "tests.fieldapp.generators.boom"],
        "generator 'tests.fieldapp.generators.boom' raised ValueError (message withheld: it may "
        "hold a secret; call the generator in `manage.py shell` to see it); nothing was changed",
    ),
    "a generator of the wrong type": (
        ["fieldapp.Uuid.token", "--generator", "tests.fieldapp.generators.not_a_uuid"],
        "generator 'tests.fieldapp.generators.not_a_uuid' for 'fieldapp.Uuid.token' made a "
        "value that UUIDField cannot store (ValidationError; value withheld); nothing was changed",
    ),
}


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry run"])
@pytest.mark.parametrize("case", list(CASES))
def test_refused_up_front(tables, case, dry_run):
    args, message = CASES[case]
    command = ["rotate_field", *args, *(["--dry-run"] if dry_run else [])]
    assert refused(*command) == message


@pytest.mark.postgresql
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry run"])
def test_a_unique_array_field_is_refused(tables, dry_run):
    Tagged.objects.create(codes=["a", "b"])
    before = list(Tagged.objects.values_list("pk", "codes"))
    command = ["rotate_field", "fieldapp.Tagged.codes", *(["--dry-run"] if dry_run else [])]
    assert refused(*command) == (
        "'fieldapp.Tagged.codes' is an ArrayField; rotator rotates one value per row, not arrays"
    )
    assert list(Tagged.objects.values_list("pk", "codes")) == before


@pytest.mark.postgresql
def test_the_database_generator_only_fills_a_plain_uuid_column():
    HexToken.objects.create()
    before = raw_tokens()
    assert refused("rotate_field", "fieldapp.HexToken.token", "--generator", "database") == (
        "--generator database (gen_random_uuid()) only fills a models.UUIDField on a native "
        "uuid column; 'fieldapp.HexToken.token' is a HexUUIDField (char(32)): pass "
        "--generator uuid.uuid4"
    )
    assert raw_tokens() == before


def raw_tokens() -> list[tuple]:
    return list(HexToken.objects.values_list("pk", "token"))


_calls = itertools.count()


def fails_later() -> str:
    """Good values for the up-front checks (85 values for 200 rows, used by the first
    batches) and four batches of 25 in all, then an error."""
    if next(_calls) >= 110:
        raise KeyError(f"{generators.LEAK}late")
    return generators.recorded()


def test_a_generator_that_fails_mid_run_gives_one_line_and_a_resume_hint():
    global _calls
    _calls = itertools.count()
    OptionalKey.objects.bulk_create(OptionalKey(key=f"k{i}") for i in range(200))
    before = dict(OptionalKey.objects.values_list("pk", "key"))
    message = refused(
        "rotate_field",
        "fieldapp.OptionalKey.key",
        "--generator",
        "tests.test_refusals.fails_later",
        "--batch-size",
        "25",
        "--workers",
        "1",
    )
    assert message.startswith(
        "generator 'tests.test_refusals.fails_later' raised KeyError (message withheld"
    )
    assert re.search(
        r"\(message withheld: .*\); no batch was half-applied, fix it first; 100/200 rows of "
        r"fieldapp\.OptionalKey\.key rotated; run `python manage\.py rotate_field "
        r"fieldapp\.OptionalKey\.key` again to resume run \d+$",
        message,
    ), message
    after = dict(OptionalKey.objects.values_list("pk", "key"))
    changed = sum(after[pk] != before[pk] for pk in before)
    assert changed == 100  # the four whole batches before it failed, nothing half-done
    assert Run.objects.get().rows_done() == 100


def grows() -> str:
    """Values that fit the varchar(8) column for 60 calls, then one character too many."""
    return secrets.token_hex(4) if next(_calls) < 60 else secrets.token_hex(5)[:9]


@pytest.mark.postgresql
def test_a_value_too_long_mid_run_stops_before_its_batch_changes_anything():
    global _calls
    _calls = itertools.count()
    ShortCode.objects.bulk_create(ShortCode(code=f"c{i:07d}") for i in range(200))
    before = dict(ShortCode.objects.values_list("pk", "code"))
    message = refused(
        "rotate_field",
        "fieldapp.ShortCode.code",
        "--generator",
        "tests.test_refusals.grows",
        "--batch-size",
        "25",
        "--workers",
        "1",
    )
    assert message.startswith(
        "generator 'tests.test_refusals.grows' for 'fieldapp.ShortCode.code' made a value of 9 "
        "characters (value withheld), too long for the varchar(8) column; save() fails on "
        "postgresql and rotator never cuts a value: make shorter values or widen the column; "
        "no batch was half-applied, fix it first; 50/200 rows of fieldapp.ShortCode.code "
        "rotated; run `python manage.py rotate_field fieldapp.ShortCode.code` again to resume run"
    ), message
    after = dict(ShortCode.objects.values_list("pk", "code"))
    changed = [pk for pk in before if after[pk] != before[pk]]
    assert len(changed) == 50
    assert all(len(after[pk]) == 8 for pk in after)
