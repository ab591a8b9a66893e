"""Every backend gives the NumPy oracle's verdicts and reasons: random windows and real video."""

from __future__ import annotations

import numpy as np
import pytest

import flickermine as fm
from flickermine import MiningParams, Miner

from .conftest import NON_ORACLE_PARAMS, backend_param, shared_data, texture

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
    from flickermine.io._mot import DetectionFile
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


_ORACLE_CACHE: dict = {}


def _oracle_real_verdicts(folder, video, dets, params_name, rule, max_frames):
    """The oracle's verdicts of a real case, computed once per session for all the backends."""
    key = (folder, video, dets, params_name, rule, max_frames)
    if key not in _ORACLE_CACHE:
        _ORACLE_CACHE[key] = _real_verdicts(folder, video, dets, REAL_PARAMS[params_name], rule, "numpy", max_frames)
    return _ORACLE_CACHE[key]


@pytest.mark.real_data
@pytest.mark.parametrize("backend", NON_ORACLE_PARAMS)
# slow: the numpy oracle of the tracklet and support rules takes seconds (support: ~50 s on pets09)
@pytest.mark.parametrize("rule", ["seed", pytest.param("tracklet", marks=pytest.mark.slow), pytest.param("support", marks=pytest.mark.slow)])
@pytest.mark.parametrize("params_name", list(REAL_PARAMS))
@pytest.mark.parametrize("folder,video,dets", REAL_CASES, ids=[f"{c[0]}-{c[2][:-4]}" for c in REAL_CASES])
def test_real_video_matches_oracle(folder, video, dets, params_name, rule, backend):
    # The oracle is slow on the exhaustive parameter set: a prefix of pets09 is enough there.
    max_frames = 10**9 if params_name == "defaults" or folder != "pets09-s2l1" else 120
    params = REAL_PARAMS[params_name]
    expected = _oracle_real_verdicts(folder, video, dets, params_name, rule, max_frames)
    got = _real_verdicts(folder, video, dets, params, rule, backend, max_frames)
    assert [v.frame_index for v in got] == [v.frame_index for v in expected]
    candidates = 0
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g.boxes, e.boxes)
        assert g.reasons.tolist() == e.reasons.tolist(), f"frame {e.frame_index + 1}"
        candidates += len(e.reasons)
    assert candidates > 0


# ---- Support rule: its own parameters at and around their thresholds --------------------------

SUPPORT_BASE = dict(score_threshold=0.0, window=5, margin=12, sure_score=2.0, min_area=0.0, border=0)
#: objects are OBJECT x OBJECT px, so the IoU of a tracked box with a neighbour box shifted by
#: (dx, dy) is one of a few exact values: support_iou is set exactly to them and one ulp around.
OBJECT = 40
JITTERS = [(0, 0), (1, 0), (0, 2), (5, 0), (10, 0), (5, 5), (20, 0), (0, 30)]


def _shift_iou(dx: float, dy: float) -> float:
    from flickermine._boxes import iou_matrix

    box = np.array([[0.0, 0.0, OBJECT, OBJECT]])
    return float(iou_matrix(box, box + [dx, dy, dx, dy])[0, 0])


