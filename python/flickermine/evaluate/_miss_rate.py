"""Matching detections to ground truth, and the miss rate against false positives per image.

The pedestrian-detection protocol of Dollár et al. (Caltech, PAMI 2012), which the paper reports
(log-average miss rate 23.8% → 18.7%): in each image, detections are taken by score, highest
first; each is matched to the unmatched object box it overlaps most at IoU ≥ 0.5 (a true
positive), else to an *ignore region* that holds at least half of it (neither true nor false:
COCO's crowd boxes, MOT's flag-0 boxes), else it is a false positive. Lowering the score
threshold traces a curve of miss rate (1 − recall) against false positives per image (FPPI); the
log-average miss rate is the geometric mean of the miss rate at nine FPPI values evenly spaced
in log space from 10⁻² to 10⁰ (at each, the miss rate of the lowest threshold whose FPPI does
not exceed it; 1 where every threshold exceeds it). Boxes are ``x1, y1, x2, y2`` pixels.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np

from .._boxes import intersection_over_area, iou_matrix
from ..io._ground_truth import xywh_to_xyxy

TRUE_POSITIVE, FALSE_POSITIVE, IGNORED = 1, 0, -1
#: FPPI range of the log-average miss rate (Dollár et al.)
LAMR_FPPI_RANGE = (1e-2, 1.0)
LAMR_POINTS = 9


def match_detections(boxes: np.ndarray, scores: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None, iou_threshold: float = 0.5) -> np.ndarray:
    """Outcome of each detection of one image: ``(N,)`` int8 :data:`TRUE_POSITIVE`,
    :data:`FALSE_POSITIVE` or :data:`IGNORED`.

    ``boxes`` ``(N, 4)`` and ``scores`` ``(N,)``: the detections; ``truth`` ``(M, 4)``: object
    boxes, each matched at most once; ``ignore`` ``(K, 4)``: regions a detection may fall in
    without counting (any number of them). Detections are taken by score, highest first (ties in
    the given order).
    """
    return match_detections_to_objects(boxes, scores, truth, ignore, iou_threshold)[0]


def match_detections_to_objects(
    boxes: np.ndarray,
    scores: np.ndarray,
    truth: np.ndarray,
    ignore: np.ndarray | None = None,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`match_detections`'s outcomes, and ``(N,)`` int64 the index in ``truth`` of the
    object each true positive matched (-1 for the other detections)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
    ignore = np.zeros((0, 4)) if ignore is None else np.asarray(ignore, dtype=np.float64).reshape(-1, 4)
    outcomes = np.full(len(boxes), FALSE_POSITIVE, dtype=np.int8)
    matched = np.full(len(boxes), -1, dtype=np.int64)
    overlaps = iou_matrix(boxes, truth)
    inside_ignore = intersection_over_area(boxes, ignore).max(axis=1, initial=0.0) >= iou_threshold
    free = np.ones(len(truth), dtype=bool)
    for index in np.argsort(-scores, kind="stable"):
        candidates = np.where(free, overlaps[index], -1.0)
        best = int(np.argmax(candidates)) if len(truth) else -1
        if best >= 0 and candidates[best] >= iou_threshold:
            outcomes[index] = TRUE_POSITIVE
            matched[index] = best
            free[best] = False
        elif inside_ignore[index]:
            outcomes[index] = IGNORED
    return outcomes, matched


@dataclasses.dataclass(frozen=True)
class DetectionCurve:
    """Counts of a detector on a set of images at every score threshold.

    ``scores`` ``(T,)``: the thresholds, descending (the scores of the counted detections);
    ``true_positives``, ``false_positives`` ``(T,)``: cumulative counts at or above each;
    ``objects``: object boxes in all (ignore regions excluded); ``images``: images evaluated.
    """

    scores: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    objects: int
    images: int

    @classmethod
    def from_outcomes(cls, per_image: Iterable[tuple[np.ndarray, np.ndarray]], objects: int, images: int) -> "DetectionCurve":
        """Pool ``(scores, outcomes)`` of every image (from :func:`match_detections`)."""
        scores_parts, outcome_parts = [], []
        for scores, outcomes in per_image:
            counted = np.asarray(outcomes) != IGNORED
            scores_parts.append(np.asarray(scores, dtype=np.float64)[counted])
            outcome_parts.append(np.asarray(outcomes)[counted])
        scores = np.concatenate(scores_parts) if scores_parts else np.zeros(0)
        outcomes = np.concatenate(outcome_parts) if outcome_parts else np.zeros(0, np.int8)
        order = np.argsort(-scores, kind="stable")
        hits = outcomes[order] == TRUE_POSITIVE
        return cls(scores[order], np.cumsum(hits), np.cumsum(~hits), int(objects), int(images))

    @property
    def recall(self) -> np.ndarray:
        return self.true_positives / max(self.objects, 1)

    @property
    def precision(self) -> np.ndarray:
        return self.true_positives / np.maximum(self.true_positives + self.false_positives, 1)

    @property
    def miss_rate(self) -> np.ndarray:
        return 1.0 - self.recall

    @property
    def fppi(self) -> np.ndarray:
        return self.false_positives / max(self.images, 1)

    def miss_rate_at(self, fppi_points: Sequence[float] | np.ndarray) -> np.ndarray:
        """Miss rate at each FPPI value: that of the lowest threshold whose FPPI does not exceed
        it (1.0 where none does: no detection counted)."""
        fppi = self.fppi
        result = np.ones(len(fppi_points))
        for i, point in enumerate(fppi_points):
            within = np.flatnonzero(fppi <= point)
            if within.size:
                result[i] = self.miss_rate[within[-1]]
        return result

    def log_average_miss_rate(self) -> float:
        """Geometric mean of :meth:`miss_rate_at` nine FPPI values from 10⁻² to 10⁰, in 0..1
        (NaN when there is no object to find)."""
        if self.objects == 0:
            return float("nan")
        points = np.logspace(np.log10(LAMR_FPPI_RANGE[0]), np.log10(LAMR_FPPI_RANGE[1]), LAMR_POINTS)
        return float(np.exp(np.mean(np.log(np.maximum(self.miss_rate_at(points), 1e-10)))))


def coco_curve(ground_truth: dict, results: Sequence[dict], category_id: int, iou_threshold: float = 0.5) -> DetectionCurve:
    """The :class:`DetectionCurve` of COCO ``results`` (``image_id``, ``category_id``, ``bbox``
    ``[x, y, w, h]``, ``score``) for one category of a COCO ground-truth dict: its annotations
    with ``iscrowd`` are ignore regions. Every image of the file counts, with detections or not."""
    truth: dict = {image["id"]: ([], []) for image in ground_truth["images"]}
    for annotation in ground_truth["annotations"]:
        if annotation["category_id"] == category_id and annotation["image_id"] in truth:
            truth[annotation["image_id"]][1 if annotation.get("iscrowd", 0) else 0].append(annotation["bbox"])
    found: dict = {image_id: ([], []) for image_id in truth}
    for result in results:
        if result["category_id"] == category_id:
            found[result["image_id"]][0].append(result["bbox"])
            found[result["image_id"]][1].append(result["score"])

    per_image = []
    for image_id, (objects, ignore) in truth.items():
        boxes, scores = found[image_id]
        outcomes = match_detections(xywh_to_xyxy(boxes), np.asarray(scores), xywh_to_xyxy(objects), xywh_to_xyxy(ignore), iou_threshold)
        per_image.append((np.asarray(scores, dtype=np.float64), outcomes))
    objects = sum(len(objects) for objects, _ in truth.values())
    return DetectionCurve.from_outcomes(per_image, objects, len(truth))
