"""Multi-class mining: a detection pairs only with detections of its own label (unless
``class_agnostic``); a box partnered only by another label is a ``label_flicker``; labels reach
the COCO output as categories. Per-class verdicts agree on every backend."""

from __future__ import annotations

import json

import numpy as np
import pytest

import flickermine as fm
from flickermine import Detections, MiningParams, Reason, mine_frames
from flickermine.cli import main
from flickermine.dataset._writer import RunConfig, merged_categories
from flickermine.io._formats import open_detections, write_jsonl
from flickermine.runner._mine_run import run_mining

from .conftest import AVAILABLE, NON_ORACLE_PARAMS, shared_data, texture
from .test_parity import STRESS, random_window

OBJECT = [40.0, 30.0, 80.0, 110.0]  # present in every frame
OTHER = [100.0, 20.0, 140.0, 70.0]  # present in every frame, label 2
LONE = [20.0, 115.0, 60.0, 135.0]  # in the center frame only
PARAMS = dict(window=3, margin=10, min_area=0, border=0, min_tracked=2)
A, B = 1, 2


def still_window(rng, center_labels, neighbour_labels):
    """Seven frames of a still scene: OBJECT and OTHER in every frame, LONE in frame 3 only.
    ``center_labels``: labels of OBJECT, OTHER, LONE in frame 3; ``neighbour_labels``: of OBJECT,
    OTHER elsewhere."""
    frames = [texture(rng, 140, 170)] * 7
    detections = []
    for index in range(7):
        if index == 3:
            detections.append(Detections(np.array([OBJECT, OTHER, LONE]), np.full(3, 0.9), np.array(center_labels)))
        else:
            detections.append(Detections(np.array([OBJECT, OTHER]), np.full(2, 0.9), np.array(neighbour_labels)))
    return frames, detections


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("rule", ["seed", "tracklet", "support"])
def test_a_box_partnered_only_by_another_label_is_a_label_flicker(rng, backend, rule):
    # OBJECT is labelled A in frame 3 but B in every other frame: its box is consistent, its label flips.
    frames, detections = still_window(rng, [A, B, A], [B, B])
    verdicts = list(mine_frames(frames, detections, MiningParams(**PARAMS), rule, backend))
    center = verdicts[3]
    assert center.reasons.tolist() == [Reason.LABEL_FLICKER, Reason.PARTNER, Reason.ISOLATED]
    assert center.labels.tolist() == [A, B, A]
    assert center.hard_negatives.tolist() == [False, False, True]
    assert Reason.LABEL_FLICKER.label == "label_flicker" and not Reason.LABEL_FLICKER.is_hard_negative
    # every other frame: OBJECT (B) pairs with the B boxes around it; frame 3's A box is no partner
    assert all(v.reasons.tolist() == [Reason.PARTNER, Reason.PARTNER] for i, v in enumerate(verdicts) if i != 3)

    # class-agnostic pairing: today's verdicts, as without labels
    agnostic = list(mine_frames(frames, detections, MiningParams(**PARAMS, class_agnostic=True), rule, backend))
    unlabelled = list(
        mine_frames(frames, [(d.boxes, d.scores) for d in detections], MiningParams(**PARAMS), rule, backend)
    )
    assert agnostic[3].reasons.tolist() == [Reason.PARTNER, Reason.PARTNER, Reason.ISOLATED]
    assert [v.reasons.tolist() for v in agnostic] == [v.reasons.tolist() for v in unlabelled]
    assert agnostic[3].labels.tolist() == [A, B, A]  # labels are still carried

    # the kernel gives the same, with labels per frame
    boxes = [d.boxes for d in detections]
    labels = [d.labels for d in detections]
    direct = fm.frame_verdicts(frames, boxes, detections[3].scores, 3, MiningParams(**PARAMS), rule, backend, labels=labels)
    assert direct.tolist() == center.reasons.tolist()
    assert fm.frame_verdicts(frames, boxes, detections[3].scores, 3, MiningParams(**PARAMS), rule, backend).tolist() == agnostic[3].reasons.tolist()


def test_a_box_with_no_partner_of_any_label_stays_a_hard_negative(rng):
    # LONE is labelled B: no B box near it, and no box of any label either: isolated, not a flicker
    frames, detections = still_window(rng, [A, B, B], [A, B])
    center = list(mine_frames(frames, detections, MiningParams(**PARAMS), "seed", "numpy"))[3]
    assert center.reasons.tolist() == [Reason.PARTNER, Reason.PARTNER, Reason.ISOLATED]