def support_window(rng: np.random.Generator, height: int = 96, width: int = 128):
    """A window of a drifting texture (some frames cut to noise: lost) with OBJECT-sized integer
    boxes in the center frame and, in the neighbours, the same boxes moved with the scene plus a
    jitter of JITTERS, each kept or dropped at random: tracked frames, support and no support in
    every proportion, and IoUs exactly at the support_iou values of the parameter cases."""
    num_frames = int(rng.integers(1, 12))
    center = int(rng.integers(0, num_frames))
    base = texture(rng, height + 16, width + 16)
    drift = rng.integers(0, 8, (num_frames, 2))
    k = int(rng.integers(1, 5))
    corners = np.stack([rng.integers(0, width - OBJECT, k), rng.integers(0, height - OBJECT, k)], axis=1).astype(np.float64)
    center_boxes = np.concatenate([corners, corners + OBJECT], axis=1)
    keep_share = rng.uniform(0.0, 1.0)
    frames, boxes = [], []
    for i in range(num_frames):
        dx, dy = drift[i]
        frame = base[dy : dy + height, dx : dx + width].copy()
        if i != center and rng.random() < 0.15:
            frame = rng.integers(0, 256, frame.shape).astype(np.uint8)
        frames.append(frame)
        if i == center:
            boxes.append(center_boxes)
            continue
        moved = center_boxes + np.tile(drift[center] - drift[i], 2)
        jitter = np.array([JITTERS[j] for j in rng.integers(0, len(JITTERS), k)], dtype=np.float64)
        b = moved + np.tile(jitter * rng.choice([-1, 1], (k, 1)), 2)
        b = b[rng.random(k) < keep_share]
        if rng.random() < 0.3:
            b = np.concatenate([b, [[rng.uniform(0, width / 2), rng.uniform(0, height / 2), width, height]]])
        b = np.clip(b, 0, [width, height, width, height])
        boxes.append(b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])])
    return frames, boxes, center


_IOU_10, _IOU_5 = _shift_iou(10, 0), _shift_iou(5, 5)
SUPPORT_CASES = (
    [("min_tracked", v) for v in (1, 2, 3, 4, 9, 10, 11, 20)]
    + [("max_support", v) for v in (0.0, 0.1, np.nextafter(0.2, 0), 0.2, np.nextafter(0.2, 1), 0.25, 1 / 3, 0.5, 0.9)]
    + [
        ("support_iou", v)
        for v in (1e-9, 0.2, np.nextafter(_IOU_10, 0), _IOU_10, np.nextafter(_IOU_10, 1), _IOU_5, np.nextafter(_IOU_5, 1), 1.0)
    ]
)


@pytest.mark.parametrize("backend", NON_ORACLE_PARAMS)
@pytest.mark.parametrize("name,value", SUPPORT_CASES, ids=[f"{n}={float(v):.17g}" for n, v in SUPPORT_CASES])
def test_support_parameters_match_oracle(backend, name, value):
    """The support rule's min_tracked, max_support and support_iou at, just below and just above
    the values its windows produce (tracked counts, support shares, exact IoUs), and on the
    random windows of every kind."""
    value = int(value) if name == "min_tracked" else float(value)
    rng = np.random.default_rng(16)
    compared, reasons = 0, set()
    for trial in range(150):
        params = MiningParams(**{**SUPPORT_BASE, name: value})
        if trial % 3 == 2:
            frames, boxes = random_window(rng, int(rng.integers(1, 8)))
            center = int(rng.integers(0, len(frames)))
            params = MiningParams(**{**STRESS.as_dict(), name: value})
        else:
            frames, boxes, center = support_window(rng)
        scores = rng.uniform(0, 1, len(boxes[center]))
        if not len(scores):
            continue
        expected = fm.frame_verdicts(frames, boxes, scores, center, params, "support", "numpy")
        got = fm.frame_verdicts(frames, boxes, scores, center, params, "support", backend)
        assert got.tolist() == expected.tolist(), f"trial {trial}"
        compared += len(scores)
        reasons |= set(expected.tolist())
    assert compared > 300
    if name != "min_tracked" or value <= 4:
        assert {fm.Reason.ISOLATED, fm.Reason.APPEARANCE_CHANGED, fm.Reason.PARTNER} <= reasons, reasons


