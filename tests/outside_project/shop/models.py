from __future__ import annotations

import secrets

from django.db import models


def new_api_key() -> str:
    return secrets.token_urlsafe(24)


class ApiKey(models.Model):
    owner = models.CharField(max_length=40)
    key = models.CharField(max_length=64, unique=True, default=new_api_key)
