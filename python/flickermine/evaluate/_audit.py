"""Audit mined examples against MOT ground truth: how pure are the hard negatives, the hard
positives and the pseudo-positives, and what the NCC tracking adds over the simplest rule.

Command line: ``flickermine audit MINED --gt GT.txt [--match-iou 0.5] [--frames A-B]
[--by-threshold --video V --detections D] [--json OUT]`` (see :mod:`flickermine.cli._audit`).

``MINED`` is either a verdicts CSV written by ``flickermine mine --verdicts`` (every candidate of
one video, frames 1-based) or a dataset folder written by ``flickermine mine --out`` (kept frames
only; the detections file named in its ``report.json`` supplies all the candidates, when it is
still readable, for the false-positive rate and the baseline).

Judging a box against the ground truth of its frame (boxes ``x1, y1, x2, y2`` pixels):

* **true**: IoU >= ``match_iou`` with a ground-truth box whose flag is not 0;
* **ignored** (neither right nor wrong): otherwise, when it overlaps a flag-0 box at IoU >=
  ``match_iou`` or lies mostly (more than half its area) inside one;
* **false**: otherwise. A frame inside the audited range without ground-truth rows has no
  objects: every box there is false.

Reported, per video and overall (ignored boxes leave numerator and denominator alike):

* hard-negative precision: share of hard negatives that are false;
* pseudo-positive precision and hard-positive precision: share that are true;
* false-positive rate of all candidates: the precision of picking candidates at random, so
  ``enrichment = hard-negative precision / false-positive rate`` says what the rule adds;
* the baseline: the simplest rule (a candidate with no candidate at IoU >= 0.5 in the frame
  before nor in the frame after) on the same candidates, also restricted to the candidates the
  rules do not exempt (sure score, small, border), so that each report shows what the NCC
  tracking adds;
* the worst cases: hard negatives that are true objects, best IoU first.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .._boxes import iou_matrix
from .._progress import progress_bar
from ..dataset._writer import ALL_HARD_NEGATIVES_KEY, DETECTOR_SOURCE, HARD_NEGATIVES_KEY, TRACKER_SOURCE, shard_path
from ..errors import InputError
from ..io._formats import open_detections
from ..io._ground_truth import parse_frame_bounds, read_mot_boxes
from ..mining._miner import Miner
from ..mining._params import HARD_NEGATIVE, PSEUDO_POSITIVE, MiningParams, Reason, Rule
from ..mining._backends import BackendName
from ..mining._rules import UNDECIDED, RuleName, exemption_reasons
from ..runner._loop import mine_stream
from ..runner._pipeline import VERDICT_COLUMNS
from ..video import open_video

#: IoU with the frame before or after at which the baseline rule finds a detection's partner.
BASELINE_IOU = 0.5
#: Reasons for which the rules never look at a detection.
EXEMPT_REASONS = (Reason.SURE_SCORE.label, Reason.SMALL.label, Reason.BORDER.label)
TRUE, FALSE, IGNORED = 1, 0, -1
DEFAULT_NCC_SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7)


# -- ground truth --------------------------------------------------------------------------------


def parse_frame_range(text: str | None) -> tuple[int, int] | None:
    """``"1-405"`` -> ``(1, 405)``; ``"7"`` -> ``(7, 7)``; ``"100-"`` -> ``(100, OPEN_END)``; None -> None."""
    return None if text is None else parse_frame_bounds(text, "--frames", open_end=True)


@dataclasses.dataclass
class GroundTruth:
    """MOT ground truth of one video: per 1-based frame, ``(K, 4)`` x1, y1, x2, y2 boxes that
    count and boxes flagged 0 (ignore). ``frames``: the audited 1-based inclusive frame range
    (None: every frame)."""

    path: str
    boxes: dict[int, np.ndarray]
    ignore: dict[int, np.ndarray]
    frames: tuple[int, int] | None = None

    def covers(self, frame: int) -> bool:
        return self.frames is None or self.frames[0] <= frame <= self.frames[1]

    def judge(self, frame: int, boxes: np.ndarray, match_iou: float) -> tuple[np.ndarray, np.ndarray]:
        """``(status (N,) int8 TRUE/FALSE/IGNORED, best IoU with a real box (N,) float64)``."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        truth = self.boxes.get(frame, np.zeros((0, 4)))
        best = iou_matrix(boxes, truth).max(axis=1) if len(truth) else np.zeros(len(boxes))
        status = np.where(best >= match_iou, TRUE, FALSE).astype(np.int8)
        ignore = self.ignore.get(frame, np.zeros((0, 4)))
        if len(ignore) and (status == FALSE).any():
            overlap = iou_matrix(boxes, ignore).max(axis=1) >= match_iou
            inter_w = np.minimum(boxes[:, None, 2], ignore[None, :, 2]) - np.maximum(boxes[:, None, 0], ignore[None, :, 0])
            inter_h = np.minimum(boxes[:, None, 3], ignore[None, :, 3]) - np.maximum(boxes[:, None, 1], ignore[None, :, 1])
            inside = np.clip(inter_w, 0, None) * np.clip(inter_h, 0, None)
            area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-12)
            mostly_inside = (inside / area[:, None]).max(axis=1) > 0.5
            status[(status == FALSE) & (overlap | mostly_inside)] = IGNORED
        return status, best


