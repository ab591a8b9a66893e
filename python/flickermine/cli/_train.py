"""``flickermine train``: a HOG + linear SVM (``--model hog-svm``), or a torchvision Faster R-CNN
fine-tuned (flickermine[torch]) on a COCO file, optionally merged with a mined set by a preset.

Bad input raises ValueError or FileNotFoundError, which the main CLI reports as
``flickermine: error: ...``; torch is imported only when a torchvision model trains.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..dataset import _presets as presets
from ..dataset._presets import PRESETS
from ..detect._torchvision import TORCHVISION_MODELS
from ..errors import InputError
from ..train._hog_svm import HogSvmFiles, HogSvmSettings, train_hog_svm_files
from ..train._torch import TrainConfig, check_resume_data, data_fingerprint
from ..train._torch import train as train_torchvision
from ._options import EXIT_MISSING_DEPENDENCY, _missing_torch

HOG_SVM = "hog-svm"
#: train options that only a torchvision model takes, and those only the HOG-SVM takes
_TORCH_ONLY = (
    "preset", "mined", "weights", "new_head", "torchvision_weights", "backbone_weights", "trainable_backbone_layers",
    "iterations", "lr", "lr_steps", "lr_decay", "momentum", "weight_decay", "batch_size", "min_size", "max_size",
    "checkpoint_every", "val_every", "resume", "device", "no_amp", "workers",
)
_HOG_SVM_ONLY = ("negatives", "hard_positives", "bootstrap_rounds", "window", "background_windows", "svm_c")


def register(commands) -> None:
    """Add ``train`` to the main parser's subcommands."""
    train = commands.add_parser(
        "train",
        help="train a HOG + linear SVM, or fine-tune a torchvision Faster R-CNN (flickermine[torch]), on a COCO file",
        description="--model hog-svm: train a HOG + linear SVM detector (positives: the boxes and their mirrors; "
        "negatives: random background windows, negative-only images and mined hard negatives (--negatives); "
        "--bootstrap-rounds of classic bootstrapping; scores calibrated on --val) into the model file --out. "
        "Otherwise fine-tune torchvision Faster R-CNN. Defaults are the paper's: SGD momentum 0.9, weight decay "
        "5e-4, lr 1e-3 divided by 10 at 10000 and 20000 iterations. With --preset, the training set is the "
        "base (--train) merged with --mined as the preset says, and the preset's schedule is the default.",
    )
    train.add_argument("--train", required=True, metavar="COCO.json", help="training set (with --preset: the base set)")
    train.add_argument("--images", metavar="DIR", help="folder the file names of --train are relative to (default: its folder)")
    train.add_argument("--val", metavar="COCO.json", help="validation set: AP every --val-every iterations, best.pt kept")
    train.add_argument("--val-images", metavar="DIR", help="image folder of --val (default: --images, else --val's folder)")
    train.add_argument("--preset", choices=list(PRESETS), help="one of the paper's ablations (see flickermine.dataset._presets)")
    train.add_argument("--mined", metavar="MINED.json", help="with --preset: the mined set to merge with --train")
    train.add_argument("--model", choices=(*TORCHVISION_MODELS, HOG_SVM), default="fasterrcnn_resnet50_fpn", help="architecture (default: %(default)s)")
    hog = train.add_argument_group("hog-svm only")
    hog.add_argument(
        "--negatives", action="append", default=[], metavar="COCO.json|DIR",
        help="a mined dataset (its hard_negatives records are learned as negatives) or a folder of images holding no "
        "object (random windows); repeatable",
    )
    hog.add_argument(
        "--hard-positives", action="append", default=[], metavar="COCO.json",
        help="a mined dataset whose hard positives (boxes the tracker found where the detector missed) are learned as positives; repeatable",
    )
    hog.add_argument("--bootstrap-rounds", type=int, default=1, metavar="N", help="rounds of detect, add false positives, retrain (default: 1)")
    hog.add_argument("--window", type=_window_size, default=(64, 128), metavar="WxH", help="detection window in px, multiples of 8 (default: 64x128)")
    hog.add_argument("--background-windows", type=int, default=10, metavar="N", help="random negative windows per training image (default: 10)")
    hog.add_argument("--svm-c", type=float, default=0.01, metavar="C", help="the linear SVM's C (default: 0.01)")
    train.add_argument("--weights", metavar="PATH", help="local checkpoint or state dict to start from")
    train.add_argument(
        "--new-head", action="store_true",
        help="with --weights: start the box predictor afresh; without it, weights of another class count load only "
        "when they know the categories by name (a COCO detector for --category dog keeps its dog rows)",
    )
    train.add_argument("--torchvision-weights", metavar="NAME", help="named torchvision COCO weights, e.g. DEFAULT, read from torch's hub cache (never downloaded)")
    train.add_argument("--backbone-weights", metavar="NAME", help="named torchvision backbone weights, e.g. DEFAULT, read from torch's hub cache (never downloaded)")
    train.add_argument(
        "--trainable-backbone-layers", type=int, default=3, metavar="N",
        help="when starting from weights: backbone stages trained, the rest fixed with frozen batch norm (default: 3)",
    )
    train.add_argument("--category", help="train one category against background (default: every category of the file)")
    train.add_argument("--iterations", type=int, metavar="N", help="optimizer steps in all (a preset sets a default)")
    train.add_argument("--lr", type=float, metavar="LR", help="base learning rate (default: 1e-3)")
    train.add_argument("--lr-steps", type=_int_list, metavar="I,J", help="iterations where lr is multiplied by --lr-decay (default: 10000,20000)")
    train.add_argument("--lr-decay", type=float, metavar="F", help="learning-rate factor at each step (default: 0.1)")
    train.add_argument("--momentum", type=float, default=0.9, metavar="X", help="SGD momentum (default: 0.9)")
    train.add_argument("--weight-decay", type=float, default=5e-4, metavar="X", help="SGD weight decay (default: 5e-4)")
    train.add_argument("--batch-size", type=int, default=1, metavar="N", help="images per iteration (default: 1)")
    train.add_argument("--min-size", type=int, default=800, metavar="PX", help="shorter side after resizing (default: 800)")
    train.add_argument("--max-size", type=int, default=1333, metavar="PX", help="cap on the longer side (default: 1333)")
    train.add_argument("--no-hflip", action="store_true", help="no random horizontal flips")
    train.add_argument("--checkpoint-every", type=int, default=1000, metavar="K", help="iterations between checkpoints (default: 1000)")
    train.add_argument("--val-every", type=int, metavar="K", help="iterations between validations (default: --checkpoint-every)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--device", help="cpu, cuda, cuda:1... (default: cuda if available)")
    train.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    train.add_argument("--workers", type=int, default=2, metavar="N", help="data-loading processes (default: 2)")
    train.add_argument("--seed", type=int, default=0, help="seeds the initialisation and the data order (default: 0)")
    train.add_argument("--out", required=True, metavar="PATH", help="torchvision: the folder for checkpoints, log and final weights; hog-svm: the model file")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=_cmd_train)
    torch_defaults = {dest: train.get_default(dest) for dest in _TORCH_ONLY}
    hog_defaults = {dest: train.get_default(dest) for dest in _HOG_SVM_ONLY}
    train.set_defaults(torch_only_defaults=torch_defaults, hog_only_defaults=hog_defaults)


