"""``flickermine demo``: mine a built-in synthetic clip with known flickers."""

from __future__ import annotations

import argparse

from ..mining._backends import get_backend
from ..runner._demo import run_demo, write_demo_dataset
from ._options import _add_mining_options, _params


def register(commands) -> None:
    """Add ``demo`` to the main parser's subcommands."""
    demo = commands.add_parser(
        "demo",
        help="mine a built-in synthetic clip with known flickers",
        description="Render a synthetic clip whose detections hold injected one-frame false positives (flickers), "
        "mine it with the mining options below, and compare the hard negatives found with the injected ones; no "
        "data or download needed.",
    )
    demo.add_argument("--seed", type=int, default=0, metavar="N", help="random seed of the clip (default: 0)")
    demo.add_argument("--frames", type=int, default=150, metavar="N", help="frames in the clip (default: 150)")
    demo.add_argument(
        "--out", default="flickermine-demo", metavar="DIR",
        help="also write the mined frames as a COCO dataset here (default: flickermine-demo; '' to skip)",
    )
    _add_mining_options(demo)
    demo.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
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
        coco = write_demo_dataset(clip, result, args.out, params, args.rule, get_backend(args.backend).NAME, args.seed)
        print(
            f"dataset (mode hn+hp): {len(coco['images'])} images, {len(coco['annotations'])} annotations in "
            f"{args.out}/annotations.json; drawings in {args.out}/visualize, overview {args.out}/contact_sheet.png"
        )
    return 0