def test_duplicates_are_demoted_within_a_label(rng):
    # a shifted second box of OBJECT (A) in frame 3: a duplicate when labelled A, a hard negative when labelled B
    shifted = [68.0, 40.0, 108.0, 120.0]
    frames = [texture(rng, 140, 170)] * 7
    params = MiningParams(**PARAMS, duplicate_iou=0.1)
    for label, expected in ((A, Reason.DUPLICATE), (B, Reason.ISOLATED)):
        detections = [
            Detections(np.array([OBJECT, shifted] if i == 3 else [OBJECT]), np.full(2 if i == 3 else 1, 0.9),
                       np.array([A, label] if i == 3 else [A]))
            for i in range(7)
        ]
        center = list(mine_frames(frames, detections, params, "seed", "numpy"))[3]
        assert center.reasons.tolist() == [Reason.PARTNER, expected]


def test_hard_positives_are_found_per_class_and_carry_their_label(rng):
    # a B object detected in frames 2 and 4, missed in 3, where an A box covers the same place
    frames = [texture(rng, 140, 170)] * 7
    detections = []
    for index in range(7):
        if index == 3:
            detections.append(Detections(np.array([OBJECT, OTHER]), np.full(2, 0.9), np.array([A, A])))
        elif index in (2, 4):
            detections.append(Detections(np.array([OBJECT, OTHER]), np.full(2, 0.9), np.array([B, A])))
        else:
            detections.append(Detections(np.array([OTHER]), np.array([0.9]), np.array([A])))
    params = MiningParams(**PARAMS)
    center = list(mine_frames(frames, detections, params, "seed", "numpy", hard_positives=True))[3]
    assert center.hard_positives.tolist() == [OBJECT]
    assert center.hard_positive_labels.tolist() == [B]
    agnostic = list(mine_frames(frames, detections, MiningParams(**PARAMS, class_agnostic=True), "seed", "numpy", hard_positives=True))[3]
    assert len(agnostic.hard_positives) == 0  # the A box counts as a detection of the object


def random_labels(rng, boxes, classes=3):
    return [rng.integers(1, classes + 1, len(b)) for b in boxes]


@pytest.mark.parametrize("backend", NON_ORACLE_PARAMS)
@pytest.mark.parametrize("rule", ["seed", "tracklet", "support"])
def test_per_class_verdicts_match_the_oracle_on_every_backend(backend, rule):
    rng = np.random.default_rng(77)
    compared = flickers = 0
    for trial in range(120):
        frames, boxes = random_window(rng, int(rng.integers(1, 8)))
        center = int(rng.integers(0, len(frames)))
        scores = rng.uniform(0, 1, len(boxes[center]))
        if not len(scores):
            continue
        labels = random_labels(rng, boxes)
        expected = fm.frame_verdicts(frames, boxes, scores, center, STRESS, rule, "numpy", labels=labels)
        got = fm.frame_verdicts(frames, boxes, scores, center, STRESS, rule, backend, labels=labels)
        assert got.tolist() == expected.tolist(), f"trial {trial}"
        compared += len(scores)
        flickers += int((expected == Reason.LABEL_FLICKER).sum())
    assert compared > 300 and flickers > 0


@pytest.mark.parametrize("rule", ["seed", "tracklet", "support"])
def test_per_class_verdicts_are_each_class_mined_alone(rule):
    """The merged verdicts are, class by class, the verdicts of that class's detections alone
    (a label flicker being an isolated one); class-agnostic ones are those without labels."""
    rng = np.random.default_rng(5)
    for trial in range(80):
        frames, boxes = random_window(rng, int(rng.integers(1, 8)))
        center = int(rng.integers(0, len(frames)))
        scores = rng.uniform(0, 1, len(boxes[center]))
        if not len(scores):
            continue
        labels = random_labels(rng, boxes)
        merged = fm.frame_verdicts(frames, boxes, scores, center, STRESS, rule, "numpy", labels=labels)
        for label in np.unique(labels[center]):
            mine = labels[center] == label
            alone = fm.frame_verdicts(frames, [b[l == label] for b, l in zip(boxes, labels)], scores[mine], center, STRESS, rule, "numpy")
            got = merged[mine].copy()
            got[got == Reason.LABEL_FLICKER] = Reason.ISOLATED
            assert got.tolist() == alone.tolist(), f"trial {trial}, label {label}"
        agnostic = MiningParams(**{**STRESS.as_dict(), "class_agnostic": True})
        plain = fm.frame_verdicts(frames, boxes, scores, center, STRESS, rule, "numpy")
        assert fm.frame_verdicts(frames, boxes, scores, center, agnostic, rule, "numpy", labels=labels).tolist() == plain.tolist()
        ones = [np.ones(len(b), np.int64) for b in boxes]
        assert fm.frame_verdicts(frames, boxes, scores, center, STRESS, rule, "numpy", labels=ones).tolist() == plain.tolist()


