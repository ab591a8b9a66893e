"""Hard positives: exact recovery of known misses, hand-built cases, parity with the oracle."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import flickermine as fm
from flickermine import MiningParams, mine_frames
from flickermine.runner._demo import render_clip

from .conftest import BACKEND_PARAMS, NON_ORACLE_PARAMS, texture
from .test_parity import random_window


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_synthetic_misses_are_recovered_exactly(backend):
    clip = render_clip(seed=3, num_frames=60, miss_rate=0.05, false_positive_rate=0.0)
    found = list(mine_frames(clip.gray, zip(clip.detections, clip.scores), backend=backend, hard_positives=True))
    assert sum(len(m) for m in clip.misses) >= 5
    for v in found:
        missed = clip.misses[v.frame_index]
        assert len(v.hard_positives) == len(missed), f"frame {v.frame_index}"
        if len(missed):
            # Each hard positive is the missed object's box, up to the jitter of the detection it was tracked from.
            assert (fm.iou(missed, v.hard_positives).max(axis=1) >= 0.75).all()


def moving_object_clip(rng, gaps, num_frames=7, step=6):
    background = texture(rng, 200, 260)
    obj = texture(rng, 60, 40)
    frames, boxes = [], []
    for i in range(num_frames):
        frame = background.copy()
        x = 40 + step * i
        frame[70:130, x : x + 40] = obj
        frames.append(frame)
        boxes.append(np.zeros((0, 4)) if i in gaps else np.array([[x, 70.0, x + 40.0, 130.0]]))
    return frames, boxes


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_gap_lengths_and_partial_overlaps(rng, backend):
    params = MiningParams(window=3, max_gap=1)
    frames, boxes = moving_object_clip(rng, gaps={3})
    hp = fm.frame_hard_positives(frames, boxes, 3, params, backend)
    np.testing.assert_allclose(hp, [[58.0, 70.0, 98.0, 130.0]])
    # Found from both sides, reported once.
    assert len(hp) == 1
    # Frames with their detection have none.
    assert len(fm.frame_hard_positives(frames, boxes, 2, params, backend)) == 0
    # Two missed frames running: not with max_gap 1, found with max_gap 2.
    frames, boxes = moving_object_clip(rng, gaps={3, 4})
    assert len(fm.frame_hard_positives(frames, boxes, 3, params, backend)) == 0
    two = MiningParams(window=3, max_gap=2)
    assert len(fm.frame_hard_positives(frames, boxes, 3, two, backend)) == 1
    assert len(fm.frame_hard_positives(frames, boxes, 4, two, backend)) == 1
    # A partial detection in the gap frame (IoU between 0.2 and 0.5) means it was not missed.
    frames, boxes = moving_object_clip(rng, gaps=set())
    boxes[3] = np.array([[58.0 + 22, 70.0, 98.0 + 22, 130.0]])  # IoU ~ 0.29
    assert len(fm.frame_hard_positives(frames, boxes, 3, params, backend)) == 0
    with pytest.raises(ValueError, match="max_gap must be >= 1 and <= window"):
        MiningParams(window=2, max_gap=3)


def objects_with_misses(rng, num_frames):
    """Textured objects drifting over a texture, detected with jitter, missed at random, plus clutter."""
    height, width = 96, 128
    frames = [texture(rng, height, width) for _ in range(1)] * num_frames
    frames = [f.copy() for f in frames]
    boxes = [[] for _ in range(num_frames)]
    for _ in range(int(rng.integers(1, 4))):
        h, w = rng.integers(12, 40, 2)
        obj = texture(rng, h, w)
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        vx, vy = rng.uniform(-4, 4, 2)
        for i in range(num_frames):
            xi = int(np.clip(round(x + vx * i), 0, width - w))
            yi = int(np.clip(round(y + vy * i), 0, height - h))
            frames[i][yi : yi + h, xi : xi + w] = obj
            if rng.random() < 0.7:
                boxes[i].append([xi, yi, xi + w, yi + h] + rng.normal(0, 1.0, 4))
    for i in range(num_frames):
        if rng.random() < 0.3:
            x, y = rng.uniform(0, [width - 10, height - 10])
            boxes[i].append([x, y, x + rng.uniform(3, 30), y + rng.uniform(3, 30)])
    clipped = [np.clip(np.array(b, dtype=np.float64).reshape(-1, 4), 0, [width, height, width, height]) for b in boxes]
    return frames, [b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])] for b in clipped]


@pytest.mark.parametrize("backend", NON_ORACLE_PARAMS)
@pytest.mark.parametrize("iou_threshold", [0.2, 0.6])  # 0.6: a box can be within both thresholds
def test_random_windows_match_oracle(backend, iou_threshold):
    rng = np.random.default_rng(99)
    params = MiningParams(score_threshold=0.0, window=3, margin=15, max_gap=2, ncc_threshold=0.5, iou_threshold=iou_threshold)
    found = 0
    for trial in range(250):
        maker = random_window if trial % 3 == 0 else objects_with_misses
        frames, boxes = maker(rng, int(rng.integers(2, 8)))
        center = int(rng.integers(0, len(frames)))
        expected = fm.frame_hard_positives(frames, boxes, center, params, "numpy")
        got = fm.frame_hard_positives(frames, boxes, center, params, backend)
        np.testing.assert_array_equal(got, expected, err_msg=f"trial {trial}")
        found += len(expected)
    assert found > 20


@pytest.mark.real_data
@pytest.mark.parametrize("backend", NON_ORACLE_PARAMS)
@pytest.mark.parametrize(
    "dets, params",
    [
        # slow: the first backend pays for the numpy oracle of the whole video (cached for the others)
        pytest.param("faster_rcnn.txt", MiningParams(), marks=pytest.mark.slow),
        pytest.param(
            "faster_rcnn.txt", MiningParams(score_threshold=0.5, iou_threshold=0.6, max_gap=2), marks=pytest.mark.slow
        ),
        ("opencv_haar_fullbody.txt", MiningParams(score_threshold=0.0, sure_score=2.0, min_area=0.0, border=0, max_gap=3)),
    ],
    ids=["frcnn-defaults", "frcnn-iou0.6-gap2", "haar-all-gap3"],
)
def test_real_video_matches_oracle(backend, dets, params):
    """The streaming miner's hard positives on tud-campus: every backend gives the oracle's boxes."""
    expected = _tud_hard_positives(dets, params, "numpy")
    assert sum(len(h) for _, h in expected) > 0
    assert _tud_hard_positives(dets, params, backend) == expected


@functools.lru_cache(maxsize=None)  # the oracle's answer serves every backend
def _tud_hard_positives(dets: str, params: MiningParams, backend: str) -> list:
    from flickermine.io._mot import DetectionFile
    from flickermine.mining._miner import Miner
    from flickermine.video import open_video

    from .conftest import shared_data

    source = open_video(shared_data("tud-campus", "video.mp4"))
    detections = DetectionFile(shared_data("tud-campus", "det", dets), frame_count=source.frame_count)
    miner = Miner(params, "seed", backend, hard_positives=True)
    out = []
    for frame, found in zip(source.frames(gray=True), detections.detections(source.frame_count)):
        out += miner.push(frame.gray, found)
    out += miner.finish()
    return [(v.frame_index, v.hard_positives.tolist()) for v in out]
