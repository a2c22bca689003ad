from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base

from .client import DatabaseClient
from .server import socket_dir


class DatabaseWrapper(base.DatabaseWrapper):
    client_class = DatabaseClient

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        params["host"] = socket_dir(self.settings_dict["PGDATA"])
        params.setdefault("user", "postgres")
        return params
