"""Scoring detectors against ground truth: matching, COCO AP, miss rate against false positives
per image, and their curves (:mod:`._coco_ap`, :mod:`._miss_rate`, :mod:`._scoring`, :mod:`._curves`,
run on a COCO file by :mod:`._on_coco`); and mined examples against MOT ground truth (:mod:`._audit`)."""

from __future__ import annotations

from ._audit import audit_video, mine_candidates, read_dataset, sweep
from ._coco_ap import average_precision
from ._miss_rate import DetectionCurve, coco_curve, match_detections, match_detections_to_objects
from ._on_coco import evaluate

__all__ = [
    "DetectionCurve",
    "audit_video",
    "average_precision",
    "coco_curve",
    "evaluate",
    "match_detections",
    "match_detections_to_objects",
    "mine_candidates",
    "read_dataset",
    "sweep",
]
