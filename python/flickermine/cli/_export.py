"""``flickermine export``: a mined dataset in another tool's layout (:mod:`flickermine.io._yolo`)."""

from __future__ import annotations

import argparse

from ..io._yolo import export_yolo

#: the layouts ``--to`` takes
EXPORT_FORMATS = ("yolo",)


def register(commands) -> None:
    """Add ``export`` to the main parser's subcommands."""
    export = commands.add_parser(
        "export",
        help="write a mined dataset in another tool's layout (YOLO)",
        description="Write the mined dataset DIR (annotations.json and images/, as `flickermine mine --out` writes it) "
        "in another tool's layout. yolo: Ultralytics' images/, labels/<name>.txt (class x_center y_center width "
        "height, normalised to [0, 1]) and data.yaml; background images (hard negatives only, no label) keep an "
        "empty label file.",
    )
    export.add_argument("dataset", metavar="DIR", help="a mined dataset folder (holding annotations.json)")
    export.add_argument("--to", required=True, choices=EXPORT_FORMATS, help="the layout to write")
    export.add_argument("--out", required=True, metavar="OUT_DIR", help="a new (or empty) folder to write; never overwritten")
    export.add_argument(
        "--link", action="store_true",
        help="hard-link the images instead of copying them (no space used; the folders then share the files)",
    )
    export.set_defaults(handler=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    result = export_yolo(args.dataset, args.out, link=args.link)
    print(result.line())
    return 0
