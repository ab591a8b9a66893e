"""The ``flickermine`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Sequence

from . import __version__
from .backends import BACKENDS, available_backends, unavailable_backends
from .dataset import MODES
from .params import MiningParams, Rule
from .errors import FlickermineError, InputError

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
    """``--rule``, ``--backend`` and one option per MiningParams field, named as in docs/rules.md#parameters."""
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
        "min_tracked": "support rule: fewest neighbour frames with NCC >= ncc-threshold for a verdict",
        "max_support": "support rule: hard negative when at most this share of those frames has a matching detection",
        "support_iou": "support rule: IoU of a detection with the tracked box that counts as a match",
        "duplicate_iou": "every rule: an isolated detection overlapping a pseudo-positive of its frame above this IoU is a duplicate, not a hard negative (1: off)",
    }
    for field in dataclasses.fields(MiningParams):
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=int if field.type in (int, "int") else float,
            default=field.default,
            metavar="N",
            help=f"{helps[field.name]} (default: {field.default})",
        )


def _add_detector_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    from .detectors import DETECTOR_NAMES

    parser.add_argument(
        "--detector", metavar="NAME", required=required,
        help=f"detector to run ({', '.join(DETECTOR_NAMES)})",
    )
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--weights", metavar="PATH", help="local weights file: a torchvision checkpoint, or a hog-svm model")
    weights.add_argument(
        "--torchvision-weights", metavar="NAME",
        help="torchvision's named COCO weights, e.g. DEFAULT (a download: needs a network)",
    )
    weights.add_argument(
        "--random-weights", action="store_true",
        help="a torchvision detector with untrained weights: for testing plumbing and speed only",
    )
    parser.add_argument("--device", default=None, help="torch device for torchvision detectors (default: cuda if available, else cpu)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N", help="frames per detector batch")
    parser.add_argument(
        "--gpu-decode", action="store_true",
        help="torchvision detectors on CUDA: decode video files on the GPU with torchcodec (NVDEC) where installed",
    )


def _params(args: argparse.Namespace) -> MiningParams:
    return MiningParams(**{f.name: getattr(args, f.name) for f in dataclasses.fields(MiningParams)})


def _detector_factory(args: argparse.Namespace):
    """A picklable factory of the detector named on the command line (or None)."""
    if not getattr(args, "detector", None):
        return None
    import functools

    from .detectors import TORCHVISION_MODELS, make_detector

    category = args.category if args.category not in (None, "object") else None
    options = {"category": category, "device": args.device}
    if args.detector.strip() in TORCHVISION_MODELS:
        # Untrained weights find nothing useful; never fall back to them without being asked.
        if not (args.weights or args.torchvision_weights or args.random_weights):
            raise InputError(
                f"--detector {args.detector} needs its weights: --weights PATH (a local checkpoint), "
                "--torchvision-weights DEFAULT (downloads), or --random-weights (plumbing and speed tests only)"
            )
        if args.torchvision_weights:
            options["named_weights"] = args.torchvision_weights
    elif args.torchvision_weights or args.random_weights:
        raise InputError(f"--detector {args.detector}: --torchvision-weights and --random-weights apply to torchvision detectors only")
    if args.weights:
        options["weights"] = args.weights
    if args.batch_size:
        options["batch_size"] = args.batch_size
    if getattr(args, "gpu_decode", False):
        options["gpu_decode"] = True
    return functools.partial(make_detector, args.detector, **{k: v for k, v in options.items() if v is not None})


def _cmd_mine(args: argparse.Namespace) -> int:
    if args.detections and args.detector:
        raise InputError("give either --detections or --detector, not both")
    if not args.out and not args.verdicts:
        raise InputError("say where to write: --out DIR (a COCO dataset) and/or --verdicts OUT.csv (one video)")
    params = _params(args)
    code = 0
    if args.verdicts:
        if len(args.videos) != 1 or not args.detections:
            raise InputError("--verdicts takes exactly one video and its --detections file")
        from .pipeline import mine_video

        summary = mine_video(
            args.videos[0],
            args.detections,
            params=params,
            rule=args.rule,
            backend=args.backend,
            iou_first=not args.no_iou_first,
            verdicts_csv=args.verdicts,
            progress=not args.quiet,
        )
        print(summary.line())
        print(f"verdicts written to {args.verdicts}")
    if args.out:
        from .dataset import RunConfig
        from .run import run_mining

        factory = _detector_factory(args)
        detector_info = None
        if factory is not None:
            weights = args.weights or (f"torchvision {args.torchvision_weights}" if args.torchvision_weights else None)
            weights = weights or ("random" if args.random_weights else None)
            detector_info = {"name": args.detector, "weights": weights, "category": args.category}
        config = RunConfig(
            params=params, rule=args.rule, mode=args.mode, category=args.category, detector=detector_info,
            visualize=args.visualize,
        )
        result = run_mining(
            args.videos, args.out, config, detections=args.detections, detector_factory=factory,
            backend=args.backend, workers=args.workers, progress=not args.quiet,
            executor=args.executor, ray_address=args.address, gpus_per_video=args.gpus_per_video,
            cpus_per_video=args.cpus_per_video, max_retries=args.max_retries,
        )
        code = result.exit_code
    return code


