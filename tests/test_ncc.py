"""NCC search: every backend against a float64 brute-force reference (OpenCV TM_CCOEFF_NORMED)."""

from __future__ import annotations

import numpy as np
import pytest

import flickermine as fm

from .conftest import BACKEND_PARAMS, texture

FLAT = 1e-8  # sum of squared deviations <= n * FLAT: flat, scores 0


def brute_force_scores(template: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The definition, computed directly in float64, window by window."""
    t = template.astype(np.float64)
    h, w = t.shape
    n = h * w
    t0 = t - t.mean()
    t_ss = (t0**2).sum()
    windows = np.lib.stride_tricks.sliding_window_view(region.astype(np.float64), (h, w))
    out = np.zeros(windows.shape[:2])
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            win = windows[y, x]
            w0 = win - win.mean()
            w_ss = (w0**2).sum()
            if t_ss <= n * FLAT or w_ss <= n * FLAT:
                continue
            out[y, x] = np.clip((t0 * w0).sum() / np.sqrt(t_ss * w_ss), -1, 1)
    return out


def cases(rng):
    """(template, image, region) triples covering the edge cases of the definition."""
    image = texture(rng, 90, 110)
    yield image[20:36, 30:50].copy(), image, (5, 5, 80, 70)  # the template is in the region
    yield texture(rng, 12, 9), image, (0, 0, 110, 90)  # unrelated template, whole image
    yield image[0:90, 0:110].copy(), image, (0, 0, 110, 90)  # template == region == image
    yield image[40:41, 50:51].copy() + 0, image, (40, 40, 70, 70)  # 1x1: flat template
    yield image[40:41, 50:60].copy(), image, (30, 30, 80, 60)  # 1xN
    yield image[40:50, 50:51].copy(), image, (30, 30, 80, 60)  # Nx1
    flat = image.copy()
    flat[10:60, 10:70] = 77
    flat[30, 30] = 78  # near-flat windows around one odd pixel
    yield image[10:30, 10:30].copy(), flat, (0, 0, 100, 80)
    yield np.full((8, 8), 5, np.uint8), image, (0, 0, 50, 50)  # flat template scores 0 everywhere
    yield image[60:80, 80:110].copy(), image, (70, 50, 110, 90)  # region on the image corner


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_ncc_search_matches_float64_brute_force(backend, dtype):
    rng = np.random.default_rng(3)
    for k, (template, image, region) in enumerate(cases(rng)):
        template, image = template.astype(dtype), image.astype(dtype)
        if dtype == np.float32:
            template, image = template / 255, image / 255  # float images usually live in [0, 1]
            template, image = template.astype(np.float32), image.astype(np.float32)
        x1, y1, x2, y2 = region
        reference = brute_force_scores(template, image[y1:y2, x1:x2])
        score, x, y = fm.ncc_search(template, image, region, backend=backend)
        best = reference.max()
        assert score == pytest.approx(best, abs=1e-4), f"case {k}"
        # The position is the reference's argmax, or (for near-ties) scores like it.
        assert reference[y - y1, x - x1] == pytest.approx(best, abs=1e-6), f"case {k}"
        if np.count_nonzero(reference >= best - 1e-6) == 1:
            ry, rx = np.unravel_index(np.argmax(reference), reference.shape)
            assert (x, y) == (x1 + rx, y1 + ry), f"case {k}"


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_flat_everything_scores_zero_at_first_position(backend):
    image = np.full((40, 50), 9, np.uint8)
    assert fm.ncc_search(image[5:15, 5:15].copy(), image, backend=backend) == (0.0, 0, 0)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_batch_matches_single_searches(backend):
    rng = np.random.default_rng(5)
    a, b = texture(rng, 120, 160), texture(rng, 120, 160)
    b[30:70, 40:90] = a[35:75, 50:100]  # b holds a moved copy of a's patch
    templates = np.array([[50, 35, 100, 75], [0, 0, 20, 20], [10, 100, 60, 120]])
    regions = np.array([[20, 10, 130, 100], [0, 0, 160, 120], [0, 60, 100, 120]])
    scores, top_left = fm.ncc_search_batch(a, templates, b, regions, backend=backend)
    assert scores.shape == (3,) and top_left.shape == (3, 2) and top_left.dtype == np.int64
    assert scores[0] == pytest.approx(1.0, abs=1e-4) and top_left[0].tolist() == [40, 30]
    for k in range(3):
        tx1, ty1, tx2, ty2 = templates[k]
        single = fm.ncc_search(a[ty1:ty2, tx1:tx2].copy(), b, regions[k], backend=backend)
        assert single[0] == pytest.approx(scores[k], abs=1e-9) and single[1:] == tuple(top_left[k])


@pytest.mark.skipif("cpp" not in fm.available_backends(), reason="C++ core not built")
def test_core_reference_map_matches_brute_force():
    from flickermine import _core

    rng = np.random.default_rng(9)
    image = texture(rng, 50, 60)
    ref = _core.ncc_score_map_reference(image, np.array([[10, 10, 25, 22]]), image, np.array([[0, 0, 60, 50]]))
    np.testing.assert_allclose(ref, brute_force_scores(image[10:22, 10:25], image), atol=1e-12)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_iou_matches_definition(backend):
    a = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 1e-9, 1e-9]])
    b = np.array([[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0], [2.5, 2.5, 7.5, 7.5]])
    got = fm.iou(a, b, backend=backend)
    expected = np.array([[1.0, 0.0, 0.25], [25 / 175, 25 / 175, 6.25 / (100 + 25 - 6.25)], [1e-18 / 100, 0.0, 0.0]])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (500, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.5, 50, (500, 2))], axis=1)
    np.testing.assert_array_equal(fm.iou(boxes, boxes[:300], backend=backend), fm.iou(boxes, boxes[:300], backend="numpy"))


@pytest.mark.parametrize("backend", [p for p in BACKEND_PARAMS if p.values[0] == "numba"])
def test_numba_on_inputs_that_stress_a_float32_fft(backend):
    """The C++ kernels' stress inputs (tests/test_ncc_isa.py: ramps, sinusoids, checkerboards,
    impulses, near-flat windows; float32 frames from 1e-6 to 1e5 in scale and a quiet half
    beside a loud one) for the Numba backend, whose FFT runs in float32 too: the best score is
    the float64 reference's best, and the position scores it. (The NumPy oracle's plain
    integral-image window sums are not exact on the quiet-beside-loud frames.)"""
    if "cpp" not in fm.available_backends():
        pytest.skip("the float64 reference map comes from the C++ core")
    from flickermine import _core

    from .test_ncc_isa import cases as stress_cases, float32_extremes

    def check(image, box, moved, region):
        ref = _core.ncc_score_map_reference(image, np.array([box]), moved, np.array([region]))
        x1, y1, x2, y2 = box
        score, x, y = fm.ncc_search(image[y1:y2, x1:x2], moved, region, backend=backend)
        assert score == pytest.approx(ref.max(), abs=1e-9)
        assert ref[y - region[1], x - region[0]] >= ref.max() - 1e-9

    rng = np.random.default_rng(5)
    checked = 0
    for _, image, box, moved, region in stress_cases(rng):
        for dtype in (np.uint8, np.float32):
            check(image.astype(dtype), box, moved.astype(dtype), region)
            checked += 1
    for image in float32_extremes(rng, 130, 170):
        image = image.astype(np.float32)
        moved = np.roll(image, (2, -3), axis=(0, 1)).copy()
        th, tw = int(rng.integers(8, 50)), int(rng.integers(8, 50))
        ty, tx = int(rng.integers(0, 130 - th)), int(rng.integers(0, 170 - tw))
        check(image, (tx, ty, tx + tw, ty + th), moved, (3, 2, 163, 127))
        checked += 1
    for _ in range(10):
        image = 5 + rng.random((130, 170)) * 10.0 ** rng.uniform(-4, -1)
        split = int(rng.integers(30, 100))
        image[:, :split] = rng.random((130, split)) * 10.0 ** rng.uniform(3, 6)
        image = image.astype(np.float32)
        moved = np.roll(image, (1, 2), axis=(0, 1)).copy()
        th, tw = int(rng.integers(10, 40)), int(rng.integers(10, 40))
        ty, tx = int(rng.integers(0, 130 - th)), int(rng.integers(split, 170 - tw))
        check(image, (tx, ty, tx + tw, ty + th), moved, (0, 0, 170, 130))
        checked += 1
    assert checked == 7 * 6 * 2 + 9 + 10


@pytest.mark.parametrize("backend", [p for p in BACKEND_PARAMS if p.values[0] == "numba"])
def test_numba_search_in_several_frames_is_the_batch_search_frame_by_frame(backend):
    """numba_backend.ncc_search_frames (the benchmark's one-call row, as _core's) gives each frame's
    ncc_search_batch answer, and names a frame or box that does not fit."""
    from flickermine.errors import InputError
    from flickermine.mining._backends import numba_backend

    rng = np.random.default_rng(8)
    for dtype in (np.uint8, np.float32):
        a = texture(rng, 120, 160).astype(dtype)
        frames = [np.roll(a, (k, 2 * k), axis=(0, 1)).copy() for k in range(4)]
        frames[2][:] = 7  # flat: every score 0
        box, region = np.array([[50, 35, 100, 75]]), np.array([[20, 10, 150, 110]])
        scores, top_left = numba_backend.ncc_search_frames(a, box, frames, region)
        assert scores.shape == (4,) and top_left.shape == (4, 2) and top_left.dtype == np.int64
        for k, frame in enumerate(frames):
            s, tl = fm.ncc_search_batch(a, box, frame, region, backend="numba")
            assert scores[k] == s[0] and top_left[k].tolist() == tl[0].tolist()
        assert scores[0] == pytest.approx(1.0) and top_left[1].tolist() == [52, 36] and scores[2] == 0.0
    with pytest.raises(InputError, match=r"search_frames\[1\] has shape \(10, 160\)"):
        numba_backend.ncc_search_frames(a, box, [a, a[:10]], region)
    with pytest.raises(InputError, match=r"region \[20, 10, 150, 130\] is not inside the 160x120 frames"):
        numba_backend.ncc_search_frames(a, box, [a], np.array([[20, 10, 150, 130]]))


@pytest.mark.parametrize("backend", [p for p in BACKEND_PARAMS if p.values[0] == "numba"])
def test_numba_register_transpose_moves_each_value_once(backend):
    """_transpose8 (the FFT's 8 x 8 tiles between its y and x passes) writes the transpose of the
    tile and nothing else."""
    import numba

    from flickermine.mining._backends.numba_backend import _transpose8

    @numba.njit
    def tile(src, sy, sx, dst, dy, dx):
        _transpose8(src, sy, sx, dst, dy, dx)

    rng = np.random.default_rng(11)
    src = (rng.random((20, 30)) + 1).astype(np.float32)
    dst = np.zeros((25, 40), np.float32)
    tile(src, 3, 5, dst, 7, 9)
    assert np.array_equal(dst[7:15, 9:17], src[3:11, 5:13].T)
    assert np.count_nonzero(dst) == 64


@pytest.mark.parametrize("backend", [p for p in BACKEND_PARAMS if p.values[0] == "numba"])
def test_numba_fft_search_at_every_tile_remainder(backend):
    """Regions whose width leaves 0..7 columns past the last 8 x 8 tile, at heights whose half
    spectra leave different rows past theirs: the numba FFT search finds the oracle's best."""
    rng = np.random.default_rng(12)
    image = texture(rng, 200, 260).astype(np.float32) / 255
    template = image[60:84, 70:94].copy()
    checked = 0
    for width in range(120, 128):
        for height in (30, 96, 100, 110):  # rows of the half spectrum past the last tile: 0, 1, 3, 5
            region = (40, 30, 40 + width, 30 + height)
            score, x, y = fm.ncc_search(template, image, region, backend="numba")
            ref_score, ref_x, ref_y = fm.ncc_search(template, image, region, backend="numpy")
            assert (x, y) == (ref_x, ref_y) and score == pytest.approx(ref_score, abs=1e-9), (width, height)
            checked += 1
    assert checked == 32


@pytest.mark.parametrize("backend", [p for p in BACKEND_PARAMS if p.values[0] == "numba"])
def test_numba_whole_number_float32_frames_search_as_their_uint8_frames(backend):
    """float32 frames of whole numbers 0..255 (uint8 frames converted) are searched as bytes: the
    uint8 frames' scores and positions, bit for bit. One pixel of the region that is not such a
    number (fractional, negative, above 255), put last so that the check reads every row to its
    end, sends the search down the float path, which still finds the oracle's best."""
    from flickermine.mining._backends import numba_backend

    rng = np.random.default_rng(13)
    image = texture(rng, 150, 200)
    frames = [np.roll(image, (k, 3 * k), axis=(0, 1)).copy() for k in range(3)]
    box, region = np.array([[70, 50, 110, 90]]), np.array([[30, 20, 170, 130]])
    as_bytes = numba_backend.ncc_search_frames(image, box, frames, region)
    as_floats = numba_backend.ncc_search_frames(
        image.astype(np.float32), box, [f.astype(np.float32) for f in frames], region
    )
    np.testing.assert_array_equal(as_floats[0], as_bytes[0])
    np.testing.assert_array_equal(as_floats[1], as_bytes[1])
    template = image[50:90, 70:110].astype(np.float32)
    # The region's last pixel, and one inside the best match (frames[1] holds the template at
    # x 73, y 51): read as a byte, its value would change the best score.
    for y, x in ((region[0, 3] - 1, region[0, 2] - 1), (70, 90)):
        for odd in (0.5, -1.0, 256.0):
            spoiled = frames[1].astype(np.float32)
            spoiled[y, x] = odd
            scores, top_left = numba_backend.ncc_search_frames(image.astype(np.float32), box, [spoiled], region)
            ref_score, ref_x, ref_y = fm.ncc_search(template, spoiled, tuple(region[0]), backend="numpy")
            assert top_left[0].tolist() == [ref_x, ref_y], (y, x, odd)
            assert scores[0] == pytest.approx(ref_score, abs=1e-9), (y, x, odd)


@pytest.mark.parametrize("backend", [p for p in BACKEND_PARAMS if p.values[0] == "numba"])
def test_numba_constant_windows_on_a_large_offset(backend):
    """float32 frames around 1e6 with texture of 1e4 and a constant patch: the window sums' error
    bound (about 1 here) cannot tell the patch's windows (exactly 0 variance) from flat-but-not-
    constant ones, so the numba search makes its map a second time with the neighbour-change
    counts. The results are the oracle's, for templates from the texture and from the patch's
    edge, and in a region that is all patch but one textured corner."""
    rng = np.random.default_rng(14)
    image = (1e6 + 40.0 * texture(rng, 160, 220)).astype(np.float32)
    image[40:120, 100:200] = np.float32(1e6 + 5000)
    for tbox, region in (
        ((20, 10, 60, 50), (0, 0, 220, 160)),
        ((90, 30, 130, 70), (0, 0, 220, 160)),
        ((20, 10, 60, 50), (95, 35, 205, 125)),
    ):
        x1, y1, x2, y2 = tbox
        template = image[y1:y2, x1:x2].copy()
        score, x, y = fm.ncc_search(template, image, region, backend="numba")
        ref_score, ref_x, ref_y = fm.ncc_search(template, image, region, backend="numpy")
        assert (x, y) == (ref_x, ref_y) and score == pytest.approx(ref_score, abs=1e-9), (tbox, region)
