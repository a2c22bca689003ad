"""Every command that --leaked suggests works when typed; --generator takes class attributes."""

from __future__ import annotations

import re
import shlex
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from rotator.generators import import_attribute
from rotator.models import Run
from tests.conftest import fill, run
from tests.support import tokens
from tests.testapp.models import ApiKey
from tickets.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)


def leaked(*args: str) -> str:
    """The error --leaked ends with (the test expects leaked values to be present)."""
    with pytest.raises(CommandError) as info:
        call_command(*args, stdout=StringIO())
    return str(info.value)


def typed(command: str) -> None:
    """Run a suggested ``python manage.py NAME ARGS`` exactly as printed."""
    argv = shlex.split(command)
    assert argv[:2] == ["python", "manage.py"], command
    call_command(*argv[2:], stdout=StringIO(), stderr=StringIO())


def test_a_finished_field_with_leaked_values_left_gets_a_restart_with_its_generator(tmp_path):
    fill(60)
    old = tokens()
    path = tmp_path / "dump.txt"
    path.write_text("".join(f"{t}\n" for t in old.values()))
    run("regenerate_token_async", "--generator", "uuid.uuid4")
    # A backup restored into five rows brings their leaked values back.
    for pk in list(old)[:5]:
        Ticket.objects.filter(pk=pk).update(token=old[pk])
    message = leaked("regenerate_token_async", "--leaked", str(path))
    first = Run.objects.get()
    assert re.fullmatch(
        r"5 leaked values are still in tickets\.Ticket\.token; tickets\.Ticket\.token was "
        rf"fully rotated by run {first.pk} \(finished [^)]+\); rotate every row again: "
        r"python manage\.py regenerate_token_async --restart --generator uuid\.uuid4",
        message,
    )
    typed(message.split("rotate every row again: ")[1])
    again = Run.objects.exclude(pk=first.pk).get()
    assert again.options["generator"] == "uuid.uuid4" and again.state == "finished"
    out = StringIO()
    call_command("regenerate_token_async", "--leaked", str(path), stdout=out)
    assert out.getvalue().startswith("0 of the 60 leaked values")


def test_leaked_keys_point_at_revoke_rows_and_that_command_works(tmp_path):
    users = User.objects.bulk_create(User(username=f"u{i}") for i in range(30))
    Token.objects.bulk_create(Token(user=user, key=Token.generate_key()) for user in users)
    keys = list(Token.objects.values_list("key", flat=True))
    path = tmp_path / "dump.csv"
    path.write_text("key,user\n" + "".join(f"{k},x\n" for k in keys[:10]))
    message = leaked(
        "rotate_field", "authtoken.Token.key", "--leaked", str(path), "--leaked-column", "key"
    )
    command = (
        f"python manage.py revoke_rows authtoken.Token --leaked {shlex.quote(str(path))} "
        "--leaked-column key"
    )
    assert message == (
        "10 leaked values are still in authtoken.Token.key; the key is the secret, so revoke "
        f"those rows: {command}"
    )
    typed(command)
    assert sorted(Token.objects.values_list("key", flat=True)) == sorted(keys[10:])
    out = StringIO()
    call_command("rotate_field", "authtoken.Token.key", "--status", stdout=out)
    assert out.getvalue() == "authtoken.Token.key has no runs on database 'default'.\n"


def test_a_generator_may_be_a_class_attribute(tmp_path: Path):
    make = import_attribute("rest_framework.authtoken.models.Token.generate_key")
    assert re.fullmatch(r"[0-9a-f]{40}", make())
    ApiKey.objects.bulk_create(ApiKey() for _ in range(20))
    before = dict(ApiKey.objects.values_list("pk", "key"))
    call_command(
        "rotate_field",
        "testapp.ApiKey.key",
        "--generator",
        "rest_framework.authtoken.models.Token.generate_key",
        stdout=StringIO(),
    )
    after = dict(ApiKey.objects.values_list("pk", "key"))
    assert after.keys() == before.keys()
    assert all(re.fullmatch(r"[0-9a-f]{40}", v) and v != before[k] for k, v in after.items())


def test_a_class_attribute_that_is_not_there_is_named():
    with pytest.raises(Exception) as info:
        import_attribute("rest_framework.authtoken.models.Token.nope")
    assert str(info.value) == (
        "--generator 'rest_framework.authtoken.models.Token.nope' cannot be imported: "
        "'rest_framework.authtoken.models' has no attribute 'Token.nope'"
    )
