"""``flickermine evaluate``: COCO AP, AP50, AP75 and log-average miss rate of a detector on a COCO
file (:mod:`flickermine.evaluate._on_coco`)."""

from __future__ import annotations

import argparse
import json
import sys

from ..detect._torchvision import TORCHVISION_MODELS
from ..errors import InputError
from ..evaluate import _on_coco as on_coco
from ._options import EXIT_MISSING_DEPENDENCY, _add_detector_options, _make_detector, _missing_torch


def register(commands) -> None:
    """Add ``evaluate`` to the main parser's subcommands."""
    evaluate = commands.add_parser(
        "evaluate",
        help="COCO AP, AP50, AP75 and log-average miss rate of a detector on a COCO file",
        description="Run a detector (--detector NAME with its --weights, or a checkpoint of `flickermine train` "
        "with --weights alone) on the images of a COCO file; print COCO AP, AP50, AP75 (pycocotools) and the "
        "log-average miss rate over 1e-2..1e0 false positives per image; optionally draw the precision-recall "
        "and miss-rate curves (--curves).",
    )
    evaluate.add_argument("--coco", required=True, metavar="COCO.json", help="ground truth")
    evaluate.add_argument("--images", metavar="DIR", help="folder its file names are relative to (default: its folder)")
    _add_detector_options(evaluate)  # --detector, --weights ..., --device, --batch-size
    evaluate.add_argument("--model", choices=TORCHVISION_MODELS, help="without --detector: the architecture of a plain state dict in --weights")
    evaluate.add_argument("--category", action="append", help="evaluate only this category (repeatable)")
    evaluate.add_argument("--out", metavar="JSON", help="write the figures here")
    evaluate.add_argument("--detections", metavar="JSON", help="also write the detections (COCO results format)")
    evaluate.add_argument("--curves", metavar="PNG", help="draw precision-recall and miss rate vs false positives per image here")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(handler=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    detector = None
    if args.detector:
        if args.model:
            raise InputError("--model names the architecture of a plain state dict given without --detector; with --detector, the name says it")
        # --category here chooses what is scored, not a class for the detector to keep
        detector = _make_detector(argparse.Namespace(**{**vars(args), "category": None}))
    elif args.torchvision_weights or args.random_weights:
        raise InputError("--torchvision-weights and --random-weights go with --detector NAME")
    elif not args.weights:
        raise InputError("name the detector: --detector NAME (with --weights where it needs them), or --weights CHECKPOINT from `flickermine train`")
    else:
        missing = _missing_torch()
        if missing:
            print(f"flickermine: error: {missing}", file=sys.stderr)
            return EXIT_MISSING_DEPENDENCY
    summary = on_coco.evaluate(
        args.coco,
        args.images,
        None if detector is not None else args.weights,
        out=args.out,
        device=args.device,
        batch_size=args.batch_size or 2,
        categories=args.category,
        model_name=args.model,
        detections_out=args.detections,
        progress=not args.quiet,
        detector=detector,
        curves_out=args.curves,
    )
    figures = {key: summary[key] for key in ("AP", "AP50", "AP75", "lamr")}
    print(json.dumps({**figures, "per_category": summary["per_category"]}, indent=1))
    if args.curves:
        print(f"curves drawn in {args.curves}")
    return 0
