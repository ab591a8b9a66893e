"""OpenCV's built-in detectors: the HOG people detector and the Haar cascades, CPU only, no weights.

Scores
------
HOG's SVM margin and a Haar cascade's level weight (the sum of its last stage's weak classifiers)
are unbounded. Both are mapped to ``0..1`` with the same fixed standard logistic,
``score = 1 / (1 + exp(-raw))`` (:func:`raw_to_score`; :func:`score_to_raw` is its inverse), so a
threshold means the same on both and on files written from raw values: raw 0 (the decision
boundary) is 0.5, raw 1.39 is 0.8 (the mining default ``score_threshold``), raw 3.89 is 0.98 (the
default ``sure_score``). The raw values are what the MOTChallenge files of the project's test data
(``det/opencv_*.txt``) hold.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import InputError
from ._detections import Detections, _check_batch_size, _check_category_for, _check_frames, _clip_to_frame

__all__ = [
    "HAAR_CASCADES",
    "OpenCVHOGPeopleDetector",
    "OpenCVHaarDetector",
    "haar_cascade_path",
    "raw_to_score",
    "score_to_raw",
]

#: Haar cascade short name -> (file in cv2.data.haarcascades, what it finds)
HAAR_CASCADES: dict[str, tuple[str, str]] = {
    "fullbody": ("haarcascade_fullbody.xml", "person"),
    "upperbody": ("haarcascade_upperbody.xml", "person"),
    "lowerbody": ("haarcascade_lowerbody.xml", "person"),
    "frontalface_default": ("haarcascade_frontalface_default.xml", "face"),
    "frontalface_alt": ("haarcascade_frontalface_alt.xml", "face"),
    "frontalface_alt2": ("haarcascade_frontalface_alt2.xml", "face"),
    "frontalface_alt_tree": ("haarcascade_frontalface_alt_tree.xml", "face"),
    "profileface": ("haarcascade_profileface.xml", "face"),
    "frontalcatface": ("haarcascade_frontalcatface.xml", "cat face"),
    "frontalcatface_extended": ("haarcascade_frontalcatface_extended.xml", "cat face"),
}
_HAAR_ALIASES = {"frontalface": "frontalface_default", "face": "frontalface_default", "catface": "frontalcatface"}

SCORE_MAPPING = "score = 1 / (1 + exp(-raw))"


def raw_to_score(raw: Any) -> np.ndarray:
    """Map unbounded detector outputs (HOG SVM margins, Haar level weights) to ``0..1``:
    ``1 / (1 + exp(-raw))``, float64, computed without overflow."""
    raw = np.asarray(raw, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -raw))


def score_to_raw(score: Any) -> np.ndarray:
    """The inverse of :func:`raw_to_score`: ``log(score / (1 - score))`` (``±inf`` at 0 and 1)."""
    score = np.asarray(score, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.log(score) - np.log1p(-score)


def _cv2():
    import cv2

    return cv2


def _resize(frame: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return frame
    cv2 = _cv2()
    interpolation = cv2.INTER_LINEAR if scale > 1.0 else cv2.INTER_AREA
    return cv2.resize(frame, None, fx=scale, fy=scale, interpolation=interpolation)


def _check_scale(scale: Any) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)) or not (math.isfinite(scale) and scale > 0):
        raise InputError(f"scale must be a positive number, got {scale!r}")
    return float(scale)


class OpenCVHOGPeopleDetector:
    """OpenCV's built-in HOG + linear SVM people detector (Dalal & Triggs; 64x128 window).

    ``cv2.HOGDescriptor`` with ``HOGDescriptor_getDefaultPeopleDetector()`` and
    ``detectMultiScale(frame, hitThreshold=hit_threshold, winStride=win_stride, padding=padding,
    scale=scale_step)``, run on the BGR frame resized by ``scale`` first (``scale=1.5`` finds people
    down to about 70 px tall instead of about 100 px, at 2.25x the cost); boxes are mapped back to
    the original frame and clipped to it. The defaults reproduce ``det/opencv_hog.txt`` of
    the project's test data (and ``scale=1.5`` ``det/opencv_hog_x1.5.txt``). Boxes are the detection
    window, about twice the area of a tight person box. Scores: the SVM margin through
    :func:`raw_to_score`. Label 1, ``"person"``.
    """

    def __init__(
        self,
        scale: float = 1.0,
        hit_threshold: float = 0.0,
        win_stride: tuple[int, int] = (8, 8),
        padding: tuple[int, int] = (8, 8),
        scale_step: float = 1.05,
        batch_size: int = 1,
        category: Any = None,
    ) -> None:
        cv2 = _cv2()
        self.name = "opencv-hog"
        self.category_names = {1: "person"}
        _check_category_for(self.name, category, self.category_names)
        self.scale = _check_scale(scale)
        if not scale_step > 1.0:
            raise InputError(f"scale_step must be > 1, got {scale_step!r}")
        self.hit_threshold = float(hit_threshold)
        self.win_stride = tuple(int(v) for v in win_stride)
        self.padding = tuple(int(v) for v in padding)
        self.scale_step = float(scale_step)
        self.batch_size = _check_batch_size(batch_size)
        if not hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector") and not hasattr(cv2.HOGDescriptor, "getDefaultPeopleDetector"):
            raise RuntimeError(
                f"OpenCV {cv2.__version__} has no built-in HOG people detector (OpenCV 5 dropped it); "
                "install opencv-python-headless>=4.8,<5"
            )
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __repr__(self) -> str:
        return (
            f"OpenCVHOGPeopleDetector(scale={self.scale}, hit_threshold={self.hit_threshold}, "
            f"win_stride={self.win_stride}, padding={self.padding}, scale_step={self.scale_step})"
        )

    def __getstate__(self) -> dict:  # cv2.HOGDescriptor does not pickle; rebuild it
        state = self.__dict__.copy()
        del state["_hog"]
        return state

    def __setstate__(self, state: dict) -> None:
        cv2 = _cv2()
        self.__dict__.update(state)
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        return [self._detect(frame) for frame in _check_frames(frames, self.name)]

    def _detect(self, frame: np.ndarray) -> Detections:
        resized = _resize(frame, self.scale)
        window_width, window_height = self._hog.winSize
        if resized.shape[0] < window_height or resized.shape[1] < window_width:
            # No window fits, so nothing can be found; OpenCV 4's detectMultiScale can crash the
            # process (SIGSEGV) on such images instead of returning nothing.
            return _clip_to_frame(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), frame.shape)
        rects, margins = self._hog.detectMultiScale(
            resized,
            hitThreshold=self.hit_threshold,
            winStride=self.win_stride,
            padding=self.padding,
            scale=self.scale_step,
        )
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / self.scale
        boxes = np.column_stack([rects[:, :2], rects[:, :2] + rects[:, 2:]])
        scores = raw_to_score(np.asarray(margins, dtype=np.float64).reshape(-1))
        return _clip_to_frame(boxes, scores, np.ones(len(scores), np.int64), frame.shape)

    def info(self) -> dict:
        return {
            "name": self.name,
            "model": "cv2.HOGDescriptor default people detector",
            "weights": None,
            "category": "person",
            "score": f"{SCORE_MAPPING}, raw = HOG SVM margin",
            "options": {
                "scale": self.scale,
                "hit_threshold": self.hit_threshold,
                "win_stride": list(self.win_stride),
                "padding": list(self.padding),
                "scale_step": self.scale_step,
            },
        }


def haar_cascade_path(cascade: str) -> Path:
    """The file of a Haar cascade shipped with OpenCV (``cv2.data.haarcascades``)."""
    cv2 = _cv2()
    key = _HAAR_ALIASES.get(cascade, cascade)
    if key not in HAAR_CASCADES:
        close = difflib.get_close_matches(cascade, [*HAAR_CASCADES, *_HAAR_ALIASES], n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InputError(f"unknown Haar cascade {cascade!r}{hint}; choose one of {', '.join(HAAR_CASCADES)}")
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / HAAR_CASCADES[key][0]
    if not folder or not path.is_file():
        raise RuntimeError(
            f"OpenCV {cv2.__version__} ships no Haar cascade {path.name} (cv2.data.haarcascades is "
            f"{folder!r}; OpenCV 5 dropped them); install opencv-python-headless>=4.8,<5"
        )
    return path


class OpenCVHaarDetector:
    """A Haar cascade shipped with OpenCV (Viola & Jones), e.g. ``"fullbody"``, ``"upperbody"``,
    ``"frontalface_default"`` (alias ``"frontalface"``); see ``HAAR_CASCADES``.

    The BGR frame is resized by ``scale``, converted to grayscale, histogram-equalized when
    ``equalize`` (the classic OpenCV sample's preprocessing), and searched with
    ``detectMultiScale3(gray, scaleFactor=scale_factor, minNeighbors=min_neighbors,
    minSize=min_size, outputRejectLevels=True)``; boxes are mapped back to the original frame and
    clipped. The defaults reproduce ``det/opencv_haar_*.txt`` of the project's test data. Scores: the
    level weight (the last stage's sum of weak-classifier outputs; larger is surer, may be
    negative) through :func:`raw_to_score`. Label 1, named ``"person"``, ``"face"`` or
    ``"cat face"``.
    """

    def __init__(
        self,
        cascade: str = "fullbody",
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        min_size: Optional[tuple[int, int]] = None,
        scale: float = 1.0,
        equalize: bool = True,
        batch_size: int = 1,
        category: Any = None,
    ) -> None:
        self.cascade = _HAAR_ALIASES.get(cascade, cascade)
        self.path = haar_cascade_path(cascade)
        self.name = f"opencv-haar-{self.cascade}"
        self.category_names = {1: HAAR_CASCADES[self.cascade][1]}
        _check_category_for(self.name, category, self.category_names)
        if not scale_factor > 1.0:
            raise InputError(f"scale_factor must be > 1, got {scale_factor!r}")
        if int(min_neighbors) < 0:
            raise InputError(f"min_neighbors must be >= 0, got {min_neighbors!r}")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = tuple(int(v) for v in min_size) if min_size is not None else None
        self.scale = _check_scale(scale)
        self.equalize = bool(equalize)
        self.batch_size = _check_batch_size(batch_size)
        self._classifier = self._load()

    def _load(self):
        classifier = _cv2().CascadeClassifier(str(self.path))
        if classifier.empty():
            raise RuntimeError(f"OpenCV could not load the Haar cascade {self.path}")
        return classifier

    def __repr__(self) -> str:
        return (
            f"OpenCVHaarDetector({self.cascade!r}, scale_factor={self.scale_factor}, min_neighbors={self.min_neighbors}, "
            f"min_size={self.min_size}, scale={self.scale}, equalize={self.equalize})"
        )

    def __getstate__(self) -> dict:  # cv2.CascadeClassifier does not pickle; reload it
        state = self.__dict__.copy()
        del state["_classifier"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._classifier = self._load()

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        return [self._detect(frame) for frame in _check_frames(frames, self.name)]

    def _detect(self, frame: np.ndarray) -> Detections:
        cv2 = _cv2()
        gray = cv2.cvtColor(_resize(frame, self.scale), cv2.COLOR_BGR2GRAY)
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        options: dict[str, Any] = {"scaleFactor": self.scale_factor, "minNeighbors": self.min_neighbors, "outputRejectLevels": True}
        if self.min_size is not None:
            options["minSize"] = self.min_size
        rects, _levels, weights = self._classifier.detectMultiScale3(gray, **options)
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / self.scale
        boxes = np.column_stack([rects[:, :2], rects[:, :2] + rects[:, 2:]])
        scores = raw_to_score(np.asarray(weights, dtype=np.float64).reshape(-1))
        return _clip_to_frame(boxes, scores, np.ones(len(scores), np.int64), frame.shape)

    def info(self) -> dict:
        return {
            "name": self.name,
            "model": f"cv2.CascadeClassifier {self.path.name}",
            "weights": None,
            "category": self.category_names[1],
            "score": f"{SCORE_MAPPING}, raw = Haar level weight",
            "options": {
                "scale_factor": self.scale_factor,
                "min_neighbors": self.min_neighbors,
                "min_size": list(self.min_size) if self.min_size else None,
                "scale": self.scale,
                "equalize": self.equalize,
            },
        }
