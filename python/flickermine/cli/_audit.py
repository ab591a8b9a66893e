"""``flickermine audit``: mined examples measured against MOT ground truth (:mod:`flickermine.evaluate._audit`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Sequence

from .._files import write_json_atomic
from ..errors import InputError
from ..evaluate._audit import (
    DEFAULT_NCC_SWEEP,
    TABLE_LEGEND,
    GroundTruth,
    MinedDataset,
    audit_video,
    combine,
    default_score_sweep,
    format_cases,
    format_sweep,
    format_table,
    parse_frame_range,
    read_candidates,
    read_dataset,
    read_ground_truth,
    read_verdicts_csv,
    sweep,
)
from ..mining._params import DEFAULT_RULE, MiningParams, Rule
from ._options import _add_mining_options


def _gt_by_video(gt_args: Sequence[str], names: Sequence[str], frames) -> dict[str, GroundTruth]:
    """``--gt GT.txt`` (one video) or ``--gt VIDEO=GT.txt`` per video."""
    if not gt_args:
        raise InputError("give --gt GT.txt (MOT ground truth), or --gt VIDEO=GT.txt once per video")
    named, plain = {}, []
    for item in gt_args:
        video, eq, path = item.partition("=")
        if eq and video in names:
            named[video] = path
        elif eq and not Path(item).exists():
            raise InputError(f"--gt {item}: no video called {video!r} here; videos: {', '.join(names)}")
        else:
            plain.append(item)
    if plain:
        if len(plain) > 1 or len(names) - len(named) > 1:
            raise InputError(f"several videos ({', '.join(names)}): give --gt VIDEO=GT.txt once per video")
        for name in names:
            named.setdefault(name, plain[0])
    missing = [n for n in names if n not in named]
    if missing:
        raise InputError(f"no --gt for video(s) {', '.join(missing)}; give --gt VIDEO=GT.txt for each")
    return {name: read_ground_truth(named[name], frames) for name in names}


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


#: what a verdicts CSV leaves unknown: its rule and mining settings
NOT_RECORDED = "not recorded in a verdicts CSV"


def _given_params(args: argparse.Namespace) -> dict:
    """The mining settings given on the command line (the audit's defaults are None)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(MiningParams) if getattr(args, f.name) is not None}


def _scope(dataset: MinedDataset | None) -> dict:
    """What the counts cover: a verdicts CSV has every candidate; a folder keeps some frames."""
    if dataset is None:
        return {"hard_negatives": "all (a verdicts CSV)", "pseudo_positives": "all (a verdicts CSV)"}
    return {
        "hard_negatives": "all, from the shards" if dataset.all_hard_negatives else "those of the frames the dataset kept",
        "pseudo_positives": f"those of the frames the dataset kept (mode {dataset.mode})",
    }


def _detect_hint(dataset: MinedDataset, mined_path: Path, audit_options: str = "") -> str:
    """How to get the detections file a folder mined with ``--detector`` never had."""
    detector = dataset.detector or {}
    name = str(detector.get("name") or "NAME")
    options = f"--detector {name}"
    weights = detector.get("weights")
    if isinstance(weights, str) and weights:
        if weights == "random":
            options += " --random-weights"
        elif weights.startswith("torchvision "):
            options += " --torchvision-weights " + weights.split(" ", 1)[1]
        else:
            options += f" --weights {weights}"
    if detector.get("category") not in (None, "object"):
        options += f" --category {detector['category']}"
    video = dataset.videos[0].name if len(dataset.videos) == 1 else "VIDEO"
    source = str(dataset.sources.get(video, {}).get("path") or "VIDEO")
    return (
        f"(candidates and baseline unknown: this dataset was mined with --detector {name}, so no detections file "
        "lists all its candidates; write one with\n"
        f"   flickermine detect {source} {options} --out DETS\n"
        f" then: flickermine audit {mined_path} --gt GT.txt --detections DETS/{video}.txt{audit_options})"
    )


def run_audit(args: argparse.Namespace) -> int:
    """The ``audit`` subcommand."""
    frames = parse_frame_range(args.frames)
    mined_path = Path(args.mined)
    if not mined_path.exists():
        raise FileNotFoundError(f"{mined_path}: no such verdicts CSV or dataset folder")
    if not 0 < args.match_iou <= 1:
        raise InputError(f"--match-iou must be in (0, 1], got {args.match_iou}")
    dataset: MinedDataset | None = None
    if mined_path.is_dir():
        dataset = read_dataset(mined_path)
        videos, params, rule = dataset.videos, dataset.params, dataset.rule
        recorded_params: dict = params.as_dict()
        if args.detections and len(videos) == 1:
            source = dataset.sources.get(videos[0].name, {})
            videos[0].population = read_candidates(args.detections, params, source.get("width"), source.get("height"))
    else:
        videos = [read_verdicts_csv(mined_path)]
        # A CSV records neither its rule nor its settings: unknown (None) unless given on the
        # command line; --by-threshold re-mines with the defaults where not given.
        given = _given_params(args)
        params, rule = MiningParams(**given), args.rule or DEFAULT_RULE.value
        recorded_params = {f.name: given.get(f.name) for f in dataclasses.fields(MiningParams)}
    gts = _gt_by_video(args.gt, [v.name for v in videos], frames)
    reports = [audit_video(v, gts[v.name], args.match_iou, args.worst) for v in videos]
    overall = combine(reports, args.worst)
    print(f"audit of {mined_path} (match IoU {args.match_iou:g}" + (f", frames {args.frames}" if frames else "") + ")")
    print(format_table(reports + ([overall] if len(reports) > 1 else [])))
    print(TABLE_LEGEND)
    scope = _scope(dataset)
    if dataset is not None:
        print(f"PP: pseudo-positives of the frames the dataset kept (mode {dataset.mode}); "
              f"hard negatives: {scope['hard_negatives']}")
    else:
        given_here = {"rule": args.rule, **recorded_params}
        known = ", ".join(f"{k}={v}" for k, v in given_here.items() if v is not None)
        print(f"rule and settings: {NOT_RECORDED}; unknown unless given (" + (f"given: {known})" if known else "none given)"))
    if any(not v.complete and v.population is None for v in videos):
        assert dataset is not None
        if dataset.detector and not any(s.get("detections_file") for s in dataset.sources.values()):
            print(_detect_hint(dataset, mined_path))
        else:
            print("(candidates and baseline unknown: the dataset keeps only some frames and its detections file is gone; pass --detections)")
    if any(v.hard_positives is None for v in videos):
        print("(hard positives: not audited; a verdicts CSV has none, nor a folder mined without --mode hp or hn+hp)")
    print()
    print(format_cases(overall["worst_hard_negatives"], f"worst hard negatives (true objects, best IoU first, up to {args.worst})"))
    if overall["worst_hard_positives"]:
        print(format_cases(overall["worst_hard_positives"], "worst hard positives (matching no object)"))
    result = {"input": str(mined_path), "match_iou": args.match_iou, "frames": list(frames) if frames else None,
              "rule": str(Rule(rule).value) if mined_path.is_dir() or args.rule else None,
              "params": recorded_params, "scope": scope, "videos": reports, "overall": overall}
    if dataset is None:
        result["params_note"] = f"{NOT_RECORDED}: null unless given on the command line"
    if args.by_threshold:
        video_file, dets_file = args.video, args.detections
        if dataset is not None and len(videos) == 1:
            source = dataset.sources.get(videos[0].name, {})
            video_file = video_file or source.get("path")
            dets_file = dets_file or source.get("detections_file")
        if not video_file or not dets_file:
            if dataset is not None and dataset.detector and not dets_file:
                raise InputError("--by-threshold re-mines from a detections file; this dataset was mined with a detector:\n"
                                 + _detect_hint(dataset, mined_path, " --by-threshold").strip("()").split("; ", 1)[1])
            raise InputError("--by-threshold re-mines: give --video V and --detections D (one video)")
        if len(videos) != 1:
            raise InputError("--by-threshold works on one video; audit a single video's verdicts or folder")
        scores = args.scores or default_score_sweep(dets_file)
        rows = sweep(
            video_file, dets_file, gts[videos[0].name], params, Rule(rule), scores, args.nccs, args.backend, args.match_iou,
            progress=not args.quiet,
        )
        print()
        assumed = ""
        if dataset is None:  # the CSV's rule and settings are unknown: the defaults stand in where not given
            assumed = ("" if args.rule else ", the default") + "; settings not given: the defaults"
        print(f"threshold sweep (rule {Rule(rule).value}{assumed}, re-mined from {video_file}):")
        print(format_sweep(rows))
        result["sweep"] = rows
        result["sweep_settings"] = {"rule": Rule(rule).value, "params": params.as_dict()}
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, result)
        print(f"\nwritten to {out}")
    return 0


