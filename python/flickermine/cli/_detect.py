"""``flickermine detect`` (a detector over videos, one detections file per video) and
``flickermine mine-negatives`` (classic hard-negative mining on negative-only images)."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..runner._detect_job import detect_videos, mine_negatives
from ._options import _add_detector_options, _make_detector


def register(commands) -> None:
    """Add ``detect`` and ``mine-negatives`` to the main parser's subcommands."""
    detect = commands.add_parser(
        "detect",
        help="run a detector over videos; one detections file per video",
        description="Run a detector (--detector NAME, with its weights) over videos (files, image folders, folders "
        "of videos, globs, or .txt lists of them) and write one detections file per video into --out, in MOT, the "
        "authors' or JSON Lines format: what `flickermine mine --detections` reads.",
    )
    detect.add_argument("videos", nargs="+", metavar="VIDEO", help="video file, image folder, folder of videos, glob or list file")
    detect.add_argument("--out", required=True, metavar="DIR", help="write <video>.txt (or .jsonl) here")
    detect.add_argument("--format", choices=("mot", "authors", "jsonl"), default="mot", help="detections file format (default: mot)")
    detect.add_argument("--category", default=None, help="keep one COCO category (name or id), e.g. person")
    detect.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_detector_options(detect, required=True)
    detect.set_defaults(handler=_cmd_detect)

    negatives = commands.add_parser(
        "mine-negatives",
        help="classic hard-negative mining on images known to hold no object of the category",
        description="Every detection (score >= --min-score) on images that contain none of the category is a hard "
        "negative; writes the images and their hard negatives as a COCO dataset with no annotations.",
    )
    negatives.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders or globs")
    negatives.add_argument("--out", required=True, metavar="DIR", help="write the COCO dataset (images and annotations.json) here")
    negatives.add_argument(
        "--category", default=None,
        help="the category the images do not contain, the COCO category of the dataset written "
        "(default: the detector's, e.g. person; else object)",
    )
    negatives.add_argument("--min-score", type=float, default=0.5, metavar="X", help="detections at or above are hard negatives (default: 0.5)")
    negatives.add_argument("--top", type=int, default=None, metavar="N", help="keep only the N most confident hard negatives")
    negatives.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_detector_options(negatives, required=True)
    negatives.set_defaults(handler=_cmd_mine_negatives)


def _log_counting_failures():
    """A log that prints, and the list of its ``failed: ...`` lines (inputs reported and skipped:
    the exit status is 1 when there are any)."""
    failures: list[str] = []

    def log(line: str) -> None:
        print(line)
        if line.startswith("failed:"):
            failures.append(line)

    return log, failures


def _cmd_detect(args: argparse.Namespace) -> int:
    log, failures = _log_counting_failures()
    detect_videos(args.videos, args.out, _make_detector(args), args.format, progress=not args.quiet, log=log)
    return 1 if failures else 0


def _cmd_mine_negatives(args: argparse.Namespace) -> int:
    if args.top is not None and args.top < 1:
        raise InputError(f"--top must be >= 1, got {args.top}")
    log, failures = _log_counting_failures()
    mine_negatives(args.images, args.out, _make_detector(args), args.category, args.min_score, args.top,
                   progress=not args.quiet, log=log)
    return 1 if failures else 0
