"""The closed loop: does retraining on mined hard examples make a detector better?

On real footage with ground truth, split into frame ranges by role:

  train  labelled frames the baseline detector is trained on (its boxes, random background
         windows, and --bootstrap-rounds rounds of classic bootstrapping: one by default; with 0
         the baseline has never been trained on its own false positives on this camera)
  val    labelled frames for every choice: score calibration, and the mining rule's parameters
  pool   the "unlabelled" footage: the baseline runs over it and flickermine mines it
  test   held-out frames, touched only to score the final models

Arms, each the baseline's training set plus extra examples, retrained the same way (same SVM, same
seed) and scored on the test frames:

  baseline          nothing added
  flicker_<rule>    the hard negatives each rule mined from the pool, as negatives
  random            as many pool detections, drawn at random, as the best rule mined
  oracle_equal      as many ground-truth-verified false positives of the pool (what a perfect
                    miner could add at that count)
  oracle_all        every ground-truth-verified false positive of the pool
  hard_positives    the best rule's hard positives (objects the detector missed, found by the
                    tracker) as positives
  hard_negatives_and_positives
                    with --recipe-arm: both of the best rule's, its hard negatives as negatives
                    and its hard positives as positives (the paper's recipe)

"Best rule" and each rule's parameters are chosen on the validation frames, never on the test
frames: for every rule and every setting of a small grid, the baseline of the first seed is
retrained on that setting's hard negatives and scored on the val frames by AP50 - LAMR. Each arm
runs for every seed (the seed draws the background windows, the SVM's order and the random
arms); the table gives mean ± sd over seeds of AP50 (pycocotools, IoU 0.5), COCO AP (IoU
0.5:0.95) and the log-average miss rate (LAMR, FPPI 1e-2..1e0, Dollár et al.), what the test
false positives down to one per image are (on background, a second box on a person already
found, a mislocalised box), and checks the issue's criterion. MOT ground truth boxes flagged 0
are ignore regions. Every arm is scored with the baseline's calibration, down to score 0.01.

    python bench/bench_retrain.py                      # the pets09-s2l1 setting, 5 seeds
    python bench/bench_retrain.py NAME=VIDEO,GT.txt ... --train NAME:1-240/3 --val NAME:241-300 \\
        --pool NAME:301-600 --test NAME:601-795 [--seeds 5] [--workers 2]

A range is ``NAME:FIRST-LAST`` (1-based, inclusive) with an optional ``/STEP``; several are
separated by commas, and may name different sequences (train on one, test on another). Writes
``bench/results/retrain.json`` and ``bench/results/retrain.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import RESULTS, SHARED_DATA, print_table, write_json

from flickermine.evaluate._audit import FALSE  # ground truth status of a verified false positive

PETS = SHARED_DATA / "pets09-s2l1"
DEFAULT_SEQUENCES = [f"pets={PETS / 'video.avi'},{PETS / 'gt' / 'gt.txt'}"]
DEFAULT_RANGES = {"train": "pets:1-240/3", "val": "pets:241-300", "pool": "pets:301-600", "test": "pets:601-795"}
RULES = ("seed", "tracklet", "support")
HOG_SVM = "hog-svm"
TORCH_MODELS = ("fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2")
#: the grid each rule's parameters are chosen from on the validation frames
SCORE_THRESHOLDS = (0.2, 0.35, 0.5)
DUPLICATE_IOUS = (1.0, 0.2)
#: pool detections at or above this score are kept (the rules' score threshold is applied after)
POOL_MIN_SCORE = 0.05
#: arms are scored on every detection at or above this score
EVAL_MIN_SCORE = 0.01
#: MOT ground truth matching for "verified false positive"
MATCH_IOU = 0.5

# Frames, ground truth, ranges and settings: filled in the parent, and handed to each worker
# process once when it starts.
STATE: dict = {}


@dataclasses.dataclass(frozen=True)
class FrameRange:
    sequence: str
    first: int
    last: int
    step: int = 1

    def frames(self) -> range:
        return range(self.first, self.last + 1, self.step)

    def __str__(self) -> str:
        return f"{self.sequence}:{self.first}-{self.last}" + (f"/{self.step}" if self.step != 1 else "")


def parse_ranges(text: str, option: str, sequences: dict) -> list[FrameRange]:
    """``NAME:FIRST-LAST[/STEP],...``: the span after the name as ``coco from-mot --frames`` reads it."""
    from flickermine.errors import InputError
    from flickermine.io._ground_truth import parse_frame_span

    ranges = []
    for part in text.split(","):
        name, colon, span = part.strip().rpartition(":")
        if not colon:
            raise SystemExit(f"{option} {part!r}: expected NAME:FIRST-LAST[/STEP], e.g. pets:1-240/3")
        if name not in sequences:
            raise SystemExit(f"{option} {part!r}: no sequence named {name!r} (given: {', '.join(sequences)})")
        try:
            frames = parse_frame_span(span, f"{option} {name}:")
        except InputError as error:
            raise SystemExit(str(error)) from None
        ranges.append(FrameRange(name, frames.start, frames.stop - 1, frames.step))
    return ranges


def load_frames(sequences: dict, wanted: dict[str, set[int]], images: Path | None = None) -> dict[tuple[str, int], np.ndarray]:
    """Decode each sequence once, front to back, keeping the wanted frames (grayscale); with
    ``images``, also write each of them there in colour as JPEG (for detectors trained on files)."""
    import cv2

    from flickermine.video import open_video

    frames = {}
    for name, (video, _) in sequences.items():
        if not wanted.get(name):
            continue
        last = max(wanted[name])
        for index, frame in enumerate(open_video(video).frames(gray=True, color=images is not None), start=1):
            if index in wanted[name]:
                frames[(name, index)] = frame.gray
                if images is not None:
                    cv2.imwrite(str(images / image_name((name, index))), frame.color)
            if index >= last:
                break
        missing = sorted(wanted[name] - {i for (n, i) in frames if n == name})
        if missing:
            raise SystemExit(f"{video}: frames {missing[0]}... are beyond the video's end")
    return frames


def labelled_images(ranges: list[FrameRange]):
    from flickermine.io._ground_truth import LabelledImage

    images = []
    for frame_range in ranges:
        truth = STATE["gt"][frame_range.sequence]
        for index in frame_range.frames():
            gray = STATE["frames"][(frame_range.sequence, index)]
            images.append(
                LabelledImage(
                    f"{frame_range.sequence}:{index}", lambda gray=gray: gray,
                    truth.boxes.get(index, np.zeros((0, 4))), truth.ignore.get(index, np.zeros((0, 4))),
                )
            )
    return images


# --------------------------------------------------------------------------------------------------
# the work, in tasks that worker processes run in any order


@dataclasses.dataclass
class Baseline:
    """One seed's baseline: its settings, model and training examples, and its pool detections."""

    seed: int
    settings: object
    model: object
    examples: object
    pool: dict


