from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from ..generators import Generator, Tokens
from ..target import Target


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

    def is_unique_violation(self, exc: BaseException) -> bool:
        return "unique" in str(exc).lower() or "duplicate" in str(exc).lower()

    @staticmethod
    def prep_key(connection: BaseDatabaseWrapper, target: Target, value: Any) -> Any:
        return None if value is None else target.pk.get_db_prep_value(value, connection)

    @staticmethod
    def prep_values(connection: BaseDatabaseWrapper, target: Target, tokens: Tokens) -> list[Any]:
        field = target.field
        return [field.get_db_prep_save(v, connection) for v in tokens.python_values()]