def test_bad_labels_are_refused():
    frames = [np.zeros((20, 20), np.uint8)] * 2
    boxes = [np.array([[1.0, 1, 5, 5]]), np.zeros((0, 4))]
    with pytest.raises(ValueError, match=r"labels\[0\] must have shape \(1,\)"):
        fm.frame_verdicts(frames, boxes, [0.9], 0, labels=[[1, 2], []])
    with pytest.raises(ValueError, match="labels has 1 entries"):
        fm.frame_verdicts(frames, boxes, [0.9], 0, labels=[[1]])
    with pytest.raises(ValueError, match="class_agnostic must be True or False"):
        MiningParams(class_agnostic=1)


def test_categories_of_a_run():
    def shard(video, labels, names=None):
        return {"video": video, "images": [{"annotations": [{"label": label} for label in labels]}], "categories": names or {}}

    single, of = merged_categories([shard("a", [1, 1]), {"video": "old", "images": [{"annotations": [{}]}]}], "person")
    assert single == [{"id": 1, "name": "person", "supercategory": "person"}] and of["a"](1) == 1
    several, of = merged_categories([shard("a", [1, 2]), shard("b", [3])], "person")
    assert [(c["id"], c["name"]) for c in several] == [(1, "person"), (2, "label_2"), (3, "label_3")]
    named, of = merged_categories([shard("a", [1, 2], {"1": "person", "2": "car", "3": "dog"})], "object")
    assert [(c["id"], c["name"]) for c in named] == [(1, "person"), (2, "car"), (3, "dog")]  # every named category
    # two files naming their labels in another order: one category per name, renumbered
    clash, of = merged_categories([shard("a", [1, 2], {"1": "car", "2": "bus"}), shard("b", [1, 2], {"1": "bus", "2": "car"})], "object")
    assert [(c["id"], c["name"]) for c in clash] == [(1, "car"), (2, "bus")]
    assert (of["a"](1), of["a"](2), of["b"](1), of["b"](2)) == (1, 2, 2, 1)


@pytest.mark.real_data
def test_labels_of_a_jsonl_file_reach_the_coco_categories(tmp_path, capsys):
    """pets09's Faster R-CNN detections as JSONL with a labels column (all 1) and a few injected
    boxes of label 2: a static one in frames 101..140 (pseudo-positives), a lone one in frame 120
    (a hard negative), and a person relabelled 2 in frame 130 (a label flicker); mined, both
    categories and every label reach the COCO output."""
    video = shared_data("pets09-s2l1", "video.avi")
    rows = []
    for index, boxes, scores in open_detections(shared_data("pets09-s2l1", "det", "faster_rcnn.txt"), frame_count=795).per_frame(795):
        labels = [1] * len(boxes)
        boxes, scores = list(map(list, boxes)), list(scores)
        if 100 <= index < 140:
            boxes.append([560.0, 60.0, 620.0, 120.0]), scores.append(0.9), labels.append(2)
        if index == 119:
            boxes.append([120.0, 430.0, 180.0, 490.0]), scores.append(0.9), labels.append(2)
        if index == 129:
            labels[0] = 2
        rows.append((index, np.array(boxes, float).reshape(-1, 4), np.array(scores, float), labels))
    detections = tmp_path / "pets.jsonl"
    write_jsonl(detections, rows)
    assert json.loads(detections.read_text().splitlines()[119])["labels"][-2:] == [2, 2]

    out = tmp_path / "out"
    params = MiningParams(sure_score=2.0)
    result = run_mining([video], out, RunConfig(params=params, rule="seed", mode="hn", category="person"), detections=detections, progress=False)
    assert result.exit_code == 0
    coco = json.loads((out / "annotations.json").read_text())
    assert coco["categories"] == [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 2, "name": "label_2", "supercategory": "label_2"},
    ]
    used = {a["category_id"] for a in coco["annotations"]}
    assert used == {1, 2}
    frame_120 = next(image for image in coco["images"] if image["frame_index"] == 119)
    assert {"bbox": [120.0, 430.0, 60.0, 60.0], "score": 0.9, "category_id": 2} in frame_120["hard_negatives"]
    assert 2 in {a["category_id"] for a in coco["annotations"] if a["image_id"] == frame_120["id"]}
    report = json.loads((out / "report.json").read_text())
    assert report["videos"][0]["reasons"].get("label_flicker", 0) >= 1

    # class-agnostic: the static box is still mined per box, the relabelled person pairs with its neighbours
    agnostic = tmp_path / "agnostic"
    assert main(["mine", str(video), "--detections", str(detections), "--out", str(agnostic), "--sure-score", "2",
                 "--category", "person", "--class-agnostic", "--rule", "seed", "--quiet"]) == 0
    report = json.loads((agnostic / "report.json").read_text())
    assert "label_flicker" not in report["videos"][0]["reasons"]
    assert json.loads((agnostic / "run.json").read_text())["params"]["class_agnostic"] is True
    capsys.readouterr()