def test_support_windows_reach_the_thresholds():
    """The generator above does make the ties the parameter cases are about: a support share of
    exactly max_support, exactly min_tracked tracked frames, an IoU exactly support_iou."""
    from flickermine.mining import _rules as rules

    numpy_search = fm.get_backend("numpy").ncc_search_batch
    params = MiningParams(**SUPPORT_BASE)
    rng = np.random.default_rng(16)
    share_ties = tracked_ties = iou_ties = 0
    for _ in range(40):
        frames, boxes, center = support_window(rng)
        height, width = frames[center].shape
        undecided = rules.exemption_reasons(boxes[center], np.full(len(boxes[center]), 0.5), width, height, params)
        ev = rules.support_evidence(frames, boxes, undecided, center, params, numpy_search)
        tracked = ev.ncc >= params.ncc_threshold
        n_tracked = tracked.sum(axis=1)
        support = (tracked & (ev.overlap >= params.support_iou)).sum(axis=1)
        share_ties += int(((support == params.max_support * n_tracked) & (support > 0)).sum())
        tracked_ties += int((n_tracked == params.min_tracked).sum())
        iou_ties += int((tracked & (ev.overlap == _IOU_10)).sum())
    assert share_ties and tracked_ties and iou_ties, (share_ties, tracked_ties, iou_ties)


# ---- No fallback: the compiled backends decide every rule in their own code -------------------
# (cpp in C++, numba in jitted code; "a backend never silently runs the oracle's Python in its place")

#: The oracle's rule code: what a compiled backend must never run (class_verdicts and
#: demote_duplicates run around every backend's verdicts, in Python: params.PYTHON_ONLY_FIELDS).
ORACLE_RULE_FUNCTIONS = [
    "exemption_reasons",
    "seed_verdicts",
    "tracklet_verdicts",
    "support_evidence",
    "support_decision",
    "support_verdicts",
    "verdicts",
    "hard_positives",
    "rule_kernels",
    "search_each",
    "_tracked_boxes",
]


@pytest.mark.parametrize("backend", [backend_param("cpp"), backend_param("numba")])
def test_compiled_backends_never_run_the_oracle_rule_code(backend, monkeypatch):
    import sys

    from flickermine.mining import _rules as rules

    def forbidden(name):
        def fail(*args, **kwargs):
            raise AssertionError(f"the {backend} backend called rules.{name} (the oracle's Python rule code)")

        return fail

    codes = {getattr(rules, name).__code__: name for name in ORACLE_RULE_FUNCTIONS}
    for name in ORACLE_RULE_FUNCTIONS:
        monkeypatch.setattr(rules, name, forbidden(name))
    # A reference taken before the patch (`from ..rules import support_verdicts`) escapes
    # monkeypatch: a profile hook sees every Python call of the original functions' code.
    called: list[str] = []

    def hook(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            called.append(codes[frame.f_code])

    rng = np.random.default_rng(3)
    params = MiningParams(score_threshold=0.0, window=3, margin=10, sure_score=2.0, min_area=0.0, border=0, min_tracked=2)
    frames = [texture(rng, 72, 96)] * 7
    boxes = [np.array([[10.0, 10.0, 40.0, 50.0], [50.0, 20.0, 80.0, 60.0]])] * 7
    boxes[2] = boxes[2][:1]
    labels = [np.array([0, 1])] * 7
    labels[2] = labels[2][:1]
    judged = 0
    sys.setprofile(hook)
    try:
        for rule in ("seed", "tracklet", "support"):
            for center in (0, 3, 6):
                scores = np.full(len(boxes[center]), 0.5)
                judged += len(fm.frame_verdicts(frames, boxes, scores, center, params, rule, backend))
                judged += len(fm.frame_verdicts(frames, boxes, scores, center, params, rule, backend, labels=labels))
            miner = Miner(params, rule, backend)
            for i, frame in enumerate(frames):
                judged += sum(len(v.reasons) for v in miner.push(frame, boxes[i], np.full(len(boxes[i]), 0.5)))
            judged += sum(len(v.reasons) for v in miner.finish())
        fm.get_backend(backend).frame_hard_positives(frames, boxes, 3, params)
    finally:
        sys.setprofile(None)
    assert not called, f"the {backend} backend ran the oracle's rule code: {sorted(set(called))}"
    assert judged > 0
