from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class Ticket(models.Model):
    id = models.BigAutoField(primary_key=True)
    token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    subject = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        # Never the token: it is a secret.
        return f"Ticket {self.pk}"
