"""The outside project on PostgreSQL, as projects deploy it (tests/test_django_connections.py).

``SHOP_DATABASE`` is a libpq URL of the primary; ``SHOP_VARIANT`` picks one of
Django's own connection settings: ``pool`` (``OPTIONS={"pool": True}``),
``pool-dict`` (a dict of pool options), ``conn-max-age`` (persistent
connections), ``server-side-binding``, or ``router`` (a replica for reads,
``SHOP_REPLICA``, behind a database router).
"""

from __future__ import annotations

import os

import dj_database_url

from shop.settings import *  # noqa: F403

_variant = os.environ.get("SHOP_VARIANT", "")
_primary = dict(dj_database_url.parse(os.environ["SHOP_DATABASE"]))
_options: dict = {}
if _variant == "pool":
    _options["pool"] = True
elif _variant == "pool-dict":
    _options["pool"] = {"min_size": 2, "max_size": 8, "timeout": 10}
elif _variant == "conn-max-age":
    _primary["CONN_MAX_AGE"] = 600
    _primary["CONN_HEALTH_CHECKS"] = True
elif _variant == "server-side-binding":
    _options["server_side_binding"] = True
_primary["OPTIONS"] = _options
DATABASES = {"default": _primary}
if _variant == "router":
    DATABASES["replica"] = dict(dj_database_url.parse(os.environ["SHOP_REPLICA"]))
    DATABASE_ROUTERS = ["shop.routers.PrimaryReplicaRouter"]

# The test session's short settle (tests/conftest.py); a real project keeps the 30 s default.
if os.environ.get("ROTATOR_SETTLE_SECONDS"):
    ROTATOR_SETTLE_SECONDS = float(os.environ["ROTATOR_SETTLE_SECONDS"])
