"""Bad arrays passed to the Python API get clear errors naming the array, its shape or dtype."""

from __future__ import annotations

import numpy as np
import pytest

import flickermine as fm
from flickermine import Miner, MiningParams

from .conftest import AVAILABLE

FRAME = np.zeros((60, 80), np.uint8)
BOX = np.array([[10.0, 10.0, 30.0, 40.0]])


@pytest.mark.parametrize("backend", AVAILABLE)
@pytest.mark.parametrize(
    "frames,boxes,scores,error,message",
    [
        ([FRAME.astype(np.float64)], [BOX], [0.9], TypeError, r"frames\[0\] must have dtype uint8 or float32, but got float64"),
        ([np.zeros((60, 80, 3), np.uint8)], [BOX], [0.9], ValueError, r"frames\[0\] must be a 2D \(H, W\).*\(60, 80, 3\).*cvtColor"),
        ([np.zeros((60, 160), np.uint8)[:, ::2]], [BOX], [0.9], ValueError, r"frames\[0\] must have contiguous rows"),
        ([FRAME, np.zeros((61, 80), np.uint8)], [BOX, BOX], [0.9], ValueError, r"frames\[1\] has shape \(61, 80\)"),
        ([FRAME], [np.array([10.0, 10.0, 30.0])], [0.9], ValueError, r"boxes\[0\] must have shape \(N, 4\).*\(3,\)"),
        ([FRAME], [np.array([[10.0, np.nan, 30.0, 40.0]])], [0.9], ValueError, r"boxes\[0\]\[0\].*NaN"),
        ([FRAME], [np.array([[30.0, 10.0, 10.0, 40.0]])], [0.9], ValueError, r"boxes\[0\]\[0\].*empty or inverted"),
        ([FRAME], [np.array([[10.0, 10.0, 10.0, 40.0]])], [0.9], ValueError, r"empty or inverted"),
        ([FRAME], [np.array([[100.0, 10.0, 130.0, 40.0]])], [0.9], ValueError, r"entirely outside the 80x60 image"),
        ([FRAME], [BOX], [0.9, 0.8], ValueError, r"scores must have shape \(1,\).*\(2,\)"),
        ([FRAME], [BOX], [np.inf], ValueError, r"scores\[0\] = inf is not finite"),
        ([FRAME], [np.array([["a", "b", "c", "d"]])], [0.9], TypeError, r"boxes\[0\] must be a numeric array"),
        ([FRAME], [BOX, BOX], [0.9], ValueError, r"boxes has 2 entries but frames has 1"),
        ([], [], [], ValueError, r"at least the center frame"),
    ],
)
def test_frame_verdicts_rejects_bad_arrays(backend, frames, boxes, scores, error, message):
    with pytest.raises(error, match=message):
        fm.frame_verdicts(frames, boxes, np.asarray(scores, dtype=np.float64), 0, backend=backend)


def test_frame_verdicts_rejects_bad_center_rule_and_backend():
    with pytest.raises(ValueError, match="center 3 is outside the window of 1 frames"):
        fm.frame_verdicts([FRAME], [BOX], [0.9], 3)
    with pytest.raises(ValueError, match=r"rule must be one of \['seed', 'tracklet', 'support'\], got 'flicker'"):
        fm.frame_verdicts([FRAME], [BOX], [0.9], 0, rule="flicker")
    with pytest.raises(ValueError, match="unknown backend 'fortran'; choose 'auto' or one of"):
        fm.frame_verdicts([FRAME], [BOX], [0.9], 0, backend="fortran")


def test_boxes_partly_outside_are_clipped():
    frames = [FRAME, FRAME]
    boxes = [np.array([[-20.0, -5.0, 30.0, 40.0]]), np.zeros((0, 4))]
    miner = Miner(MiningParams(window=1, min_area=0, border=0))
    miner.push(frames[0], boxes[0], [0.9])
    (first,) = miner.push(frames[1], boxes[1], np.zeros(0))
    assert first.boxes.tolist() == [[0.0, 0.0, 30.0, 40.0]]


