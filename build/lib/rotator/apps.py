from __future__ import annotations

from django.apps import AppConfig


class RotatorConfig(AppConfig):
    name = "rotator"
    verbose_name = "Secret rotator"
    default_auto_field = "django.db.models.BigAutoField"
