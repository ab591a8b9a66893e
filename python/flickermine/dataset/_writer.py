"""Mined frames as a COCO dataset: per-video shards, one merge at the end.

Layout of an output folder ``DIR``::

    DIR/run.json                          what produced it (parameters, rule, mode, detector):
                                          a rerun with other settings is refused
    DIR/images/<video>/<frame:06d>.jpg    each kept frame; <frame> is 1-based (MOT numbering)
    DIR/shards/<video>.json               one finished video, written atomically
    DIR/annotations.json                  COCO, merged from the shards at the end
    DIR/report.json                       per-video and total counts and speed
    DIR/visualize/<video>/<frame>.jpg     with --visualize: hard negatives red, labels green
    DIR/contact_sheet.png                 with --visualize: the first kept frames in a grid

COCO content: ``images`` carry ``id, file_name`` (relative to ``DIR``), ``width, height, video,
frame_index`` (0-based) and the extra key ``hard_negatives``: a list of ``{"bbox": [x, y, w, h],
"score": s}``, the frame's mined hard negatives (never annotations: train on them explicitly if
you wish). ``annotations`` are the labels of the mode: ``bbox`` xywh pixels, ``area = w * h``,
``iscrowd 0``, ``category_id``, ``score`` and ``source`` (``"detector"``; hard positives found by
the tracker say ``"tracker"``). No segmentation is invented.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Iterable, Literal

import cv2
import numpy as np

from .. import __version__
from .._files import remove_stale_temporaries, replaced_atomically, video_fingerprint, write_json_atomic
from ..errors import InputError
from ..mining._miner import FrameVerdicts
from ..mining._params import DEFAULT_RULE, MiningParams, Reason

#: what a frame must hold to be kept, and what labels it gets; see docs/rules.md#which-frames-are-written
Mode = Literal["hn", "hp", "hn+hp", "negatives", "flickers-as-positives"]
MODES: tuple[Mode, ...] = ("hn", "hp", "hn+hp", "negatives", "flickers-as-positives")
HARD_NEGATIVES_KEY = "hard_negatives"
#: In a shard, on each label and hard negative: the detector's label id (category id of the
#: video's own ``categories``); merge_shards maps it to the COCO ``category_id``
LABEL_KEY = "label"
#: In a shard: ``{label id (as a string): category name}`` where the detections file or detector names them
CATEGORIES_KEY = "categories"
#: On an image, per-class mining only: the frame's label flickers (a box consistent over time
#: whose label flips), ``{"bbox", "score", "category_id"}``: hard examples of class confusion
LABEL_FLICKERS_KEY = "label_flickers"
DETECTOR_SOURCE = "detector"
TRACKER_SOURCE = "tracker"


def xywh(box: Iterable[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that decides a mined dataset's content; stored in ``run.json``."""

    params: MiningParams = MiningParams()
    rule: str = DEFAULT_RULE.value
    mode: Mode = "hn"
    category: str = "object"
    detector: dict | None = None  #: detector provenance (name, weights, ...) or None for files
    jpeg_quality: int = 95
    visualize: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")

    def as_dict(self) -> dict:
        return {
            "version": __version__,
            "params": self.params.as_dict(),
            "rule": self.rule,
            "mode": self.mode,
            "category": self.category,
            "detector": self.detector,
            "jpeg_quality": self.jpeg_quality,
            "visualize": self.visualize,
        }


#: RunConfig fields that only say what is drawn: left out of the settings a resumed run must match
DRAWING_OPTIONS = ("visualize",)


