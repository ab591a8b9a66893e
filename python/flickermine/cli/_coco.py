"""``flickermine coco merge|subset``: COCO file tools (:mod:`flickermine.io._coco`)."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..io import _coco as coco_files


def register(commands) -> None:
    """Add ``coco`` (``merge``, ``subset``) to the main parser's subcommands."""
    coco = commands.add_parser(
        "coco",
        help="COCO file tools: merge mined sets into a base set, one-category subsets",
        description="COCO file tools: `coco merge` adds mined sets to a base training set, `coco subset` makes "
        "one-category sets with train/val/test splits.",
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
