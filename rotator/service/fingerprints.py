"""Fingerprints: a truncated hash of every planned row's value, taken when the run is planned.

``--verify`` later compares the table against them, independently of the
checkpoints. One ``INSERT ... SELECT`` computes them on the server (the
builder's ``fingerprint_insert``): no value and no hash
travels to the client, and the client's memory does not grow with the table.
"""

from __future__ import annotations

from django.db import connections, transaction

from rotator.models import Fingerprint, Run
from rotator.sql import builder_for
from rotator.target import Target


def table_name() -> str:
    return Fingerprint._meta.db_table


def record(target: Target, run: Run) -> int:
    """Fingerprint the run's rows (keys up to its high-water mark); return how many.

    Does nothing when the run already has fingerprints (another process of the
    same run took them), or has started rotating (the values are no longer the
    pre-rotation ones), or the database cannot hash on the server.
    """
    connection = connections[target.alias]
    builder = builder_for(connection)
    if run.high_water is None or not builder.hashes_on_server:
        return 0
    with transaction.atomic(using=target.alias):
        # The run row's lock makes a second process joining the run wait here,
        # and its workers' first claim wait, until the fingerprints are committed.
        locked = Run.objects.using(target.alias).select_for_update().filter(pk=run.pk)
        if not locked.exists() or run.fingerprints.using(target.alias).exists() or run.rows_done():
            return 0
        # The high-water key is kept as the database's own text of the key.
        sql, params = builder.fingerprint_insert(
            connection, target, table_name(), run.pk, run.high_water
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount
