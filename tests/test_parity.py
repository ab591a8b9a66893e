"""Every backend gives the NumPy oracle's verdicts and reasons: random windows and real video."""

from __future__ import annotations

import numpy as np
import pytest

import flickermine as fm
from flickermine import MiningParams, Miner

from .conftest import NON_ORACLE_PARAMS, shared_data, texture

# Exemptions off, so that tiny, border and frame-sized boxes all reach the NCC search.
STRESS = MiningParams(score_threshold=0.0, window=3, margin=15, sure_score=2.0, min_area=0.0, border=0)


def random_window(rng: np.random.Generator, num_frames: int, height: int = 72, width: int = 96):
    """Frames of a drifting texture with flat patches, and random boxes of every kind."""
    base = texture(rng, height + 20, width + 20)
    # Flat patches: constant areas make flat templates and flat windows (NCC 0 by definition).
    for _ in range(3):
        y, x = rng.integers(0, height, 2)
        base[y : y + rng.integers(4, 20), x : x + rng.integers(4, 20)] = rng.integers(0, 256)
    frames, boxes = [], []
    for i in range(num_frames):
        dy, dx = rng.integers(0, 4, 2) if rng.random() < 0.7 else rng.integers(0, 20, 2)
        frame = base[dy : dy + height, dx : dx + width].copy()
        if rng.random() < 0.2:
            frame = rng.integers(0, 256, frame.shape).astype(np.uint8)  # a cut: everything changes
        frames.append(frame)
        k = int(rng.integers(0, 9))
        x1 = rng.uniform(-5, width, k)
        y1 = rng.uniform(-5, height, k)
        w = rng.choice([rng.uniform(0.3, 3), rng.uniform(5, 40), width + 10.0], k)
        h = rng.choice([rng.uniform(0.3, 3), rng.uniform(5, 40), height + 10.0], k)
        b = np.stack([x1, y1, x1 + w, y1 + h], axis=1)
        b = np.clip(b, 0, [width, height, width, height])
        b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
        if rng.random() < 0.3:
            b = np.concatenate([b, [[0.0, 0.0, width, height]]])  # a frame-sized box
        boxes.append(b)
    return frames, boxes


@pytest.mark.parametrize("backend", NON_ORACLE_PARAMS)
@pytest.mark.parametrize("rule", ["seed", "tracklet", "support"])
@pytest.mark.parametrize("dtype", ["uint8", "float32", "float32+offset"])
def test_random_windows_match_oracle(backend, rule, dtype):
    rng = np.random.default_rng(2024)
    compared = 0
    for trial in range(320):
        frames, boxes = random_window(rng, int(rng.integers(1, 8)))
        if dtype == "float32+offset":
            # A faint texture on a large offset (exactly representable in float32): sums of raw
            # values cancel catastrophically here unless a kernel takes the mean off first.
            frames = [f.astype(np.float32) * np.float32(0.25) + np.float32(1000.0) for f in frames]
        else:
            frames = [f.astype(dtype) for f in frames]
        center = int(rng.integers(0, len(frames)))
        scores = rng.uniform(0, 1, len(boxes[center]))
        if not len(scores):
            continue
        for iou_first in (True, False) if rule == "seed" else (True,):
            expected = fm.frame_verdicts(frames, boxes, scores, center, STRESS, rule, "numpy", iou_first)
            got = fm.frame_verdicts(frames, boxes, scores, center, STRESS, rule, backend, iou_first)
            assert got.tolist() == expected.tolist(), f"trial {trial}, iou_first={iou_first}"
            compared += len(scores)
    assert compared > 1000


def test_iou_first_gives_the_same_verdicts():
    """Seed rule: the IoU-first shortcut changes only which reason a non-hard-negative gets."""
    rule = "seed"
    rng = np.random.default_rng(7)
    moved = 0
    for _ in range(200):
        frames, boxes = random_window(rng, int(rng.integers(2, 8)))
        center = int(rng.integers(0, len(frames)))
        scores = rng.uniform(0, 1, len(boxes[center]))
        fast = fm.frame_verdicts(frames, boxes, scores, center, STRESS, rule, "numpy", iou_first=True)
        full = fm.frame_verdicts(frames, boxes, scores, center, STRESS, rule, "numpy", iou_first=False)
        assert ((fast == fm.Reason.ISOLATED) == (full == fm.Reason.ISOLATED)).all()
        differ = fast != full
        assert set(fast[differ].tolist()) <= {fm.Reason.PARTNER}
        assert set(full[differ].tolist()) <= {fm.Reason.APPEARANCE_CHANGED}
        moved += int(differ.sum())
    assert moved > 0  # the comparison did exercise the reordering


REAL_CASES = [
    ("pets09-s2l1", "video.avi", "faster_rcnn.txt"),
    ("pets09-s2l1", "video.avi", "opencv_haar_fullbody.txt"),
    ("tud-campus", "video.mp4", "faster_rcnn.txt"),
    ("tud-campus", "video.mp4", "opencv_haar_fullbody.txt"),
]
# The defaults exempt nearly every Haar box (its scores are level weights, mostly > 1): the
# second parameter set makes every box a candidate so the NCC paths are exercised on real video.
REAL_PARAMS = {
    "defaults": MiningParams(),
    "no-exemptions": MiningParams(score_threshold=-100.0, sure_score=100.0, min_area=0.0, border=0),
}


def _real_verdicts(folder, video, dets, params, rule, backend, max_frames):
    from flickermine.io.mot import DetectionFile
    from flickermine.video import open_video

    source = open_video(shared_data(folder, video))
    detections = DetectionFile(shared_data(folder, "det", dets), frame_count=source.frame_count)
    miner = Miner(params, rule, backend)
    out = []
    for frame, found in zip(source.frames(gray=True), detections.detections(source.frame_count)):
        if frame.index >= max_frames:
            break
        out += miner.push(frame.gray, found)
    out += miner.finish()
    return out


@pytest.mark.real_data
@pytest.mark.parametrize("backend", NON_ORACLE_PARAMS)
# slow: the numpy oracle of the tracklet rule takes seconds on a whole real video
@pytest.mark.parametrize("rule", ["seed", pytest.param("tracklet", marks=pytest.mark.slow)])
@pytest.mark.parametrize("params_name", list(REAL_PARAMS))
@pytest.mark.parametrize("folder,video,dets", REAL_CASES, ids=[f"{c[0]}-{c[2][:-4]}" for c in REAL_CASES])
def test_real_video_matches_oracle(folder, video, dets, params_name, rule, backend):
    # The oracle is slow on the exhaustive parameter set: a prefix of pets09 is enough there.
    max_frames = 10**9 if params_name == "defaults" or folder != "pets09-s2l1" else 120
    params = REAL_PARAMS[params_name]
    expected = _real_verdicts(folder, video, dets, params, rule, "numpy", max_frames)
    got = _real_verdicts(folder, video, dets, params, rule, backend, max_frames)
    assert [v.frame_index for v in got] == [v.frame_index for v in expected]
    candidates = 0
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g.boxes, e.boxes)
        assert g.reasons.tolist() == e.reasons.tolist(), f"frame {e.frame_index + 1}"
        candidates += len(e.reasons)
    assert candidates > 0