def baseline_task(seed: int) -> Baseline:
    """Train the seed's baseline and run it over the pool."""
    return hog_svm_baseline(seed) if STATE["model"] == HOG_SVM else torch_baseline(seed)


def hog_svm_baseline(seed: int) -> Baseline:
    """The HOG-SVM, its scores calibrated on the val frames."""
    from flickermine.detect._hog_svm import HogSvmDetector
    from flickermine.train._hog_svm import train_hog_svm

    settings = dataclasses.replace(STATE["settings"], seed=seed)
    model, examples = train_hog_svm(
        labelled_images(STATE["ranges"]["train"]), settings, category="person",
        calibration_images=labelled_images(STATE["ranges"]["val"]), log=lambda line: None,
    )
    detector = HogSvmDetector(model, min_score=POOL_MIN_SCORE, scale_step=settings.scale_step)
    pool = {key: detector.detect_gray(STATE["frames"][key]) for frame_range in STATE["ranges"]["pool"] for key in keys(frame_range)}
    return Baseline(seed, settings, model, examples, pool)


# ---- torchvision Faster R-CNN: trained on whole frames written as JPEG files


def image_name(key: tuple[str, int]) -> str:
    return f"{key[0]}_{key[1]:06d}.jpg"


def frames_coco(items: list[tuple[tuple[str, int], np.ndarray, np.ndarray]]) -> dict:
    """A COCO dict of ``(key, person boxes, ignore boxes)`` frames (ignore boxes as crowds)."""
    coco: dict = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    for image_id, (key, boxes, ignore) in enumerate(items, start=1):
        height, width = STATE["frames"][key].shape
        coco["images"].append({"id": image_id, "file_name": image_name(key), "width": width, "height": height})
        for crowd, group in ((0, boxes), (1, ignore)):
            for x1, y1, x2, y2 in np.asarray(group, dtype=float).reshape(-1, 4).tolist():
                coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                                            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": crowd})
    return coco


def role_coco(role: str) -> dict:
    return frames_coco([
        (key, STATE["gt"][key[0]].boxes.get(key[1], np.zeros((0, 4))), STATE["gt"][key[0]].ignore.get(key[1], np.zeros((0, 4))))
        for frame_range in STATE["ranges"][role] for key in keys(frame_range)
    ])


def torch_train(coco: dict, out: Path, seed: int, iterations: int, weights) -> Path:
    """Train (or fine-tune from ``weights``) on ``coco``; the final checkpoint."""
    from flickermine.io import _coco as coco_files
    from flickermine.train._torch import TrainConfig, train

    options = STATE["torch"]
    out.mkdir(parents=True, exist_ok=True)
    coco_files.write(coco, out / "train.json")
    config = TrainConfig(
        train=out / "train.json", images=STATE["workdir"], out=out, model=STATE["model"], weights=weights,
        iterations=iterations, lr=options["lr"], lr_steps=(), min_size=options["min_size"], max_size=options["max_size"],
        checkpoint_every=iterations, seed=seed, device=options["device"], workers=0, progress=False, category="person",
    )
    return train(config).final


def torch_detect(checkpoint: Path, frame_keys: list) -> list:
    """The checkpoint's person detections in each frame, as Detections."""
    from flickermine.detect._detections import Detections
    from flickermine.evaluate._on_coco import detect_coco_images
    from flickermine.detect._torchvision import load_detector, resolve_device

    device = resolve_device(STATE["torch"]["device"])
    model, _ = load_detector(checkpoint, device)
    coco = frames_coco([(key, np.zeros((0, 4)), np.zeros((0, 4))) for key in frame_keys])
    results = detect_coco_images(model, coco, STATE["workdir"], {1: 1}, device)
    found: dict[int, list] = {image["id"]: [] for image in coco["images"]}
    for result in results:
        found[result["image_id"]].append(result)
    detections = []
    for image in coco["images"]:
        rows = found[image["id"]]
        boxes = np.array([[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]] for r in rows]).reshape(-1, 4)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        detections.append(Detections(boxes[keep], np.array([r["score"] for r in rows]).reshape(-1)[keep]))
    return detections


