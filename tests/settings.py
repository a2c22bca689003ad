from __future__ import annotations

from asyncproj.settings import *  # noqa: F403
from asyncproj.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