def check_run_folder(out: Path, config: RunConfig, create: bool = True) -> None:
    """Refuse a folder that holds a run with different settings; else create ``out/run.json``
    (with ``create=False`` only check, writing nothing)."""
    run_file = out / "run.json"
    wanted = config.as_dict()
    if run_file.exists():
        try:
            held = json.loads(run_file.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(f"{run_file}: unreadable ({error}); delete the folder or pick another --out") from None
        if not isinstance(held, dict):
            raise InputError(
                f"{run_file}: not a flickermine run file (a JSON {type(held).__name__}, not an object); "
                "delete the folder or pick another --out"
            )
        # Not mining settings: drawing (--visualize) changes no verdict, image or label, so a rerun
        # may add or drop it and resume (videos mined before keep the drawings they had, or none).
        ignore = {"version", *DRAWING_OPTIONS}
        differences = [
            f"{key}: {held.get(key)!r} there, {value!r} now"
            for key, value in wanted.items()
            if key not in ignore and held.get(key) != value
        ]
        if differences:
            raise InputError(
                f"{out} holds a run with different settings ({'; '.join(differences)}); "
                "use another --out, or delete it to start over"
            )
        return
    if create:
        write_json_atomic(run_file, wanted)


def select_frame(verdicts: FrameVerdicts, mode: Mode) -> tuple[bool, list[dict]]:
    """Whether a decided frame is kept in ``mode``, and its label annotations (without ids)."""
    hard = verdicts.hard_negatives
    positives = ~hard
    hard_positive_boxes = verdicts.hard_positives
    has_hn, has_pp, has_hp = bool(hard.any()), bool(positives.any()), len(hard_positive_boxes) > 0
    if mode == "hn":
        keep = has_hn and has_pp
    elif mode == "hp":
        keep = has_hp
    elif mode == "hn+hp":
        keep = (has_hn and has_pp) or has_hp
    elif mode == "negatives":
        keep = has_hn
    else:  # flickers-as-positives: the paper's ablation, the hn frames with every detection a label
        keep = has_hn and has_pp
    if not keep:
        return False, []
    label_mask = np.ones(len(hard), bool) if mode == "flickers-as-positives" else positives
    assert verdicts.labels is not None and verdicts.hard_positive_labels is not None  # filled in by FrameVerdicts
    labels = [
        {"bbox": xywh(box), "score": round(float(score), 6), "source": DETECTOR_SOURCE, LABEL_KEY: int(label)}
        for box, score, label in zip(verdicts.boxes[label_mask], verdicts.scores[label_mask], verdicts.labels[label_mask])
    ]
    if mode in ("hp", "hn+hp"):
        labels += [
            {"bbox": xywh(box), "score": None, "source": TRACKER_SOURCE, LABEL_KEY: int(label)}
            for box, label in zip(hard_positive_boxes, verdicts.hard_positive_labels)
        ]
    return True, labels


#: BGR colours of the drawings, and the legend's words for them
HARD_NEGATIVE_BGR = (0, 0, 255)  # red
PSEUDO_POSITIVE_BGR = (0, 200, 0)  # green
HARD_POSITIVE_BGR = (0, 220, 255)  # yellow
LEGEND = (("hard negative", HARD_NEGATIVE_BGR), ("pseudo-positive", PSEUDO_POSITIVE_BGR), ("hard positive", HARD_POSITIVE_BGR))
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _tag(canvas: np.ndarray, text: str, x1: int, y1: int, y2: int, bgr: tuple[int, int, int]) -> None:
    """``text`` on a filled ``bgr`` plate just above the box (below its top edge when the box
    touches the top of the image), kept inside the image."""
    (width, height), base = cv2.getTextSize(text, _FONT, 0.45, 1)
    plate_h = height + base + 4
    top = y1 - plate_h if y1 - plate_h >= 0 else min(y1, max(0, canvas.shape[0] - plate_h))
    left = min(max(0, x1), max(0, canvas.shape[1] - width - 4))
    cv2.rectangle(canvas, (left, top), (left + width + 3, top + plate_h - 1), bgr, -1)
    ink = (0, 0, 0) if sum(bgr) > 300 or bgr[1] > 150 else (255, 255, 255)
    cv2.putText(canvas, text, (left + 2, top + height + 2), _FONT, 0.45, ink, 1, cv2.LINE_AA)


def _draw_legend(canvas: np.ndarray, x: int = 4, y: int = 4) -> np.ndarray:
    """The legend (a swatch and a word per colour) on a dark plate at ``(x, y)`` of ``canvas``, in place."""
    rows = [(text, bgr) for text, bgr in LEGEND]
    sizes = [cv2.getTextSize(text, _FONT, 0.4, 1)[0] for text, _ in rows]
    line = max(h for _, h in sizes) + 6
    width = 10 + 8 + max(w for w, _ in sizes) + 8
    height = line * len(rows) + 4
    x2, y2 = min(canvas.shape[1], x + width), min(canvas.shape[0], y + height)
    region = canvas[y:y2, x:x2]
    region[:] = (region.astype(np.float32) * 0.35).astype(canvas.dtype)  # darkened, not hidden
    for i, (text, bgr) in enumerate(rows):
        top = y + 4 + i * line
        cv2.rectangle(canvas, (x + 4, top), (x + 13, top + line - 7), bgr, -1)
        cv2.putText(canvas, text, (x + 18, top + line - 7), _FONT, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def draw_frame(
    color: np.ndarray, verdicts: FrameVerdicts, names: dict[int, str] | None = None, legend: bool = True
) -> np.ndarray:
    """The authors' figure: hard negatives red, other candidates (pseudo-positives) green, hard
    positives yellow; each box tagged with what it is (``HN``, ``PP``, ``HP``), its category
    (``names``: label id -> name, where known) and its detector score; a legend in the top-left
    corner (``legend=False``: none)."""
    canvas = color.copy()
    labels = verdicts.labels if verdicts.labels is not None else np.ones(len(verdicts.scores), np.int64)
    for box, score, reason, label in zip(verdicts.boxes, verdicts.scores, verdicts.reasons, labels):
        hard = reason == Reason.ISOLATED
        bgr = HARD_NEGATIVE_BGR if hard else PSEUDO_POSITIVE_BGR
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), bgr, 2)
        name = (names or {}).get(int(label))
        _tag(canvas, f"{'HN' if hard else 'PP'}{' ' + name if name else ''} {float(score):.2f}", x1, y1, y2, bgr)
    hp_labels = verdicts.hard_positive_labels if verdicts.hard_positive_labels is not None else [1] * len(verdicts.hard_positives)
    for box, label in zip(verdicts.hard_positives, hp_labels):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), HARD_POSITIVE_BGR, 2)
        name = (names or {}).get(int(label))
        _tag(canvas, "HP" + (f" {name}" if name else ""), x1, y1, y2, HARD_POSITIVE_BGR)  # tracked: no score
    if legend:
        _draw_legend(canvas)
    return canvas