def torch_baseline(seed: int) -> Baseline:
    """Faster R-CNN trained on the train frames (from --weights, or from scratch), run over the pool."""
    checkpoint = torch_train(role_coco("train"), STATE["workdir"] / f"seed{seed}" / "baseline", seed, STATE["torch"]["iterations"], STATE["torch"]["weights"])
    pool_keys = [key for frame_range in STATE["ranges"]["pool"] for key in keys(frame_range)]
    return Baseline(seed, None, checkpoint, None, dict(zip(pool_keys, torch_detect(checkpoint, pool_keys))))


def torch_detections(baseline: Baseline, extra: Extra, role: str) -> list:
    """Fine-tune the baseline for the same number of iterations on the train frames plus the
    pool frames the arm adds (labels: the pool's detections at ``extra.threshold`` less the
    negatives, plus the positives); its detections on ``role``."""
    from flickermine._boxes import iou_matrix

    added: dict = {}
    for key, boxes in extra.negatives:
        added.setdefault(key, [np.zeros((0, 4)), np.zeros((0, 4))])[0] = np.asarray(boxes, dtype=float)
    for key, boxes in extra.positives:
        added.setdefault(key, [np.zeros((0, 4)), np.zeros((0, 4))])[1] = np.asarray(boxes, dtype=float)
    frames = []
    for key, (negatives, positives) in added.items():
        found = baseline.pool[key]
        labels = found.boxes[found.scores >= extra.threshold]
        if len(negatives) and len(labels):
            labels = labels[iou_matrix(labels, negatives).max(axis=1) < 0.95]  # the negative itself (clipped by the miner)
        frames.append((key, np.concatenate([labels, positives]), np.zeros((0, 4))))
    train = role_coco("train")
    pool_part = frames_coco(frames)
    offset = len(train["images"])
    for image in pool_part["images"]:
        image["id"] += offset
    for annotation in pool_part["annotations"]:
        annotation["image_id"] += offset
        annotation["id"] += len(train["annotations"])
    merged = {**train, "images": train["images"] + pool_part["images"], "annotations": train["annotations"] + pool_part["annotations"]}
    # Arms that add the same labelled frames (two grid points can) share one fine-tune.
    name = hashlib.sha1(json.dumps(merged, sort_keys=True).encode()).hexdigest()[:16]
    out = STATE["workdir"] / f"seed{baseline.seed}" / name
    checkpoint = out / "final.pt"
    if not checkpoint.exists():
        checkpoint = torch_train(merged, out, baseline.seed, STATE["torch"]["finetune_iterations"], baseline.model)
    return torch_detect(checkpoint, [key for frame_range in STATE["ranges"][role] for key in keys(frame_range)])


def keys(frame_range: FrameRange) -> list[tuple[str, int]]:
    return [(frame_range.sequence, index) for index in frame_range.frames()]


def mine_task(job: tuple) -> list:
    """Mine the pool of one baseline with one rule: per pool frame ``(key, verdicts)``."""
    from flickermine import Miner, MiningParams

    baseline, rule, score_threshold = job
    params = MiningParams(**{**STATE["params"], "score_threshold": score_threshold})
    decided = []
    for frame_range in STATE["ranges"]["pool"]:
        frame_keys = keys(frame_range)
        miner = Miner(params, rule=rule, backend="auto", hard_positives=True)
        verdicts = []
        for key in frame_keys:
            found = baseline.pool[key]
            verdicts += miner.push(STATE["frames"][key], found)
        verdicts += miner.finish()
        decided += [(frame_keys[v.frame_index], v) for v in verdicts]
    return decided


def hard_examples(decided: list, duplicate_iou: float) -> tuple[list, list]:
    """The hard negatives (after the duplicate step at ``duplicate_iou``) and the hard positives
    of mined verdicts: ``[(key, (N, 4) boxes)]`` each."""
    from flickermine import MiningParams, Reason
    from flickermine.mining._rules import demote_duplicates

    params = MiningParams(duplicate_iou=duplicate_iou)
    negatives, positives = [], []
    for key, verdicts in decided:
        reasons = demote_duplicates(verdicts.boxes, verdicts.reasons, params)
        if (reasons == Reason.ISOLATED).any():
            negatives.append((key, verdicts.boxes[reasons == Reason.ISOLATED]))
        if len(verdicts.hard_positives):
            positives.append((key, verdicts.hard_positives))
    return negatives, positives


def judge(key: tuple[str, int], boxes: np.ndarray) -> np.ndarray:
    """Ground truth status of boxes (audit's codes: TRUE, FALSE, IGNORED)."""
    status, _ = STATE["gt"][key[0]].judge(key[1], boxes, MATCH_IOU)
    return status


def descriptors(model, items: list, flip: bool = False) -> np.ndarray:
    from flickermine.train._hog_svm import descriptors_for_boxes

    parts = [descriptors_for_boxes(STATE["frames"][key], boxes, model.params, flip) for key, boxes in items if len(boxes)]
    return np.concatenate(parts) if parts else np.zeros((0, model.params.descriptor_size), np.float32)


@dataclasses.dataclass
class Extra:
    """What an arm adds to the baseline's training: pool boxes to learn as negatives and as
    positives, ``[(key, (N, 4) boxes)]``. A detector trained on whole frames (Faster R-CNN) gets
    the frames holding them, labelled with the pool's detections at ``threshold`` less the
    negatives plus the positives (the paper's recipe); the HOG-SVM gets their windows."""

    negatives: list = dataclasses.field(default_factory=list)
    positives: list = dataclasses.field(default_factory=list)
    threshold: float = 1.0

    def __bool__(self) -> bool:
        return bool(self.negatives or self.positives)


