"""``flickermine mine``: videos mined against detections files or a detector, into a COCO dataset
(``--out``) and/or one video's verdicts (``--verdicts``)."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from ..dataset._writer import MODES, RunConfig
from ..errors import InputError
from ..runner._mine_run import run_mining
from ..runner._inputs import expand_inputs, find_detections, video_keys
from ..runner._mine_job import check_one_category
from ..runner._pipeline import mine_video
from ..video._source import STRICT_ENV
from ..mining._params import MiningParams
from ._options import _add_detector_options, _add_mining_options, _detector_factory, _params


def register(commands) -> None:
    """Add ``mine`` to the main parser's subcommands."""
    mine = commands.add_parser(
        "mine",
        help="mine videos against detection files or a detector",
        description="Mine videos (files, image folders, folders of videos, globs, or .txt lists of them) "
        "into a COCO dataset (--out) and/or one video's verdicts (--verdicts).",
    )
    mine.add_argument("videos", nargs="+", metavar="VIDEO", help="video file, image folder, folder of videos, glob or list file")
    mine.add_argument(
        "--detections", metavar="PATH",
        help="detections of one video (MOT det.txt, the authors' per-frame text format, or JSON Lines .jsonl; "
        "see `flickermine convert`), or a folder with one <video>.txt/.jsonl per video",
    )
    mine.add_argument("--out", metavar="DIR", help="write the mined COCO dataset here (resumable)")
    mine.add_argument("--verdicts", metavar="OUT.csv", help="one video: write frame,x,y,w,h,score,verdict,reason per candidate")
    mine.add_argument("--mode", choices=MODES, default="hn", help="which frames are written and how they are labelled (default: hn)")
    mine.add_argument("--category", default="object", help="category name of the labels (default: object); with --detector, the COCO category to keep")
    mine.add_argument("--visualize", action="store_true", help="also draw each kept frame (hard negatives red) and a contact sheet")
    mine.add_argument("--workers", type=int, default=1, metavar="N", help="videos mined in parallel (default: 1)")
    # -- executor "ray" (flickermine.runner._ray_executor)
    mine.add_argument("--executor", choices=("local", "ray"), default="local", help="local processes (default) or one Ray task per video (pip install 'flickermine[ray]')")
    mine.add_argument("--address", metavar="ADDR", help="ray: the cluster to use (host:port, ray://host:port or auto; default: RAY_ADDRESS, else a local Ray for this run)")
    mine.add_argument("--gpus-per-video", type=float, default=0, metavar="X", help="ray: GPUs each video's task asks for (fractions share a GPU; default: 0)")
    mine.add_argument("--cpus-per-video", type=float, default=1, metavar="X", help="ray: CPUs each video's task asks for (default: 1)")
    mine.add_argument("--max-retries", type=int, default=2, metavar="N", help="ray: retries of a video whose worker died (default: 2)")
    mine.add_argument("--no-iou-first", action="store_true", help="seed rule: run NCC before the IoU shortcut (the authors' order; same verdicts)")
    mine.add_argument("--quiet", action="store_true", help="no progress bars")
    mine.add_argument("--strict", action="store_true", help="image folders: a corrupt image (a truncated JPEG...) is an error, not a warning")
    _add_detector_options(mine)
    _add_mining_options(mine)
    mine.set_defaults(handler=_cmd_mine)


def _cmd_mine(args: argparse.Namespace) -> int:
    if not args.strict:
        return _mine(args)
    # open_video reads it, in this process and in the worker processes it starts
    previous = os.environ.get(STRICT_ENV)
    os.environ[STRICT_ENV] = "1"
    try:
        return _mine(args)
    finally:
        if previous is None:
            del os.environ[STRICT_ENV]
        else:
            os.environ[STRICT_ENV] = previous