class ShardWriter:
    """Writes one video's kept frames (JPEGs as they are decided) and, at the end, its shard."""

    def __init__(self, out: Path, video_key: str, config: RunConfig) -> None:
        self.out = out
        self.key = video_key
        self.config = config
        #: ``{label id: category name}`` known for this video (its detections file's or detector's)
        self.category_names: dict[int, str] = {}
        self.images: list[dict] = []
        self.all_hard_negatives: list[dict] = []  #: of every frame, kept or not (for the audit)
        self.counts = {"candidates": 0, "hard_negatives": 0, "pseudo_positives": 0, "hard_positives": 0}
        #: candidates per verdict reason (Reason labels), to explain a run that mines nothing
        self.reasons: dict[str, int] = {}
        (out / "images" / video_key).mkdir(parents=True, exist_ok=True)
        if config.visualize:
            (out / "visualize" / video_key).mkdir(parents=True, exist_ok=True)

    def add(self, verdicts: FrameVerdicts, color: np.ndarray) -> None:
        hard = verdicts.hard_negatives
        self.counts["candidates"] += len(hard)
        self.counts["hard_negatives"] += int(hard.sum())
        self.counts["pseudo_positives"] += int((~hard).sum())
        self.counts["hard_positives"] += len(verdicts.hard_positives)
        for code, count in zip(*np.unique(verdicts.reasons, return_counts=True)):
            label = Reason(int(code)).label
            self.reasons[label] = self.reasons.get(label, 0) + int(count)
        assert verdicts.labels is not None  # filled in by FrameVerdicts
        negatives = [
            {"bbox": xywh(b), "score": round(float(s), 6), LABEL_KEY: int(label)}
            for b, s, label in zip(verdicts.boxes[hard], verdicts.scores[hard], verdicts.labels[hard])
        ]
        flickers = verdicts.reasons == Reason.LABEL_FLICKER
        self.all_hard_negatives += [{"frame": verdicts.frame_index + 1, **n} for n in negatives]
        keep, labels = select_frame(verdicts, self.config.mode)
        if not keep:
            return
        name = f"{verdicts.frame_index + 1:06d}.jpg"
        file_name = f"images/{self.key}/{name}"
        params = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality]
        if not cv2.imwrite(str(self.out / file_name), color, params):
            raise OSError(f"could not write {self.out / file_name}")
        if self.config.visualize:
            cv2.imwrite(str(self.out / "visualize" / self.key / name), draw_frame(color, verdicts), params)
        height, width = color.shape[:2]
        self.images.append(
            {
                "file_name": file_name,
                "width": width,
                "height": height,
                "video": self.key,
                "frame_index": verdicts.frame_index,
                HARD_NEGATIVES_KEY: negatives,
                "annotations": labels,
            }
        )
        if flickers.any():
            self.images[-1][LABEL_FLICKERS_KEY] = [
                {"bbox": xywh(b), "score": round(float(s), 6), LABEL_KEY: int(label)}
                for b, s, label in zip(verdicts.boxes[flickers], verdicts.scores[flickers], verdicts.labels[flickers])
            ]

    def finish(self, stats: dict) -> dict:
        shard = {
            "video": self.key, **stats, **self.counts, "reasons": dict(sorted(self.reasons.items())),
            "kept_frames": len(self.images), "images": self.images,
            ALL_HARD_NEGATIVES_KEY: self.all_hard_negatives,
            CATEGORIES_KEY: {str(k): v for k, v in sorted(self.category_names.items())},
        }
        if stats.get("path") and Path(stats["path"]).exists() and VIDEO_FINGERPRINT_KEY not in shard:
            shard[VIDEO_FINGERPRINT_KEY] = video_fingerprint(stats["path"])
        write_json_atomic(self.out / "shards" / f"{self.key}.json", shard)
        return shard