def register(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``audit`` subcommand to the main parser's subparsers; returns its parser."""
    audit = commands.add_parser(
        "audit",
        help="measure mined examples against MOT ground truth",
        description="Compare what was mined (a --verdicts CSV, or a --out dataset folder) with MOT ground truth: "
        "precision of hard negatives, hard positives and pseudo-positives, the false-positive rate of all "
        "candidates, the simplest-rule baseline, the worst cases; optionally a threshold sweep.",
    )
    audit.add_argument("mined", metavar="MINED_DIR_or_VERDICTS", help="a verdicts CSV or a dataset folder")
    audit.add_argument("--gt", action="append", default=[], metavar="[VIDEO=]GT.txt",
                       help="MOT ground truth (flag 0 = ignore); once per video as VIDEO=GT.txt for a folder of several")
    audit.add_argument("--match-iou", type=float, default=0.5, metavar="IOU", help="IoU at which a box matches the truth (default: 0.5)")
    audit.add_argument("--frames", metavar="FIRST-LAST", help="audit only these 1-based frames (e.g. 1-405)")
    audit.add_argument("--worst", type=int, default=20, metavar="N", help="worst cases listed (default: 20)")
    audit.add_argument("--json", metavar="OUT.json", help="also write the whole report as JSON")
    audit.add_argument("--by-threshold", action="store_true", help="re-mine over score and NCC thresholds; print precision and yield")
    audit.add_argument("--quiet", action="store_true", help="--by-threshold: no progress bar")
    audit.add_argument("--video", metavar="V", help="--by-threshold: the video (a folder's report.json names it otherwise)")
    audit.add_argument(
        "--detections", metavar="D",
        help="the detections file, MOT, the authors' format or JSON Lines (for --by-threshold, or a folder whose file moved)",
    )
    audit.add_argument("--scores", type=_floats, metavar="LIST", help="--by-threshold: score thresholds (default: 0.5,...,0.9, or score quantiles)")
    audit.add_argument("--nccs", type=_floats, default=list(DEFAULT_NCC_SWEEP), metavar="LIST", help="--by-threshold: NCC thresholds (default: 0.3,...,0.7)")
    _add_mining_options(audit)  # for a verdicts CSV: the rule and settings it was mined with (a folder has run.json)
    # A CSV does not say which rule and settings made it: None unless given on the command line.
    audit.set_defaults(rule=None, **{f.name: None for f in dataclasses.fields(MiningParams)})
    audit.set_defaults(handler=run_audit)
    return audit
