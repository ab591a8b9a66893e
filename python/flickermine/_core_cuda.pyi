"""Type stubs of ``flickermine._core_cuda``, the pybind11 module built from
``cpp/python/bindings_cuda.cpp`` when a CUDA compiler is found at install time.

Private: use :mod:`flickermine`'s ``cuda`` backend. Same argument conventions and checks as
``flickermine._core``: frames are 2D ``(H, W)`` uint8 or float32 arrays with contiguous rows;
pixel boxes are ``(K, 4)`` integer ``x1, y1, x2, y2`` half-open image pixels; boxes are
``(N, 4)`` ``x1, y1, x2, y2`` continuous coordinates of any numeric dtype. Bad arguments raise
ValueError naming the argument, a CUDA failure RuntimeError. The work runs with the GIL released.
"""

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

_Frame = NDArray[np.uint8] | NDArray[np.float32]
_PixelBoxes = NDArray[np.integer[Any]]
_Indices = NDArray[np.integer[Any]]

has_cuda: bool
"""Always True (the module exists only in CUDA builds; whether a device answers is
:func:`has_device`)."""

def device_status() -> dict[str, bool | int | str]:
    """What the CUDA runtime reports about device 0, a fresh dict of:

    * ``usable`` (bool): a device answers;
    * ``no_device`` (bool): plainly no GPU here (no driver, or it sees no device);
    * ``driver_present`` (bool);
    * ``device_count`` (int);
    * ``error_code`` (int): the ``cudaError_t`` of the failing call, 0 when none failed;
    * ``reason`` (str): why not usable, ``""`` when usable;
    * ``device_name`` (str): of device 0 when usable;
    * ``compute_capability`` (int): ``major * 10 + minor`` of device 0 when usable, else 0."""

def has_device() -> bool:
    """True when a CUDA device answers."""

def ncc_search_batch(
    template_frame: _Frame,
    template_boxes: _PixelBoxes,
    search_frame: _Frame,
    regions: _PixelBoxes,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Best TM_CCOEFF_NORMED score of each template box (K, 4) of ``template_frame`` inside its
    region (K, 4) of ``search_frame`` (same dtype), all in one launch.

    Returns ``(scores (K,) float64 in [-1, 1], top_left (K, 2) int64 x, y in image pixels)``."""

def ncc_search_multi(
    frames: list[NDArray[Any]],
    template_index: _Indices,
    template_boxes: _PixelBoxes,
    search_index: _Indices,
    regions: _PixelBoxes,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Searches from several frames (a ``list`` of (H, W) arrays, all one dtype) in one launch:
    ``template_boxes[k]`` (K, 4) of ``frames[template_index[k]]`` inside ``regions[k]`` (K, 4) of
    ``frames[search_index[k]]``; ``template_index`` and ``search_index`` are (K,) integer.

    Returns ``(scores (K,) float64, top_left (K, 2) int64 x, y in image pixels)``."""

def iou(boxes_a: ArrayLike, boxes_b: ArrayLike) -> NDArray[np.float64]:
    """IoU of (N, 4) and (M, 4) boxes (continuous coordinates): (N, M) float64. An empty
    argument of any shape counts as no boxes."""
