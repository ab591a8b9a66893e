"""COCO AP of hand-built detections whose AP is known."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pycocotools")

from flickermine.evaluate._coco_ap import average_precision


def _ground_truth(boxes_per_image: int = 1, images: int = 4) -> dict:
    """``images`` 100x100 images, each with ``boxes_per_image`` dogs 20x20 px, far apart."""
    gt = {"images": [], "annotations": [], "categories": [{"id": 18, "name": "dog"}, {"id": 17, "name": "cat"}]}
    for image_id in range(1, images + 1):
        gt["images"].append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 100, "height": 100})
        for k in range(boxes_per_image):
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": 18,
                    "bbox": [10 + 40 * k, 10, 20, 20],
                    "area": 400,
                    "iscrowd": 0,
                }
            )
    return gt


def _exact(annotation: dict, score: float) -> dict:
    return {"image_id": annotation["image_id"], "category_id": annotation["category_id"], "bbox": list(annotation["bbox"]), "score": score}


def test_perfect_detections_give_ap_1():
    gt = _ground_truth()
    detections = [_exact(a, 0.9) for a in gt["annotations"]]
    result = average_precision(gt, detections, categories=["dog"])
    assert result["AP"] == pytest.approx(1.0)
    assert result["AP50"] == pytest.approx(1.0)
    assert result["AP75"] == pytest.approx(1.0)
    assert result["detections"] == 4 and result["ground_truth_boxes"] == 4


def test_half_found_gives_known_ap():
    # 4 objects, the 2 found ones exact: precision 1 up to recall 0.5, nothing beyond.
    # COCO interpolates over 101 recall points 0, 0.01, ..., 1: points 0..0.50 (51 of them) score 1.
    gt = _ground_truth()
    detections = [_exact(a, 0.9) for a in gt["annotations"][:2]]
    result = average_precision(gt, detections, categories=["dog"])
    assert result["AP"] == pytest.approx(51 / 101)
    assert result["AP50"] == pytest.approx(51 / 101)


def test_false_positive_ranked_first_halves_precision():
    # 1 object; a false positive scored above the true one: precision 1/2 at recall 1 -> AP 0.5
    gt = _ground_truth(images=1)
    true_positive = _exact(gt["annotations"][0], 0.5)
    false_positive = {"image_id": 1, "category_id": 18, "bbox": [60, 60, 20, 20], "score": 0.9}
    result = average_precision(gt, [false_positive, true_positive], categories=["dog"])
    assert result["AP"] == pytest.approx(0.5)


def test_box_shifted_between_iou_thresholds_counts_at_50_not_75():
    # a 20x20 box shifted 4 px right: IoU = 16*20 / (2*400 - 16*20) = 320/480 = 0.667
    gt = _ground_truth(images=1)
    shifted = _exact(gt["annotations"][0], 0.9)
    shifted["bbox"][0] += 4
    result = average_precision(gt, [shifted], categories=["dog"])
    assert result["AP50"] == pytest.approx(1.0)
    assert result["AP75"] == pytest.approx(0.0)
    # IoU thresholds 0.50, 0.55, 0.60, 0.65 pass out of ten
    assert result["AP"] == pytest.approx(0.4)


def test_empty_detections_give_ap_0_not_a_crash(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(_ground_truth()))
    result = average_precision(path, [])
    assert result["AP"] == 0.0 and result["AP50"] == 0.0 and result["AP75"] == 0.0
    # the cat category has no ground truth: undefined, not zero, and left out of the mean
    assert result["per_category"]["cat"] == {"AP": None, "AP50": None, "AP75": None}
    assert result["per_category"]["dog"]["AP"] == 0.0


def test_detections_of_other_categories_only_give_ap_0():
    gt = _ground_truth()
    cats = [{**_exact(a, 0.9), "category_id": 17} for a in gt["annotations"]]
    assert average_precision(gt, cats, categories=["dog"])["AP"] == 0.0


def test_unknown_image_or_category_is_refused():
    gt = _ground_truth()
    with pytest.raises(ValueError, match="image_id 99, which is not in"):
        average_precision(gt, [{"image_id": 99, "category_id": 18, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(ValueError, match="no category named 'horse'"):
        average_precision(gt, [], categories=["horse"])


def test_a_ground_truth_dict_is_named_by_its_source():
    with pytest.raises(ValueError, match=r"^val\.json: no category named 'horse'"):
        average_precision(_ground_truth(), [], categories=["horse"], source="val.json")
