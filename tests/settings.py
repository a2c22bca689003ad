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

# The apps whose tables leak most (tests/test_revoke_apps.py): DRF's tokens, knox,
# API keys; Django's sessions come with the demo project's admin.
INSTALLED_APPS += ["rest_framework", "rest_framework.authtoken", "knox", "rest_framework_api_key"]
ROTATOR_SETTLE_SECONDS = 0.2