#: In a shard: every hard negative of the video, ``{"frame": n (1-based), "bbox": [x, y, w, h],
#: "score": s}``, also of frames ``--mode`` does not keep (the audit judges them all).
ALL_HARD_NEGATIVES_KEY = "all_hard_negatives"


def shard_summary(shard: dict) -> dict:
    """A shard without its per-frame lists: the row report.json keeps of a video."""
    return {k: v for k, v in shard.items() if k not in ("images", ALL_HARD_NEGATIVES_KEY, CATEGORIES_KEY)}


#: The per-video counts of report.json, summed into its ``totals``.
REPORT_COUNTS = ("frames", "detections", "hard_negatives", "pseudo_positives", "hard_positives", "kept_frames")


def write_report(out: Path, videos: list[dict], config: RunConfig, backend: str) -> dict:
    """Write ``DIR/report.json``: one row per video (status, counts, speed), their totals, the settings."""
    totals = {c: sum((v.get(c) or 0) for v in videos) for c in REPORT_COUNTS}
    report = {"videos": videos, "totals": totals, "config": config.as_dict(), "backend": backend}
    write_json_atomic(out / "report.json", report)
    return report


def shard_path(out: Path, video_key: str) -> Path:
    return out / "shards" / f"{video_key}.json"


#: In a shard: the video's :func:`flickermine._files.video_fingerprint` when it was mined.
VIDEO_FINGERPRINT_KEY = "video_fingerprint"


def read_shard(path: Path) -> dict:
    """A finished shard, checked to be one: else an :class:`InputError` naming the file."""
    try:
        shard = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: unreadable shard ({error}); delete it to mine its video again") from None
    if not isinstance(shard, dict) or not isinstance(shard.get("images"), list) or not isinstance(shard.get("video"), str):
        kind = f"a JSON {type(shard).__name__}" if not isinstance(shard, dict) else "an object without 'video' and 'images'"
        raise InputError(f"{path}: not a flickermine shard ({kind}); delete it to mine its video again")
    for image in shard["images"]:
        if not isinstance(image, dict) or not isinstance(image.get("annotations"), list):
            raise InputError(f"{path}: not a flickermine shard (an image without 'annotations'); delete it to mine its video again")
    return shard


def finished_keys(out: Path) -> list[str]:
    """The videos with a finished shard in ``out/shards``, by name."""
    folder = out / "shards"
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json") and not p.name.startswith("."))


def discard_video(out: Path, video_key: str) -> None:
    """Remove what an unfinished mining of ``video_key`` wrote (its JPEGs, drawn frames): files
    that no shard and so no annotations.json lists."""
    for part in ("images", "visualize"):
        folder = out / part / video_key
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)


