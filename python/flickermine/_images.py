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
