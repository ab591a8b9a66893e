"""The last step of every rule: an isolated detection overlapping a pseudo-positive of its own
frame above ``duplicate_iou`` is a duplicate (a shifted second box of a found object), not a
hard negative."""

from __future__ import annotations

import numpy as np
import pytest

import flickermine as fm
from flickermine import MiningParams, Reason, mine_frames
from flickermine.cli import main
from flickermine.mining._rules import demote_duplicates

from .conftest import AVAILABLE, texture

# A found object (in every frame) and, in frame 3 only, a box shifted half a width off it:
# IoU 0.151 with the object, below the rules' iou_threshold 0.2, so no rule calls them partners.
OBJECT = [40.0, 30.0, 80.0, 110.0]
SHIFTED = [68.0, 40.0, 108.0, 120.0]
FAR = [120.0, 10.0, 150.0, 60.0]


def test_demote_duplicates_keeps_only_hard_negatives_apart_from_pseudo_positives():
    boxes = np.array([OBJECT, SHIFTED, FAR])
    reasons = np.array([Reason.PARTNER, Reason.ISOLATED, Reason.ISOLATED], dtype=np.int8)
    iou = fm.iou(boxes[:1], boxes[1:2])[0, 0]
    assert iou == pytest.approx(840 / 5560)
    demoted = demote_duplicates(boxes, reasons, MiningParams(duplicate_iou=0.1))
    assert demoted.tolist() == [Reason.PARTNER, Reason.DUPLICATE, Reason.ISOLATED]
    assert reasons[1] == Reason.ISOLATED  # the input is not changed
    assert demote_duplicates(boxes, reasons, MiningParams(duplicate_iou=iou + 1e-9)).tolist() == reasons.tolist()
    assert demote_duplicates(boxes, reasons, MiningParams()).tolist() == reasons.tolist()  # 1.0: off
    # two flickers overlapping each other are both hard negatives: neither is a pseudo-positive
    both = np.array([Reason.ISOLATED, Reason.ISOLATED, Reason.ISOLATED], dtype=np.int8)
    assert demote_duplicates(boxes, both, MiningParams(duplicate_iou=0.0)).tolist() == both.tolist()


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize("rule", ["seed", "tracklet", "support"])
def test_every_rule_and_backend_demotes_duplicates(rng, backend, rule):
    frames = [texture(rng, 140, 170)] * 7  # a still scene: every template is found where it was
    detections = []
    for index in range(7):
        boxes = [OBJECT, SHIFTED] if index == 3 else [OBJECT]
        detections.append((np.array(boxes), np.full(len(boxes), 0.9)))
    params = dict(window=3, margin=10, min_area=0, border=0, min_tracked=2)
    plain = list(mine_frames(frames, detections, MiningParams(**params), rule, backend))
    assert plain[3].reasons.tolist() == [Reason.PARTNER, Reason.ISOLATED]
    demoted = list(mine_frames(frames, detections, MiningParams(**params, duplicate_iou=0.1), rule, backend))
    assert demoted[3].reasons.tolist() == [Reason.PARTNER, Reason.DUPLICATE]
    assert not demoted[3].hard_negatives.any()
    direct = fm.frame_verdicts(frames[:7], [d[0] for d in detections], detections[3][1], 3, MiningParams(**params, duplicate_iou=0.1), rule, backend)
    assert direct.tolist() == [Reason.PARTNER, Reason.DUPLICATE]


def test_duplicate_iou_is_bounded_and_on_the_command_line(capsys):
    with pytest.raises(ValueError, match=r"duplicate_iou must be in \[0, 1\]"):
        MiningParams(duplicate_iou=1.5)
    assert main(["demo", "--frames", "20", "--out", "", "--duplicate-iou", "2"]) == 2
    assert "duplicate_iou must be in [0, 1]" in capsys.readouterr().err
