"""Models that only the tests need: non-integer keys and non-UUID secrets."""

from __future__ import annotations

import secrets
import uuid

from django.db import models


def new_key() -> str:
    return secrets.token_urlsafe(32)


class ApiKey(models.Model):
    """A UUID primary key (sharded as text) and a string secret from a callable."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    key = models.CharField(max_length=64, unique=True, default=new_key)
    label = models.CharField(max_length=50, default="")


class Badge(models.Model):
    """A unique field with no default: nothing to make new values with."""

    code = models.CharField(max_length=20, unique=True)


class Partitioned(models.Model):
    """A table range-partitioned on its key; tests/test_partitions.py creates it (raw DDL:
    Django cannot), so Django never does."""

    id = models.BigIntegerField(primary_key=True)
    token = models.UUIDField(default=uuid.uuid4)

    class Meta:
        managed = False
        db_table = "testapp_partitioned"
