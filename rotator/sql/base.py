from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from ..generators import Generator, Tokens
from ..target import Target
from ..values import db_values


class Builder:
    vendor = "generic"
    #: False where the database has one writer: workers then take turns.
    concurrent_writers = True

    def supports(self, target: Target, generator: Generator) -> str | None:
        """Why this builder cannot rotate ``target`` with ``generator``, or None."""
        if generator.server_side:
            return f"--generator database is not available on {self.vendor}"
        return None

    def rotate(
        self,
        connection: BaseDatabaseWrapper,
        target: Target,
        lo: Any,
        hi: Any,
        limit: int,
        tokens: Tokens | None,
    ) -> tuple[int, Any]:
        raise NotImplementedError

    def describe(self, connection: BaseDatabaseWrapper, target: Target, gen: Generator) -> str:
        """The SQL of one batch, with placeholders, for --dry-run."""
        raise NotImplementedError

    def connection_id(self, connection: BaseDatabaseWrapper) -> str:
        return f"{connection.vendor}:{id(connection.connection):x}"

    def interrupt(self, connection: BaseDatabaseWrapper) -> None:
        """Cancel the statement running on ``connection`` (called from another thread)."""

    # Liveness of shard owners (see claims.py). Without locks: heartbeats.

    def try_own(self, connection: BaseDatabaseWrapper, shard_id: int) -> bool:
        """Take the lock that says "shard_id is worked by this session"; False if held."""
        return True

    def disown(self, connection: BaseDatabaseWrapper, shard_id: int) -> None:
        """Give the lock back (the shard is done or handed back)."""

    def disown_all(self, connection: BaseDatabaseWrapper) -> None:
        """Give back every lock of this session (before a pooled connection is reused)."""

    def owner_alive(self, connection: BaseDatabaseWrapper, shard_id: int) -> bool | None:
        """Whether some session holds shard_id's lock; None where there are no such locks."""
        return None

    def backend_id(self, connection: BaseDatabaseWrapper) -> int | None:
        """The database's id of this session (shown to operators), if it has one."""
        return None

    def is_unique_violation(self, exc: BaseException) -> bool:
        return "unique" in str(exc).lower() or "duplicate" in str(exc).lower()

    @staticmethod
    def prep_key(connection: BaseDatabaseWrapper, target: Target, value: Any) -> Any:
        return None if value is None else target.pk.get_db_prep_value(value, connection)

    @staticmethod
    def prep_values(connection: BaseDatabaseWrapper, target: Target, tokens: Tokens) -> list[Any]:
        return db_values(target, connection, tokens.python_values(), tokens.source)
