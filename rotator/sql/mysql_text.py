"""Deprecated alias: the MySQL batch SQL moved to ``rotator.sql.mysql.batch``.

Kept only for ``bench/vendors.py`` (owned elsewhere); remove once it imports
``rotator.sql.mysql.batch``.
"""

from __future__ import annotations

from rotator.sql.mysql.batch import random_uuid4_sql

__all__ = ["random_uuid4_sql"]