@pytest.mark.parametrize("backend", AVAILABLE)
def test_ncc_search_rejects_bad_arrays(backend):
    image = np.zeros((50, 50), np.uint8)
    with pytest.raises(TypeError, match=r"template_frame \(uint8\) and search_frame \(float32\) must share a dtype"):
        fm.ncc_search_batch(image, [[0, 0, 5, 5]], image.astype(np.float32), [[0, 0, 10, 10]], backend=backend)
    with pytest.raises(TypeError, match="template_boxes must be integer pixel boxes.*float64"):
        fm.ncc_search_batch(image, np.array([[0.0, 0, 5, 5]]), image, [[0, 0, 10, 10]], backend=backend)
    # one rule for boxes (docs/conventions.md): partly outside is clipped, entirely outside refused
    with pytest.raises(ValueError, match=r"regions\[0\] = \[60, 0, 70, 10\] lies entirely outside the 50x50 image"):
        fm.ncc_search_batch(image, [[0, 0, 5, 5]], image, [[60, 0, 70, 10]], backend=backend)
    with pytest.raises(ValueError, match=r"regions\[0\] = \[0, 0, 4, 10\] is smaller than template_boxes\[0\]"):
        fm.ncc_search_batch(image, [[0, 0, 5, 5]], image, [[0, 0, 4, 10]], backend=backend)
    with pytest.raises(ValueError, match="template_boxes has 2 rows but regions has 1"):
        fm.ncc_search_batch(image, [[0, 0, 5, 5], [0, 0, 5, 5]], image, [[0, 0, 10, 10]], backend=backend)
    with pytest.raises(ValueError, match=r"image .*float32.*NaN"):
        fm.ncc_search(np.ones((3, 3), np.float32), np.full((9, 9), np.nan, np.float32), backend=backend)
    # Values whose squares would overflow float32 sums are refused, not scored -2 or NaN.
    huge = np.random.default_rng(0).uniform(0, 1e20, (9, 9)).astype(np.float32)
    with pytest.raises(ValueError, match=r"image \(float32, shape \(9, 9\)\) has values in .*within \+-1e\+15"):
        fm.ncc_search(np.ones((3, 3), np.float32), huge, backend=backend)


@pytest.mark.skipif("cpp" not in AVAILABLE, reason="C++ core not built")
def test_core_validates_its_own_arguments():
    """The C++ module never trusts its caller: bad arrays raise ValueError, never crash."""
    from flickermine import _core

    image = np.zeros((20, 20), np.uint8)
    with pytest.raises(ValueError, match="search_frame must have dtype uint8 or float32, but got float64"):
        _core.ncc_search_batch(image, np.array([[0, 0, 2, 2]]), image.astype(np.float64), np.array([[0, 0, 5, 5]]))
    with pytest.raises(ValueError, match="template_boxes must be an integer array"):
        _core.ncc_search_batch(image, np.array([[0.0, 0, 2, 2]]), image, np.array([[0, 0, 5, 5]]))
    with pytest.raises(ValueError, match=r"regions\[0\] = \[0, 0, 25, 5\] is empty or outside"):
        _core.ncc_search_batch(image, np.array([[0, 0, 2, 2]]), image, np.array([[0, 0, 25, 5]]))
    with pytest.raises(ValueError, match=r"boxes\[0\]\[0\] = \[1, nan, 5, 5\] is not finite"):
        _core.frame_verdicts([image], [np.array([[1.0, np.nan, 5, 5]])], np.array([0.9]), 0, _core.Params(), "seed")
    with pytest.raises(ValueError, match="center 1 is outside the window of 1 frames"):
        _core.frame_verdicts([image], [np.zeros((0, 4))], np.zeros(0), 1, _core.Params(), "seed")
    with pytest.raises(ValueError, match="scores has 2 entries but the center frame has 0 boxes"):
        _core.frame_verdicts([image], [np.zeros((0, 4))], np.zeros(2), 0, _core.Params(), "seed")
    with pytest.raises(ValueError, match="rule must be 'seed', 'tracklet' or 'support'"):
        _core.frame_verdicts([image], [np.zeros((0, 4))], np.zeros(0), 0, _core.Params(), "other")


def test_params_are_validated():
    with pytest.raises(ValueError, match=r"MiningParams.window must be >= 1 and <= 10000 \(frames\), got 0"):
        MiningParams(window=0)
    with pytest.raises(ValueError, match="MiningParams.iou_threshold must be in \\[0, 1\\], got 1.5"):
        MiningParams(iou_threshold=1.5)
    with pytest.raises(ValueError, match="MiningParams.score_threshold must be a finite number, got nan"):
        MiningParams(score_threshold=float("nan"))
    with pytest.raises(ValueError, match="MiningParams.margin must be an integer"):
        MiningParams(margin=2.5)