def _mine(args: argparse.Namespace) -> int:
    if args.detections and args.detector:
        raise InputError("give either --detections or --detector, not both")
    if not args.out and not args.verdicts:
        raise InputError("say where to write: --out DIR (a COCO dataset) and/or --verdicts OUT.csv (one video)")
    params = _params(args)
    code = 0
    if args.verdicts:
        videos = expand_inputs(args.videos)  # a list file or folder naming one video is one video
        if len(videos) != 1:
            raise InputError(
                f"--verdicts takes exactly one video; {' '.join(args.videos)} names {len(videos)}: "
                "mine several into a dataset with --out DIR"
            )
        if not args.detections and not args.detector:
            raise InputError("--verdicts needs the video's --detections file, or a --detector to run")
        check_writable_file(args.verdicts, "--verdicts")
        detector = None
        detections = None
        if args.detector:
            factory = _detector_factory(args)
            assert factory is not None
            detector = factory()
            check_one_category(detector)
        elif Path(args.detections).is_dir():  # the video's file in a folder of detections files
            detections = find_detections(videos[0], video_keys(videos)[0], args.detections, single=True)
        else:  # a file, or a missing one: reported after the video, when opened
            detections = args.detections
        summary = mine_video(
            videos[0],
            detections,
            detector=detector,
            params=params,
            rule=args.rule,
            backend=args.backend,
            iou_first=not args.no_iou_first,
            verdicts_csv=args.verdicts,
            progress=not args.quiet,
        )
        print(summary.line())
        print(f"verdicts written to {args.verdicts}")
        if summary.hard_negatives == 0:
            print(nothing_mined_hint(summary.detections, summary.candidates, summary.reasons, params, args.rule))
    if args.out:
        factory = _detector_factory(args)
        detector_info = None
        if factory is not None:
            weights = args.weights or (f"torchvision {args.torchvision_weights}" if args.torchvision_weights else None)
            weights = weights or ("random" if args.random_weights else None)
            detector_info = {"name": args.detector, "weights": weights, "category": args.category}
        config = RunConfig(
            params=params, rule=args.rule, mode=args.mode, category=args.category, detector=detector_info,
            visualize=args.visualize,
        )
        result = run_mining(
            args.videos, args.out, config, detections=args.detections, detector_factory=factory,
            backend=args.backend, workers=args.workers, progress=not args.quiet,
            executor=args.executor, ray_address=args.address, gpus_per_video=args.gpus_per_video,
            cpus_per_video=args.cpus_per_video, max_retries=args.max_retries,
        )
        code = result.exit_code
        mined = [v for v in result.videos if v.get("status") != "failed"]
        hard = sum(v.get("hard_negatives") or 0 for v in mined)
        if mined and hard == 0 and args.mode != "hp":  # every other mode keeps frames for their hard negatives
            reasons: dict[str, int] = {}
            for v in mined:
                for label, count in (v.get("reasons") or {}).items():
                    reasons[label] = reasons.get(label, 0) + int(count)
            print(
                nothing_mined_hint(
                    sum(v.get("detections") or 0 for v in mined), sum(v.get("candidates") or 0 for v in mined),
                    reasons, params, args.rule, known=all("reasons" in v for v in mined),
                )
            )
    return code


def check_writable_file(path: str | os.PathLike, option: str) -> None:
    """Fail before any work, naming ``path`` as given, when no file can be written where it
    points (a folder that cannot be made, /proc, no permission): else the error would name the
    lock or temporary files written beside it, which the user never gave."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{option} {path} is a folder; name the file to write")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".probe"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise InputError(f"{option} {path}: cannot write a file there ({reason}); pick another path") from None


def nothing_mined_hint(
    detections: int, candidates: int, reasons: dict[str, int], params: MiningParams, rule: str, known: bool = True
) -> str:
    """Why a run mined no hard negative (the candidates' verdict reasons), and what to try."""
    if candidates == 0:
        return (
            f"nothing mined: none of the {detections} detections scored >= --score-threshold {params.score_threshold:g}, "
            "so none was a candidate; try a lower --score-threshold (detectors without scores, e.g. Haar "
            "cascades: --score-threshold=-1e9 --sure-score 1e9)"
        )
    if not known:  # shards of an older run record no reasons
        return f"nothing mined: {candidates} candidates, no hard negative; try --rule support, or --min-area 0 --border 0"
    count = reasons.get
    parts = [
        f"{count('sure_score', 0)} exempt by sure_score (score >= {params.sure_score:g})",
        f"{count('small', 0)} small (area < --min-area {params.min_area:g} px^2)",
        f"{count('border', 0)} at the border (within --border {params.border} px of the edge)",
        f"{count('partner', 0)} had partners in neighbour frames",
    ]
    others = {label: n for label, n in reasons.items() if label not in ("sure_score", "small", "border", "partner", "isolated")}
    parts += [f"{n} {label.replace('_', ' ')}" for label, n in sorted(others.items())]
    tries = []
    if count("sure_score", 0):
        tries.append(
            "a higher --sure-score (1e9: no detection is exempt by its score; detectors without calibrated "
            "scores, e.g. Haar cascades: --score-threshold=-1e9 --sure-score 1e9)"
        )
    if count("small", 0) or count("border", 0):
        tries.append("--min-area 0 --border 0 (small objects, objects at the image edge)")
    if rule != "support":
        tries.append("--rule support")
    tries.append(f"a lower --score-threshold (now {params.score_threshold:g}: more, weaker candidates)")
    return (
        f"nothing mined: {candidates} candidates (of {detections} detections), none isolated: "
        + ", ".join(parts)
        + ".\ntry: " + "; ".join(tries)
    )
