"""Matching and the log-average miss rate on hand-built cases whose values are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flickermine.evaluate._miss_rate import (
    FALSE_POSITIVE,
    IGNORED,
    TRUE_POSITIVE,
    DetectionCurve,
    coco_curve,
    match_detections,
    match_detections_to_objects,
)

BOX = np.array([[10.0, 10.0, 30.0, 50.0]])


def test_match_takes_detections_by_score_and_each_object_once():
    truth = BOX
    # two boxes on one object: the higher-scoring one matches, the other is a false positive
    boxes = np.array([[10, 10, 30, 50], [11, 11, 31, 51]], dtype=float)
    assert match_detections(boxes, np.array([0.5, 0.9]), truth).tolist() == [FALSE_POSITIVE, TRUE_POSITIVE]
    assert match_detections(boxes, np.array([0.9, 0.5]), truth).tolist() == [TRUE_POSITIVE, FALSE_POSITIVE]


def test_match_names_the_object_each_true_positive_took():
    """A box overlapping two people takes the one it overlaps most if free, else the other one."""
    truth = np.array([[0.0, 0.0, 20.0, 40.0], [4.0, 0.0, 24.0, 40.0]])
    boxes = np.array([[0.0, 0.0, 20.0, 40.0], [1.0, 0.0, 21.0, 40.0], [60.0, 0.0, 80.0, 40.0]])
    outcomes, matched = match_detections_to_objects(boxes, [0.9, 0.8, 0.7], truth)
    assert outcomes.tolist() == [TRUE_POSITIVE, TRUE_POSITIVE, FALSE_POSITIVE]
    assert matched.tolist() == [0, 1, -1]  # the second box overlaps object 0 most, but it is taken
    assert match_detections(boxes, [0.9, 0.8, 0.7], truth).tolist() == outcomes.tolist()


def test_match_needs_iou_at_the_threshold():
    # IoU of [10,10,30,50] and [20,10,40,50] is 200 / 600 = 1/3
    shifted = np.array([[20.0, 10.0, 40.0, 50.0]])
    assert match_detections(shifted, [1.0], BOX, iou_threshold=1 / 3).tolist() == [TRUE_POSITIVE]
    assert match_detections(shifted, [1.0], BOX, iou_threshold=0.34).tolist() == [FALSE_POSITIVE]


def test_ignore_regions_take_any_number_of_detections_inside_them():
    crowd = np.array([[100.0, 100.0, 200.0, 200.0]])
    boxes = np.array([[110, 110, 130, 150], [150, 150, 170, 190], [190, 190, 230, 230]], dtype=float)
    # the third is 1/16 inside the region: a false positive
    outcomes = match_detections(boxes, [0.9, 0.8, 0.7], np.zeros((0, 4)), crowd)
    assert outcomes.tolist() == [IGNORED, IGNORED, FALSE_POSITIVE]


def test_an_object_is_preferred_to_an_ignore_region():
    outcomes = match_detections(BOX, [0.9], BOX, ignore=np.array([[0.0, 0.0, 100.0, 100.0]]))
    assert outcomes.tolist() == [TRUE_POSITIVE]


def test_curve_counts_and_rates():
    # image 1: one object, found (0.9) and a false positive (0.8); image 2: a false positive (0.95)
    per_image = [
        (np.array([0.9, 0.8]), np.array([TRUE_POSITIVE, FALSE_POSITIVE])),
        (np.array([0.95, 0.5]), np.array([FALSE_POSITIVE, IGNORED])),
    ]
    curve = DetectionCurve.from_outcomes(per_image, objects=2, images=2)
    assert curve.scores.tolist() == [0.95, 0.9, 0.8]  # the ignored detection does not count
    assert curve.true_positives.tolist() == [0, 1, 1]
    assert curve.false_positives.tolist() == [1, 1, 2]
    assert curve.fppi.tolist() == [0.5, 0.5, 1.0]
    assert curve.miss_rate.tolist() == [1.0, 0.5, 0.5]
    assert curve.precision.tolist() == pytest.approx([0.0, 0.5, 1 / 3])


def test_log_average_miss_rate_of_a_known_curve():
    # 100 images, 10 objects. Detections by score: 5 hits (miss rate 0.5 at 0 FPPI), then
    # 11 false positives (FPPI 0.11), then 3 hits (miss rate 0.2), then 89 false positives (FPPI 1.0).
    outcomes = [TRUE_POSITIVE] * 5 + [FALSE_POSITIVE] * 11 + [TRUE_POSITIVE] * 3 + [FALSE_POSITIVE] * 89
    scores = np.linspace(1.0, 0.01, len(outcomes))
    curve = DetectionCurve.from_outcomes([(scores, np.array(outcomes))], objects=10, images=100)
    # the nine FPPI points 10^-2 ... 10^0: up to 0.1 the miss rate is 0.5 (the hits after the 11th
    # false positive come at FPPI 0.11); from 0.178 on, 0.2
    expected = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.2, 0.2, 0.2, 0.2])
    assert curve.miss_rate_at(np.logspace(-2, 0, 9)) == pytest.approx(expected)
    assert curve.log_average_miss_rate() == pytest.approx(math.exp(np.mean(np.log(expected))))


def test_a_perfect_detector_and_one_that_finds_nothing():
    perfect = DetectionCurve.from_outcomes([(np.array([0.9, 0.8]), np.array([TRUE_POSITIVE, TRUE_POSITIVE]))], objects=2, images=1)
    assert perfect.log_average_miss_rate() == pytest.approx(1e-10)  # Dollár's floor of log(0)
    blind = DetectionCurve.from_outcomes([], objects=3, images=4)
    assert blind.log_average_miss_rate() == 1.0
    # every detection false: FPPI above 1 at once; the curve never gets under any point
    noisy = DetectionCurve.from_outcomes([(np.array([0.9, 0.8]), np.array([FALSE_POSITIVE] * 2))], objects=1, images=1)
    assert noisy.log_average_miss_rate() == 1.0
    assert math.isnan(DetectionCurve.from_outcomes([], objects=0, images=1).log_average_miss_rate())


def test_coco_curve_reads_crowd_boxes_as_ignore_regions():
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}, {"id": 2, "file_name": "b.jpg", "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 40], "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 50, 50], "iscrowd": 1},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [60, 60, 20, 20], "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
    }
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 40], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.8},  # inside the crowd box
        {"image_id": 2, "category_id": 1, "bbox": [60, 60, 20, 20], "score": 0.7},  # on the dog: false
    ]
    curve = coco_curve(coco, results, category_id=1)
    assert (curve.objects, curve.images) == (1, 2)
    assert curve.true_positives.tolist() == [1, 1]
    assert curve.false_positives.tolist() == [0, 1]
