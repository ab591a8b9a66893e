"""Reading image files: the one reader of every stage that takes images from disk.

A floor module (OpenCV, the error hierarchy and ``_files``), importable from every stage: detection,
ground truth, evaluation and training read their images through it, so a missing or broken
file gives the same error wherever it is met.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ._files import PathLike
from .errors import InputError


def read_image(path: PathLike, gray: bool = False) -> np.ndarray:
    """The image file at ``path``: ``(H, W, 3)`` uint8 BGR, or ``(H, W)`` uint8 with ``gray``.

    Raises:
        FileNotFoundError: no file at ``path``.
        InputError: the file is not an image OpenCV decodes (corrupt, or an unsupported format).
    """
    try:
        # imread, not imdecode: it decodes a damaged JPEG partly instead of refusing it.
        image = cv2.imread(os.fspath(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    except cv2.error as error:  # pragma: no cover - OpenCV reports most failures as None
        raise InputError(f"{path}: not a readable image ({error})") from error
    if image is None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file")
        raise InputError(f"{path}: not a readable image (corrupt, or a format OpenCV does not read)")
    return image


# cv2.cvtColor hands an image of more than about 1.5 * 2**16 pixels to OpenCV's thread pool
# (parallel_for_ with one stripe per 2**16 pixels), whose workers then spin-wait for the next job.
# In the decoding thread that cost about 0.3 ms of CPU a 768x576 frame, a quarter of decoding it,
# for no wall time: CPU that the miner's rules, running beside the decoder, were short of. Strips
# of at most 2**16 pixels make a single stripe, which OpenCV runs in the calling thread.
_GRAY_STRIP_PIXELS = 1 << 16


def bgr_to_gray(bgr: np.ndarray) -> np.ndarray:
    """``cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)``, the same values, computed in the calling thread.

    ``bgr``: ``(H, W, 3)`` colour image (uint8 from decoders; any depth cvtColor takes). Returns a
    new ``(H, W)`` array of its dtype. A C-contiguous image is converted in row strips of at most
    2**16 pixels (OpenCV's thread pool is not woken); anything else (an empty image too) in one call.
    """
    if bgr.ndim != 3 or bgr.shape[2] != 3 or not bgr.flags.c_contiguous or bgr.size == 0:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    height, width = bgr.shape[:2]
    rows = max(1, _GRAY_STRIP_PIXELS // width)  # width >= 1: empty images returned above
    gray = np.empty((height, width), dtype=bgr.dtype)
    for top in range(0, height, rows):
        cv2.cvtColor(bgr[top : top + rows], cv2.COLOR_BGR2GRAY, dst=gray[top : top + rows])
    return gray
