"""Scoring detectors against ground truth: matching, COCO AP, miss rate against false positives
per image, and their curves (:mod:`.coco_ap`, :mod:`.miss_rate`, :mod:`.scoring`, :mod:`.curves`,
run on a COCO file by :mod:`.on_coco`); and mined examples against MOT ground truth (:mod:`.audit`)."""

from __future__ import annotations

from .audit import audit_video, mine_candidates, read_dataset, sweep
from .coco_ap import average_precision
from .miss_rate import DetectionCurve, coco_curve, match_detections
from .on_coco import evaluate

__all__ = [
    "DetectionCurve",
    "audit_video",
    "average_precision",
    "coco_curve",
    "evaluate",
    "match_detections",
    "mine_candidates",
    "read_dataset",
    "sweep",
]
