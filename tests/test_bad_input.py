"""Bad input: one clear line, a non-zero exit (CommandError), and nothing changed."""

from __future__ import annotations

import re
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.db.models import NOT_PROVIDED
from django.db.utils import load_backend

from rotator.models import Run
from tests.conftest import fill, rows, run
from tests.support import interrupted_run
from tickets.models import Ticket

# The refusals come before any worker starts: one connection, one test transaction.
pytestmark = pytest.mark.django_db


@pytest.fixture
def table():
    """A few tickets, and a check afterwards that the refused command left them alone."""
    fill(20)
    before = rows()
    yield
    assert rows() == before
    assert not Run.objects.exists()


def refused(*args: str) -> str:
    """Run a command that must fail; return its one-line message."""
    with pytest.raises(CommandError) as failed:
        run(*args)
    message = str(failed.value)
    assert failed.value.returncode != 0
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (
            "tickets.Nope.token",
            "tickets.Nope is not an installed model; expected app_label.Model.field, "
            "got 'tickets.Nope.token'",
        ),
        (
            "nope.Ticket.token",
            "nope.Ticket is not an installed model; expected app_label.Model.field, "
            "got 'nope.Ticket.token'",
        ),
        (
            "tickets.Ticket.nope",
            "tickets.Ticket has no field 'nope'; expected app_label.Model.field",
        ),
        (
            "tickets.Ticket",
            "'tickets.Ticket' is not a model field; expected app_label.Model.field",
        ),
        (
            "tickets.Ticket.token.hex",
            "'tickets.Ticket.token.hex' is not a model field; expected app_label.Model.field",
        ),
        (
            "tickets.Ticket.subject",
            "'tickets.Ticket.subject' has no callable default to make new values; "
            "pass --generator dotted.path.to.callable",
        ),
        (
            "tickets.Ticket.id",
            "'tickets.Ticket.id' is the primary key, which cannot be rotated in place; where "
            "the key is the secret (a token, a session key), revoke the rows instead: "
            "python manage.py revoke_rows tickets.Ticket --leaked FILE "
            "(or every row: python manage.py revoke_rows tickets.Ticket)",
        ),
        (
            "rotator.Shard.run",
            "'rotator.Shard.run' is a ForeignKey (a reference to rotator.Run), not a secret; "
            "rotate a column that holds a secret",
        ),
    ],
)
def test_a_field_that_cannot_rotate(table, label, message):
    assert refused("rotate_field", label) == message


@pytest.mark.parametrize(
    "default", [NOT_PROVIDED, uuid.UUID(int=7)], ids=["no default", "constant default"]
)
def test_a_unique_field_without_a_callable_default_needs_a_generator(table, monkeypatch, default):
    # No model of the project has such a field; give the token one for this test.
    monkeypatch.setattr(Ticket._meta.get_field("token"), "default", default)
    assert refused("regenerate_token_async") == (
        "'tickets.Ticket.token' has no callable default to make new values; "
        "pass --generator dotted.path.to.callable"
    )


@pytest.mark.parametrize("option", ["--workers", "--shards"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_counts_must_be_at_least_one(table, option, value):
    assert refused("regenerate_token_async", option, value) == (
        f"{option} must be at least 1, got {int(value)!r}"
    )


@pytest.mark.parametrize("value", ["0", "-3", "100001", "100000000"])
def test_the_batch_size_is_bounded(table, value):
    # A batch's new values are held in memory at once: 10^8 of them took 4.7 GB.
    assert refused("regenerate_token_async", "--batch-size", value) == (
        f"--batch-size must be from 1 to 100,000, got {int(value)!r}"
    )


@pytest.mark.parametrize("value", ["0", "-0.5", "nan", "inf"])
def test_the_batch_seconds_are_a_positive_number(table, value):
    assert refused("regenerate_token_async", "--batch-seconds", value) == (
        f"--batch-seconds must be a number of seconds above 0, got {float(value)!r}"
    )


def test_the_batch_seconds_steer_only_the_adaptive_size(table):
    assert refused("regenerate_token_async", "--batch-seconds", "0.1", "--batch-size", "50") == (
        "--batch-seconds steers the adaptive batch size; it cannot be used with --batch-size "
        "(a fixed size)"
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [("--lock-timeout", "0"), ("--lock-timeout", "-1"), ("--reconnect-timeout", "-1")],
)
def test_timeouts_must_be_positive(table, option, value):
    assert refused("regenerate_token_async", option, value).startswith(f"{option} must be ")


def test_counts_must_be_integers(table):
    assert refused("regenerate_token_async", "--workers", "many") == (
        "Error: argument --workers: invalid int value: 'many'"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "tests.nope.make",
            "--generator 'tests.nope.make' cannot be imported: No module named 'tests.nope'",
        ),
        (
            "uuid.uuid5000",
            "--generator 'uuid.uuid5000' cannot be imported: "
            'Module "uuid" does not define a "uuid5000" attribute/class',
        ),
        (
            "uuid4",
            "--generator 'uuid4' cannot be imported: uuid4 doesn't look like a module path",
        ),
        (
            "rotator.workers.batch.MAX_ROUNDS",
            "--generator 'rotator.workers.batch.MAX_ROUNDS' is not callable",
        ),
    ],
)
def test_a_bad_generator_path(table, spec, message):
    assert refused("regenerate_token_async", "--generator", spec) == message


