"""Run the ``theater-py`` command as ``python -m theater_py``."""

from __future__ import annotations

import sys

from theater_py.cli import main

if __name__ == "__main__":
    sys.exit(main())
