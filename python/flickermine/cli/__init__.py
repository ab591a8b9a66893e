"""The ``flickermine`` command line: :func:`main` and :func:`build_parser` (from :mod:`._main`).

Each other module here registers one group of commands (``register(commands)``, ``commands`` the
main parser's subparsers) and sets ``handler``, a function of the parsed arguments returning the
exit status; :mod:`._options` holds the options several commands share.
"""

from __future__ import annotations

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
