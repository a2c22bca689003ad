"""Fingerprints: a truncated hash of every planned row's value, taken when the run is planned.

``--verify`` later compares the table against them, independently of the
checkpoints. One ``INSERT ... SELECT`` computes them on the server (sha256 on
PostgreSQL and MySQL, a registered function on SQLite): no value and no hash
travels to the client, and the client's memory does not grow with the table.
"""

from __future__ import annotations

from django.db import connections, transaction

from rotator.models import Fingerprint, Run
from rotator.service.target import Target
from rotator.sql.digests import digests_for, supported


def table_name() -> str:
    return Fingerprint._meta.db_table


def record(target: Target, run: Run) -> int:
    """Fingerprint the run's rows (keys up to its high-water mark); return how many.

    Does nothing when the run already has fingerprints (another process of the
    same run took them), or has started rotating (the values are no longer the
    pre-rotation ones), or the database cannot hash on the server.
    """
    connection = connections[target.alias]
    if run.high_water is None or not supported(connection):
        return 0
    with transaction.atomic(using=target.alias):
        # The run row's lock makes a second process joining the run wait here,
        # and its workers' first claim wait, until the fingerprints are committed.
        locked = Run.objects.using(target.alias).select_for_update().filter(pk=run.pk)
        if not locked.exists() or run.fingerprints.exists() or run.rows_done():
            return 0
        qn = connection.ops.quote_name
        sql = digests_for(connection, target)
        # The high-water key is kept as the database's own text of the key.
        bound, high_water = "%s", run.high_water
        if connection.vendor == "postgresql":
            bound = f"%s::{target.pk.cast_db_type(connection)}"
        else:
            high_water = target.pk.get_db_prep_value(target.key_from_text(high_water), connection)
        fp = qn(table_name())
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {fp} ({qn('run_id')}, {qn('key')}, {qn('digest')}) "
                f"SELECT %s, {sql.key_text}, {sql.digest} "
                f"FROM {qn(target.model._meta.db_table)} "
                f"WHERE {qn(target.pk.column)} <= {bound}",
                [run.pk, high_water],
            )
            return cursor.rowcount


def count(run: Run) -> int:
    return run.fingerprints.count()
