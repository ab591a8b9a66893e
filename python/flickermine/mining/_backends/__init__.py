"""Backend registry. Every backend module has the same members:

* ``NAME``: its name;
* ``ncc_search_batch(template_frame, template_boxes, search_frame, regions) -> (scores, top_left)``;
* ``iou(boxes_a, boxes_b) -> (N, M)``;
* ``frame_verdicts(frames, boxes, scores, center, params, rule, iou_first=True) -> (N,) int8``;
* ``frame_hard_positives(frames, boxes, center, params) -> (M, 4) float64``.

Conventions are those of :mod:`flickermine.mining._rules` and :mod:`flickermine._boxes`. Inputs are
validated by the facade (:mod:`flickermine.mining._kernels`) before they reach a backend.
:class:`Backend` states the same as a :class:`typing.Protocol`; :func:`get_backend` returns one.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Literal, Protocol, Sequence, cast

import numpy as np

from ...errors import InputError
from .._params import MiningParams, Rule

__all__ = ["BACKENDS", "Backend", "BackendName", "available_backends", "get_backend", "unavailable_backends"]

#: What a ``backend=`` argument may name: one backend, or ``"auto"`` (the fastest available).
BackendName = Literal["auto", "cuda", "cpp", "numba", "opencv", "numpy"]

#: Every backend name, in the order ``auto`` prefers them (fastest first).
BACKENDS: tuple[BackendName, ...] = ("cuda", "cpp", "numba", "opencv", "numpy")


class Backend(Protocol):
    """What every backend module provides (each is a module, not a class: the members below are
    its module-level name and functions)."""

    NAME: str

    def ncc_search_batch(
        self, template_frame: np.ndarray, template_boxes: np.ndarray, search_frame: np.ndarray, regions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best NCC score and top-left position of each template box inside its search region."""
        ...

    def iou(self, boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
        """``(N, M)`` IoU of every pair."""
        ...

    def frame_verdicts(
        self,
        frames: Sequence[np.ndarray],
        boxes: Sequence[np.ndarray],
        scores: np.ndarray,
        center: int,
        params: MiningParams,
        rule: Rule,
        iou_first: bool = True,
    ) -> np.ndarray:
        """``(N,)`` int8 :class:`~flickermine.mining.Reason` codes of the center frame's boxes."""
        ...

    def frame_hard_positives(
        self, frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray], center: int, params: MiningParams
    ) -> np.ndarray:
        """``(M, 4)`` float64 boxes of objects the detector missed in the center frame."""
        ...


_MODULES = {
    "cuda": "cuda_backend",
    "cpp": "cpp_backend",
    "numba": "numba_backend",
    "opencv": "opencv_backend",
    "numpy": "numpy_backend",
}
_loaded: dict[str, ModuleType] = {}
_unavailable: dict[str, str] = {}


def _load(name: str) -> ModuleType | None:
    if name in _loaded:
        return _loaded[name]
    if name in _unavailable:
        return None
    try:
        module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    except ImportError as error:
        _unavailable[name] = str(error)
        return None
    _loaded[name] = module
    return module


def available_backends() -> list[str]:
    """Names of the backends that can run here, fastest first."""
    return [name for name in BACKENDS if _load(name) is not None]


def unavailable_backends() -> dict[str, str]:
    """Backends that cannot run here, with the reason."""
    available_backends()
    return dict(_unavailable)


def get_backend(name: BackendName = "auto") -> Backend:
    """The backend module called ``name``, or the fastest available for ``"auto"``."""
    if name == "auto":
        for candidate in BACKENDS:
            module = _load(candidate)
            if module is not None:
                return cast(Backend, module)
    if name not in _MODULES:
        raise InputError(f"unknown backend {name!r}; choose 'auto' or one of {', '.join(BACKENDS)}")
    module = _load(name)
    if module is None:
        raise InputError(
            f"backend {name!r} is not available here ({_unavailable[name]}); "
            f"available: {', '.join(available_backends())}"
        )
    return cast(Backend, module)


def warn_unusable(name: str, reason: str) -> None:
    warnings.warn(f"flickermine backend {name!r} is built but unusable here: {reason}", RuntimeWarning, stacklevel=3)
