"""What the command says about itself: --version, --help, and the command to resume with."""

from __future__ import annotations

import re
import shlex
import sys
from importlib import metadata
from pathlib import Path

import pytest

from rotator.errors import ExitStatus
from rotator.management.commands import rotate_field
from rotator.service.options import MAX_BATCH_SIZE
from rotator.workers.sizing import MAX_BATCH, MIN_BATCH


def help_text() -> str:
    return rotate_field.Command().create_parser("manage.py", "rotate_field").format_help()


def test_version_is_the_rotators():
    assert rotate_field.Command().get_version().startswith(f"rotator {metadata.version('rotator')}")


def test_help_gives_every_exit_status_with_its_meaning():
    epilog = help_text().split("exit status:\n", 1)[1].split("\n\n", 1)[0]
    entries = re.split(r"\n  (?=\d)", "\n" + epilog)[1:]
    statuses = {
        int(code): " ".join(rest.split()) for code, rest in (e.split(None, 1) for e in entries)
    }
    assert statuses == {int(status): status.meaning for status in ExitStatus}


def test_the_readme_table_is_the_exit_status_enum():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Exit status", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", section, re.M)
    table = {int(code): meaning.replace("`", "") for code, meaning in rows}
    assert table == {int(status): status.meaning for status in ExitStatus}


def test_help_names_database_url_the_batch_bounds_and_the_uuid_only_generator():
    text = " ".join(help_text().split())
    assert "DATABASE_URL" in text
    assert f"1 to {MAX_BATCH_SIZE:,}" in text
    assert f"{MIN_BATCH:,} to {MAX_BATCH:,} rows" in text
    assert "'database' for gen_random_uuid() on PostgreSQL, UUID columns only" in text


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (
            [".venv/bin/python", "-W", "ignore", "manage.py", "rotate_field", "a.B.c", "-v", "2"],
            ".venv/bin/python -W ignore manage.py rotate_field a.B.c -v 2",
        ),
        (
            ["python", "manage.py", "rotate_field", "a.B.c", "--restart", "--workers", "8"],
            "python manage.py rotate_field a.B.c --workers 8",
        ),
    ],
    ids=["as-typed", "without-restart"],
)
def test_the_resume_hint_is_the_command_as_it_was_run(monkeypatch, argv, hint):
    monkeypatch.setattr(sys, "orig_argv", argv)
    monkeypatch.setattr(sys, "argv", argv[argv.index("manage.py") :])
    assert rotate_field.resume_command("rotate_field", "fallback") == hint
    assert shlex.split(hint) == [a for a in argv if a != "--restart"]  # pastes into a shell


def test_the_resume_hint_from_code_is_the_plain_command(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest", "tests"])
    assert rotate_field.resume_command("rotate_field", "fallback") == "fallback"


def test_bench_help_says_how_long_which_database_and_what_it_drops(capsys):
    from bench.cli import parse

    with pytest.raises(SystemExit) as done:
        parse(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "about 20 minutes" in text
    assert "DATABASE_URL" in text and "embedded PostgreSQL" in text
    assert "creates a database 'rotator_bench'" in text and "drops it" in text
