"""``flickermine convert``: detections files between MOTChallenge, the authors' text format and
JSON Lines (see :mod:`flickermine.io._formats`)."""

from __future__ import annotations

import argparse

from ..io._formats import FORMATS, convert_file


def _cmd_convert(args: argparse.Namespace) -> int:
    result = convert_file(
        args.src, args.dst, src_format=args.src_format, dst_format=args.dst_format, frame_count=args.frames,
        first_frame=args.first_frame,
    )
    print(
        f"wrote {result.boxes} boxes in {result.frames} frames to {args.dst} "
        f"({result.src_format} -> {result.dst_format})"
    )
    return 0


def register(commands) -> argparse.ArgumentParser:
    """Add ``convert`` to the main parser's subcommands (``parser.add_subparsers()``'s result)."""
    convert = commands.add_parser(
        "convert",
        help="convert a detections file between MOT, the authors' text format and JSON Lines",
        description="Convert a detections file. Formats: mot (MOTChallenge det.txt), authors (per frame "
        "'FRAME NUMBER: n', a count, then 'x y w h score' lines) and jsonl (one JSON object per frame). "
        "The source format is sniffed from its content; the target's is jsonl for a .jsonl file, else mot.",
    )
    convert.add_argument("src", metavar="SRC", help="detections file to read")
    convert.add_argument("dst", metavar="DST", help="detections file to write (replaced atomically)")
    convert.add_argument("--from", dest="src_format", choices=FORMATS, default=None,
                         help="format of SRC (default: sniffed from its first line)")
    convert.add_argument("--to", dest="dst_format", choices=FORMATS, default=None,
                         help="format of DST (default: jsonl for .jsonl, else mot)")
    convert.add_argument("--frames", type=int, default=None, metavar="N",
                         help="the video's frame count: SRC is checked against it, and authors/jsonl outputs "
                         "list all N frames (default: SRC's own frames)")
    convert.add_argument("--first-frame", type=int, choices=(0, 1), default=1,
                         help="number of the first frame in an authors' output (default: 1)")
    convert.set_defaults(handler=_cmd_convert)
    return convert
