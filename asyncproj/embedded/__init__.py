"""A Django database backend for an embedded PostgreSQL (the ``pgserver`` wheel).

``ENGINE: "asyncproj.embedded"`` behaves like ``django.db.backends.postgresql``
except that the first connection starts the server whose data directory is
``PGDATA`` in the settings, and connects through its Unix socket.
"""
