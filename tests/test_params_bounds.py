"""Mining parameters: bounded before anything runs or is written, one definition shared with the
C++ core, and the C++ safe at the bounds (64-bit index sums, misaligned frames, huge boxes)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import flickermine as fm
from flickermine import MiningParams
from flickermine.cli import main
from flickermine.errors import InputError
from flickermine.mining._params import MAX_PIXELS, MAX_WINDOW, PYTHON_ONLY_FIELDS

from .conftest import shared_data, texture
from .test_parity import random_window

core = pytest.importorskip("flickermine._core")
from flickermine.mining._backends import cpp_backend  # noqa: E402  (needs _core)

# Exemptions off, so that every box reaches the NCC search.
OPEN = dict(score_threshold=0.0, sure_score=2.0, min_area=0.0, border=0)


# -- bounds in MiningParams ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, bound",
    [
        ("window", 2**31 - 1, f"<= {MAX_WINDOW}"),
        ("window", 2**63, f"<= {MAX_WINDOW}"),
        ("window", MAX_WINDOW + 1, f"<= {MAX_WINDOW}"),
        ("window", 0, ">= 1"),
        ("margin", 2**31 - 1, f"<= {MAX_PIXELS}"),
        ("margin", MAX_PIXELS + 1, f"<= {MAX_PIXELS}"),
        ("border", 2**31, f"<= {MAX_PIXELS}"),
        ("max_gap", 6, "<= window (5)"),
        ("min_tracked", 2**40, f"<= {2 * MAX_WINDOW}"),
        ("min_tracked", 0, ">= 1"),
    ],
)
def test_integer_parameters_are_bounded(field, value, bound):
    with pytest.raises(InputError) as error:
        MiningParams(**{field: value})
    message = str(error.value)
    assert f"MiningParams.{field}" in message and bound in message and "\n" not in message


def test_the_bounds_themselves_are_accepted():
    params = MiningParams(window=MAX_WINDOW, margin=MAX_PIXELS, border=MAX_PIXELS, max_gap=MAX_WINDOW, min_tracked=2 * MAX_WINDOW)
    assert params.window == MAX_WINDOW


@pytest.mark.real_data
@pytest.mark.parametrize("option, value", [("--window", "2147483647"), ("--window", "9223372036854775808"), ("--margin", "2147483647"), ("--max-gap", "2147483647")])
def test_cli_refuses_huge_parameters_before_writing(tmp_path, capsys, option, value):
    video = shared_data("tud-campus", "video.mp4")
    dets = shared_data("tud-campus", "det", "faster_rcnn.txt")
    verdicts = tmp_path / "v.csv"
    out = tmp_path / "ds"
    args = ["mine", str(video), "--detections", str(dets), "--verdicts", str(verdicts), "--out", str(out), "--quiet"]
    for backend in ("numpy", "cpp"):
        assert main(args + ["--backend", backend, option, value]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("flickermine: error: MiningParams.")
        assert option[2:].replace("-", "_") in err and "OverflowError" not in err
        assert list(tmp_path.iterdir()) == []  # no run.json, no .partial, no folder


# -- the C++ at the bounds: 64-bit sums ----------------------------------------------------------


@pytest.mark.parametrize("rule", ["seed", "tracklet"])
def test_largest_window_and_margin_agree_with_numpy(rule):
    rng = np.random.default_rng(31)
    big = MiningParams(window=MAX_WINDOW, margin=MAX_PIXELS, max_gap=MAX_WINDOW, **OPEN)
    small = MiningParams(window=8, margin=200, max_gap=8, **OPEN)  # the same: it covers the whole window
    compared = 0
    for _ in range(40):
        frames, boxes = random_window(rng, int(rng.integers(2, 7)))
        center = int(rng.integers(0, len(frames)))
        scores = rng.uniform(0, 1, len(boxes[center]))
        if not len(scores):
            continue
        expected = fm.frame_verdicts(frames, boxes, scores, center, small, rule, "numpy")
        for params in (big, small):
            assert fm.frame_verdicts(frames, boxes, scores, center, params, rule, "cpp").tolist() == expected.tolist()
        assert fm.frame_verdicts(frames, boxes, scores, center, big, rule, "numpy").tolist() == expected.tolist()
        hp = fm.frame_hard_positives(frames, boxes, center, small, "numpy")
        np.testing.assert_array_equal(fm.frame_hard_positives(frames, boxes, center, big, "cpp"), hp)
        compared += len(scores)
    assert compared > 50


@pytest.mark.parametrize("rule", ["seed", "tracklet"])
def test_core_takes_int32_extremes_without_overflow(rule):
    """Straight to _core (no MiningParams bounds): window and margin at 2**31 - 1 are the whole video
    and the whole image; the sums center + window, x2 + margin are 64-bit (the sanitizer build
    checks them)."""
    rng = np.random.default_rng(5)
    frames, boxes = random_window(rng, 5)
    boxes = [b if len(b) else np.array([[10.0, 10.0, 40.0, 40.0]]) for b in boxes]
    scores = np.full(len(boxes[2]), 0.9)
    reference = core.Params()
    reference.score_threshold, reference.sure_score, reference.min_area, reference.border = 0.0, 2.0, 0.0, 0
    reference.window, reference.margin, reference.max_gap = 4, 200, 4
    huge = core.Params()
    huge.score_threshold, huge.sure_score, huge.min_area, huge.border = 0.0, 2.0, 0.0, 0
    huge.window, huge.margin, huge.max_gap = 2**31 - 1, 2**31 - 1, 2**31 - 1
    for center in (0, 2, 4):
        scores = np.full(len(boxes[center]), 0.9)
        expected = core.frame_verdicts(frames, boxes, scores, center, reference, rule)
        assert core.frame_verdicts(frames, boxes, scores, center, huge, rule).tolist() == expected.tolist()
        np.testing.assert_array_equal(
            core.hard_positives(frames, boxes, center, huge), core.hard_positives(frames, boxes, center, reference)
        )


def test_core_params_refuse_values_beyond_int32():
    # A MiningParams whose checks were bypassed: the C++ conversion still refuses, naming the field.
    params = MiningParams()
    object.__setattr__(params, "window", 2**31)
    with pytest.raises(ValueError, match=r"MiningParams\.window = 2147483648 is outside"):
        core.Params.from_python(params, PYTHON_ONLY_FIELDS)
    object.__setattr__(params, "window", 2**70)
    with pytest.raises(ValueError, match=r"MiningParams\.window"):
        core.Params.from_python(params, PYTHON_ONLY_FIELDS)


# -- one definition of the mining parameters ----------------------------------------------------


def test_every_field_is_in_cpp_or_listed_python_only():
    fields = {f.name for f in dataclasses.fields(MiningParams)}
    cpp = set(core.Params.fields)
    assert not cpp & set(PYTHON_ONLY_FIELDS), "a field is both in C++ and listed as Python-only"
    assert fields == cpp | set(PYTHON_ONLY_FIELDS)
    assert all(reason.strip() for reason in PYTHON_ONLY_FIELDS.values())


def test_cpp_params_carry_every_value_by_name():
    params = MiningParams(score_threshold=0.3, window=7, margin=11, ncc_threshold=0.4, iou_threshold=0.6,
                          sure_score=0.9, min_area=12.5, border=3, max_gap=2)
    converted = cpp_backend._core_params(params)
    for name in core.Params.fields:
        assert getattr(converted, name) == getattr(params, name), name


def test_a_field_unknown_to_cpp_fails_loudly():
    @dataclasses.dataclass(frozen=True)
    class Extended(MiningParams):
        new_knob: int = 3

    with pytest.raises(RuntimeError, match="'new_knob'.*PYTHON_ONLY_FIELDS"):
        cpp_backend._core_params(Extended())
    rng = np.random.default_rng(1)
    frames, boxes = random_window(rng, 3)
    boxes[1] = np.array([[10.0, 10.0, 40.0, 40.0]])
    with pytest.raises(RuntimeError, match="new_knob"):
        fm.frame_verdicts(frames, boxes, np.array([0.9]), 1, Extended(**OPEN), "seed", "cpp")


def test_a_cpp_field_missing_in_python_fails_loudly():
    Partial = dataclasses.make_dataclass(
        "Partial", [(f.name, f.type, f.default) for f in dataclasses.fields(MiningParams) if f.name != "max_gap"]
    )
    with pytest.raises(RuntimeError, match="'max_gap' is not a field of Partial"):
        core.Params.from_python(Partial(), PYTHON_ONLY_FIELDS)
    with pytest.raises(ValueError, match="MiningParams instance"):
        core.Params.from_python(MiningParams, PYTHON_ONLY_FIELDS)


# -- misaligned float32 frames --------------------------------------------------------------------


def misaligned(frame: np.ndarray) -> np.ndarray:
    """The same float32 pixels at an odd byte address (a view into a bytearray, offset 1)."""
    raw = bytearray(frame.nbytes + 1)
    raw[1:] = np.ascontiguousarray(frame, np.float32).tobytes()
    view = np.frombuffer(raw, np.float32, offset=1).reshape(frame.shape)
    assert view.ctypes.data % view.itemsize != 0 and not view.flags.aligned
    return view


def test_misaligned_float32_frames_match_numpy(rng):
    base = texture(rng, 90, 110).astype(np.float32)
    frames = [base[i : i + 60, 2 * i : 2 * i + 80].copy() for i in range(4)]
    shifted = [misaligned(f) for f in frames]
    boxes = [np.array([[10.0, 12.0, 40.0, 45.0], [30.0, 5.0, 70.0, 30.0]]) + i for i in range(4)]
    boxes[2] = np.array([[15.0, 15.0, 50.0, 50.0]])
    scores = np.array([0.9])
    params = MiningParams(window=3, margin=20, **OPEN)
    for rule in ("seed", "tracklet", "support"):
        expected = fm.frame_verdicts(frames, boxes, scores, 2, params, rule, "numpy")
        assert fm.frame_verdicts(shifted, boxes, scores, 2, params, rule, "cpp").tolist() == expected.tolist()
    np.testing.assert_array_equal(
        fm.frame_hard_positives(shifted, boxes, 2, params, "cpp"), fm.frame_hard_positives(frames, boxes, 2, params, "numpy")
    )
    templ, regions = np.array([[10, 10, 30, 40], [0, 0, 80, 60]]), np.array([[0, 0, 80, 60], [0, 0, 80, 60]])
    want = fm.ncc_search_batch(frames[0], templ, frames[1], regions, backend="numpy")
    got = fm.ncc_search_batch(shifted[0], templ, shifted[1], regions, backend="cpp")
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)
    np.testing.assert_array_equal(got[1], want[1])
    # Straight to _core too: the bindings copy what is misaligned.
    direct = core.ncc_search_batch(shifted[0], templ, shifted[1], regions)
    np.testing.assert_array_equal(direct[1], want[1])
    box, region = np.array([[10, 10, 30, 40]]), np.array([[0, 0, 80, 60]])
    s, tl = core.ncc_search_frames(shifted[0], box, shifted[1:], region)
    s2, tl2 = core.ncc_search_frames(frames[0], box, frames[1:], region)
    np.testing.assert_array_equal(s, s2)
    np.testing.assert_array_equal(tl, tl2)
    np.testing.assert_array_equal(
        core.ncc_score_map_reference(shifted[0], box, shifted[1], region),
        core.ncc_score_map_reference(frames[0], box, frames[1], region),
    )


# -- huge finite boxes ----------------------------------------------------------------------------


def test_iou_of_huge_finite_boxes():
    a = np.array([[-1e308, -1e308, 1e308, 1e308], [0.0, 0.0, 1e308, 1e308], [1.0, 2.0, 3.0, 4.0]])
    b = np.array([[-1e308, -1e308, 1e308, 1e308], [-1.7e308, 0.0, 1.7e308, 1e308]])
    want = fm.iou(a, b, backend="numpy")
    np.testing.assert_allclose(want[:2, 0], [1.0, 0.25], rtol=1e-12)
    np.testing.assert_allclose(want[:2, 1], [2 / 5.4, 1 / 3.4], rtol=1e-12)  # areas in units of 1e616
    assert want[2].tolist() == [0.0, 0.0]  # 4 px^2 of 4e616: below the smallest double
    np.testing.assert_array_equal(fm.iou(a, b, backend="cpp"), want)


def test_core_box_errors_are_short():
    with pytest.raises(ValueError) as error:
        core.iou(np.array([[1e308, -1e308, np.inf, 2e307]]), np.zeros((1, 4)) + [0, 0, 1, 1])
    message = str(error.value)
    assert message == "boxes_a[0] = [1e+308, -1e+308, inf, 2e+307] is not finite"
    with pytest.raises(ValueError, match=r"^boxes_b\[0\] = \[5, 0, 1e\+308, -1e\+308\] is empty or inverted"):
        core.iou(np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([[5.0, 0.0, 1e308, -1e308]]))
    frame = np.zeros((10, 10), np.uint8)
    with pytest.raises(ValueError, match=r"template_boxes\[0\] = \[0, 0, 4294967298, 5\] is empty or outside"):
        core.ncc_search_batch(frame, np.array([[0, 0, 2**32 + 2, 5]]), frame, np.array([[0, 0, 10, 10]]))
