"""COCO box AP of a detector, with pycocotools.

Detections are COCO results: dicts with ``image_id``, ``category_id``, ``bbox`` as ``[x, y, w, h]``
in pixels and ``score``. Metrics are pycocotools' ``bbox`` AP (mean over IoU 0.50:0.95), AP50 and
AP75 at area "all" and 100 detections per image, averaged over the evaluated categories that have
ground truth. Empty results are an answer, not an error: AP 0 wherever there is ground truth.
A category with no ground truth in the file has no defined AP and is reported as ``None``.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from ..errors import InputError
from ..io import _coco as coco_files

PathLike = Union[str, Path]

#: indices into pycocotools' ``eval["precision"]`` of shape (iou thresholds, recall thresholds,
#: categories, area ranges, max detections): IoU 0.5 and 0.75, area "all", 100 detections
_IOU_50, _IOU_75, _AREA_ALL, _MAX_DETS_100 = 0, 5, 0, 2


def average_precision(
    ground_truth: dict | PathLike,
    detections: Sequence[dict],
    categories: Sequence[str] | None = None,
    source: str | None = None,
) -> dict:
    """COCO AP, AP50 and AP75 of ``detections`` against a COCO ground-truth file or dict.

    ``source``: the file a ground-truth dict was read from, for messages. ``categories``: names to
    evaluate (default: all categories of the ground truth). Detections of
    other categories are ignored; a detection of an image that is not in the ground truth is an
    error. Returns ``{"AP", "AP50", "AP75", "per_category": {name: {...}}, "categories",
    "images", "ground_truth_boxes", "detections"}`` with metrics in [0, 1] or ``None``.
    """
    if isinstance(ground_truth, dict):
        gt_dict, source = ground_truth, source or "<ground truth dict>"
        coco_files.validate(gt_dict, source)
    else:
        gt_dict, source = coco_files.load(ground_truth), source or str(ground_truth)
    names = [c["name"] for c in sorted(gt_dict["categories"], key=lambda c: c["id"])] if categories is None else list(categories)
    category_ids = [coco_files.category_by_name(gt_dict, name, source)["id"] for name in names]
    if not category_ids:
        raise InputError(f"{source}: no categories to evaluate")
    image_ids = {image["id"] for image in gt_dict["images"]}

    wanted = set(category_ids)
    kept = []
    for index, detection in enumerate(detections):
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in detection:
                raise InputError(f"detection {index} has no {key!r}: {detection!r}")
        if detection["image_id"] not in image_ids:
            raise InputError(f"detection {index} is of image_id {detection['image_id']!r}, which is not in {source}")
        if len(detection["bbox"]) != 4:
            raise InputError(f"detection {index}: bbox must be [x, y, w, h], got {detection['bbox']!r}")
        if detection["category_id"] in wanted:
            kept.append(detection)

    ground_truth_counts = {cid: 0 for cid in category_ids}
    for annotation in gt_dict["annotations"]:
        if annotation["category_id"] in ground_truth_counts and not annotation.get("iscrowd", 0):
            ground_truth_counts[annotation["category_id"]] += 1

    per_category: dict = {}
    if kept:
        precision = _pycocotools_precision(gt_dict, kept, category_ids)
        for k, (name, cid) in enumerate(zip(names, category_ids)):
            if ground_truth_counts[cid] == 0:
                per_category[name] = {"AP": None, "AP50": None, "AP75": None}
                continue
            table = precision[:, :, k, _AREA_ALL, _MAX_DETS_100]
            per_category[name] = {
                "AP": _mean_defined(table),
                "AP50": _mean_defined(table[_IOU_50]),
                "AP75": _mean_defined(table[_IOU_75]),
            }
    else:  # pycocotools cannot load an empty result list; with nothing detected, AP is 0
        for name, cid in zip(names, category_ids):
            value = 0.0 if ground_truth_counts[cid] else None
            per_category[name] = {"AP": value, "AP50": value, "AP75": value}

    summary: dict[str, Any] = {}
    for metric in ("AP", "AP50", "AP75"):
        values = [scores[metric] for scores in per_category.values() if scores[metric] is not None]
        summary[metric] = float(np.mean(values)) if values else None
    summary["per_category"] = per_category
    summary["categories"] = names
    summary["images"] = len(gt_dict["images"])
    summary["ground_truth_boxes"] = int(sum(ground_truth_counts.values()))
    summary["detections"] = len(kept)
    return summary


def _pycocotools_precision(gt_dict: dict, detections: list[dict], category_ids: list) -> np.ndarray:
    """pycocotools' precision table, shape (10 IoUs, 101 recalls, categories, 4 areas, 3 max-dets)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    quiet = io.StringIO()  # pycocotools prints progress; keep the caller's output clean
    with contextlib.redirect_stdout(quiet):
        gt = COCO()
        gt.dataset = _with_defaults(gt_dict)
        gt.createIndex()
        results = gt.loadRes([_result(d) for d in detections])
        evaluator = COCOeval(gt, results, iouType="bbox")
        evaluator.params.catIds = list(category_ids)
        evaluator.params.imgIds = sorted(gt.getImgIds())
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator.eval["precision"]


def _with_defaults(gt_dict: dict) -> dict:
    """A shallow copy whose annotations have the ``area`` and ``iscrowd`` pycocotools reads."""
    annotations = []
    for annotation in gt_dict["annotations"]:
        if "area" in annotation and "iscrowd" in annotation:
            annotations.append(annotation)
        else:
            annotations.append(
                {"iscrowd": 0, "area": float(annotation["bbox"][2]) * float(annotation["bbox"][3]), **annotation}
            )
    return {**gt_dict, "annotations": annotations}


def _result(detection: dict) -> dict:
    x, y, w, h = (float(v) for v in detection["bbox"])
    return {
        "image_id": detection["image_id"],
        "category_id": detection["category_id"],
        "bbox": [x, y, w, h],
        "score": float(detection["score"]),
    }


def _mean_defined(values: np.ndarray) -> float | None:
    defined = values[values > -1]  # pycocotools marks undefined entries with -1
    return float(defined.mean()) if defined.size else None
