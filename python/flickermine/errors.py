"""The errors flickermine raises on purpose.

Every error that is the caller's to fix derives from :class:`FlickermineError`; the command line
prints those as one line (exit status 2) and shows a traceback for anything else, which is a bug.
Each also derives from the builtin a caller would expect (``ValueError``, ``ImportError``), so
``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["FlickermineError", "InputError", "InputTypeError", "MissingExtraError"]


class FlickermineError(Exception):
    """Base of the errors that describe bad input or a missing dependency, not a bug."""


class InputError(FlickermineError, ValueError):
    """An input (file, array, option) that cannot be used as given; the message names it and where."""


class InputTypeError(FlickermineError, TypeError):
    """An input of the wrong type (an array of the wrong dtype, a detector that returns the wrong
    thing); the message names it and what was expected."""


class MissingExtraError(FlickermineError, ImportError):
    """An optional dependency is not installed; the message says which ``pip install`` fixes it."""
