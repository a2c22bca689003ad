"""The distribution is the reusable app: it installs into a project of its own and works there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = Path(__file__).resolve().parent / "outside_project"


def test_the_app_works_off_postgresql_without_psycopg():
    """A project on SQLite (or MySQL) need not install psycopg: nothing imports it there."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["psycopg"] = sys.modules["psycopg_pool"] = None  # as if not installed
        import django
        from django.conf import settings
        settings.configure(
            INSTALLED_APPS=["rotator"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        )
        django.setup()
        import rotator.service.rotation, rotator.management.commands.rotate_field
        from django.db import connection
        from rotator.sql import builder_for
        print(type(builder_for(connection)).__name__)
        """
    )
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SQLiteBuilder"


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel() -> Iterator[Path]:
    # Built from a copy: setuptools leaves build/ and *.egg-info in the tree it builds.
    # Not tmp_path_factory: other pytest sessions on the machine may prune its directories.
    own = tempfile.TemporaryDirectory(prefix="rotator-wheel-", ignore_cleanup_errors=True)
    source = Path(own.name) / "source"
    skip = shutil.ignore_patterns(
        ".git", ".venv*", ".pgdata", ".data", "build", "*.egg-info", "__pycache__", ".*_cache"
    )
    shutil.copytree(ROOT, source, ignore=skip)
    dist = Path(own.name) / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist)]
    _run([*pip_wheel, str(source)], ROOT)
    (built,) = dist.glob("rotator-*.whl")
    yield built
    own.cleanup()


@pytest.mark.slow
def test_the_wheel_holds_the_app_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names if not name.startswith("rotator-")}
    assert packages == {"rotator"}
    assert "rotator/migrations/0001_initial.py" in names
    assert "rotator/management/commands/rotate_field.py" in names
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))
    )
    required = [
        line.split(":", 1)[1].strip()
        for line in metadata.decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert not [r for r in required if r.lower().startswith(("pgserver", "dj-database-url"))]
    assert not [r for r in required if r.lower().startswith("psycopg")]


@pytest.mark.slow
def test_a_project_of_its_own_installs_the_wheel_and_rotates_its_model(wheel, own_tmp):
    """Fresh venv, the built wheel (not this source tree), Django from PyPI, SQLite."""
    env_dir = own_tmp / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    _run([python, "-m", "pip", "install", "-q", str(wheel)], own_tmp)

    project = own_tmp / "project"
    shutil.copytree(OUTSIDE, project, ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"

    def manage(*args: str) -> str:
        return _run([python, "-W", "ignore", "manage.py", *args], project, env)

    where = manage("shell", "-v", "0", "-c", "import rotator; print(rotator.__file__)")
    assert str(env_dir) in where  # the installed wheel, not the source tree
    manage("makemigrations", "shop", "-v", "0")
    manage("migrate", "-v", "0")
    dump = (
        "import json; from shop.models import ApiKey; "
        "print(json.dumps(dict(ApiKey.objects.values_list('pk', 'key'))))"
    )
    manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from shop.models import ApiKey; "
        "ApiKey.objects.bulk_create(ApiKey(owner=f'o{i}') for i in range(2500))",
    )
    before = json.loads(manage("shell", "-v", "0", "-c", dump))
    assert len(before) == 2500

    out = manage("rotate_field", "shop.ApiKey.key", "--batch-size", "400")

    after = json.loads(manage("shell", "-v", "0", "-c", dump))
    assert after.keys() == before.keys()
    assert all(after[pk] != before[pk] for pk in before)
    assert len(set(after.values())) == len(after)
    assert "Rotated 2,500 rows of shop.ApiKey.key" in out
    assert "rotator" in manage("rotate_field", "--version")