def test_an_unknown_database_alias(table):
    assert refused("regenerate_token_async", "--database", "nope") == (
        "unknown database 'nope'; settings.DATABASES has: default"
    )


@pytest.fixture
def unreachable():
    """A connection "down" to a PostgreSQL server that is not there (port 1).

    Set on the handler rather than added to settings.DATABASES, which pytest-django
    guards (it would refuse the alias before the command could try it).
    """
    down = connections.configure_settings(
        {
            "default": dict(connections.settings["default"]),
            "down": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "rotator",
                "USER": "postgres",
                "HOST": "127.0.0.1",
                "PORT": "1",
                "OPTIONS": {"connect_timeout": 5},
            },
        }
    )["down"]
    connections["down"] = load_backend(down["ENGINE"]).DatabaseWrapper(down, "down")
    yield "down"
    connections["down"].close()
    del connections["down"]


def test_an_unreachable_database(table, unreachable):
    message = refused("regenerate_token_async", "--database", unreachable)
    assert re.fullmatch(r"database 'down': .*127\.0\.0\.1.*port 1.*", message), message


@pytest.fixture
def rotator_unmigrated():
    call_command("migrate", "rotator", "zero", verbosity=0)
    yield
    call_command("migrate", "rotator", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_unapplied_migrations(rotator_unmigrated):
    fill(20)
    before = rows()
    assert refused("regenerate_token_async") == (
        "database 'default' has unapplied migrations "
        "(rotator.0001_initial, rotator.0002_live_table, rotator.0003_fingerprints and 9 more); "
        "run: python manage.py migrate --database default"
    )
    assert rows() == before


@pytest.mark.postgresql
def test_more_workers_than_the_pool_holds(table):
    pool = connections["default"].settings_dict["OPTIONS"]["pool"]["max_size"]
    assert refused("regenerate_token_async", "--workers", str(pool)) == (
        f"--workers {pool} needs {pool + 2} connections but the pool of database 'default' "
        f"holds at most {pool}; lower --workers or raise OPTIONS['pool']['max_size']"
    )


@pytest.mark.django_db(transaction=True)
def test_a_refused_restart_leaves_the_unfinished_run_resumable():
    fill(1_000)
    stopped = interrupted_run(workers=1, batch_size=25, committed=2)
    before = rows()
    out = StringIO()
    with pytest.raises(CommandError, match=r"^--generator 'tests\.nope\.make' cannot be imported"):
        call_command(
            "regenerate_token_async",
            "--restart",
            "--yes",
            "--generator=tests.nope.make",
            stdout=out,
        )
    assert rows() == before
    assert Run.objects.get(pk=stopped.pk).state == Run.State.ACTIVE  # today: abandoned
    assert out.getvalue() == ""  # today: "Abandoned run N of tickets.Ticket.token; ..."


@pytest.mark.parametrize(
    ("in_use", "workers", "advice"),
    [
        (8, 32, "lower --workers to 2 or fewer"),
        (12, 1, "wait until the application uses fewer connections, or raise max_connections"),
    ],
)
def test_a_server_without_room_for_the_workers_and_the_headroom(
    table, monkeypatch, in_use, workers, advice
):
    from rotator.sql import builder_for
    from rotator.sql.base import ConnectionUse

    crowded = ConnectionUse(maximum=20, reserved=3, in_use=in_use)
    builder = type(builder_for(connections["default"]))
    monkeypatch.setattr(builder, "connection_use", lambda self, connection: crowded)
    free = 17 - in_use
    assert refused("regenerate_token_async", "--workers", str(workers)) == (
        f"--workers {workers} needs {workers + 2} more connections to database 'default', but "
        f"{free} of its 17 connections are free (max_connections 20, 3 reserved, {in_use} in "
        f"use) and 5 stay free for the application; {advice}"
    )


@pytest.mark.parametrize("vendor_name", ["postgresql", "mysql"])
def test_the_servers_connection_use_is_read(vendor_name):
    from rotator.sql import builder_for

    connection = connections["default"]
    if connection.vendor != vendor_name:
        pytest.skip(f"needs {vendor_name}")
    use = builder_for(connection).connection_use(connection)
    assert use is not None and use.maximum > 0 and use.in_use >= 1 and use.reserved >= 0
