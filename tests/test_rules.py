"""The rules of docs/rules.md, case by case, on hand-built windows; every backend."""

from __future__ import annotations

import numpy as np
import pytest

import flickermine as fm
from flickermine import MiningParams, Reason

from .conftest import BACKEND_PARAMS, texture

SIZE = 400
BOX = np.array([[150.0, 150.0, 210.0, 230.0]])  # 60 x 80 = 4800 px^2, far from the border
FAR = np.array([[300.0, 60.0, 350.0, 120.0]])  # a detection nowhere near BOX
NONE = np.zeros((0, 4))


class Scene:
    """Frames of a static textured background; an optional textured object moving by ``step`` px
    a frame starting at BOX; frames listed in ``scrambled`` get fresh noise over BOX's region."""

    def __init__(self, rng, num_frames=5, step=0, scrambled=()):
        background = texture(rng, SIZE, SIZE)
        obj = texture(rng, 80, 60)
        self.frames = []
        for i in range(num_frames):
            frame = background.copy()
            if step:
                x = 150 + step * (i - num_frames // 2)
                frame[150:230, x : x + 60] = obj
            if i in scrambled:
                frame[100:280, 100:260] = texture(rng, 180, 160)
            self.frames.append(frame)

    def moved_box(self, i, step):
        return BOX + np.array([step * (i - len(self.frames) // 2), 0, step * (i - len(self.frames) // 2), 0])


def verdict(frames, boxes, score=0.9, center=None, backend="numpy", rule="seed", params=None, iou_first=True):
    center = len(frames) // 2 if center is None else center
    reasons = fm.frame_verdicts(frames, boxes, [score], center, params or MiningParams(), rule, backend, iou_first)
    return Reason(int(reasons[0]))


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request):
    return request.param


@pytest.mark.parametrize("rule", ["seed", "tracklet"])
def test_exemptions_in_priority_order(rng, backend, rule):
    scene = Scene(rng)
    boxes = [FAR, FAR, BOX, FAR, FAR]
    assert verdict(scene.frames, boxes, score=0.98, backend=backend, rule=rule) is Reason.SURE_SCORE
    small = np.array([[150.0, 150.0, 189.0, 190.0]])  # 39 x 40 = 1560 < 1600
    assert verdict(scene.frames, [FAR, FAR, small, FAR, FAR], backend=backend, rule=rule) is Reason.SMALL
    for near_edge in ([49.0, 150, 110, 230], [150, 49.0, 210, 110], [300, 150, 351.0, 230], [150, 300, 210, 351.0]):
        boxes = [FAR, FAR, np.array([near_edge]), FAR, FAR]
        assert verdict(scene.frames, boxes, backend=backend, rule=rule) is Reason.BORDER
    on_limit = np.array([[50.0, 50.0, 350.0, 350.0]])  # exactly `border` px away: not exempt
    assert verdict(scene.frames, [NONE, NONE, on_limit, NONE, NONE], backend=backend, rule=rule) is not Reason.BORDER
    # A sure, small box near the border reports the first reason: sure score.
    tiny_edge = np.array([[1.0, 1.0, 20.0, 20.0]])
    assert verdict(scene.frames, [NONE, NONE, tiny_edge, NONE, NONE], score=0.99, backend=backend, rule=rule) is Reason.SURE_SCORE


def test_seed_isolated_on_static_background(rng, backend):
    scene = Scene(rng)
    # NCC finds the same patch in every neighbour, and nothing is detected there: a flicker.
    assert verdict(scene.frames, [FAR, FAR, BOX, FAR, FAR], backend=backend) is Reason.ISOLATED


def test_seed_no_neighbour_detections_is_isolated(rng, backend):
    scene = Scene(rng, scrambled=(0, 1, 3, 4))
    # Neighbours without detections are skipped, even if their pixels changed completely.
    assert verdict(scene.frames, [NONE, NONE, BOX, NONE, NONE], backend=backend) is Reason.ISOLATED


def test_seed_partner_by_unmoved_box(rng, backend):
    scene = Scene(rng)
    partner = BOX + np.array([10.0, 5.0, 10.0, 5.0])  # IoU ~ 0.72
    for iou_first in (True, False):
        assert verdict(scene.frames, [FAR, FAR, BOX, FAR, partner], backend=backend, iou_first=iou_first) is Reason.PARTNER


def test_seed_iou_threshold_is_strict(rng, backend):
    scene = Scene(rng)
    # IoU exactly 0.2: 20 px of 60 overlap -> 1600 / (4800 + 4800 - 1600) = 0.2, not > 0.2.
    touching = BOX + np.array([40.0, 0.0, 40.0, 0.0])
    far_side = np.array([[260.0, 150.0, 320.0, 230.0]])
    assert fm.iou(BOX, touching)[0, 0] == pytest.approx(0.2)
    # The tracked box (BOX itself, static background) overlaps `touching` at 0.2 too: no partner.
    assert verdict(scene.frames, [far_side, far_side, BOX, touching, far_side], backend=backend) is Reason.ISOLATED


def test_seed_partner_by_tracked_box(rng, backend):
    step = 45  # IoU(d, e) = 15*80 / (2*4800 - 15*80) = 0.14 < 0.2, so only the tracked box finds it
    scene = Scene(rng, step=step)
    boxes = [NONE, NONE, BOX, scene.moved_box(3, step), NONE]
    assert fm.iou(BOX, boxes[3])[0, 0] < 0.2
    assert verdict(scene.frames, boxes, backend=backend) is Reason.PARTNER


def test_seed_appearance_changed(rng, backend):
    scene = Scene(rng, scrambled=(1,))
    # Frame 1 has a detection, so it is searched; the patch is gone: not a hard negative.
    assert verdict(scene.frames, [NONE, FAR, BOX, NONE, NONE], backend=backend) is Reason.APPEARANCE_CHANGED


def test_seed_window_clipped_at_video_start_and_limited_to_window(rng, backend):
    scene = Scene(rng, num_frames=8)
    params = MiningParams(window=2)
    partner = BOX + 5.0
    # center 0: neighbours are frames 1 and 2 only; a partner in frame 3 is out of the window.
    boxes = [BOX, FAR, FAR, partner, NONE, NONE, NONE, NONE]
    assert verdict(scene.frames, boxes, center=0, backend=backend, params=params) is Reason.ISOLATED
    boxes[2] = partner
    assert verdict(scene.frames, boxes, center=0, backend=backend, params=params) is Reason.PARTNER


def test_tracklet_partner_along_the_track(rng, backend):
    step = 45
    scene = Scene(rng, step=step)
    # Only frame 4 (two steps away, IoU with d = 0) detects the object; tracking carries d there.
    boxes = [NONE, NONE, BOX, NONE, scene.moved_box(4, step)]
    assert fm.iou(BOX, boxes[4])[0, 0] == 0.0
    assert verdict(scene.frames, boxes, backend=backend, rule="tracklet") is Reason.PARTNER


def test_tracklet_isolated_needs_a_reached_frame(rng, backend):
    scene = Scene(rng)
    assert verdict(scene.frames, [NONE, NONE, BOX, NONE, NONE], backend=backend, rule="tracklet") is Reason.ISOLATED
    scrambled = Scene(rng, scrambled=(1, 3))
    # Lost at once in both directions: no evidence, not mined.
    reason = verdict(scrambled.frames, [NONE, NONE, BOX, NONE, NONE], backend=backend, rule="tracklet")
    assert reason is Reason.APPEARANCE_CHANGED
    # A one-frame video has nothing to track into.
    assert verdict(scene.frames[:1], [BOX], center=0, backend=backend, rule="tracklet") is Reason.NO_NEIGHBOURS


def test_tracklet_stops_a_direction_when_lost(rng, backend):
    scene = Scene(rng, scrambled=(3,))
    # Frame 3 loses the track forward, so the partner in frame 4 is never reached; backward
    # tracking reaches frames 1 and 0 without partners: a hard negative.
    boxes = [NONE, NONE, BOX, NONE, BOX + 3.0]
    assert verdict(scene.frames, boxes, backend=backend, rule="tracklet") is Reason.ISOLATED
    # The seed rule has no track to lose: frame 4's unmoved box is a partner.
    assert verdict(scene.frames, boxes, backend=backend, rule="seed") is Reason.PARTNER


def test_tracklet_iou_threshold_is_inclusive(rng, backend):
    scene = Scene(rng)
    touching = BOX + np.array([40.0, 0.0, 40.0, 0.0])  # IoU exactly 0.2 with the (static) tracked box
    assert verdict(scene.frames, [NONE, NONE, BOX, touching, NONE], backend=backend, rule="tracklet") is Reason.PARTNER