def sweep_unfinished(out: Path) -> list[str]:
    """What runs killed outright left in ``out``: temporary files (of run.json, the shards,
    annotations.json, report.json) and the images of videos without a shard. Call only under the
    folder's lock. Returns what was removed (relative names)."""
    removed = [str(p.relative_to(out)) for p in remove_stale_temporaries(out)]
    removed += [str(p.relative_to(out)) for p in remove_stale_temporaries(out / "shards")]
    finished = set(finished_keys(out))
    for part in ("images", "visualize"):
        folder = out / part
        if folder.is_dir():
            for child in sorted(folder.iterdir()):
                if child.is_dir() and child.name not in finished:
                    discard_video(out, child.name)
                    removed.append(f"{part}/{child.name}/")
    return removed


def merge_shards(out: Path, video_keys: list[str], config: RunConfig, backend: str) -> dict:
    """Merge the finished shards into ``annotations.json`` (those of ``video_keys`` in that
    order, then every other finished shard in the folder, by name: videos an earlier run into the
    same folder mined are never dropped); return the COCO."""
    images: list[dict] = []
    annotations: list[dict] = []
    ordered = list(video_keys) + [k for k in finished_keys(out) if k not in set(video_keys)]
    shards = [read_shard(shard_path(out, key)) for key in ordered if shard_path(out, key).exists()]
    categories, category_of = merged_categories(shards, config.category)
    for shard in shards:
        local = category_of[shard["video"]]
        for image in shard["images"]:
            image_id = len(images) + 1
            labels = image.pop("annotations")
            for key in (HARD_NEGATIVES_KEY, LABEL_FLICKERS_KEY):
                for box in image.get(key) or []:
                    box["category_id"] = local(box.pop(LABEL_KEY, 1))
            images.append({"id": image_id, **image})
            for label in labels:
                x, y, w, h = label["bbox"]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": local(label.get(LABEL_KEY, 1)),
                        "bbox": [x, y, w, h],
                        "area": round(w * h, 3),
                        "iscrowd": 0,
                        "score": label["score"],
                        "source": label["source"],
                    }
                )
    coco = {
        "info": {
            "description": "hard examples mined by flickermine",
            "version": __version__,
            "date_created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "rule": config.rule,
            "mode": config.mode,
            "parameters": config.params.as_dict(),
            "backend": backend,
            "detector": config.detector,
            "hard_negatives_key": (
                f"each image's '{HARD_NEGATIVES_KEY}' lists its mined hard negatives as bbox [x, y, w, h] "
                "pixels and detector score; they are not annotations"
            ),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    write_json_atomic(out / "annotations.json", coco)
    return coco


def merged_categories(shards: list[dict], category: str) -> tuple[list[dict], dict]:
    """The COCO ``categories`` of a run and, per video, its label id -> ``category_id`` function.

    One label in the whole run (every single-class detector and file): one category, id 1, named
    ``category`` (``--category``), as without labels. Several: one category per name, where the
    videos' detections files or detector name their labels (every category they name is listed),
    else ``category`` for label 1 and ``label_<id>`` for the others. Label ids are kept as category
    ids unless two videos give one name two ids (or one id two names): then ids are renumbered
    1, 2, ... by first appearance.
    """
    seen_by_video: dict[str, set[int]] = {}
    for shard in shards:
        seen = seen_by_video.setdefault(shard["video"], set())
        for image in shard["images"]:
            for key in ("annotations", HARD_NEGATIVES_KEY, LABEL_FLICKERS_KEY):
                seen.update(int(box.get(LABEL_KEY, 1)) for box in image.get(key) or [])
        seen.update(int(box.get(LABEL_KEY, 1)) for box in shard.get(ALL_HARD_NEGATIVES_KEY) or [])
    if len(set().union(*seen_by_video.values())) <= 1:
        single = {"id": 1, "name": category, "supercategory": category}
        return [single], {shard["video"]: (lambda label: 1) for shard in shards}

    given: dict[int, set[str]] = {}  # the names the videos give each label id
    for shard in shards:
        for key, name in (shard.get(CATEGORIES_KEY) or {}).items():
            given.setdefault(int(key), set()).add(str(name))

    def name_of(names: dict, label: int) -> str:
        if str(label) in names:
            return str(names[str(label)])
        if len(given.get(label, ())) == 1:
            return next(iter(given[label]))
        return category if label == 1 else f"label_{label}"

    pairs: list[tuple[int, str]] = []  # (label id, name) in order of first appearance
    per_video: dict[str, dict[int, str]] = {}
    for shard in shards:
        names = shard.get(CATEGORIES_KEY) or {}
        ids = sorted(seen_by_video[shard["video"]] | ({int(k) for k in names} if len(names) > 1 else set()))
        per_video[shard["video"]] = {label: name_of(names, label) for label in ids}
        pairs += [pair for pair in per_video[shard["video"]].items() if pair not in pairs]
    numbers: dict[str, int] = {}
    if len({label for label, _ in pairs}) == len(pairs) and len({name for _, name in pairs}) == len(pairs):
        numbers = {name: label for label, name in pairs}
    else:  # ids clash between videos: renumber by name
        for _, name in pairs:
            numbers.setdefault(name, len(numbers) + 1)
    categories = [{"id": number, "name": name, "supercategory": name} for name, number in sorted(numbers.items(), key=lambda item: item[1])]

    def mapper(table: dict[int, str]):
        return lambda label: numbers[table[int(label)]]

    return categories, {video: mapper(table) for video, table in per_video.items()}


def contact_sheet(out: Path, coco: dict, count: int = 16, thumb_width: int = 320) -> Path | None:
    """A grid of the first ``count`` visualized kept frames, as ``out/contact_sheet.png``: as many
    columns as frames up to 4, each ``thumb_width`` px wide, a legend strip under it."""
    thumbs = []
    for image in coco["images"][:count]:
        drawn = cv2.imread(str(out / "visualize" / image["video"] / Path(image["file_name"]).name))
        if drawn is None:
            continue
        scale = thumb_width / drawn.shape[1]
        thumb = cv2.resize(drawn, (thumb_width, max(1, int(round(drawn.shape[0] * scale)))), interpolation=cv2.INTER_AREA)
        caption = f"{image['video']} #{image['frame_index'] + 1}"  # bottom left: the legend is top left
        (width, height), _ = cv2.getTextSize(caption, _FONT, 0.45, 1)
        bottom = thumb.shape[0] - 1
        cv2.rectangle(thumb, (0, bottom - height - 8), (width + 8, bottom), (0, 0, 0), -1)
        cv2.putText(thumb, caption, (4, bottom - 4), _FONT, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        thumbs.append(thumb)
    if not thumbs:
        return None
    height = max(t.shape[0] for t in thumbs)
    # The grid fits the frames: one frame is one thumbnail wide, not one of four black-padded
    # columns; at most 4 columns, as square as the count allows.
    columns = min(4, len(thumbs))
    rows = []
    for start in range(0, len(thumbs), columns):
        row = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in thumbs[start : start + columns]]
        row += [np.zeros_like(row[0])] * (columns - len(row))
        rows.append(np.concatenate(row, axis=1))
    grid = np.concatenate(rows, axis=0)
    # a legend strip under the grid (the thumbnails' own legends are too small to read)
    places, x, line = [], 6, 0  # items flow onto a second line where the sheet is narrow
    for text, bgr in LEGEND:
        width = 15 + cv2.getTextSize(text, _FONT, 0.42, 1)[0][0]
        if x > 6 and x + width > grid.shape[1] - 6:
            x, line = 6, line + 1
        places.append((text, bgr, x, line))
        x += width + 14
    strip = np.full((8 + 18 * (line + 1), grid.shape[1], 3), 40, np.uint8)
    for text, bgr, x, line in places:
        top = 6 + 18 * line
        cv2.rectangle(strip, (x, top + 2), (x + 10, top + 12), bgr, -1)
        cv2.putText(strip, text, (x + 15, top + 12), _FONT, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    path = out / "contact_sheet.png"
    ok, encoded = cv2.imencode(".png", np.concatenate([grid, strip], axis=0))
    if ok:
        with replaced_atomically(path) as temporary:
            temporary.write_bytes(encoded.tobytes())
    return path
