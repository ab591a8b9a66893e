"""``flickermine review``: a self-contained HTML page to check what was mined (:mod:`flickermine.dataset._review`)."""

from __future__ import annotations

import argparse

from ..dataset._review import build_review


def register(commands) -> None:
    """Add ``review`` to the main parser's subcommands."""
    review = commands.add_parser(
        "review",
        help="write review.html: every hard negative and hard positive in its frame context, to mark wrong ones",
        description="Write a self-contained review page (no server, no network: images inside the file) of a "
        "mined dataset folder: every hard negative and hard positive as a crop beside its previous / current / "
        "next frame, with score, reason and video; filters by video, reason and minimum score. Keys: j/k or "
        "arrows move, x marks the focused item wrong. 'Export marks' downloads marks.json, which "
        "`flickermine coco merge ... --reject marks.json` honours.",
    )
    review.add_argument("folder", metavar="DIR", help="a folder `flickermine mine --out` wrote")
    review.add_argument("--out", metavar="HTML", help="the page to write (default: DIR/review.html)")
    review.add_argument(
        "--no-video", action="store_true",
        help="take neighbouring frames from the dataset only; do not decode the source videos of report.json",
    )
    review.set_defaults(handler=_cmd_review)


def _cmd_review(args: argparse.Namespace) -> int:
    summary = build_review(args.folder, args.out, decode_video=not args.no_video)
    print(
        f"wrote {summary['out']}: {summary['items']} items ({summary['hard_negatives']} hard negatives, "
        f"{summary['hard_positives']} hard positives), {summary['with_context']} with neighbouring frames"
    )
    if summary["videos_not_decoded"]:
        print(
            "source video not readable for: " + ", ".join(summary["videos_not_decoded"])
            + " (their items show the mined frame only)"
        )
    return 0
