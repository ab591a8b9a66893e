"""The OpenCV backend: ``cv2.matchTemplate`` (TM_CCOEFF_NORMED), as the authors' miner used it."""

from __future__ import annotations


import cv2
import numpy as np

from .. import _rules as rules
from ..._boxes import iou_matrix
from .numpy_backend import FLAT_VARIANCE

NAME = "opencv"


def ncc_search_one(template: np.ndarray, region: np.ndarray) -> tuple[float, int, int]:
    # OpenCV scores a flat template 1 (e.g. any 1x1 template); the definition says 0 everywhere.
    if template.size * FLAT_VARIANCE >= float(np.var(template, dtype=np.float64)) * template.size:
        return 0.0, 0, 0
    if region.dtype == np.float32:
        # OpenCV's float path sums raw values, so a large common offset (e.g. 300 + a faint
        # texture) cancels catastrophically and scores 0. NCC ignores a constant added to template
        # and window alike: taking the region's mean off both first keeps the sums small.
        offset = np.float32(region.mean(dtype=np.float64))
        region, template = region - offset, template - offset
    score_map = cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED)
    # OpenCV already scores flat windows 0; the clip only guards rounding past +-1.
    _, best, _, (x, y) = cv2.minMaxLoc(np.clip(score_map, -1.0, 1.0))
    return float(best), int(x), int(y)


ncc_search_batch = rules.search_each(ncc_search_one)


def iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    return iou_matrix(boxes_a, boxes_b)


frame_verdicts, frame_hard_positives = rules.rule_kernels(ncc_search_batch)
