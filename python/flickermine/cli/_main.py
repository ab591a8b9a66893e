"""The ``flickermine`` command's parser and entry point (:func:`main`, :func:`build_parser`;
re-exported by :mod:`flickermine.cli`)."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Sequence

from .. import __version__
from ..errors import FlickermineError
from ..mining._backends import available_backends, unavailable_backends
from . import _audit, _coco, _demo, _detect, _evaluate, _export, _formats, _mine, _review, _train

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
        print(_version_text(), flush=True)
        _warm_numba(report=False)  # a cold numba cache: compile it now, visibly, not in a mining run
        parser.exit()


def _warm_numba(report: bool) -> None:
    """Compile the numba backend's on-disk cache if it is cold (the message and the time go to
    stderr); with ``report``, say on stdout when there was nothing to do."""
    if "numba" not in available_backends():
        if report:
            print(f"numba backend unavailable ({unavailable_backends().get('numba', 'not installed')}): nothing to compile")
        return
    from ..mining._backends import numba_backend

    seconds = numba_backend.warm_up()
    if report and seconds is None:
        print(f"numba backend already compiled (cache in {numba_backend.cache_dir()})")


class _WarmupAction(argparse.Action):
    """``--warmup``: compile the numba backend's cache now (about 100 s, once) and exit."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        _warm_numba(report=True)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flickermine", description="Mine hard training examples for object detectors from unlabelled video."
    )
    parser.add_argument(
        "--version", action=_VersionAction,
        help="print the version and the backends available here (and compile the numba backend if its cache is cold)",
    )
    parser.add_argument(
        "--warmup", action=_WarmupAction,
        help="compile the numba backend's on-disk cache now (about 100 s, once) so no mining run waits for it",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _mine.register(commands)  # mine
    _detect.register(commands)  # detect, mine-negatives
    _formats.register(commands)  # convert
    _audit.register(commands)  # audit
    _coco.register(commands)  # coco merge/subset
    _review.register(commands)  # review
    _export.register(commands)  # export --to yolo
    _train.register(commands)  # train
    _evaluate.register(commands)  # evaluate
    _demo.register(commands)  # demo
    return parser


_NUMBER = r"(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity|nan"
#: a negative number, or a comma-separated list starting with one ("-1e9", "-inf", "-.5", "-1,0.5"),
#: as argparse would mistake for an option
_NEGATIVE_NUMBER = re.compile(rf"^-({_NUMBER})(,\s*[-+]?({_NUMBER}))*$", re.IGNORECASE)


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings of ``parser`` and its subcommands that take exactly one value."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _value_options(sub)
        elif action.option_strings and action.nargs is None and not isinstance(action, argparse._StoreConstAction):
            found.update(action.option_strings)
    return found


def join_negative_values(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``--score-threshold -1e9`` -> ``--score-threshold=-1e9``: argparse takes "-1e9" for an
    option and fails with "expected one argument"; joined, every number parses."""
    options = _value_options(parser)
    joined: list[str] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            joined += tokens[i:]
            break
        if token in options and token.startswith("--") and i + 1 < len(tokens) and _NEGATIVE_NUMBER.match(tokens[i + 1]):
            joined.append(f"{token}={tokens[i + 1]}")
            i += 2
            continue
        joined.append(token)
        i += 1
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_negative_values(parser, sys.argv[1:] if argv is None else argv))
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
