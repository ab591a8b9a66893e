"""Command-line subcommands that close the loop: ``coco merge|subset``, ``train``, ``evaluate``.

``register(commands)`` adds them to the main parser's subparsers; each sets ``handler`` to a
function of the parsed arguments that returns an exit code. Bad input raises ValueError or
FileNotFoundError, which the main CLI reports as ``flickermine: error: ...``. torch is imported
only by ``train`` and ``evaluate``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import InputError

EXIT_MISSING_DEPENDENCY = 2
HOG_SVM = "hog-svm"
#: train options that only a torchvision model takes, and those only the HOG-SVM takes
_TORCH_ONLY = (
    "preset", "mined", "weights", "new_head", "torchvision_weights", "backbone_weights", "trainable_backbone_layers",
    "iterations", "lr", "lr_steps", "lr_decay", "momentum", "weight_decay", "batch_size", "min_size", "max_size",
    "checkpoint_every", "val_every", "resume", "device", "no_amp", "workers",
)
_HOG_SVM_ONLY = ("negatives", "hard_positives", "bootstrap_rounds", "window", "background_windows", "svm_c")


def register(commands) -> None:
    """Add ``coco``, ``train`` and ``evaluate`` to ``commands`` (from ``add_subparsers``)."""
    from .cli import _add_detector_options
    from .presets import PRESETS
    from .training import ARCHITECTURES

    coco = commands.add_parser("coco", help="COCO file tools: merge mined sets into a base set, one-category subsets")
    actions = coco.add_subparsers(dest="coco_command", metavar="ACTION", required=True)

    merge = actions.add_parser(
        "merge",
        help="merge mined COCO files into a base COCO file (inputs untouched)",
        description="Merge BASE.json and mined COCO files into a new file: ids renumbered from 1, categories "
        "matched by name, images without annotations kept, file names rewritten to resolve from --out's folder.",
    )
    merge.add_argument("base", metavar="BASE.json", help="base training set")
    merge.add_argument("mined", nargs="+", metavar="MINED.json", help="mined sets (file names relative to their folder)")
    merge.add_argument("--out", required=True, metavar="NEW.json", help="the merged file (written atomically)")
    merge.add_argument("--image-root", metavar="DIR", help="folder BASE.json's file names are relative to (default: its folder)")
    merge.add_argument("--copy-images", action="store_true", help="hard-link or copy the images beside --out")
    merge.set_defaults(handler=_cmd_coco_merge)

    subset = actions.add_parser(
        "subset",
        help="one category against background, with train/val/test splits",
        description="Keep the images with the category (and images with no annotations at all), only that "
        "category's annotations; optionally split them deterministically. Writes DIR/<part>.json.",
    )
    subset.add_argument("coco_json", metavar="COCO.json")
    subset.add_argument("--category", required=True, help="category name, e.g. dog")
    subset.add_argument("--split", metavar="TRAIN/VAL/TEST", help="image counts (3041/177/1521) or fractions (0.8/0.1/0.1)")
    subset.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    subset.add_argument("--drop-empty", action="store_true", help="leave out images that have no annotations at all")
    subset.add_argument("--out", required=True, metavar="DIR", help="folder for train.json, val.json, test.json (or all.json)")
    subset.set_defaults(handler=_cmd_coco_subset)

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
    train.add_argument("--preset", choices=list(PRESETS), help="one of the paper's ablations (see flickermine.presets)")
    train.add_argument("--mined", metavar="MINED.json", help="with --preset: the mined set to merge with --train")
    train.add_argument("--model", choices=(*ARCHITECTURES, HOG_SVM), default="fasterrcnn_resnet50_fpn", help="architecture (default: %(default)s)")
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
    train.add_argument("--torchvision-weights", metavar="NAME", help="named torchvision COCO weights, e.g. DEFAULT (downloads)")
    train.add_argument("--backbone-weights", metavar="NAME", help="named torchvision backbone weights, e.g. DEFAULT (downloads)")
    train.add_argument(
        "--trainable-backbone-layers", type=int, default=3, metavar="N",
        help="when starting from weights: backbone stages trained, the rest fixed with frozen batch norm (default: 3)",
    )
    train.add_argument("--category", help="train one category against background (default: every category of the file)")
    train.add_argument("--iterations", type=int, metavar="N", help="optimizer steps in all (a preset sets a default)")
    train.add_argument("--lr", type=float, metavar="LR", help="base learning rate (default: 1e-3)")
    train.add_argument("--lr-steps", type=_int_list, metavar="I,J", help="iterations where lr is multiplied by --lr-decay (default: 10000,20000)")
    train.add_argument("--lr-decay", type=float, metavar="F", help="learning-rate factor at each step (default: 0.1)")
    train.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    train.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (default: 5e-4)")
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
    evaluate.add_argument("--model", choices=ARCHITECTURES, help="without --detector: the architecture of a plain state dict in --weights")
    evaluate.add_argument("--category", action="append", help="evaluate only this category (repeatable)")
    evaluate.add_argument("--out", metavar="JSON", help="write the figures here")
    evaluate.add_argument("--detections", metavar="JSON", help="also write the detections (COCO results format)")
    evaluate.add_argument("--curves", metavar="PNG", help="draw precision-recall and miss rate vs false positives per image here")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(handler=_cmd_evaluate)


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


def _missing_torch() -> str | None:
    from .training import require_torch

    try:
        require_torch()
    except ImportError as error:
        return str(error)
    return None


def _cmd_coco_merge(args: argparse.Namespace) -> int:
    from . import coco

    merged = coco.merge(args.base, *args.mined, out=args.out, image_root=args.image_root, copy_images=args.copy_images)
    annotated = {a["image_id"] for a in merged["annotations"]}
    empty = sum(1 for image in merged["images"] if image["id"] not in annotated)
    names = ", ".join(c["name"] for c in merged["categories"])
    print(
        f"wrote {args.out}: {len(merged['images'])} images ({empty} without annotations), "
        f"{len(merged['annotations'])} annotations; categories: {names}"
    )
    return 0


def _cmd_coco_subset(args: argparse.Namespace) -> int:
    from . import coco

    split = coco.parse_split(args.split) if args.split else None
    written = coco.write_subset(args.coco_json, args.category, args.out, split=split, seed=args.seed, keep_empty=not args.drop_empty)
    for name, path in written.items():
        part = coco.load(path)
        print(f"wrote {path}: {len(part['images'])} images, {len(part['annotations'])} {args.category} boxes")
    return 0


def _cmd_train_hog_svm(args: argparse.Namespace) -> int:
    from .train.hog_svm import HogSvmFiles, HogSvmSettings, train_hog_svm_files

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
    from . import presets
    from .training import TrainConfig, check_resume_data, data_fingerprint, train

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
    result = train(config)
    best = f", best validation AP {result.best_ap:.4f} ({result.best})" if result.best_ap is not None else ""
    print(f"trained to iteration {result.iteration}: {result.final}{best}; log in {result.out / 'train.log'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate.on_coco import evaluate

    detector = None
    if args.detector:
        from .cli import _make_detector

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
    summary = evaluate(
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
