"""The ``flickermine`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Sequence

from . import __version__
from .backends import BACKENDS, available_backends, unavailable_backends
from .params import MiningParams, Rule

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


def _add_mining_options(parser: argparse.ArgumentParser) -> None:
    """``--rule``, ``--backend`` and one option per MiningParams field, named as in DESIGN.md."""
    parser.add_argument("--rule", choices=[r.value for r in Rule], default=Rule.SEED.value, help="flicker rule (default: seed)")
    parser.add_argument(
        "--backend", choices=("auto",) + BACKENDS, default="auto", help="kernel backend (default: auto, the fastest available)"
    )
    helps = {
        "score_threshold": "only detections at or above take part",
        "window": "neighbour frames on each side",
        "margin": "px added around a box to make its NCC search region",
        "ncc_threshold": "below it the object counts as lost",
        "iou_threshold": "overlap that makes a neighbour detection a partner",
        "sure_score": "detections at or above are never hard negatives",
        "min_area": "px^2; smaller boxes are never hard negatives",
        "border": "px; boxes this close to the image edge are never hard negatives",
        "max_gap": "hard positives: most missed frames between two matched ends",
    }
    for field in dataclasses.fields(MiningParams):
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=int if field.type in (int, "int") else float,
            default=field.default,
            metavar="N",
            help=f"{helps[field.name]} (default: {field.default})",
        )


def _params(args: argparse.Namespace) -> MiningParams:
    return MiningParams(**{f.name: getattr(args, f.name) for f in dataclasses.fields(MiningParams)})


def _cmd_mine(args: argparse.Namespace) -> int:
    from .pipeline import mine_video

    summary = mine_video(
        args.video,
        args.detections,
        params=_params(args),
        rule=args.rule,
        backend=args.backend,
        iou_first=not args.no_iou_first,
        verdicts_csv=args.verdicts,
        progress=not args.quiet,
    )
    print(summary.line())
    if args.verdicts:
        print(f"verdicts written to {args.verdicts}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    params = _params(args)
    clip, result = run_demo(seed=args.seed, num_frames=args.frames, params=params, rule=args.rule, backend=args.backend)
    print(f"flickermine demo: synthetic clip of {result.frames} frames, seed {args.seed}, rule {args.rule}")
    rows = [
        ("detections", result.detections),
        ("injected one-frame false positives", result.injected_false_positives),
        ("hard negatives mined", result.mined_hard_negatives),
        ("injected false positives found", result.found_false_positives),
        ("precision of the hard negatives", f"{result.precision:.1%}"),
        ("recall of the injected false positives", f"{result.recall:.1%}"),
        ("mining speed", f"{result.frames / result.seconds:.0f} frames/s"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flickermine", description="Mine hard training examples for object detectors from unlabelled video."
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and the backends available here")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    mine = commands.add_parser("mine", help="mine a video against a detections file")
    mine.add_argument("video", help="video file or folder of numbered images")
    mine.add_argument("--detections", required=True, metavar="DETS.txt", help="MOTChallenge det.txt (frame,id,x,y,w,h,score,...)")
    mine.add_argument("--verdicts", metavar="OUT.csv", help="write frame,x,y,w,h,score,verdict,reason per candidate")
    mine.add_argument("--no-iou-first", action="store_true", help="seed rule: run NCC before the IoU shortcut (the authors' order; same verdicts)")
    mine.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_mining_options(mine)
    mine.set_defaults(handler=_cmd_mine)

    demo = commands.add_parser("demo", help="mine a built-in synthetic clip with known flickers")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--frames", type=int, default=150)
    _add_mining_options(demo)
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .detections import DetectionFileError
    from .video import VideoError

    try:
        return args.handler(args)
    except (VideoError, DetectionFileError, ValueError, TypeError, FileNotFoundError) as error:
        print(f"flickermine: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("flickermine: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
