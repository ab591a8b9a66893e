"""Rule "support" (issue 4, item 4): hand-built windows, backend parity, and its yield on real data."""

from __future__ import annotations

import numpy as np
import pytest

import flickermine as fm
from flickermine import MiningParams, Reason

from .conftest import shared_data, texture

BOX = np.array([[40.0, 30.0, 80.0, 90.0]])
PARAMS = MiningParams(window=5, min_area=0.0, border=0)


def static_window(rng, num_frames: int = 11):
    frame = texture(rng, 120, 160)
    return [frame] * num_frames


def verdict(frames, boxes, params=PARAMS, rule="support", center=None, score=0.9):
    center = len(frames) // 2 if center is None else center
    return Reason(int(fm.frame_verdicts(frames, boxes, [score], center, params, rule, "numpy")[0]))


def with_center(boxes_per_frame, center):
    boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes_per_frame]
    boxes[center] = BOX
    return boxes


def test_alone_in_a_static_scene_is_isolated(rng):
    frames = static_window(rng)
    assert verdict(frames, with_center([[]] * 11, 5)) is Reason.ISOLATED


def test_consistent_detection_is_supported(rng):
    frames = static_window(rng)
    boxes = with_center([BOX] * 11, 5)
    assert verdict(frames, boxes) is Reason.PARTNER
    # 3 of 10 tracked frames hold it: share 0.3 > max_support 0.2
    boxes = with_center([BOX if g in (0, 4, 9) else [] for g in range(11)], 5)
    assert verdict(frames, boxes) is Reason.PARTNER


def test_one_stray_partner_does_not_decide(rng):
    frames = static_window(rng)
    # 2 of 10 tracked frames hold a matching detection: 0.2 <= max_support -> still isolated;
    # the seed rule calls it a partner at the first one
    boxes = with_center([BOX if g in (2, 8) else [] for g in range(11)], 5)
    assert verdict(frames, boxes) is Reason.ISOLATED
    assert verdict(frames, boxes, rule="seed") is Reason.PARTNER


def test_passer_by_on_the_unmoved_box_is_no_partner(rng):
    frames = static_window(rng)
    passer = BOX + [20.0, 0.0, 20.0, 0.0]  # IoU 1/3 with the box: > iou_threshold, < support_iou
    boxes = with_center([passer] * 11, 5)
    assert verdict(frames, boxes) is Reason.ISOLATED
    assert verdict(frames, boxes, rule="seed") is Reason.PARTNER
    assert verdict(frames, boxes, MiningParams(window=5, min_area=0.0, border=0, support_iou=0.3)) is Reason.PARTNER


def test_too_few_tracked_frames(rng):
    frames = static_window(rng)
    noise = [rng.integers(0, 256, frames[0].shape).astype(np.uint8) for _ in range(11)]
    # only frames 4 and 6 look like the center: 2 tracked < min_tracked 3
    window = [frames[0] if g in (4, 5, 6) else noise[g] for g in range(11)]
    assert verdict(window, with_center([[]] * 11, 5)) is Reason.APPEARANCE_CHANGED
    low = MiningParams(window=5, min_area=0.0, border=0, min_tracked=2)
    assert verdict(window, with_center([[]] * 11, 5), low) is Reason.ISOLATED
    assert verdict(frames[:1], [BOX], center=0) is Reason.NO_NEIGHBOURS


def test_window_clipped_at_the_video_start(rng):
    frames = static_window(rng, 4)  # the first frame of a video: 3 neighbours after it
    assert verdict(frames, with_center([[]] * 4, 0), center=0) is Reason.ISOLATED


def test_exemptions_come_first(rng):
    frames = static_window(rng)
    assert verdict(frames, with_center([[]] * 11, 5), score=0.99) is Reason.SURE_SCORE
    assert verdict(frames, with_center([[]] * 11, 5), MiningParams(window=5, border=0, min_area=3000.0)) is Reason.SMALL
    assert verdict(frames, with_center([[]] * 11, 5), MiningParams(window=5, min_area=0.0)) is Reason.BORDER


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="min_tracked"):
        MiningParams(min_tracked=0)
    with pytest.raises(ValueError, match="max_support"):
        MiningParams(max_support=1.0)
    with pytest.raises(ValueError, match="support_iou"):
        MiningParams(support_iou=0.0)


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("sequence", ["pets09-s2l1", "tud-campus"])
def test_mines_five_times_the_seed_rule_at_its_precision(sequence):
    """faster_rcnn.txt at the default settings (audit.py judges against MOT ground truth)."""
    from flickermine import audit

    video = next(p for p in shared_data(sequence).iterdir() if p.name.startswith("video."))
    dets = shared_data(sequence, "det", "faster_rcnn.txt")
    gt = audit.read_ground_truth(shared_data(sequence, "gt", "gt.txt"))
    params = MiningParams()
    mined = audit.mine_candidates(video, dets, {"seed": (params, "seed"), "support": (params, "support")}, "opencv")
    seed, support = (audit.audit_video(mined[r], gt)["hard_negatives"] for r in ("seed", "support"))
    assert support["count"] >= 5 * seed["count"]
    if seed["judged"]:
        assert support["precision"] >= seed["precision"]
    if sequence == "pets09-s2l1":  # 46 mined, 65% of them false (seed: 1, a true object)
        assert support["count"] >= 40 and support["precision"] >= 0.6
