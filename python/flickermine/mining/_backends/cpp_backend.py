"""The C++ backend: ``flickermine._core``. NCC search, IoU and whole-frame verdicts run in C++
with the GIL released, one frame's detections spread over ``_core.num_threads()`` threads."""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from .._params import PYTHON_ONLY_FIELDS, MiningParams, Rule

try:
    from ... import _core
except ImportError as error:  # pragma: no cover - depends on the build
    raise ImportError(
        "flickermine._core (the C++ extension) is not built; reinstall with `pip install .` "
        f"from the source tree, which compiles it ({error})"
    ) from error

NAME = "cpp"


def ncc_search_batch(
    template_frame: np.ndarray, template_boxes: np.ndarray, search_frame: np.ndarray, regions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    return _core.ncc_search_batch(template_frame, template_boxes, search_frame, regions)


def iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    return _core.iou(boxes_a, boxes_b)


def frame_verdicts(
    frames: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    scores: np.ndarray,
    center: int,
    params: MiningParams,
    rule: Rule,
    iou_first: bool = True,
) -> np.ndarray:
    return _core.frame_verdicts(list(frames), list(boxes), scores, center, _core_params(params), rule.value, iou_first)


@functools.lru_cache(maxsize=8)
def _core_params(params: MiningParams) -> "_core.Params":
    # By field name; raises RuntimeError naming any field of `params` the C++ does not take unless
    # params.PYTHON_ONLY_FIELDS (the one list of them, with reasons) names it.
    return _core.Params.from_python(params, PYTHON_ONLY_FIELDS)


def frame_hard_positives(
    frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray], center: int, params: MiningParams
) -> np.ndarray:
    return _core.hard_positives(list(frames), list(boxes), center, _core_params(params))


def set_num_threads(threads: int) -> int:
    """Set the rule threads (0: the default); return the setting it replaces."""
    previous = _core.num_threads()
    _core.set_num_threads(threads)
    return previous
