"""The ``flickermine`` command line: :func:`main` and :func:`build_parser`.

Each module here registers one group of commands (``register(commands)``, ``commands`` the main
parser's subparsers) and sets ``handler``, a function of the parsed arguments returning the exit
status; :mod:`._options` holds the options several commands share.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .. import __version__
from ..errors import FlickermineError
from ..mining.backends import available_backends, unavailable_backends
from . import audit, coco, demo, detect, evaluate, formats, mine, train

EXIT_BAD_INPUT = 2


def _version_text() -> str:
    missing = unavailable_backends()
    text = f"flickermine {__version__}\nbackends available: {', '.join(available_backends())}"
    if missing:
        text += "\nbackends unavailable: " + "; ".join(f"{name} ({why})" for name, why in missing.items())
    return text


class _VersionAction(argparse.Action):
    """Like argparse's "version", but keeps the text's line breaks and imports backends only when asked."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flickermine", description="Mine hard training examples for object detectors from unlabelled video."
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and the backends available here")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    mine.register(commands)  # mine
    detect.register(commands)  # detect, mine-negatives
    formats.register(commands)  # convert
    audit.register(commands)  # audit
    coco.register(commands)  # coco merge/subset
    train.register(commands)  # train
    evaluate.register(commands)  # evaluate
    demo.register(commands)  # demo
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    # FlickermineError: bad input or a missing extra, raised on purpose with a message naming it.
    # OSError: a path that cannot be read or written (missing, a folder, no permission, a file
    # where a folder should be; ConnectionError is a kind of it): the message names it, and what
    # was already written stays in place. Anything else is a bug and keeps its traceback.
    except (FlickermineError, OSError) as error:
        print(f"flickermine: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("flickermine: interrupted", file=sys.stderr)
        return 130