def read_ground_truth(path: str | os.PathLike, frames: tuple[int, int] | None = None) -> GroundTruth:
    """Read a MOT ground-truth file ``frame,id,x,y,w,h[,flag,...]`` (:func:`~flickermine.io.
    _ground_truth.read_mot_boxes`). Raises FileNotFoundError, or ValueError naming the file and line."""
    boxes, ignore = read_mot_boxes(path)
    return GroundTruth(str(path), boxes, ignore, frames)


# -- what was mined ------------------------------------------------------------------------------


@dataclasses.dataclass
class MinedVideo:
    """What a rule mined from one video, in the form the audit needs.

    ``frames`` ``(N,)`` 1-based, ``boxes`` ``(N, 4)`` x1, y1, x2, y2, ``scores`` ``(N,)``,
    ``hard_negative`` ``(N,)`` bool and ``reasons`` (labels or None) describe the candidates that
    were judged. ``complete``: these are *all* the candidates of the video (a verdicts CSV, a
    re-mining); otherwise (a dataset folder keeps only some frames) ``population`` may hold all
    candidates as ``(frames, boxes, exempt or None)`` from the detections file.
    ``hard_positives``: ``(frames (M,), boxes (M, 4))``, or None when they were not looked for.
    """

    name: str
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    hard_negative: np.ndarray
    reasons: list[str] | None = None
    complete: bool = True
    population: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
    hard_positives: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_frame_verdicts(cls, name: str, verdicts: Iterable, hard_positives: bool = False) -> "MinedVideo":
        """From :class:`~flickermine.mining.FrameVerdicts` of every frame of one video."""
        frames, boxes, scores, reasons, hp_frames, hp_boxes = [], [], [], [], [], []
        for v in verdicts:
            frames.append(np.full(len(v.boxes), v.frame_index + 1, dtype=np.int64))
            boxes.append(v.boxes)
            scores.append(v.scores)
            reasons.append(np.asarray(v.reasons, dtype=np.int8))
            hp_frames.append(np.full(len(v.hard_positives), v.frame_index + 1, dtype=np.int64))
            hp_boxes.append(v.hard_positives)
        codes = np.concatenate(reasons) if reasons else np.zeros(0, np.int8)
        hp = (_cat(hp_frames, np.int64), _cat(hp_boxes, np.float64, 4)) if hard_positives else None
        return cls(
            name, _cat(frames, np.int64), _cat(boxes, np.float64, 4), _cat(scores, np.float64),
            codes == Reason.ISOLATED, [Reason(int(c)).label for c in codes], True, None, hp,
        )

    def with_rows(self, keep: np.ndarray) -> "MinedVideo":
        reasons = [r for r, k in zip(self.reasons, keep) if k] if self.reasons is not None else None
        return dataclasses.replace(
            self, frames=self.frames[keep], boxes=self.boxes[keep], scores=self.scores[keep],
            hard_negative=self.hard_negative[keep], reasons=reasons,
        )


def _cat(parts: list, dtype, width: int | None = None) -> np.ndarray:
    shape = (0, width) if width else (0,)
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype)