def _make_detector(args: argparse.Namespace):
    factory = _detector_factory(args)
    if factory is None:
        raise InputError("name a detector with --detector")
    return factory()


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
    from .runner.detect_job import detect_videos

    log, failures = _log_counting_failures()
    detect_videos(args.videos, args.out, _make_detector(args), args.format, progress=not args.quiet, log=log)
    return 1 if failures else 0


def _cmd_mine_negatives(args: argparse.Namespace) -> int:
    from .runner.detect_job import mine_negatives

    if args.top is not None and args.top < 1:
        raise InputError(f"--top must be >= 1, got {args.top}")
    log, failures = _log_counting_failures()
    mine_negatives(args.images, args.out, _make_detector(args), args.category, args.min_score, args.top,
                   progress=not args.quiet, log=log)
    return 1 if failures else 0


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
        ("injected one-frame misses", result.injected_misses),
        ("hard positives found", result.hard_positives),
        ("injected misses recovered", result.found_misses),
        ("mining speed", f"{result.frames / result.seconds:.0f} frames/s"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if args.out:
        from .backends import get_backend
        from .demo import write_demo_dataset

        coco = write_demo_dataset(clip, result, args.out, params, args.rule, get_backend(args.backend).NAME, args.seed)
        print(
            f"dataset (mode hn+hp): {len(coco['images'])} images, {len(coco['annotations'])} annotations in "
            f"{args.out}/annotations.json; drawings in {args.out}/visualize, overview {args.out}/contact_sheet.png"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flickermine", description="Mine hard training examples for object detectors from unlabelled video."
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and the backends available here")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    mine = commands.add_parser(
        "mine",
        help="mine videos against detection files or a detector",
        description="Mine videos (files, image folders, folders of videos, globs, or .txt lists of them) "
        "into a COCO dataset (--out) and/or one video's verdicts (--verdicts).",
    )
    mine.add_argument("videos", nargs="+", metavar="VIDEO", help="video file, image folder, folder of videos, glob or list file")
    mine.add_argument("--detections", metavar="PATH", help="MOT det.txt of one video, or a folder with <video>.txt per video")
    mine.add_argument("--out", metavar="DIR", help="write the mined COCO dataset here (resumable)")
    mine.add_argument("--verdicts", metavar="OUT.csv", help="one video: write frame,x,y,w,h,score,verdict,reason per candidate")
    mine.add_argument("--mode", choices=MODES, default="hn", help="which frames are written and how they are labelled (default: hn)")
    mine.add_argument("--category", default="object", help="category name of the labels (default: object); with --detector, the COCO category to keep")
    mine.add_argument("--visualize", action="store_true", help="also draw each kept frame (hard negatives red) and a contact sheet")
    mine.add_argument("--workers", type=int, default=1, metavar="N", help="videos mined in parallel (default: 1)")
    # -- executor "ray" (flickermine.ray_executor)
    mine.add_argument("--executor", choices=("local", "ray"), default="local", help="local processes (default) or one Ray task per video (pip install 'flickermine[ray]')")
    mine.add_argument("--address", metavar="ADDR", help="ray: the cluster to use (host:port, ray://host:port or auto; default: RAY_ADDRESS, else a local Ray for this run)")
    mine.add_argument("--gpus-per-video", type=float, default=0, metavar="N", help="ray: GPUs each video's task asks for (fractions share a GPU; default: 0)")
    mine.add_argument("--cpus-per-video", type=float, default=1, metavar="N", help="ray: CPUs each video's task asks for (default: 1)")
    mine.add_argument("--max-retries", type=int, default=2, metavar="N", help="ray: retries of a video whose worker died (default: 2)")
    mine.add_argument("--no-iou-first", action="store_true", help="seed rule: run NCC before the IoU shortcut (the authors' order; same verdicts)")
    mine.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_detector_options(mine)
    _add_mining_options(mine)
    mine.set_defaults(handler=_cmd_mine)

    detect = commands.add_parser("detect", help="run a detector over videos; one detections file per video")
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
    negatives.add_argument("--out", required=True, metavar="DIR")
    negatives.add_argument("--category", default="object", help="the category the images do not contain (COCO categories name)")
    negatives.add_argument("--min-score", type=float, default=0.5, help="detections at or above are hard negatives (default: 0.5)")
    negatives.add_argument("--top", type=int, default=None, metavar="N", help="keep only the N most confident hard negatives")
    negatives.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_detector_options(negatives, required=True)
    negatives.set_defaults(handler=_cmd_mine_negatives)

    from . import audit, cli_formats, cli_loop

    cli_formats.register(commands)  # convert
    audit.register(commands)  # audit
    cli_loop.register(commands)  # coco merge/subset, train, evaluate

    demo = commands.add_parser("demo", help="mine a built-in synthetic clip with known flickers")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--frames", type=int, default=150)
    demo.add_argument(
        "--out", default="flickermine-demo", metavar="DIR",
        help="also write the mined frames as a COCO dataset here (default: flickermine-demo; '' to skip)",
    )
    _add_mining_options(demo)
    demo.set_defaults(handler=_cmd_demo)
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


if __name__ == "__main__":
    sys.exit(main())
