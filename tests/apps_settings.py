"""The demo project with the apps whose tables leak most, for manage.py subprocesses of the
revocation tests (tests.settings adds test apps whose deliberate clashes fail system checks)."""

from __future__ import annotations

from asyncproj.settings import *  # noqa: F403
from asyncproj.settings import INSTALLED_APPS

INSTALLED_APPS = [
    *INSTALLED_APPS,
    "rest_framework",
    "rest_framework.authtoken",
    "knox",
    "rest_framework_api_key",
]