def _window_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        return int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in px, e.g. 64x128; got {text!r}") from None


def _given(args: argparse.Namespace, defaults: dict) -> list[str]:
    """The options of ``defaults`` set to something else on the command line, as ``--names``."""
    return [f"--{dest.replace('_', '-')}" for dest, default in defaults.items() if getattr(args, dest) != default]


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, e.g. 10000,20000; got {text!r}") from None


def _cmd_train_hog_svm(args: argparse.Namespace) -> int:
    unused = _given(args, args.torch_only_defaults)
    if unused:
        raise InputError(f"--model {HOG_SVM} does not take {', '.join(unused)} (options of the torchvision models)")
    settings = HogSvmSettings(
        window=args.window, background_windows=args.background_windows, bootstrap_rounds=args.bootstrap_rounds,
        c=args.svm_c, seed=args.seed, flip=not args.no_hflip,
    )
    files = HogSvmFiles(
        train=Path(args.train), out=Path(args.out), images=args.images and Path(args.images), val=args.val and Path(args.val),
        val_images=args.val_images and Path(args.val_images), negatives=[Path(p) for p in args.negatives],
        hard_positives=[Path(p) for p in args.hard_positives], category=args.category,
    )
    model = train_hog_svm_files(files, settings, progress=not args.quiet)
    counts = ", ".join(f"{count} {source}" for source, count in model.training["examples"].items())
    print(f"wrote {args.out}: HOG-SVM for {model.category!r}, {model.params.window_width}x{model.params.window_height} window; examples: {counts}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.model == HOG_SVM:
        return _cmd_train_hog_svm(args)
    unused = _given(args, args.hog_only_defaults)
    if unused:
        raise InputError(f"{', '.join(unused)}: options of --model {HOG_SVM}, not of {args.model}")
    missing = _missing_torch()
    if missing:
        print(f"flickermine: error: {missing}", file=sys.stderr)
        return EXIT_MISSING_DEPENDENCY
    train_path, images = Path(args.train), args.images
    sources = {"--train": args.train, **({"--mined": args.mined} if args.mined else {})}
    schedule = {"iterations": args.iterations, "lr": args.lr, "lr_steps": args.lr_steps, "lr_decay": args.lr_decay}
    if args.preset:
        preset = presets.get(args.preset)
        if args.resume:  # before the merge below rewrites --out/train.json, which the run trained on
            check_resume_data(args.out, data_fingerprint(sources, args.val))
        train_path, images = presets.prepare_training_set(preset, args.train, args.mined, args.out, image_root=args.images)
        defaults = {"iterations": preset.iterations, "lr": preset.lr, "lr_steps": preset.lr_steps, "lr_decay": preset.lr_decay}
        schedule = {key: defaults[key] if value is None else value for key, value in schedule.items()}
    elif args.mined:
        raise InputError("--mined goes with --preset; to train on a merge without one, run `flickermine coco merge` first")
    if schedule["iterations"] is None:
        raise InputError("--iterations is required (or a --preset that sets it)")
    schedule = {key: value for key, value in schedule.items() if value is not None}
    # the val images lie with the user's files: with a preset, `images` is the merge's folder in --out
    val_images = args.val_images or args.images or (Path(args.val).parent if args.val else None)
    config = TrainConfig(
        train=train_path,
        images=images,
        out=args.out,
        val=args.val,
        val_images=val_images,
        model=args.model,
        weights=args.weights,
        new_head=args.new_head,
        torchvision_weights=args.torchvision_weights,
        backbone_weights=args.backbone_weights,
        category=args.category,
        trainable_backbone_layers=args.trainable_backbone_layers,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        hflip=not args.no_hflip,
        min_size=args.min_size,
        max_size=args.max_size,
        checkpoint_every=args.checkpoint_every,
        val_every=args.val_every,
        seed=args.seed,
        device=args.device,
        amp=not args.no_amp,
        workers=args.workers,
        resume=args.resume,
        progress=not args.quiet,
        preset=args.preset,
        sources=sources,
        **schedule,
    )
    result = train_torchvision(config)
    best = f", best validation AP {result.best_ap:.4f} ({result.best})" if result.best_ap is not None else ""
    print(f"trained to iteration {result.iteration}: {result.final}{best}; log in {result.out / 'train.log'}")
    return 0
