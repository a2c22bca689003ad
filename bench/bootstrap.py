"""Point Django at the benchmark's own database before anything connects."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "asyncproj.settings"
#: Alias of the user's configured database, used only to create and drop ours.
ADMIN = "bench_admin"


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
    if vendor != "postgresql":
        raise BenchError(
            f"the benchmark needs PostgreSQL but the configured database is {vendor} "
            f"({default['ENGINE']!r}); unset DATABASE_URL for the embedded server or set "
            "DATABASE_URL=postgres://..."
        )
    if admin:
        maintenance = copy.deepcopy(default)
        maintenance.get("OPTIONS", {}).pop("pool", None)
        databases[ADMIN] = maintenance
    default["NAME"] = dbname
    django.setup()
