from __future__ import annotations

from asyncproj.settings import *  # noqa: F403
from asyncproj.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]

# Fields of every kind: a test app of them, and django-oauth-toolkit's real ones.
# (The demo project already installs django.contrib.auth for its admin.)
INSTALLED_APPS += [
    app
    for app in ("django.contrib.auth", "oauth2_provider", "tests.fieldapp")
    if app not in INSTALLED_APPS
]
# Hashing fields hash in the tests too; MD5 keeps that fast (never for real passwords).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ROTATOR_SETTLE_SECONDS = 0.2
