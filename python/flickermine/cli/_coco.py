"""``flickermine coco merge|subset|from-mot``: COCO file tools (:mod:`flickermine.io._coco`,
:mod:`flickermine.dataset._labelled_frames`)."""

from __future__ import annotations

import argparse

from ..dataset._labelled_frames import write_labelled_frames
from ..errors import InputError
from ..io import _coco as coco_files
from ..io._ground_truth import parse_frame_selection


def register(commands) -> None:
    """Add ``coco`` (``merge``, ``subset``, ``from-mot``) to the main parser's subcommands."""
    coco = commands.add_parser(
        "coco",
        help="COCO file tools: merge mined sets into a base set, one-category subsets, labelled video frames",
        description="COCO file tools: `coco merge` adds mined sets to a base training set, `coco subset` makes "
        "one-category sets with train/val/test splits, `coco from-mot` writes frames of a video with MOT ground "
        "truth as a dataset to train or test a detector on.",
    )
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
    merge.add_argument("--copy-images", action="store_true", help="copy the images beside --out (a standalone folder)")
    merge.add_argument(
        "--link-images", action="store_true",
        help="like --copy-images, but hard-link the images (no space used; the two folders then share the files: "
        "editing one edits the other)",
    )
    merge.add_argument(
        "--category-map", action="append", default=[], metavar="MINED=BASE",
        help="rename a mined category to the base's before merging, e.g. object=person (repeatable)",
    )
    merge.add_argument(
        "--new-categories", action="store_true",
        help="keep mined categories the base lacks as new categories (default: refuse them)",
    )
    merge.add_argument(
        "--reject", action="append", default=[], metavar="MARKS.json",
        help="items marked wrong in `flickermine review` (its Export marks file): rejected hard-positive labels "
        "are dropped, and images with a rejected hard negative (an object left unlabelled there) are left out "
        "(repeatable, one file per mined folder)",
    )
    merge.set_defaults(handler=_cmd_coco_merge)

    subset = actions.add_parser(
        "subset",
        help="one category against background, with train/val/test splits",
        description="Keep the images with the category (and images with no annotations at all), only that "
        "category's annotations; optionally split them deterministically. Writes DIR/<part>.json.",
    )
    subset.add_argument("coco_json", metavar="COCO.json", help="the COCO file to take the subset from")
    subset.add_argument("--category", required=True, help="category name, e.g. dog")
    subset.add_argument("--split", metavar="TRAIN/VAL/TEST", help="image counts (3041/177/1521) or fractions (0.8/0.1/0.1)")
    subset.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    subset.add_argument("--drop-empty", action="store_true", help="leave out images that have no annotations at all")
    subset.add_argument("--out", required=True, metavar="DIR", help="folder for train.json, val.json, test.json (or all.json)")
    subset.set_defaults(handler=_cmd_coco_subset)

    from_mot = actions.add_parser(
        "from-mot",
        help="frames of a video with MOT ground truth as a COCO dataset (to train or test a detector on)",
        description="Decode VIDEO once, front to back, and write the --frames asked for as DIR/images/*.jpg with "
        "their ground-truth boxes in DIR/annotations.json (flag-0 rows as crowd boxes: ignore regions). Frames "
        "without boxes are kept as negative images. DIR must be new or empty.",
        epilog="example, a train/val/test split of one sequence: --frames 1-240/3 --out train; --frames 241-300 "
        "--out val; --frames 601-795 --out test",
    )
    from_mot.add_argument("video", metavar="VIDEO", help="video file or image folder")
    from_mot.add_argument("--gt", required=True, metavar="GT.txt", help="MOTChallenge ground truth (frame,id,x,y,w,h[,flag,...])")
    from_mot.add_argument(
        "--frames", required=True, metavar="FIRST-LAST[/STEP],...",
        help="1-based frames, inclusive, e.g. 1-240/3 (every third) or 1-100,200-300",
    )
    from_mot.add_argument("--category", default="person", help="category name of the boxes (default: person)")
    from_mot.add_argument("--out", required=True, metavar="DIR", help="new folder for images/ and annotations.json")
    from_mot.add_argument("--quiet", action="store_true", help="no progress bar")
    from_mot.set_defaults(handler=_cmd_coco_from_mot)


def _category_map(pairs: list[str]) -> dict[str, str]:
    renames = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise InputError(f"--category-map {pair!r}: expected MINED=BASE, e.g. object=person")
        renames[old.strip()] = new.strip()
    return renames


def _cmd_coco_merge(args: argparse.Namespace) -> int:
    merged = coco_files.merge(
        args.base, *args.mined, out=args.out, image_root=args.image_root, copy_images=args.copy_images,
        link_images=args.link_images, rename_categories=_category_map(args.category_map),
        new_categories=args.new_categories, reject=args.reject,
    )
    annotated = {a["image_id"] for a in merged["annotations"]}
    empty = sum(1 for image in merged["images"] if image["id"] not in annotated)
    names = ", ".join(c["name"] for c in merged["categories"])
    print(
        f"wrote {args.out}: {len(merged['images'])} images ({empty} without annotations), "
        f"{len(merged['annotations'])} annotations; categories: {names}"
    )
    return 0


def _cmd_coco_subset(args: argparse.Namespace) -> int:
    split = coco_files.parse_split(args.split) if args.split else None
    written = coco_files.write_subset(args.coco_json, args.category, args.out, split=split, seed=args.seed, keep_empty=not args.drop_empty)
    for name, path in written.items():
        part = coco_files.load(path)
        print(f"wrote {path}: {len(part['images'])} images, {len(part['annotations'])} {args.category} boxes")
    return 0


def _cmd_coco_from_mot(args: argparse.Namespace) -> int:
    frames = parse_frame_selection(args.frames)
    coco = write_labelled_frames(args.video, args.gt, frames, args.out, category=args.category, progress=not args.quiet)
    crowds = sum(a["iscrowd"] for a in coco["annotations"])
    empty = len(coco["images"]) - len({a["image_id"] for a in coco["annotations"] if not a["iscrowd"]})
    print(
        f"wrote {args.out}/annotations.json: {len(coco['images'])} frames ({empty} without {args.category} boxes), "
        f"{len(coco['annotations']) - crowds} {args.category} boxes, {crowds} ignore regions"
    )
    return 0
