"""Detectors by name: the names of the command line's ``--detector`` (:data:`DETECTOR_NAMES`),
:func:`make_detector` and :func:`detector_info` (provenance for output files)."""

from __future__ import annotations

import difflib
from typing import Any

from ..errors import InputError, InputTypeError
from ._detections import Detector, _qualname
from ._hog_svm import HogSvmDetector
from ._opencv import _HAAR_ALIASES, HAAR_CASCADES, OpenCVHaarDetector, OpenCVHOGPeopleDetector
from ._torchvision import COCO_CATEGORIES, TORCHVISION_MODELS, TorchvisionDetector

__all__ = ["DETECTOR_NAMES", "detector_info", "make_detector"]

#: the names :func:`make_detector` takes (the CLI's ``--detector``)
DETECTOR_NAMES: tuple[str, ...] = (
    *TORCHVISION_MODELS,
    "hog-svm",
    "opencv-hog",
    "opencv-haar-fullbody",
    "opencv-haar-upperbody",
    "opencv-haar-lowerbody",
    "opencv-haar-frontalface",
    *(f"opencv-haar-{name}" for name in HAAR_CASCADES if name not in ("fullbody", "upperbody", "lowerbody")),
)


def make_detector(spec: str, **options: Any) -> Detector:
    """The detector named ``spec`` (one of :data:`DETECTOR_NAMES`; ``opencv-haar-<cascade>`` takes
    any cascade of ``HAAR_CASCADES``), built with ``options`` (keyword arguments of its class).

    The CLI passes ``weights``, ``category``, ``device`` and ``batch_size``: the OpenCV detectors
    refuse ``weights`` and any device but the CPU, and accept ``category`` only when it names what
    they find. Unknown names raise ValueError listing the choices.
    """
    if not isinstance(spec, str):
        raise InputTypeError(f"detector name must be a string, got {type(spec).__name__}")
    key = spec.strip()
    if key in TORCHVISION_MODELS:
        return TorchvisionDetector(key, **options)
    if key.startswith("opencv-") or key == "hog-svm":
        weights = options.pop("weights", None)
        device = options.pop("device", None)
        if device is not None and str(device) != "cpu":
            raise InputError(f"detector {key!r} runs on the CPU only; --device applies to torchvision detectors")
        if options.pop("gpu_decode", False):
            raise InputError(f"detector {key!r} runs on the CPU only; --gpu-decode applies to torchvision detectors on CUDA")
        if key == "hog-svm":
            if weights is None:
                raise InputError("detector 'hog-svm' needs --weights MODEL: a model written by `flickermine train --model hog-svm`")
            return HogSvmDetector(weights, **options)
        if weights is not None:
            raise InputError(f"detector {key!r} is built into OpenCV and takes no weights file")
        if key == "opencv-hog":
            return OpenCVHOGPeopleDetector(**options)
        if key.startswith("opencv-haar-"):
            cascade = key[len("opencv-haar-") :]
            if _HAAR_ALIASES.get(cascade, cascade) in HAAR_CASCADES:
                return OpenCVHaarDetector(cascade, **options)
    close = difflib.get_close_matches(key, DETECTOR_NAMES, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise InputError(f"unknown detector {spec!r}{hint}; choose one of {', '.join(DETECTOR_NAMES)}")


def detector_info(detector: Any) -> dict:
    """A JSON-ready description of ``detector`` for provenance in output files: ``name``,
    ``model``, ``weights`` (path or None), ``category``, ``score`` (what the score means), and
    the options that change its output."""
    info = detector.info() if callable(getattr(detector, "info", None)) else None
    if not isinstance(info, dict):
        info = {
            "name": getattr(detector, "name", type(detector).__name__),
            "model": _qualname(type(detector)),
            "weights": None,
            "category": None,
        }
    info.setdefault("score", "as returned by the detector")
    names = dict(getattr(detector, "category_names", None) or {})
    info["labels"] = "COCO category ids (torchvision)" if names == COCO_CATEGORIES else {str(k): v for k, v in names.items()}
    return info
