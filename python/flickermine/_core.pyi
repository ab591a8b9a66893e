"""Type stubs of ``flickermine._core``, the pybind11 module built from ``cpp/python/bindings.cpp``.

Private: use :mod:`flickermine` (its ``cpp`` backend calls this module). Conventions:

* a frame is a 2D ``(H, W)`` grayscale array, dtype uint8 or float32, contiguous rows; other
  dtypes are refused (ValueError), never converted;
* pixel boxes are ``(K, 4)`` integer ``x1, y1, x2, y2`` half-open image pixels (float input is
  refused rather than truncated), inside their frame and non-empty;
* boxes are ``(N, 4)`` ``x1, y1, x2, y2`` continuous pixel coordinates, any numeric dtype
  (converted to float64), finite with ``x2 > x1`` and ``y2 > y1``;
* lists of frames or boxes must be real ``list`` objects (pybind11 ``py::list``), so their
  element type is ``NDArray[Any]`` here: a ``list[NDArray[np.uint8]]`` would not match a list of
  the uint8 | float32 union, lists being invariant.

Bad arguments raise ValueError naming the argument. The work runs with the GIL released.
"""

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

_Frame = NDArray[np.uint8] | NDArray[np.float32]
_PixelBoxes = NDArray[np.integer[Any]]

has_cuda: bool
"""Always False here (the CUDA kernels are the separate module ``flickermine._core_cuda``)."""

class Params:
    """The rules' knobs; same fields and defaults as :class:`flickermine.MiningParams` (less the
    steps applied in Python: ``duplicate_iou``, ``class_agnostic``). Pixels are image pixels."""

    score_threshold: float
    """Detections scoring below it take no part (default 0.8)."""
    window: int
    """Neighbour frames on each side (default 5)."""
    margin: int
    """px added on every side of a box to make its NCC search region (default 100)."""
    ncc_threshold: float
    """NCC score below which the object is considered lost (default 0.5)."""
    iou_threshold: float
    """IoU that makes a neighbour detection a partner (default 0.2)."""
    sure_score: float
    """At or above it a detection is never a hard negative (default 0.98)."""
    min_area: float
    """px^2; smaller boxes are never hard negatives (default 1600.0)."""
    border: int
    """px; boxes with an edge closer than this to the image edge are exempt (default 50)."""
    max_gap: int
    """Hard positives: most consecutive missed frames between matched ends (default 1)."""
    min_tracked: int
    """Support rule: neighbour frames the detection must be tracked into (default 3)."""
    max_support: float
    """Support rule: largest share of tracked frames holding a matching detection (default 0.2)."""
    support_iou: float
    """Support rule: IoU of a detection with the tracked box that matches it (default 0.5)."""
    fields: tuple[str, ...]
    """The names of the fields the C++ rules take (class attribute)."""
    def __init__(self) -> None: ...
    @staticmethod
    def from_python(params: Any, python_only: dict[str, str]) -> Params:
        """Params from a :class:`flickermine.MiningParams` dataclass, field by field by name.
        Raises RuntimeError naming a field the C++ lacks (unless ``python_only``, name -> reason,
        lists it) or a C++ field the dataclass lacks; ValueError for a value out of range."""

def ncc_search_batch(
    template_frame: _Frame,
    template_boxes: _PixelBoxes,
    search_frame: _Frame,
    regions: _PixelBoxes,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Best TM_CCOEFF_NORMED score of each template box (K, 4) of ``template_frame`` inside its
    region (K, 4) of ``search_frame`` (same dtype; each region at least the template's size).

    Returns ``(scores (K,) float64 in [-1, 1], top_left (K, 2) int64 x, y in image pixels)``."""

def ncc_search_frames(
    template_frame: _Frame,
    template_box: _PixelBoxes,
    search_frames: list[NDArray[Any]],
    region: _PixelBoxes,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """One (1, 4) template box of ``template_frame`` searched inside the same (1, 4) region of each
    of the G ``search_frames`` (template_frame's dtype), reusing the template's transform.

    Returns ``(scores (G,) float64, top_left (G, 2) int64 x, y in image pixels)``."""

def iou(boxes_a: ArrayLike, boxes_b: ArrayLike) -> NDArray[np.float64]:
    """IoU of (N, 4) and (M, 4) boxes (continuous coordinates): (N, M) float64. An empty
    argument of any shape counts as no boxes."""

def frame_verdicts(
    frames: list[NDArray[Any]],
    boxes: list[NDArray[Any]],
    scores: ArrayLike,
    center: int,
    params: Params,
    rule: str,
    iou_first: bool = True,
) -> NDArray[np.int8]:
    """Reason codes (N,) int8 (:class:`flickermine.Reason` values) of the N boxes of
    ``frames[center]``.

    ``frames``: consecutive (H, W) frames, same size and dtype; ``boxes[g]``: (N_g, 4) candidate
    boxes of ``frames[g]``; ``scores``: (N,) detector scores of the center frame's boxes;
    ``rule``: ``"seed"`` or ``"tracklet"``. See :mod:`flickermine.mining._rules`."""

def hard_positives(
    frames: list[NDArray[Any]],
    boxes: list[NDArray[Any]],
    center: int,
    params: Params,
) -> NDArray[np.float64]:
    """Hard positives (M, 4) float64 x1, y1, x2, y2 of ``frames[center]``: objects detected around
    it and missed in it. Arguments as :func:`frame_verdicts`; see :mod:`flickermine.mining._rules`."""

def ncc_score_map_reference(
    template_frame: _Frame,
    template_box: _PixelBoxes,
    search_frame: _Frame,
    region: _PixelBoxes,
) -> NDArray[np.float64]:
    """Direct float64 score map of one (1, 4) template box (h x w) in one (1, 4) region (RH x RW):
    shape (RH - h + 1, RW - w + 1), indexed by top-left (y, x) within the region. Slow; for tests."""

def set_num_threads(threads: int) -> None:
    """Threads that :func:`frame_verdicts` and :func:`hard_positives` spread one frame's detections
    over, the caller's included; 0: the default, one less than the cores this process may run on
    (its CPU affinity; the other feeds the miner frames), at least 1. Process-wide. ValueError
    outside 0..1024."""

def num_threads() -> int:
    """The threads :func:`frame_verdicts` and :func:`hard_positives` use (see :func:`set_num_threads`)."""

def _parallel_for_check(n: int, fail_at: int = -1, sleep_us: int = 0) -> tuple[list[int], int]:
    """Private, for tests: the rules' thread pool over ``n`` items, each sleeping ``sleep_us``;
    item ``fail_at`` throws (ValueError here). Returns (calls of each item, threads that ran items)."""

def _ncc_isa(name: str = "") -> tuple[str, list[str]]:
    """Private, for tests and benchmarks: switch the NCC kernels to the vector code path ``name``
    (``"baseline"``, ``"avx2"``, ``"avx512"``; ``""`` leaves it).

    Returns ``(kernel set in use, kernel sets available on this CPU)``."""
