"""One scoring of detections against ground truth, whatever the detector: COCO AP, AP50 and
AP75 (pycocotools) and the log-average miss rate (:mod:`._miss_rate`), with the curves to plot.

Detections come as COCO results (``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]`` px,
``score``) against a COCO ground-truth dict, or as one :class:`~flickermine.detect.Detections`
per :class:`~flickermine.io.LabelledImage`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..detect._detections import Detections
from ..errors import InputError
from ..io import _coco as coco_files
from ..io._ground_truth import LabelledImage
from ._coco_ap import average_precision
from ._miss_rate import DetectionCurve, coco_curve


def score_results(
    ground_truth: dict, results: Sequence[dict], categories: Sequence[str] | None = None, source: str | None = None
) -> tuple[dict, dict[str, DetectionCurve]]:
    """COCO AP, AP50, AP75 (see :func:`~flickermine.evaluate.average_precision`) plus
    ``"lamr"``, the log-average miss rate, overall (mean over categories with objects) and per
    category; and each category's :class:`DetectionCurve`."""
    summary = average_precision(ground_truth, results, categories=categories, source=source)
    curves = {}
    for name in summary["categories"]:
        category_id = coco_files.category_by_name(ground_truth, name, source or "<ground truth dict>")["id"]
        curves[name] = coco_curve(ground_truth, results, category_id)
        lamr = curves[name].log_average_miss_rate()
        summary["per_category"][name]["lamr"] = None if np.isnan(lamr) else lamr
    defined = [scores["lamr"] for scores in summary["per_category"].values() if scores["lamr"] is not None]
    summary["lamr"] = float(np.mean(defined)) if defined else None
    return summary, curves


def _labelled_as_coco(images: Sequence[LabelledImage], category: str = "object") -> dict:
    """A COCO ground-truth dict of ``images`` (ids from 1 in order; ignore regions as crowd boxes)."""
    coco: dict = {"images": [], "annotations": [], "categories": [{"id": 1, "name": category}]}
    for image_id, image in enumerate(images, start=1):
        # The size is unknown without decoding the image and pycocotools' evaluation never reads
        # it; the COCO reader only asks for a positive one.
        coco["images"].append({"id": image_id, "file_name": image.name, "width": 1, "height": 1})
        for crowd, boxes in ((0, image.boxes), (1, image.ignore)):
            for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4).tolist():
                coco["annotations"].append(
                    {
                        "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": crowd,
                    }
                )
    return coco


def _detections_as_results(detections: Sequence[Detections], image_ids: Sequence[int], category_id: int = 1) -> list[dict]:
    """COCO results of one :class:`Detections` per image (every box as ``category_id``)."""
    results = []
    for image_id, found in zip(image_ids, detections):
        for (x1, y1, x2, y2), score in zip(found.boxes.tolist(), found.scores.tolist()):
            results.append({"image_id": image_id, "category_id": category_id, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return results


def score_labelled(
    images: Sequence[LabelledImage], detections: Sequence[Detections], category: str = "object"
) -> tuple[dict, DetectionCurve]:
    """:func:`score_results` of one :class:`Detections` per labelled image (one category)."""
    if len(images) != len(detections):
        raise InputError(f"{len(detections)} detection sets for {len(images)} images")
    ground_truth = _labelled_as_coco(images, category)
    results = _detections_as_results(detections, range(1, len(images) + 1))
    summary, curves = score_results(ground_truth, results, source="<labelled images>")
    return summary, curves[category]
