"""The one image reader every stage uses (flickermine._images.read_image): shapes, and which
error a missing or broken file gives. And the one colour-to-gray conversion of decoded frames
(bgr_to_gray): cv2.cvtColor's values, in strips small enough to stay off OpenCV's thread pool."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import flickermine._images as images
from flickermine._images import bgr_to_gray, read_image
from flickermine.errors import InputError


def test_reads_bgr_and_gray(tmp_path):
    bgr = np.zeros((6, 9, 3), dtype=np.uint8)
    bgr[..., 2] = 200  # pure red in BGR
    path = tmp_path / "red.png"
    assert cv2.imwrite(str(path), bgr)
    colour = read_image(path)
    assert colour.shape == (6, 9, 3) and colour.dtype == np.uint8
    np.testing.assert_array_equal(colour, bgr)
    gray = read_image(str(path), gray=True)
    assert gray.shape == (6, 9) and gray.dtype == np.uint8
    # Luma of pure red (weight 0.299; the PNG decoder rounds its own way): the red channel was read.
    assert abs(int(gray[0, 0]) - 0.299 * 200) <= 1


def test_a_missing_file_is_file_not_found_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.png: no such file"):
        read_image(tmp_path / "nowhere.png")


@pytest.mark.parametrize("name, content", [("broken.png", b"not an image at all"), ("empty.jpg", b"")])
def test_a_file_that_does_not_decode_is_input_error_naming_it(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=rf"{name}: not a readable image"):
        read_image(path)


def test_a_folder_is_not_an_image(tmp_path):
    # A folder where an image was expected: it exists, but there is no file to read.
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_image(tmp_path)


@pytest.mark.parametrize(
    "shape",
    [(576, 768, 3), (1080, 1920, 3), (85, 771, 3), (1, 1, 3), (300, 1, 3), (2, 70_000, 3)],
    ids=["pets09", "1080p", "one-strip-odd-width", "one-pixel", "one-column", "row-over-2^16"],
)
def test_bgr_to_gray_is_cvtcolor_bit_for_bit(shape):
    bgr = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    gray = bgr_to_gray(bgr)
    assert gray.shape == shape[:2] and gray.dtype == np.uint8 and gray.flags.c_contiguous
    np.testing.assert_array_equal(gray, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))


def test_bgr_to_gray_of_every_colour():
    # All 2**24 BGR values once: the strips change nothing, whatever the pixel.
    bgr = np.arange(1 << 24, dtype=np.uint32).view(np.uint8).reshape(4096, 4096, 4)[..., :3].copy()
    np.testing.assert_array_equal(bgr_to_gray(bgr), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))


def test_bgr_to_gray_of_views_and_float_frames():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    view = frame[10:90, 20:150]  # not C-contiguous: converted in one call
    np.testing.assert_array_equal(bgr_to_gray(view), cv2.cvtColor(view, cv2.COLOR_BGR2GRAY))
    floats = rng.random((300, 400, 3), dtype=np.float32)
    gray = bgr_to_gray(floats)
    assert gray.dtype == np.float32
    np.testing.assert_array_equal(gray, cv2.cvtColor(floats, cv2.COLOR_BGR2GRAY))


def test_bgr_to_gray_hands_opencv_single_stripe_strips(monkeypatch):
    # OpenCV runs cvtColor on its thread pool above 1.5 * 2**16 pixels (one stripe per 2**16);
    # every call must stay at or below 2**16, and together cover the frame once.
    calls = []
    real = cv2.cvtColor

    def recording(src, code, dst=None):
        calls.append(src.shape[0] * src.shape[1])
        return real(src, code, dst=dst)

    monkeypatch.setattr(images.cv2, "cvtColor", recording)
    bgr_to_gray(np.zeros((576, 768, 3), np.uint8))
    assert max(calls) <= 1 << 16 and sum(calls) == 576 * 768 and len(calls) == 7
