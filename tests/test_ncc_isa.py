"""The C++ NCC kernel's vector code paths (baseline, AVX2, AVX-512, chosen at run time) each against
the float64 reference map, on inputs that stress the float32 FFT's error bound."""

from __future__ import annotations

import numpy as np
import pytest

import flickermine as fm

from .conftest import texture

pytestmark = pytest.mark.skipif("cpp" not in fm.available_backends(), reason="C++ core not built")


def _isa_state():
    from flickermine import _core

    return _core._ncc_isa()


def available_isas() -> list[str]:
    if "cpp" not in fm.available_backends():
        return ["baseline"]
    return _isa_state()[1]


@pytest.fixture
def use_isa():
    """Switches the kernels to a code path for one test and back afterwards."""
    from flickermine import _core

    before = _core._ncc_isa()[0]
    yield lambda name: _core._ncc_isa(name)
    _core._ncc_isa(before)


def stress_images(rng: np.random.Generator):
    """(name, image) pairs: textures, and what makes float32 correlation error large relative to a
    window's own variance (ramps, sinusoids, checkerboards, impulses, near-flat patches)."""
    h, w = 150, 190
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yield "texture", texture(rng, h, w)
    yield "ramp", np.clip(xx * 1.2 + yy * 0.3, 0, 255).astype(np.uint8)
    yield "sinusoid", (127.5 + 127.5 * np.sin(xx / 3.0) * np.cos(yy / 5.0)).astype(np.uint8)
    yield "checkerboard", (((yy // 3 + xx // 3) % 2) * 255).astype(np.uint8)
    impulses = np.zeros((h, w), np.uint8)
    impulses[rng.integers(0, h, 40), rng.integers(0, w, 40)] = 255
    yield "impulses", impulses
    near_flat = np.full((h, w), 200, np.uint8)
    near_flat[rng.integers(0, h, 30), rng.integers(0, w, 30)] = 201  # windows with std ~ 1e-1
    near_flat[:, :40] = texture(rng, h, 40)  # bright texture beside: large region energy
    yield "near_flat", near_flat
    mostly_flat = texture(rng, h, w)
    mostly_flat[20:130, 30:170] = 90  # flat windows (score 0) around a textured frame
    yield "mostly_flat", mostly_flat


def cases(rng: np.random.Generator):
    """(template_image, template_box, image, region) with the template taken from a neighbour-like
    shifted copy, sizes that go through the FFT path (and a few that are searched directly)."""
    for name, image in stress_images(rng):
        moved = np.roll(image, (3, -2), axis=(0, 1)).copy()
        for th, tw, margin in ((16, 16, 30), (24, 40, 25), (40, 24, 40), (9, 60, 20), (33, 17, 45), (5, 5, 8)):
            y1 = int(rng.integers(0, image.shape[0] - th - 2 * margin))
            x1 = int(rng.integers(0, image.shape[1] - tw - 2 * margin))
            tbox = (x1 + margin, y1 + margin, x1 + margin + tw, y1 + margin + th)
            region = (x1, y1, x1 + tw + 2 * margin, y1 + th + 2 * margin)
            yield f"{name} {th}x{tw}", image, tbox, moved, region


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_every_code_path_matches_float64_reference(isa, dtype, use_isa):
    if isa not in available_isas():
        pytest.skip(f"{isa} kernels do not run on this machine")
    use_isa(isa)
    from flickermine import _core

    rng = np.random.default_rng(11)
    for name, template_image, tbox, image, region in cases(rng):
        if dtype == np.float32:
            template_image = (template_image / np.float32(255)).astype(np.float32)
            image = (image / np.float32(255)).astype(np.float32)
        ref = _core.ncc_score_map_reference(template_image, np.array([tbox]), image, np.array([region]))
        scores, top_left = _core.ncc_search_frames(template_image, np.array([tbox]), [image], np.array([region]))
        best = ref.max()
        assert scores[0] == pytest.approx(best, abs=1e-6), name
        x, y = top_left[0]
        assert ref[y - region[1], x - region[0]] == pytest.approx(best, abs=1e-6), name
        if np.count_nonzero(ref >= best - 1e-6) == 1:
            ry, rx = np.unravel_index(np.argmax(ref), ref.shape)
            assert (x, y) == (region[0] + rx, region[1] + ry), name


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_flat_windows_win_when_nothing_scores_above_zero(isa, dtype, use_isa):
    """Searches large enough for the FFT path where every window but one is flat: the one
    window's sign decides between it and the first flat window (score exactly 0)."""
    if isa not in available_isas():
        pytest.skip(f"{isa} kernels do not run on this machine")
    use_isa(isa)
    from flickermine import _core

    rng = np.random.default_rng(4)
    template_image = texture(rng, 40, 40)
    template_image[0, 0] = 255  # above the template's mean: T'(0, 0) > 0
    box = np.array([[0, 0, 16, 16]])
    for corner, expected in ((0, (1, 0)), (255, (0, 0)), (None, (0, 0))):
        image = np.full((80, 90), 120, np.uint8)
        if corner is not None:
            image[0, 0] = corner  # only window (0, 0) holds it: negative or positive score
        t, im = template_image.astype(dtype), image.astype(dtype)
        region = np.array([[0, 0, 90, 80]])
        scores, top_left = _core.ncc_search_frames(t, box, [im], region)
        ref = _core.ncc_score_map_reference(t, box, im, region)
        assert scores[0] == pytest.approx(ref.max(), abs=1e-6)
        assert tuple(top_left[0]) == expected, (corner, top_left[0])


def float32_extremes(rng: np.random.Generator, h: int, w: int):
    """float32 frames whose window statistics are hard to bound: a high level with tiny variation,
    rare huge spikes on a near-flat floor, a near-flat sinusoid, a few 1e-4 bumps on a flat level,
    ramps and noise from 1e-6 to 1e5 in scale, and halves 1e5 times apart."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yield 1e4 + rng.random((h, w)) * 1e-2
    yield np.where(rng.random((h, w)) < 0.02, 1e6, 3.0) + rng.random((h, w)) * 1e-3
    yield 100 + 1e-3 * np.sin(xx / 2.0) * np.cos(yy / 3.0)
    bumps = np.full((h, w), 50.0)
    bumps[rng.integers(0, h, 20), rng.integers(0, w, 20)] += rng.random(20) * 1e-4
    yield bumps
    for scale in (1e-3, 1e3):
        yield (xx * 0.7 + yy * 1.3) * scale
    for scale in (1e-6, 1e5):
        yield rng.standard_normal((h, w)) * scale - 1e3
    halves = rng.random((h, w))
    halves[:, : w // 2] *= 1e5
    yield halves


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_fft_lengths_with_a_factor_of_seven(isa, dtype, use_isa):
    """Regions whose transform sizes have the factor 7 (98 = 2 7^2, 105 = 3 5 7, 126, 140, 196,
    and 336 for a 328-pixel side), so the radix-7 butterflies run forward and inverse, once,
    twice and beside every other radix: every stress image's best window is the reference's."""
    if isa not in available_isas():
        pytest.skip(f"{isa} kernels do not run on this machine")
    use_isa(isa)
    from flickermine import _core

    rng = np.random.default_rng(7)
    checked = 0
    for (H, W), (th, tw) in (((98, 98), (20, 20)), ((126, 105), (24, 16)), ((196, 140), (40, 33)), ((328, 100), (64, 20))):
        for name, image in stress_images(rng):
            image = np.pad(image, ((0, 340 - image.shape[0]), (0, 200 - image.shape[1])), mode="reflect")
            moved = np.roll(image, (2, -3), axis=(0, 1)).copy()
            if dtype == np.float32:
                image = (image / np.float32(255)).astype(np.float32)
                moved = (moved / np.float32(255)).astype(np.float32)
            ty, tx = int(rng.integers(0, H - th)), int(rng.integers(0, W - tw))
            box = np.array([[tx, ty, tx + tw, ty + th]])
            region = np.array([[0, 0, W, H]])
            ref = _core.ncc_score_map_reference(image, box, moved, region)
            scores, top_left = _core.ncc_search_frames(image, box, [moved], region)
            x, y = top_left[0]
            assert scores[0] == pytest.approx(ref.max(), abs=1e-6), (name, H, W)
            assert ref[y, x] >= ref.max() - 1e-6, (name, H, W)
            checked += 1
    assert checked == 28


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
def test_float32_frames_at_extreme_scales(isa, use_isa):
    """float32 frames far from 0-255 (see float32_extremes): the best window's
    score is the reference's best, templates and regions of odd sizes (vector tails)."""
    if isa not in available_isas():
        pytest.skip(f"{isa} kernels do not run on this machine")
    use_isa(isa)
    from flickermine import _core

    rng = np.random.default_rng(21)
    checked = 0
    for image in float32_extremes(rng, 130, 170):
        image = image.astype(np.float32)
        for _ in range(4):
            th, tw = int(rng.integers(8, 50)), int(rng.integers(8, 50))
            moved = np.roll(image, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1)).copy()
            ty, tx = int(rng.integers(0, 130 - th)), int(rng.integers(0, 170 - tw))
            H, W = th + int(rng.integers(20, 70)), tw + int(rng.integers(20, 90))
            box = np.array([[tx, ty, tx + tw, ty + th]])
            region = np.array([[3, 2, 3 + min(W, 160), 2 + min(H, 125)]])
            ref = _core.ncc_score_map_reference(image, box, moved, region)
            scores, top_left = _core.ncc_search_frames(image, box, [moved], region)
            x, y = top_left[0]
            assert scores[0] == pytest.approx(ref.max(), abs=1e-9)
            assert ref[y - region[0, 1], x - region[0, 0]] >= ref.max() - 1e-9
            checked += 1
    assert checked == 36


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
def test_float32_quiet_windows_beside_loud_ones(isa, use_isa):
    """A near-flat part (variation 1e-4 to 1e-1 on a level of 5) beside loud noise (1e3 to 1e6):
    the window sums of the quiet part carry rounding error from the loud one as large as their
    own variance, so only a correct error bound on the window statistics keeps the best window
    (a template from the quiet part) among the rescored ones."""
    if isa not in available_isas():
        pytest.skip(f"{isa} kernels do not run on this machine")
    use_isa(isa)
    from flickermine import _core

    rng = np.random.default_rng(0)
    h, w = 130, 170
    for _ in range(40):
        image = 5 + rng.random((h, w)) * 10.0 ** rng.uniform(-4, -1)
        split = int(rng.integers(30, 100))
        image[:, :split] = rng.random((h, split)) * 10.0 ** rng.uniform(3, 6)
        image = image.astype(np.float32)
        moved = np.roll(image, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1)).copy()
        th, tw = int(rng.integers(10, 40)), int(rng.integers(10, 40))
        ty, tx = int(rng.integers(0, h - th)), int(rng.integers(split, w - tw))
        box, region = np.array([[tx, ty, tx + tw, ty + th]]), np.array([[0, 0, w, h]])
        ref = _core.ncc_score_map_reference(image, box, moved, region)
        scores, top_left = _core.ncc_search_frames(image, box, [moved], region)
        x, y = top_left[0]
        assert scores[0] == pytest.approx(ref.max(), abs=1e-9)
        assert ref[y, x] >= ref.max() - 1e-9


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
def test_template_too_large_for_int32_window_sums(isa, use_isa):
    """h * w > 66051: uint8 window sums of squares overflow 32 bits, so the kernels take their
    float64 window-sum path."""
    if isa not in available_isas():
        pytest.skip(f"{isa} kernels do not run on this machine")
    use_isa(isa)
    from flickermine import _core

    rng = np.random.default_rng(8)
    image = texture(rng, 300, 300)
    moved = np.roll(image, (4, 3), axis=(0, 1)).copy()
    box = np.array([[20, 10, 270, 280]])  # 270 x 250 = 67500 pixels
    region = np.array([[5, 0, 285, 290]])
    scores, top_left = _core.ncc_search_frames(image, box, [moved], region)
    ref = _core.ncc_score_map_reference(image, box, moved, region)
    ry, rx = np.unravel_index(np.argmax(ref), ref.shape)
    assert scores[0] == pytest.approx(ref.max(), abs=1e-6)
    assert tuple(top_left[0]) == (region[0, 0] + rx, region[0, 1] + ry)


def test_code_paths_agree_on_real_frames(use_isa):
    """Every code path finds the same matches in real video frames, at the benchmark's sizes."""
    import cv2

    from flickermine import _core

    from .conftest import shared_data

    cap = cv2.VideoCapture(str(shared_data("pets09-s2l1", "video.avi")))
    frames = []
    while len(frames) < 4:
        ok, frame = cap.read()
        assert ok
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    H, W = frames[0].shape
    results = {}
    for isa in available_isas():
        use_isa(isa)
        found = []
        for h, w in ((32, 32), (64, 64), (128, 128), (200, 300)):
            tx1, ty1 = (W - w) // 2, (H - h) // 2
            box = np.array([[tx1, ty1, tx1 + w, ty1 + h]])
            region = np.array([[tx1 - 100, ty1 - 100, tx1 + w + 100, ty1 + h + 100]])
            for dtype in (np.uint8, np.float32):
                scores, top_left = _core.ncc_search_frames(
                    frames[0].astype(dtype), box, [f.astype(dtype) for f in frames[1:]], region
                )
                found.append((scores, top_left))
        results[isa] = found
    first = results[available_isas()[0]]
    for isa, found in results.items():
        for (s0, p0), (s1, p1) in zip(first, found):
            np.testing.assert_allclose(s1, s0, atol=1e-9, err_msg=isa)
            np.testing.assert_array_equal(p1, p0, err_msg=isa)


def test_unknown_or_unavailable_code_path_is_refused():
    from flickermine import _core

    with pytest.raises(ValueError, match="unknown NCC kernel set"):
        _core._ncc_isa("sse9")
    if "avx512" not in available_isas():
        with pytest.raises(ValueError, match="not available"):
            _core._ncc_isa("avx512")


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
def test_whole_number_float32_frames_search_as_their_uint8_frames(isa, use_isa):
    """float32 frames of whole numbers 0..255 (a uint8 frame converted) are searched as bytes: the
    uint8 frames' scores and positions, bit for bit. One pixel of the region that is not such a
    number (fractional, negative, above 255), put last so that the check must read every row to
    its end, sends the search down the float path, which still finds the reference's best."""
    if isa not in available_isas():
        pytest.skip(f"{isa} kernels do not run on this machine")
    use_isa(isa)
    from flickermine import _core

    rng = np.random.default_rng(5)
    for name, template_image, tbox, image, region in cases(rng):
        as_bytes = _core.ncc_search_frames(template_image, np.array([tbox]), [image], np.array([region]))
        template32 = template_image.astype(np.float32)
        as_floats = _core.ncc_search_frames(template32, np.array([tbox]), [image.astype(np.float32)], np.array([region]))
        np.testing.assert_array_equal(as_floats[0], as_bytes[0], err_msg=name)
        np.testing.assert_array_equal(as_floats[1], as_bytes[1], err_msg=name)
        # Also a pixel inside the best match, where reading it as a byte would change the score.
        bx, by = as_bytes[1][0]
        for py, px in ((region[3] - 1, region[2] - 1), (by, bx)):
            for odd in (0.5, -1.0, 256.0):
                spoiled = image.astype(np.float32)
                spoiled[py, px] = odd
                ref = _core.ncc_score_map_reference(template32, np.array([tbox]), spoiled, np.array([region]))
                scores, top_left = _core.ncc_search_frames(template32, np.array([tbox]), [spoiled], np.array([region]))
                assert scores[0] == pytest.approx(ref.max(), abs=1e-6), (name, odd, py, px)
                x, y = top_left[0]
                assert ref[y - region[1], x - region[0]] == pytest.approx(ref.max(), abs=1e-6), (name, odd, py, px)
