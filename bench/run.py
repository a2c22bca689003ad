#!/usr/bin/env python
"""Benchmark rotator against the obvious ways to give every ticket a new token.

    python bench/run.py [--rows N] [--repeat K] [--only name,...] [--csv path] [--memory]

Prints a markdown table on stdout and its progress on stderr. See bench/cli.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the repository (and so the bench package) importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv))
