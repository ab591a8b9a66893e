"""``python -m flickermine.cli``: the ``flickermine`` command."""

import sys

from . import main

sys.exit(main())
