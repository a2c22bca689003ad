"""Point Django at the benchmark's own database before anything connects."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "asyncproj.settings"
#: Alias of the user's configured database, used only to create and drop ours.
ADMIN = "bench_admin"
#: The bench database, unless DATABASE_URL names one of its own (``bench_name()``).
DEFAULT_NAME = "rotator_bench"
#: Where the admin connection goes when DATABASE_URL names the bench database itself.
_MAINTENANCE = {"postgresql": "postgres", "mysql": "mysql"}


def bench_name() -> str:
    """The database the benchmark creates and drops: ROTATOR_BENCH_DB if set, else
    DATABASE_URL's own when its name ends in ``_bench`` (engineers sharing one server
    each keep theirs), else rotator_bench."""
    if named := os.environ.get("ROTATOR_BENCH_DB"):
        return named
    url = os.environ.get("DATABASE_URL", "")
    name = urlsplit(url).path.lstrip("/") if url.startswith(("postgres", "mysql")) else ""
    return name if name.endswith("_bench") and "/" not in name else DEFAULT_NAME


class BenchError(Exception):
    """A problem the user can fix; the benchmark prints it as one line."""


def setup(dbname: str, *, admin: bool = False) -> None:
    """Configure Django with ``default`` renamed to ``dbname`` (and ``ADMIN`` as it was)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)

    import django
    from django.conf import settings
    from django.db.utils import load_backend

    databases = settings.DATABASES
    default = databases["default"]
    vendor = load_backend(default["ENGINE"]).DatabaseWrapper.vendor
    if vendor not in ("postgresql", "mysql", "sqlite"):
        raise BenchError(
            f"the benchmark runs on PostgreSQL, MariaDB/MySQL or SQLite, but the configured "
            f"database is {vendor} ({default['ENGINE']!r}); pass --database-url postgres://..., "
            "mysql://... or sqlite:///..."
        )
    if admin:
        maintenance = copy.deepcopy(default)
        maintenance.get("OPTIONS", {}).pop("pool", None)
        if maintenance["NAME"] == dbname:  # a database cannot drop itself
            maintenance["NAME"] = _MAINTENANCE.get(vendor, maintenance["NAME"])
        databases[ADMIN] = maintenance
    # SQLite: the bench database is a file beside the project's own (.data/).
    default["NAME"] = str(ROOT / ".data" / f"{dbname}.sqlite3") if vendor == "sqlite" else dbname
    django.setup()