def read_verdicts_csv(path: str | os.PathLike, name: str | None = None) -> MinedVideo:
    """Read ``frame,x,y,w,h,score,verdict,reason`` (``flickermine mine --verdicts``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"verdicts {path}: no such file")
    labels = {r.label for r in Reason}
    frames, boxes, scores, hard, reasons = [], [], [], [], []
    with open(path, newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != VERDICT_COLUMNS:
            raise InputError(f"{path}:1: expected the header {','.join(VERDICT_COLUMNS)}, got {header}")
        for number, row in enumerate(reader, 2):
            if not row:
                continue
            if len(row) != len(VERDICT_COLUMNS):
                raise InputError(f"{path}:{number}: expected {len(VERDICT_COLUMNS)} fields, got {len(row)}")
            try:
                frame = int(row[0])
                x, y, w, h, score = (float(v) for v in row[1:6])
            except ValueError:
                raise InputError(f"{path}:{number}: frame must be an integer and x,y,w,h,score numbers: {row}") from None
            if frame < 1 or not all(math.isfinite(v) for v in (x, y, w, h, score)) or w <= 0 or h <= 0:
                raise InputError(f"{path}:{number}: need frame >= 1, finite values and w, h > 0: {row}")
            if row[6] not in (HARD_NEGATIVE, PSEUDO_POSITIVE) or row[7] not in labels:
                raise InputError(f"{path}:{number}: unknown verdict {row[6]!r} or reason {row[7]!r}")
            frames.append(frame)
            boxes.append((x, y, x + w, y + h))
            scores.append(score)
            hard.append(row[6] == HARD_NEGATIVE)
            reasons.append(row[7])
    return MinedVideo(
        name or path.stem, np.array(frames, np.int64), np.array(boxes, np.float64).reshape(-1, 4),
        np.array(scores, np.float64), np.array(hard, bool), reasons,
    )


@dataclasses.dataclass
class MinedDataset:
    """A dataset folder: its videos, and the run settings and inputs it records."""

    folder: Path
    videos: list[MinedVideo]
    params: MiningParams
    rule: str
    sources: dict[str, dict]  #: per video: ``path``, ``detections_file``, ``width``, ``height``
    mode: str = "hn"  #: which frames the dataset kept (``run.json``'s mode)
    detector: dict | None = None  #: the detector it was mined with (``run.json``), or None: a detections file
    #: True where every video's shard lists all its hard negatives (not only those of kept frames)
    all_hard_negatives: bool = False


def read_dataset(folder: str | os.PathLike, with_population: bool = True) -> MinedDataset:
    """Read ``annotations.json`` (+ ``run.json``, ``report.json``) of a ``flickermine mine --out``
    folder. With ``with_population``, all candidates are read from each video's detections file
    when ``report.json`` names one that still exists."""
    folder = Path(folder)
    coco_path = folder / "annotations.json"
    if not coco_path.is_file():
        raise FileNotFoundError(f"{folder}: no annotations.json (not a `flickermine mine --out` folder?)")
    coco = _read_json(coco_path)
    run = _read_json(folder / "run.json") if (folder / "run.json").is_file() else {}
    report = _read_json(folder / "report.json") if (folder / "report.json").is_file() else {}
    known = {f.name for f in dataclasses.fields(MiningParams)}
    params = MiningParams(**{k: v for k, v in run.get("params", {}).items() if k in known})
    mode = run.get("mode", coco.get("info", {}).get("mode", "hn"))
    sources = {row["video"]: row for row in report.get("videos", []) if "video" in row}
    try:
        images = {image["id"]: image for image in coco["images"]}
        per_video: dict[str, dict] = {}
        for image in coco["images"]:
            entry = per_video.setdefault(str(image["video"]), {"rows": [], "hp": [], "size": (image["width"], image["height"])})
            frame = int(image["frame_index"]) + 1
            for hn in image.get(HARD_NEGATIVES_KEY, []):
                entry["rows"].append((frame, _xyxy(hn["bbox"]), hn.get("score") or 0.0, True))
        for ann in coco["annotations"]:
            image = images[ann["image_id"]]
            entry = per_video[str(image["video"])]
            frame = int(image["frame_index"]) + 1
            if ann.get("source", DETECTOR_SOURCE) == TRACKER_SOURCE:
                entry["hp"].append((frame, _xyxy(ann["bbox"])))
            elif mode != "flickers-as-positives" or not any(
                hn["bbox"] == ann["bbox"] for hn in image.get(HARD_NEGATIVES_KEY, [])
            ):
                entry["rows"].append((frame, _xyxy(ann["bbox"]), ann.get("score") or 0.0, False))
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{coco_path}: not a flickermine COCO file ({type(error).__name__}: {error})") from None
    for name, row in sources.items():
        per_video.setdefault(name, {"rows": [], "hp": [], "size": (row.get("width"), row.get("height"))})
    all_hard_negatives = bool(per_video)
    for name, entry in per_video.items():
        # annotations.json holds the hard negatives of kept frames only; the shard holds them all.
        shard_file = shard_path(folder, name)
        shard = _read_json(shard_file) if shard_file.is_file() else {}
        all_hard_negatives = all_hard_negatives and ALL_HARD_NEGATIVES_KEY in shard
        if ALL_HARD_NEGATIVES_KEY in shard:
            try:
                every = [(int(n["frame"]), _xyxy(n["bbox"]), n.get("score") or 0.0, True) for n in shard[ALL_HARD_NEGATIVES_KEY]]
            except (KeyError, TypeError, ValueError) as error:
                raise InputError(f"{shard_file}: not a flickermine shard ({type(error).__name__}: {error})") from None
            entry["rows"] = [r for r in entry["rows"] if not r[3]] + every
    videos = []
    for name, entry in per_video.items():
        rows = entry["rows"]
        hp = entry["hp"]
        video = MinedVideo(
            name,
            np.array([r[0] for r in rows], np.int64),
            np.array([r[1] for r in rows], np.float64).reshape(-1, 4),
            np.array([r[2] for r in rows], np.float64),
            np.array([r[3] for r in rows], bool),
            None,
            complete=False,
            hard_positives=(
                (np.array([h[0] for h in hp], np.int64), np.array([h[1] for h in hp], np.float64).reshape(-1, 4))
                if mode in ("hp", "hn+hp") else None
            ),
        )
        source = sources.get(name, {})
        dets = source.get("detections_file")
        if with_population and dets and Path(dets).is_file():
            width, height = entry["size"]
            video.population = read_candidates(dets, params, width, height)
        videos.append(video)
    detector = run.get("detector") or coco.get("info", {}).get("detector")
    return MinedDataset(
        folder, videos, params, str(run.get("rule", coco.get("info", {}).get("rule", "seed"))), sources, str(mode),
        detector if isinstance(detector, dict) else None, all_hard_negatives,
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: unreadable JSON ({error})") from None


def _xyxy(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in bbox)
    return (x, y, x + w, y + h)


def read_candidates(
    detections: str | os.PathLike, params: MiningParams, width: int | None = None, height: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """All candidates (``score >= score_threshold``) of a MOT detections file, clipped to the
    image when its size is known: ``(frames (N,) 1-based, boxes (N, 4), exempt (N,) bool or None)``."""
    file = open_detections(detections, width=width, height=height)
    frames, boxes, exempt = [], [], []
    for index, b, s in file.per_frame():
        keep = s >= params.score_threshold
        b, s = b[keep], s[keep]
        if width and height:
            b = b.copy()
            np.clip(b[:, 0::2], 0, width, out=b[:, 0::2])
            np.clip(b[:, 1::2], 0, height, out=b[:, 1::2])
            exempt.append(exemption_reasons(b, s, width, height, params) != UNDECIDED)
        frames.append(np.full(len(b), index + 1, np.int64))
        boxes.append(b)
    return _cat(frames, np.int64), _cat(boxes, np.float64, 4), (_cat(exempt, bool) if width and height else None)


# -- the baseline --------------------------------------------------------------------------------


def baseline_isolated(frames: np.ndarray, boxes: np.ndarray, match_iou: float = BASELINE_IOU) -> np.ndarray:
    """The simplest rule: ``(N,)`` bool, True where no candidate of frame ``f - 1`` nor of
    ``f + 1`` overlaps the candidate at IoU >= ``match_iou`` (``frames`` 1-based)."""
    isolated = np.ones(len(frames), dtype=bool)
    by_frame: dict[int, np.ndarray] = {}
    for frame in np.unique(frames):
        by_frame[int(frame)] = np.flatnonzero(frames == frame)
    for frame, rows in by_frame.items():
        for other in (frame - 1, frame + 1):
            if other in by_frame:
                partner = (iou_matrix(boxes[rows], boxes[by_frame[other]]) >= match_iou).any(axis=1)
                isolated[rows[partner]] = False
    return isolated


# -- the audit -----------------------------------------------------------------------------------

#: the groups of a report: (key, what counts as a hit, description)
GROUPS = (
    ("candidates", FALSE, "all candidates: false-positive rate"),
    ("hard_negatives", FALSE, "hard negatives: precision = share false"),
    ("baseline", FALSE, "baseline (no IoU>=0.5 partner in f-1, f+1): share false"),
    ("baseline_non_exempt", FALSE, "baseline among non-exempt candidates: share false"),
    ("pseudo_positives", TRUE, "pseudo-positives: precision = share true"),
    ("hard_positives", TRUE, "hard positives: precision = share true"),
)


def _counts(status: np.ndarray, hit: int) -> dict:
    judged = int((status != IGNORED).sum())
    hits = int((status == hit).sum())
    return {"count": int(len(status)), "judged": judged, "hits": hits, "precision": hits / judged if judged else None}


def _judge_all(gt: GroundTruth, frames: np.ndarray, boxes: np.ndarray, match_iou: float):
    status = np.full(len(frames), IGNORED, np.int8)
    best = np.zeros(len(frames))
    for frame in np.unique(frames):
        rows = np.flatnonzero(frames == frame)
        status[rows], best[rows] = gt.judge(int(frame), boxes[rows], match_iou)
    return status, best


def audit_video(video: MinedVideo, gt: GroundTruth, match_iou: float = 0.5, worst: int = 20) -> dict:
    """Counts and precisions of one video (see the module docstring).

    Returns a dict with one entry per :data:`GROUPS` key (``{"count", "judged", "hits",
    "precision"}``, or None where the input cannot tell), ``enrichment`` and
    ``baseline_enrichment``, and ``worst_hard_negatives`` (up to ``worst`` true objects mined as
    hard negatives, best IoU first: ``frame`` 1-based, ``bbox`` xywh, ``score``, ``best_iou``).
    """
    in_range = np.array([gt.covers(int(f)) for f in video.frames], dtype=bool)
    rows = video.with_rows(in_range)
    status, best = _judge_all(gt, rows.frames, rows.boxes, match_iou)
    report: dict = {"video": video.name, "ground_truth": gt.path}
    report["hard_negatives"] = _counts(status[rows.hard_negative], FALSE)
    report["pseudo_positives"] = _counts(status[~rows.hard_negative], TRUE)
    exempt = np.array([r in EXEMPT_REASONS for r in rows.reasons], bool) if rows.reasons is not None else None

    # The population of all candidates: the rows themselves, or the detections file's.
    population = None
    if video.complete:
        population = (video.frames, video.boxes, np.array([r in EXEMPT_REASONS for r in video.reasons], bool) if video.reasons is not None else None)
    elif video.population is not None:
        population = video.population
    if population is not None:
        frames, boxes, pop_exempt = population
        isolated = baseline_isolated(frames, boxes)  # neighbours outside the range still count
        covered = np.array([gt.covers(int(f)) for f in frames], dtype=bool)
        pop_status, _ = _judge_all(gt, frames[covered], boxes[covered], match_iou)
        isolated = isolated[covered]
        report["candidates"] = _counts(pop_status, FALSE)
        report["baseline"] = _counts(pop_status[isolated], FALSE)
        if pop_exempt is not None:
            report["baseline_non_exempt"] = _counts(pop_status[isolated & ~pop_exempt[covered]], FALSE)
        else:
            report["baseline_non_exempt"] = None
    else:
        report["candidates"] = report["baseline"] = report["baseline_non_exempt"] = None
    if exempt is not None:
        report["non_exempt_candidates"] = _counts(status[~exempt], FALSE)

    if video.hard_positives is not None:
        hp_frames, hp_boxes = video.hard_positives
        covered = np.array([gt.covers(int(f)) for f in hp_frames], dtype=bool)
        hp_status, hp_best = _judge_all(gt, hp_frames[covered], hp_boxes[covered], match_iou)
        report["hard_positives"] = _counts(hp_status, TRUE)
        wrong = np.flatnonzero(hp_status == FALSE)
        wrong = wrong[np.argsort(hp_best[wrong], kind="stable")][:worst]
        report["worst_hard_positives"] = [
            _case(video.name, int(hp_frames[covered][i]), hp_boxes[covered][i], None, float(hp_best[i])) for i in wrong
        ]
    else:
        report["hard_positives"] = None
        report["worst_hard_positives"] = []
    _derive(report)

    true_hn = np.flatnonzero(rows.hard_negative & (status == TRUE))
    true_hn = true_hn[np.argsort(-best[true_hn], kind="stable")][:worst]
    report["worst_hard_negatives"] = [
        _case(video.name, int(rows.frames[i]), rows.boxes[i], float(rows.scores[i]), float(best[i]),
              rows.reasons[i] if rows.reasons is not None else None)
        for i in true_hn
    ]
    return report


def _case(video: str, frame: int, box: np.ndarray, score, best_iou: float, reason=None) -> dict:
    x1, y1, x2, y2 = (float(v) for v in box)
    case = {"video": video, "frame": frame, "bbox": [round(x1, 1), round(y1, 1), round(x2 - x1, 1), round(y2 - y1, 1)],
            "score": None if score is None else round(score, 4), "best_iou": round(best_iou, 3)}
    if reason is not None:
        case["reason"] = reason
    return case


def _derive(report: dict) -> None:
    def precision(key):
        group = report.get(key)
        return group["precision"] if group else None

    fp_rate = precision("candidates")
    for key, name in (("hard_negatives", "enrichment"), ("baseline", "baseline_enrichment")):
        value = precision(key)
        report[name] = value / fp_rate if value is not None and fp_rate else None
    hn, candidates = report.get("hard_negatives"), report.get("candidates")
    report["hard_negative_yield"] = hn["count"] / candidates["count"] if hn and candidates and candidates["count"] else None


def combine(reports: Sequence[dict], worst: int = 20) -> dict:
    """Sum per-video reports into an overall one (precisions from the summed counts)."""
    total: dict = {"video": "overall"}
    for key in [g[0] for g in GROUPS] + ["non_exempt_candidates"]:
        groups = [r.get(key) for r in reports]
        if not groups or any(g is None for g in groups):
            total[key] = None
            continue
        summed: dict = {k: sum(g[k] for g in groups if g is not None) for k in ("count", "judged", "hits")}
        summed["precision"] = summed["hits"] / summed["judged"] if summed["judged"] else None
        total[key] = summed
    _derive(total)
    cases = [c for r in reports for c in r.get("worst_hard_negatives", [])]
    total["worst_hard_negatives"] = sorted(cases, key=lambda c: -c["best_iou"])[:worst]
    hp_cases = [c for r in reports for c in r.get("worst_hard_positives", [])]
    total["worst_hard_positives"] = sorted(hp_cases, key=lambda c: c["best_iou"])[:worst]
    return total


# -- re-mining and the threshold sweep -----------------------------------------------------------


def mine_candidates(
    video: str | os.PathLike,
    detections: str | os.PathLike,
    runs: dict[str, tuple[MiningParams, Rule | RuleName]],
    backend: BackendName = "auto",
    hard_positives: Sequence[str] = (),
    progress: bool = False,
) -> dict[str, MinedVideo]:
    """Mine ``video`` once per entry of ``runs`` (``name -> (params, rule)``) in ONE decoding
    pass; the runs named in ``hard_positives`` also look for hard positives. ``progress``: a
    progress bar over the frames (on stderr)."""
    source = open_video(video)
    dets = open_detections(detections, frame_count=source.frame_count, width=source.width, height=source.height)
    miners = {name: Miner(params, rule, backend, hard_positives=name in hard_positives) for name, (params, rule) in runs.items()}
    decided: dict[str, list] = {name: [] for name in runs}
    desc = f"re-mining {len(runs)} setting" + ("s" if len(runs) != 1 else "")
    with progress_bar(source.frame_count, desc, enabled=progress) as bar:
        for step in mine_stream(source, dets, list(miners.values())):
            for name, verdicts in zip(miners, step.verdicts):
                decided[name] += verdicts
            if step.frame is not None:
                bar.update(1)
    label = Path(video).stem if Path(video).is_file() else Path(video).name
    result = {}
    for name in miners:
        result[name] = MinedVideo.from_frame_verdicts(label, decided[name], name in hard_positives)
    return result


def default_score_sweep(detections: str | os.PathLike) -> list[float]:
    """0.5 ... 0.9 for probability-like scores; otherwise the 0, 25, 50, 75 and 90% quantiles."""
    scores = np.concatenate([s for _, _, s in open_detections(detections).per_frame()] or [np.zeros(0)])
    if not len(scores) or (scores.min() >= 0 and scores.max() <= 1):
        return [0.5, 0.6, 0.7, 0.8, 0.9]
    return sorted({round(float(q), 3) for q in np.quantile(scores, [0.0, 0.25, 0.5, 0.75, 0.9])})


def sweep(
    video: str | os.PathLike,
    detections: str | os.PathLike,
    gt: GroundTruth,
    params: MiningParams,
    rule: Rule | RuleName,
    score_thresholds: Sequence[float],
    ncc_thresholds: Sequence[float] = DEFAULT_NCC_SWEEP,
    backend: BackendName = "auto",
    match_iou: float = 0.5,
    progress: bool = False,
) -> list[dict]:
    """Re-mine for every ``score_threshold x ncc_threshold`` (one decoding pass) and audit each:
    one row per setting with candidates, hard negatives, their precision and yield, the
    false-positive rate and the baseline. ``progress``: a progress bar over the frames."""
    runs = {
        f"{s}|{t}": (dataclasses.replace(params, score_threshold=float(s), ncc_threshold=float(t)), rule)
        for s in score_thresholds
        for t in ncc_thresholds
    }
    mined = mine_candidates(video, detections, runs, backend, progress=progress)
    rows = []
    for key, video_mined in mined.items():
        s, t = (float(v) for v in key.split("|"))
        report = audit_video(video_mined, gt, match_iou, worst=0)
        rows.append({"score_threshold": s, "ncc_threshold": t, **{k: report[k] for k in (
            "candidates", "hard_negatives", "baseline", "baseline_non_exempt", "enrichment", "hard_negative_yield")}})
    return rows


# -- printing ------------------------------------------------------------------------------------


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _group_cells(group) -> list[str]:
    if group is None:
        return ["-", "-"]
    return [f"{group['count']}", _pct(group["precision"])]


def format_table(reports: Sequence[dict]) -> str:
    """One line per report: counts and precisions of every group."""
    headers = ["video", "cand.", "FP rate", "HN", "HN prec.", "enrich.", "base HN", "base prec.",
               "base nonex HN", "base nonex prec.", "PP", "PP prec.", "HP", "HP prec."]
    table = [headers]
    for r in reports:
        table.append(
            [str(r["video"])] + _group_cells(r["candidates"]) + _group_cells(r["hard_negatives"])
            + ["-" if r["enrichment"] is None else f"{r['enrichment']:.2f}x"]
            + _group_cells(r["baseline"]) + _group_cells(r["baseline_non_exempt"])
            + _group_cells(r["pseudo_positives"]) + _group_cells(r["hard_positives"])
        )
    return _render(table, separator_after=(0, len(table) - 2) if len(table) > 2 else (0,))


#: what the columns of :func:`format_table` mean, printed under it (each count is followed by its precision)
TABLE_LEGEND = """\
cand.: candidates (score >= score_threshold); FP rate: share of them that is false (picking at random)
HN: hard negatives; HN prec.: share false; enrich.: HN prec. / FP rate (what the rule adds over chance)
base HN: baseline, candidates with no IoU >= 0.5 partner in the frame before nor after; base prec.: share false
base nonex HN: the baseline among non-exempt candidates (not sure_score, small or border); base nonex prec.: share false
PP: pseudo-positives (candidates not mined); PP prec.: share true
HP: hard positives (tracked boxes where the detector missed); HP prec.: share true
-: not known from this input"""


def format_cases(cases: Sequence[dict], title: str) -> str:
    if not cases:
        return f"{title}: none"
    table = [["video", "frame", "x", "y", "w", "h", "score", "best IoU"]]
    for c in cases:
        table.append([c["video"], str(c["frame"]), *(f"{v:.0f}" for v in c["bbox"]),
                      "-" if c["score"] is None else f"{c['score']:.3f}", f"{c['best_iou']:.2f}"])
    return f"{title}:\n" + _render(table, (0,))


def format_sweep(rows: Sequence[dict]) -> str:
    table = [["score thr.", "NCC thr.", "cand.", "FP rate", "HN", "HN prec.", "HN yield", "base HN", "base prec."]]
    for row in rows:
        table.append(
            [f"{row['score_threshold']:g}", f"{row['ncc_threshold']:g}"] + _group_cells(row["candidates"])
            + _group_cells(row["hard_negatives"]) + [_pct(row["hard_negative_yield"])] + _group_cells(row["baseline"])
        )
    return _render(table, (0,))


def _render(table: list[list[str]], separator_after: Sequence[int]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for n, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n in separator_after:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
