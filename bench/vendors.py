"""The benchmark on MariaDB/MySQL and SQLite: what differs from PostgreSQL.

database.py and table.py hand over to these functions when the configured
database is not PostgreSQL. Each database has its own floor, measured in the
same invocation as the contenders:

- MariaDB/MySQL: one ``UPDATE ... SET token = <uuid4 from RANDOM_BYTES()>``;
- SQLite: one ``UPDATE ... SET token = rotator_uuid4()``, a registered Python function.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from django.db import connections

from .bootstrap import ADMIN, ROOT, BenchError

SQLITE_DIR = ROOT / ".data"


def vendor() -> str:
    return connections["default"].vendor


def sqlite_path(name: str) -> Path:
    return SQLITE_DIR / f"{name}.sqlite3"


def _execute(sql: str, params: list | None = None, alias: str = "default") -> tuple | None:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() if cursor.description else None


# -- the bench database -----------------------------------------------------------------


def create(name: str) -> None:
    if vendor() == "sqlite":
        SQLITE_DIR.mkdir(exist_ok=True)
        _remove_sqlite(name)
        return
    qn = connections[ADMIN].ops.quote_name
    (busy,) = _execute(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
        "WHERE DB = %s AND ID <> CONNECTION_ID()",
        [name],
        alias=ADMIN,
    ) or (0,)
    if busy:
        raise BenchError(
            f"database {name!r} has {busy} open connection(s), probably another benchmark run; "
            f"wait for it to finish or drop it with DROP DATABASE {name}"
        )
    _execute(f"DROP DATABASE IF EXISTS {qn(name)}", alias=ADMIN)
    _execute(f"CREATE DATABASE {qn(name)} CHARACTER SET utf8mb4", alias=ADMIN)


def drop(name: str) -> None:
    connections["default"].close()
    if vendor() == "sqlite":
        _remove_sqlite(name)
        return
    qn = connections[ADMIN].ops.quote_name
    _execute(f"DROP DATABASE IF EXISTS {qn(name)}", alias=ADMIN)
    connections[ADMIN].close()


def _remove_sqlite(name: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(f"{sqlite_path(name)}{suffix}")
        if path.exists():
            os.remove(path)


def describe() -> tuple[str, str, dict[str, str]]:
    """(version, where, settings) of the server."""
    connection = connections["default"]
    if vendor() == "sqlite":
        values = {
            name: str(_execute(f"PRAGMA {name}")[0]) for name in ("journal_mode", "synchronous")
        }
        (version,) = _execute("SELECT sqlite_version()")
        return f"SQLite {version}", str(connection.settings_dict["NAME"]), values
    (version,) = _execute("SELECT VERSION()")
    shown = (
        "innodb_buffer_pool_size",
        "innodb_flush_log_at_trx_commit",
        "log_bin",
        "binlog_format",
    )
    values = {name: str(_execute(f"SELECT @@{name}")[0]) for name in shown}
    params = connection.get_connection_params()
    flavour = "MariaDB" if connection.mysql_is_mariadb else "MySQL"
    where = f"{params.get('host') or 'localhost'}:{params.get('port') or 3306}"
    return f"{flavour} {version.split('-')[0]}", where, values


# -- the ticket table between contenders -----------------------------------------------------


def reset(table: str, side: str) -> None:
    _execute(f"DROP TABLE IF EXISTS {side}")
    _execute("DELETE FROM rotator_shard")
    _execute("DELETE FROM rotator_run")
    if vendor() == "sqlite":
        _execute(f"DELETE FROM {table}")
        _execute("DELETE FROM sqlite_sequence WHERE name = %s", [table.strip('"')])
    else:
        _execute(f"TRUNCATE TABLE {table}")  # new tablespace, AUTO_INCREMENT from 1


def snapshot(table: str, pk: str, token: str, side: str) -> None:
    _execute(f"CREATE TABLE {side} AS SELECT {pk} AS id, {token} AS token FROM {table}")
    if vendor() == "sqlite":
        _execute(f"CREATE UNIQUE INDEX {side}_id ON {side} (id)")
        _execute("ANALYZE")
        _execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        _execute(f"ALTER TABLE {side} ADD PRIMARY KEY (id)")
        _execute(f"ANALYZE TABLE {table}, {side}")


# -- the floor -------------------------------------------------------------------------------


def floor_label() -> str:
    if vendor() == "sqlite":
        return "floor: one UPDATE ... SET token = rotator_uuid4() (a Python function)"
    return "floor: one UPDATE ... SET token = <uuid4 from RANDOM_BYTES()>"


def floor(table: str, column: str) -> int:
    connection = connections["default"]
    if vendor() == "sqlite":
        connection.ensure_connection()
        connection.connection.create_function("rotator_uuid4", 0, lambda: uuid.uuid4().hex)
        expression = "rotator_uuid4()"
    else:
        from rotator.sql.mysql_text import random_uuid4_sql
        from rotator.target import resolve_target

        expression = random_uuid4_sql(connection, resolve_target("tickets.Ticket.token", "default"))
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = {expression}")
        return cursor.rowcount