def score_task(job: tuple) -> list[dict]:
    """Retrain a baseline with each of ``extras`` and score each on the frames of ``role``: AP50,
    COCO AP, LAMR, the miss-rate curve and the false positives' kinds, one dict an extra."""
    baseline, extras, role = job
    if STATE["model"] == HOG_SVM:
        found_by_extra = hog_svm_detections(baseline, extras, role)
    else:
        found_by_extra = [torch_detections(baseline, extra, role) for extra in extras]
    from flickermine.evaluate._scoring import score_labelled

    images = labelled_images(STATE["ranges"][role])
    scores = []
    for found in found_by_extra:
        summary, curve = score_labelled(images, found, "person")
        scores.append({"ap": summary["AP50"], "coco_ap": summary["AP"], "lamr": summary["lamr"], "curve": curve,
                       **false_positive_kinds(images, found)})
    return scores


def scoring_jobs(baseline: Baseline, extras: list, role: str, parts: int) -> list[tuple]:
    """``score_task`` jobs for ``extras``: the HOG-SVM's refits share each frame's scan (one
    scan for many models costs little more than one), so they go in at most ``parts`` jobs of
    consecutive extras; each Faster R-CNN fine-tune is a job of its own."""
    if STATE["model"] != HOG_SVM:
        return [(baseline, [extra], role) for extra in extras]
    size = max(1, -(-len(extras) // parts))
    return [(baseline, extras[start:start + size], role) for start in range(0, len(extras), size)]


#: a false positive overlapping no person at this IoU is "on background"
BACKGROUND_IOU = 0.1


def false_positive_kinds(images: list, found: list) -> dict:
    """What the false positives a detector makes down to 1 false positive per image are (the
    right end of the LAMR range), as shares: ``fp_background`` (IoU < 0.1 with every person: what
    a negative from the background can teach away), ``fp_duplicate`` (a second box on a person
    that a detection at or above the cut already found) and ``fp_mislocalised`` (on a person no
    detection there found at IoU 0.5)."""
    from flickermine._boxes import iou_matrix
    from flickermine.evaluate._miss_rate import FALSE_POSITIVE, TRUE_POSITIVE, match_detections_to_objects

    false_positives = []  # (score, best IoU with a person, that person's true-positive score)
    for image, detections in zip(images, found):
        outcomes, matched = match_detections_to_objects(detections.boxes, detections.scores, image.boxes, image.ignore, MATCH_IOU)
        overlaps = iou_matrix(np.asarray(detections.boxes, np.float64).reshape(-1, 4), np.asarray(image.boxes, np.float64).reshape(-1, 4))
        found_by = np.full(overlaps.shape[1], -np.inf)  # each person's score of the detection matching it
        for index in np.flatnonzero(outcomes == TRUE_POSITIVE):
            found_by[matched[index]] = detections.scores[index]
        for index in np.flatnonzero(outcomes == FALSE_POSITIVE):
            person = int(np.argmax(overlaps[index])) if overlaps.shape[1] else -1
            best = overlaps[index, person] if person >= 0 else 0.0
            false_positives.append((detections.scores[index], best, found_by[person] if person >= 0 else -np.inf))
    false_positives.sort(key=lambda row: -row[0])
    kept = false_positives[: len(images)]
    if not kept:
        return {"fp_background": None, "fp_duplicate": None, "fp_mislocalised": None}
    cut = kept[-1][0]
    background = sum(best < BACKGROUND_IOU for _, best, _ in kept)
    duplicate = sum(best >= BACKGROUND_IOU and by >= cut for _, best, by in kept)
    return {"fp_background": float(background / len(kept)), "fp_duplicate": float(duplicate / len(kept)),
            "fp_mislocalised": float((len(kept) - background - duplicate) / len(kept))}


def hog_svm_detections(baseline: Baseline, extras: list, role: str) -> list[list]:
    """Refit the baseline's SVM on its examples plus each extra's windows; each refit's
    detections on ``role``, every frame scanned once for all of them."""
    from flickermine.detect._hog_svm import HogSvmDetector, detect_gray_shared
    from flickermine.train._hog_svm import fit_model

    settings, model = baseline.settings, baseline.model
    detectors = []
    for extra in extras:
        examples = baseline.examples
        if extra.negatives:
            examples = examples.with_examples("negative", descriptors(model, extra.negatives), "extra negatives")
        if extra.positives:
            described = descriptors(model, extra.positives)
            if settings.flip:
                described = np.concatenate([described, descriptors(model, extra.positives, flip=True)])
            examples = examples.with_examples("positive", described, "extra positives")
        refit = fit_model(examples, settings, (model.min_object_height, model.max_object_height), model.category, {}) if extra else model
        detectors.append(HogSvmDetector(refit.replace(calibration=model.calibration), min_score=EVAL_MIN_SCORE, scale_step=settings.scale_step))
    per_frame = [detect_gray_shared(detectors, image.load()) for image in labelled_images(STATE["ranges"][role])]
    return [list(found) for found in zip(*per_frame)] if per_frame else [[] for _ in detectors]


def count(items: list) -> int:
    return sum(len(boxes) for _, boxes in items)


def flatten(items: list) -> list[tuple[tuple[str, int], np.ndarray]]:
    return [(key, box) for key, boxes in items for box in boxes]


def regroup(pairs: list) -> list:
    grouped: dict = {}
    for key, box in pairs:
        grouped.setdefault(key, []).append(box)
    return [(key, np.asarray(boxes)) for key, boxes in grouped.items()]


def extra_fingerprint(extra: Extra) -> str:
    """One string per distinct :class:`Extra` (its boxes, by frame, and its threshold)."""
    digest = hashlib.sha1(repr(extra.threshold).encode())
    for role, items in (("negatives", extra.negatives), ("positives", extra.positives)):
        digest.update(role.encode())
        for key, boxes in items:
            digest.update(repr(key).encode())
            digest.update(np.ascontiguousarray(boxes, dtype=np.float64).tobytes())
    return digest.hexdigest()


def choose_parameters(workers, baseline: Baseline, mined: dict) -> tuple[dict, list[dict], dict]:
    """Each rule's score threshold and duplicate IoU, by AP50 - LAMR on the val frames of the
    first seed's baseline retrained on that setting's hard negatives."""
    grid = [(rule, threshold, duplicate) for rule in RULES for threshold in SCORE_THRESHOLDS for duplicate in DUPLICATE_IOUS]
    negatives = [hard_examples(mined[(rule, threshold)], duplicate)[0] for rule, threshold, duplicate in grid]
    # Settings that add the same examples (often: the duplicate step demotes nothing) are scored once.
    extras = [Extra(negatives=items, threshold=threshold) for items, (_, threshold, _) in zip(negatives, grid)]
    distinct = {extra_fingerprint(extra): extra for extra in extras}
    jobs = scoring_jobs(baseline, [Extra(), *distinct.values()], "val", STATE["workers"])
    scored_by = dict(zip([None, *distinct], [scored for part in workers.map(score_task, jobs, chunksize=1) for scored in part]))
    base = scored_by[None]
    scores = [base] + [scored_by[extra_fingerprint(extra)] for extra in extras]
    rows = [
        {"rule": rule, "score_threshold": threshold, "duplicate_iou": duplicate, "hard_negatives": count(items),
         "val_ap": scored["ap"], "val_lamr": scored["lamr"], "val_score": scored["ap"] - scored["lamr"]}
        for (rule, threshold, duplicate), items, scored in zip(grid, negatives, scores[1:])
    ]
    chosen = {}
    for rule in RULES:
        best = max((row for row in rows if row["rule"] == rule), key=lambda row: (row["val_score"], -row["score_threshold"]))
        chosen[rule] = {"score_threshold": best["score_threshold"], "duplicate_iou": best["duplicate_iou"], "val_score": best["val_score"]}
    return chosen, rows, {"val_ap": base["ap"], "val_lamr": base["lamr"], "val_score": base["ap"] - base["lamr"]}


def arm_jobs(baseline: Baseline, mined: dict, chosen: dict, best_rule: str, recipe_arm: bool = False) -> dict[str, tuple]:
    """Every arm's extra examples for one seed (the random arms drawn with the seed)."""
    rng = np.random.default_rng(baseline.seed)
    threshold = chosen[best_rule]["score_threshold"]
    jobs: dict[str, tuple] = {"baseline": (0, Extra(threshold=threshold), None)}
    for rule in RULES:
        negatives, _ = hard_examples(mined[rule], chosen[rule]["duplicate_iou"])
        statuses = np.concatenate([judge(key, boxes) for key, boxes in negatives]) if negatives else np.zeros(0)
        false_share = float(np.mean(statuses == FALSE)) if len(statuses) else None
        jobs[f"flicker_{rule}"] = (count(negatives), Extra(negatives=negatives, threshold=chosen[rule]["score_threshold"]), false_share)
    # the pool's candidates at the best rule's score threshold, and which of them are false
    candidates = [(key, found.boxes[found.scores >= threshold]) for key, found in baseline.pool.items()]
    pairs = flatten(candidates)
    statuses = np.concatenate([judge(key, boxes) for key, boxes in candidates])
    false_pairs = [pair for pair, status in zip(pairs, statuses) if status == FALSE]
    wanted = jobs[f"flicker_{best_rule}"][0]
    random_pick = [pairs[i] for i in sorted(rng.choice(len(pairs), min(wanted, len(pairs)), replace=False))]
    oracle_pick = [false_pairs[i] for i in sorted(rng.choice(len(false_pairs), min(wanted, len(false_pairs)), replace=False))]
    for name, picked in (("random", random_pick), ("oracle_equal", oracle_pick), ("oracle_all", false_pairs)):
        jobs[name] = (len(picked), Extra(negatives=regroup(picked), threshold=threshold), None)
    negatives, positives = hard_examples(mined[best_rule], chosen[best_rule]["duplicate_iou"])
    jobs["hard_positives"] = (count(positives), Extra(positives=positives, threshold=threshold), None)
    if recipe_arm:
        jobs["hard_negatives_and_positives"] = (
            count(negatives) + count(positives), Extra(negatives=negatives, positives=positives, threshold=threshold), None
        )
    return jobs


# --------------------------------------------------------------------------------------------------
# report


def summarise(results: list[dict]) -> dict:
    arms = {}
    for name in results[0]["arms"]:
        per_seed = [{"seed": r["seed"], **r["arms"][name]} for r in results]

        def stats(key: str) -> tuple[float, float]:
            values = [row[key] for row in per_seed if row[key] is not None]
            return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else (None, None)

        ap, lamr, coco = stats("ap"), stats("lamr"), stats("coco_ap")
        arms[name] = {
            "count": statistics.mean(row["count"] for row in per_seed),
            "ap_mean": ap[0], "ap_sd": ap[1], "lamr_mean": lamr[0], "lamr_sd": lamr[1],
            "coco_ap_mean": coco[0], "coco_ap_sd": coco[1],
            **{f"{kind}_mean": stats(kind)[0] for kind in ("fp_background", "fp_duplicate", "fp_mislocalised")},
            "seeds": per_seed,
        }
    return arms


def criterion(arms: dict, best_rule: str) -> dict:
    """The issue's bar: the best rule beats baseline and random by more than 2 sd on AP and on
    LAMR, and recovers >= 80% of the gain of verified false positives of equal count."""
    best = arms[f"flicker_{best_rule}"]
    checks = {}
    for other in ("baseline", "random"):
        ref = arms[other]
        ap_margin = 2 * max(best["ap_sd"], ref["ap_sd"])
        lamr_margin = 2 * max(best["lamr_sd"], ref["lamr_sd"])
        paired_ap = [a["ap"] - b["ap"] for a, b in zip(best["seeds"], ref["seeds"])]
        paired_lamr = [b["lamr"] - a["lamr"] for a, b in zip(best["seeds"], ref["seeds"])]
        checks[f"vs_{other}"] = {
            "ap_gain": best["ap_mean"] - ref["ap_mean"], "ap_2sd": ap_margin,
            "lamr_drop": ref["lamr_mean"] - best["lamr_mean"], "lamr_2sd": lamr_margin,
            "holds": best["ap_mean"] - ref["ap_mean"] > ap_margin and ref["lamr_mean"] - best["lamr_mean"] > lamr_margin,
            "paired_ap_gain": {"mean": statistics.mean(paired_ap), "sd": statistics.stdev(paired_ap) if len(paired_ap) > 1 else 0.0},
            "paired_lamr_drop": {"mean": statistics.mean(paired_lamr), "sd": statistics.stdev(paired_lamr) if len(paired_lamr) > 1 else 0.0},
        }
    base, oracle = arms["baseline"], arms["oracle_equal"]
    recovery = {}
    for key, sign in (("ap_mean", 1), ("lamr_mean", -1)):
        oracle_gain = sign * (oracle[key] - base[key])
        gain = sign * (best[key] - base[key])
        recovery[key.split("_")[0]] = {"gain": gain, "oracle_gain": oracle_gain, "share": gain / oracle_gain if oracle_gain > 0 else None,
                                       # where verified false positives do not help either, there is no gain to recover
                                       "holds": gain >= 0.8 * oracle_gain if oracle_gain > 0 else False}
    checks["recovers_80pct_of_oracle_equal"] = recovery
    # Reported beside the bar (which is about the negatives): the paper's whole recipe.
    both = arms.get("hard_negatives_and_positives")
    if both is not None:
        checks["hard_negatives_and_positives_vs_baseline"] = {
            "ap_gain": both["ap_mean"] - base["ap_mean"], "ap_2sd": 2 * max(both["ap_sd"], base["ap_sd"]),
            "lamr_drop": base["lamr_mean"] - both["lamr_mean"], "lamr_2sd": 2 * max(both["lamr_sd"], base["lamr_sd"]),
        }
    checks["holds"] = all(checks[f"vs_{o}"]["holds"] for o in ("baseline", "random")) and all(r["holds"] for r in recovery.values())
    return checks


#: bar colours by arm family (the prefix before "_")
ARM_COLOURS = {"baseline": "0.5", "flicker": "tab:green", "oracle": "tab:orange", "random": "tab:blue", "hard": "tab:purple"}


def plot(arms: dict, curves: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(arms)
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for axis, key, label in ((axes[0], "ap", "AP50 (higher is better)"), (axes[1], "lamr", "log-average miss rate (lower is better)")):
        means = [arms[n][f"{key}_mean"] for n in names]
        sds = [arms[n][f"{key}_sd"] for n in names]
        colors = [ARM_COLOURS.get(n.split("_")[0], "tab:blue") for n in names]
        axis.bar(range(len(names)), means, yerr=sds, color=colors, capsize=3)
        axis.set_xticks(range(len(names)), [f"{n}\n({arms[n]['count']:.0f})" for n in names], fontsize=7, rotation=30)
        axis.set_title(label, fontsize=9)
        low = min(m - s for m, s in zip(means, sds))
        high = max(m + s for m, s in zip(means, sds))
        pad = max(0.3 * (high - low), 0.01)  # equal bars still get an axis
        axis.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
        axis.axhline(arms["baseline"][f"{key}_mean"], color="0.5", linewidth=0.8, linestyle="--")
    for name in ("baseline", *[n for n in names if n.startswith("flicker")], "random", "oracle_equal"):
        curve = curves[name]
        axes[2].plot(np.maximum(curve.fppi, 1e-4), curve.miss_rate, label=f"{name} ({100 * curve.log_average_miss_rate():.1f}%)", linewidth=1.2)
    axes[2].set(xscale="log", yscale="log", xlim=(1e-2, 10), ylim=(0.1, 1), xlabel="false positives per image", ylabel="miss rate")
    axes[2].set_title("first seed: miss rate vs FPPI", fontsize=9)
    axes[2].legend(fontsize=7)
    axes[2].grid(True, which="both", linewidth=0.3)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("sequences", nargs="*", metavar="NAME=VIDEO,GT", help="a video (or image folder) and its MOT ground truth (default: pets09-s2l1)")
    for role, default in DEFAULT_RANGES.items():
        parser.add_argument(f"--{role}", default=None, metavar="RANGES", help=f"{role} frames (default with no sequences given: {default})")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per arm (default: 5)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: 2 for hog-svm, 1 for Faster R-CNN)")
    parser.add_argument("--model", choices=(HOG_SVM, *TORCH_MODELS), default=HOG_SVM, help="detector trained in the loop (default: hog-svm)")
    parser.add_argument("--window", default="48x96", help="hog-svm: window WxH (default: 48x96)")
    parser.add_argument("--scale-step", type=float, default=1.1, help="hog-svm: detection pyramid step (default: 1.1)")
    parser.add_argument("--bootstrap-rounds", type=int, default=1,
                        help="hog-svm: rounds of classic bootstrapping on the train frames for the baseline (default: 1; 0: a "
                             "detector that has never been trained on its own false positives of this camera)")
    torch_options = parser.add_argument_group("Faster R-CNN models")
    torch_options.add_argument("--weights", help="local torchvision or flickermine checkpoint to start from (default: train from scratch)")
    torch_options.add_argument("--iterations", type=int, default=2000, help="baseline training iterations (default: 2000)")
    torch_options.add_argument("--finetune-iterations", type=int, default=500, help="each arm's fine-tuning iterations, the baseline arm's too (default: 500)")
    torch_options.add_argument("--lr", type=float, default=0.005, help="learning rate (default: 0.005)")
    torch_options.add_argument("--min-size", type=int, default=576, help="shorter image side (default: 576)")
    torch_options.add_argument("--max-size", type=int, default=1024, help="longer image side cap (default: 1024)")
    torch_options.add_argument("--device", default=None, help="cpu, cuda... (default: cuda if available)")
    parser.add_argument("--json", help="results (default: bench/results/retrain.json; retrain_MODEL.json for Faster R-CNN)")
    parser.add_argument("--plot", help="the plot (default: the JSON's path with .png)")
    parser.add_argument("--recipe-arm", action="store_true",
                        help="add the arm hard_negatives_and_positives: the best rule's hard negatives and hard positives together, "
                             "the paper's recipe (one refit more a seed, scored on the seed's shared scan)")
    args = parser.parse_args(argv)

    from flickermine.evaluate._audit import read_ground_truth
    from flickermine.errors import InputError
    from flickermine.train._hog_svm import HogSvmSettings

    started = time.perf_counter()
    specs = args.sequences or DEFAULT_SEQUENCES
    if not args.sequences and not PETS.is_dir():
        raise SystemExit(f"no sequences given and the default data ({PETS}) is absent")
    sequences = {}
    for spec in specs:
        name, _, paths = spec.partition("=")
        video, _, gt = paths.partition(",")
        if not (name and video and gt):
            raise SystemExit(f"{spec!r}: expected NAME=VIDEO,GT.txt")
        sequences[name] = (video, gt)
    ranges = {}
    for role, default in DEFAULT_RANGES.items():
        text = getattr(args, role) or (default if not args.sequences else None)
        if text is None:
            raise SystemExit(f"--{role} is required when sequences are given")
        ranges[role] = parse_ranges(text, f"--{role}", sequences)
    if any(r.step != 1 for r in ranges["pool"]):
        raise SystemExit("--pool ranges are mined as video: no /STEP")
    width, _, height = args.window.partition("x")
    try:
        settings = HogSvmSettings(window=(int(width), int(height)), scale_step=args.scale_step, bootstrap_rounds=args.bootstrap_rounds)
    except (ValueError, InputError) as error:
        parser.error(f"--window {args.window} / --bootstrap-rounds {args.bootstrap_rounds}: {error}")
    wanted: dict[str, set[int]] = {}
    for role_ranges in ranges.values():
        for frame_range in role_ranges:
            wanted.setdefault(frame_range.sequence, set()).update(frame_range.frames())

    workers_count = args.workers or (min(2, os.cpu_count() or 1) if args.model == HOG_SVM else 1)
    scratch = tempfile.TemporaryDirectory(prefix="bench_retrain_") if args.model != HOG_SVM else None
    if scratch is not None:
        STATE.update(
            model=args.model, workdir=Path(scratch.name),
            torch={"weights": args.weights, "iterations": args.iterations, "finetune_iterations": args.finetune_iterations,
                   "lr": args.lr, "min_size": args.min_size, "max_size": args.max_size, "device": args.device},
        )
    else:
        STATE.update(model=HOG_SVM)
    STATE.update(
        frames=load_frames(sequences, wanted, STATE.get("workdir")),
        gt={name: read_ground_truth(gt) for name, (_, gt) in sequences.items()},
        ranges=ranges,
        settings=settings,
        params={"sure_score": 1.01, "min_area": 0.0, "border": 0},
        seeds=list(range(args.seeds)),
        workers=workers_count,
    )
    print(f"decoded {len(STATE['frames'])} frames in {time.perf_counter() - started:.0f} s", flush=True)

    # spawn, not fork: OpenCV's thread pool in this process would deadlock a forked child
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers_count, initializer=_start_worker, initargs=(STATE,)) as workers:
        # Tasks are queued as soon as what they need is known, so that no core waits at the end
        # of a stage while another finishes its last task (the pool runs them in order).
        pending_baselines = [workers.apply_async(baseline_task, (seed,)) for seed in STATE["seeds"]]
        first = pending_baselines[0].get()
        grid_jobs = [(first, rule, threshold) for rule in RULES for threshold in SCORE_THRESHOLDS]
        pending_grid = [workers.apply_async(mine_task, (job,)) for job in grid_jobs]
        mined_first = {(rule, threshold): pending.get() for (_, rule, threshold), pending in zip(grid_jobs, pending_grid)}
        chosen, grid, val_baseline = choose_parameters(workers, first, mined_first)
        baselines = [first] + [pending.get() for pending in pending_baselines[1:]]
        best_rule = max(RULES, key=lambda rule: chosen[rule]["val_score"])
        print_table(
            ["rule", "score thr.", "duplicate IoU", "hard neg.", "val AP50", "val LAMR"],
            [[r["rule"], r["score_threshold"], r["duplicate_iou"], r["hard_negatives"], f"{r['val_ap']:.3f}", f"{r['val_lamr']:.3f}"] for r in grid],
        )
        print(f"{len(baselines)} baselines trained and run over the pool; val baseline AP50 {val_baseline['val_ap']:.3f} LAMR {val_baseline['val_lamr']:.3f}; best rule: {best_rule}; "
              f"chosen on val ({time.perf_counter() - started:.0f} s): {json.dumps(chosen)}\n", flush=True)
        pending_mined = {
            (baseline.seed, rule): workers.apply_async(mine_task, ((baseline, rule, chosen[rule]["score_threshold"]),))
            for baseline in baselines[1:] for rule in RULES
        }
        jobs, order, pending_scores = {}, [], []
        for baseline in baselines:  # a seed's arms are queued once its mining is done
            mined = {
                rule: mined_first[(rule, chosen[rule]["score_threshold"])] if baseline is first else pending_mined[(baseline.seed, rule)].get()
                for rule in RULES
            }
            jobs[baseline.seed] = arm_jobs(baseline, mined, chosen, best_rule, args.recipe_arm)
            order += [(baseline, name) for name in jobs[baseline.seed]]
            extras = [extra for _, extra, _ in jobs[baseline.seed].values()]
            pending_scores += [workers.apply_async(score_task, (job,)) for job in scoring_jobs(baseline, extras, "test", 1)]
        scores = [scored for pending in pending_scores for scored in pending.get()]
    results = []
    for baseline in baselines:
        arms = {}
        for (owner, name), scored in zip(order, scores):
            if owner is baseline:
                found, _, false_share = jobs[baseline.seed][name]
                arms[name] = {"count": found, **({"false_share": false_share} if name.startswith("flicker") else {}), **scored}
        curves = {name: arm.pop("curve") for name, arm in arms.items()}
        results.append({"seed": baseline.seed, "arms": arms, "curves": curves if baseline is first else None})
    arms = summarise(results)
    checks = criterion(arms, best_rule)
    rows = []
    for name, arm in arms.items():
        share = [row.get("false_share") for row in arm["seeds"] if row.get("false_share") is not None]
        rows.append([
            name, f"{arm['count']:.0f}", f"{arm['ap_mean']:.3f} ± {arm['ap_sd']:.3f}", f"{arm['lamr_mean']:.3f} ± {arm['lamr_sd']:.3f}",
            f"{arm['coco_ap_mean']:.3f} ± {arm['coco_ap_sd']:.3f}", f"{100 * statistics.mean(share):.0f}%" if share else "",
            "/".join(f"{100 * arm[f'{kind}_mean']:.0f}" if arm[f"{kind}_mean"] is not None else "-"
                     for kind in ("fp_background", "fp_duplicate", "fp_mislocalised")),
        ])
    print_table(["arm", "count", "AP50", "LAMR", "COCO AP", "false share", "test FPs to FPPI 1: bg/dup/misloc %"], rows)
    print(f"\nbest rule (chosen on val): {best_rule}; criterion holds: {checks['holds']}")
    print(json.dumps(checks, indent=1))
    seconds = time.perf_counter() - started
    setting = {
        "sequences": {name: {"video": video, "gt": gt} for name, (video, gt) in sequences.items()},
        "ranges": {role: [str(r) for r in role_ranges] for role, role_ranges in ranges.items()},
        "model": STATE["model"],
        **({"hog_svm": STATE["settings"].as_dict()} if STATE["model"] == HOG_SVM else {"faster_rcnn": STATE["torch"]}),
        "mining": {**STATE["params"], "chosen_on_val": chosen, "grid": grid, "val_baseline": val_baseline, "best_rule": best_rule},
        "pool_min_score": POOL_MIN_SCORE, "eval_min_score": EVAL_MIN_SCORE, "match_iou": MATCH_IOU,
        "ap": "AP50: pycocotools AP at IoU 0.5 on the test frames (coco_ap: IoU 0.5:0.95)",
        "lamr": "log-average miss rate over FPPI 1e-2..1e0 (9 points), IoU 0.5, flag-0 boxes ignored",
        "seeds": STATE["seeds"], "workers": workers_count, "command": " ".join(["python", "bench/bench_retrain.py", *sys.argv[1:]]),
    }
    json_path = args.json or str(RESULTS / ("retrain.json" if STATE["model"] == HOG_SVM else f"retrain_{STATE['model']}.json"))
    write_json("retrain", {"setting": setting, "arms": arms, "criterion": checks, "seconds": round(seconds, 1)}, json_path)
    curves = next(r["curves"] for r in results if r["curves"] is not None)
    plot_path = Path(args.plot or Path(json_path).with_suffix(".png"))
    trained = f"{STATE['model']} ({args.bootstrap_rounds} bootstrap round{'s' * (args.bootstrap_rounds != 1)})" if STATE["model"] == HOG_SVM else STATE["model"]
    ranges_text = ", ".join(f"{k} {v[0]}" for k, v in setting["ranges"].items())
    plot(arms, curves, plot_path, f"retraining {trained} on what each arm adds; {len(STATE['seeds'])} seeds, mean ± sd ({ranges_text})")
    print(f"wrote {plot_path}; {seconds:.0f} s in all")
    return 0


def _start_worker(state: dict) -> None:
    import cv2

    STATE.update(state)
    if STATE["model"] == HOG_SVM:
        cv2.setNumThreads(1)  # one process per core: OpenCV's own threads would only contend


if __name__ == "__main__":
    sys.exit(main())
