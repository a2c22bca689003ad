#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "asyncproj.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A bad DATABASE_URL or a missing driver: one line and exit 1, not a traceback.
        if "--traceback" in sys.argv:
            raise
        sys.exit(f"Error: {' '.join(str(exc).split())}")


if __name__ == "__main__":
    main()
