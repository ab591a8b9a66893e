"""The one image reader every stage uses (flickermine._images.read_image): shapes, and which
error a missing or broken file gives."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from flickermine._images import read_image
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
