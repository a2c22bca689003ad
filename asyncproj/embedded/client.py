"""``manage.py dbshell`` for the embedded server: psql on its socket, not the system's server."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from typing import Any

from django.db.backends.postgresql import client

from .server import socket_dir


def psql() -> str:
    """The machine's psql (it has line editing), else the one the pgserver wheel ships."""
    found = shutil.which("psql")
    if found:
        return found
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / "psql")


class DatabaseClient(client.DatabaseClient):
    @classmethod
    def settings_to_cmd_args_env(
        cls, settings_dict: dict[str, Any], parameters: Iterable[str]
    ) -> tuple[list[str], dict[str, str] | None]:
        embedded = {
            **settings_dict,
            "HOST": socket_dir(settings_dict["PGDATA"]),
            "PORT": "",
            "USER": settings_dict.get("USER") or "postgres",
        }
        args, env = super().settings_to_cmd_args_env(embedded, parameters)
        args[0] = psql()
        return args, env
