"""The CUDA backend: ``flickermine._core_cuda``. Batched NCC search and IoU on the GPU; the rules
themselves are :mod:`flickermine.mining._rules` (as for the NumPy backend) driving the GPU search.

Importing this module raises ImportError, so the registry lists the backend as unavailable with
the reason and ``auto`` skips it, when:

* ``_core_cuda`` was not built (no CUDA compiler at install time, or ``FLICKERMINE_CUDA=OFF``);
* there is plainly no GPU here (no NVIDIA driver, or the driver sees no device);
* the module is built and a driver is present but the device is unusable (driver older than the
  CUDA runtime, no kernel image for this GPU, ...): then it also warns once
  (:func:`flickermine.mining._backends.warn_unusable`), since that is a broken install, not a CPU box.

Scores are float64-accurate (see ``cpp/cuda/ncc_cuda.hpp``): the GPU scores in float32 with an
error bound per position, then rescores in float64 every position that could be the best.
"""

from __future__ import annotations

import numpy as np

from .. import _rules as rules
from . import warn_unusable

try:
    from ... import _core_cuda
except ImportError as error:  # pragma: no cover - depends on the build
    raise ImportError(
        "flickermine._core_cuda (the CUDA kernels) is not built: install from the source tree with a CUDA "
        f"compiler (nvcc) on PATH, e.g. `pip install .` ({error})"
    ) from error

NAME = "cuda"


def _self_test() -> None:
    """One tiny search and one IoU on the device: a kernel image missing for this GPU shows here."""
    frame = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 7) % 251
    scores, top_left = _core_cuda.ncc_search_batch(
        frame, np.array([[2, 2, 5, 5]], dtype=np.int64), frame, np.array([[0, 0, 8, 8]], dtype=np.int64)
    )
    overlap = _core_cuda.iou(np.array([[0.0, 0.0, 2.0, 2.0]]), np.array([[1.0, 0.0, 3.0, 2.0]]))
    if abs(scores[0] - 1.0) > 1e-9 or tuple(top_left[0]) != (2, 2) or abs(overlap[0, 0] - 1.0 / 3.0) > 1e-12:
        raise RuntimeError(f"self-test gave score {scores[0]!r} at {tuple(top_left[0])}, IoU {overlap[0, 0]!r}")


def _probe() -> tuple[str | None, bool]:
    """``(reason the backend cannot run or None, whether to warn)``; computed once per process
    (kept on the extension module, which stays imported even when this module's import fails)."""
    cached = getattr(_core_cuda, "_flickermine_probe", None)
    if cached is not None:
        return cached
    status = _core_cuda.device_status()
    result: tuple[str | None, bool]
    if not status["usable"]:
        result = (f"no usable CUDA device ({status['reason']})", not status["no_device"])
    else:
        try:
            _self_test()
            result = (None, False)
        except RuntimeError as error:
            result = (f"CUDA device {status['device_name']!r} failed the self-test: {error}", True)
    setattr(_core_cuda, "_flickermine_probe", (result[0], False))  # warn on the first probe only
    return result


_reason, _warn = _probe()
if _reason is not None:
    if _warn:
        warn_unusable(NAME, _reason)
    raise ImportError(_reason)


def device_status() -> dict:
    """What the CUDA runtime reports about device 0 (name, compute capability, ...)."""
    return _core_cuda.device_status()


def ncc_search_batch(
    template_frame: np.ndarray, template_boxes: np.ndarray, search_frame: np.ndarray, regions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every search of a frame pair in one launch; see :data:`flickermine.mining._rules.SearchBatch`."""
    return _core_cuda.ncc_search_batch(template_frame, template_boxes, search_frame, regions)


def ncc_search_multi(
    frames: list[np.ndarray],
    template_index: np.ndarray,
    template_boxes: np.ndarray,
    search_index: np.ndarray,
    regions: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Searches across several frames in one launch: ``template_boxes[k]`` (K, 4) int64 of
    ``frames[template_index[k]]`` inside ``regions[k]`` of ``frames[search_index[k]]``.
    Returns ``(scores (K,) float64, top_left (K, 2) int64 x, y in image pixels)``."""
    return _core_cuda.ncc_search_multi(list(frames), template_index, template_boxes, search_index, regions)


def iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    return _core_cuda.iou(boxes_a, boxes_b)


frame_verdicts, frame_hard_positives = rules.rule_kernels(ncc_search_batch)
