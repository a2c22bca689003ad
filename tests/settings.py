from __future__ import annotations

from asyncproj.settings import *  # noqa: F403
from asyncproj.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]

# Issue 7's fields: a test app of them, and django-oauth-toolkit's real ones.
INSTALLED_APPS += ["django.contrib.auth", "oauth2_provider", "tests.fieldapp"]
# Hashing fields hash in the tests too; MD5 keeps that fast (never for real passwords).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
