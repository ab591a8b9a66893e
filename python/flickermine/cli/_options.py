"""What several commands share: the mining options, the detector options and the detector they
name, and the check for torch."""

from __future__ import annotations

import argparse
import dataclasses
import functools

from ..detect._registry import DETECTOR_NAMES, make_detector
from ..detect._torchvision import TORCHVISION_MODELS, require_torch
from ..errors import InputError
from ..mining._backends import BACKENDS
from ..mining._params import DEFAULT_RULE, MiningParams, Rule

#: exit status when torch is missing (as for bad input)
EXIT_MISSING_DEPENDENCY = 2


def _missing_torch() -> str | None:
    try:
        require_torch()
    except ImportError as error:
        return str(error)
    return None


def _add_mining_options(parser: argparse.ArgumentParser) -> None:
    """``--rule``, ``--backend`` and one option per MiningParams field, named as in docs/rules.md#parameters."""
    parser.add_argument(
        "--rule", choices=[r.value for r in Rule], default=DEFAULT_RULE.value,
        help=f"flicker rule (default: {DEFAULT_RULE.value}, the best on validation data; seed: the authors' miner)",
    )
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
        "class_agnostic": "pair detections whatever their labels (default: only with detections of the same label; "
        "a box partnered only by another label is a label_flicker)",
    }
    for field in dataclasses.fields(MiningParams):
        if field.type in (bool, "bool"):
            parser.add_argument("--" + field.name.replace("_", "-"), action="store_true", help=helps[field.name])
            continue
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=int if field.type in (int, "int") else float,
            default=field.default,
            metavar="N" if field.type in (int, "int") else "X",
            help=f"{helps[field.name]} (default: {field.default})",
        )


def _add_detector_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--detector", metavar="NAME", required=required,
        help=f"detector to run ({', '.join(DETECTOR_NAMES)})",
    )
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--weights", metavar="PATH", help="local weights file: a torchvision checkpoint, or a hog-svm model")
    weights.add_argument(
        "--torchvision-weights", metavar="NAME",
        help="torchvision's named COCO weights, e.g. DEFAULT, read from torch's hub cache (never downloaded)",
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
    category = args.category if args.category not in (None, "object") else None
    options = {"category": category, "device": args.device}
    if args.detector.strip() in TORCHVISION_MODELS:
        # Untrained weights find nothing useful; never fall back to them without being asked.
        if not (args.weights or args.torchvision_weights or args.random_weights):
            raise InputError(
                f"--detector {args.detector} needs its weights: --weights PATH (a local checkpoint), "
                "--torchvision-weights DEFAULT (from torch's cache), or --random-weights (plumbing and speed tests only)"
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


def _make_detector(args: argparse.Namespace):
    factory = _detector_factory(args)
    if factory is None:
        raise InputError("name a detector with --detector")
    return factory()
