"""Fields as applications really define them, and targets that can never rotate.

Each model is one kind of field; the tests read every value back through the
ORM, as the application would.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import connection, models
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import ClientSecretField


def new_key() -> str:
    return secrets.token_urlsafe(32)


def hex32() -> str:
    return secrets.token_hex(16)


def six_digits() -> str:
    return f"{secrets.randbelow(10**6):06d}"


class ShortCode(models.Model):
    """A default of 32 characters for a column of 8: save() raises on PostgreSQL."""

    code = models.CharField(max_length=8, unique=True, default=hex32)


class HexUUIDField(models.UUIDField):
    """A UUID stored as 32 hex characters, on every database."""

    def db_type(self, connection: Any) -> str:
        return "char(32)"

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if value is None:
            return None
        return (value if isinstance(value, uuid.UUID) else self.to_python(value)).hex

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or isinstance(value, uuid.UUID):
            return value
        return uuid.UUID(value)


class HexToken(models.Model):
    token = HexUUIDField(unique=True, default=uuid.uuid4)


def seal(text: str) -> str:
    return "sealed:" + base64.urlsafe_b64encode(bytes(b ^ 0x5A for b in text.encode())).decode()


def unseal(stored: str) -> str:
    if not stored.startswith("sealed:"):
        raise ValueError("not sealed")
    return bytes(b ^ 0x5A for b in base64.urlsafe_b64decode(stored[7:])).decode()


class SealedCharField(models.CharField):
    """Encrypts on the way to the database (a toy cipher: enough to see a bypass)."""

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        value = super().get_db_prep_value(value, connection, prepared)
        return None if value is None else seal(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else unseal(value)


class SealedSecret(models.Model):
    secret = SealedCharField(max_length=100, unique=True, default=new_key)


class HashedSecret(models.Model):
    """A unique variant of oauth-toolkit's Application.client_secret: hashed in pre_save()."""

    secret = ClientSecretField(max_length=255, unique=True, default=generate_client_secret)


class Credential(models.Model):
    token = models.CharField(max_length=64, unique=True, default=new_key)


class ServiceCredential(Credential):
    """Multi-table inheritance: ``token`` lives on the parent's table."""

    service = models.CharField(max_length=20, default="")


class Tagged(models.Model):
    """A unique ArrayField (PostgreSQL only)."""

    codes = ArrayField(models.CharField(max_length=10), unique=True, default=list)

    class Meta:
        managed = connection.vendor == "postgresql"


class Account(models.Model):
    login = models.CharField(max_length=64, unique=True, default=new_key)


class Login(models.Model):
    """Points at Account.login, not at its primary key."""

    account = models.ForeignKey(Account, to_field="login", on_delete=models.CASCADE)


class ConstrainedKey(models.Model):
    key = models.CharField(max_length=64, default=new_key)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key"], name="fieldapp_constrainedkey_key")]


class SharedKey(models.Model):
    """A non-unique secret column (an api_key with an index)."""

    api_key = models.CharField(max_length=64, db_index=True, default=new_key)


class OptionalKey(models.Model):
    """NULL means "no credential issued"."""

    key = models.CharField(max_length=64, unique=True, null=True, default=new_key)


class Door(models.Model):
    key = models.CharField(max_length=64, unique=True, default=new_key)


class FrontDoor(Door):
    class Meta:
        proxy = True


class Pin(models.Model):
    code = models.CharField(max_length=6, unique=True, default=six_digits)


class Reading(models.Model):
    at = models.DateTimeField(primary_key=True)
    token = models.UUIDField(unique=True, default=uuid.uuid4)


class Uuid(models.Model):
    token = models.UUIDField(unique=True, null=True, default=uuid.uuid4)


class VisibleManager(models.Manager):
    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().filter(hidden=False)


class Hideable(models.Model):
    token = models.CharField(max_length=64, unique=True, default=new_key)
    hidden = models.BooleanField(default=False)

    objects = models.Manager()
    visible = VisibleManager()

    class Meta:
        base_manager_name = "visible"
