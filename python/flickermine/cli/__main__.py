"""``python -m flickermine.cli``: the ``flickermine`` command."""

import sys

from . import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
