"""Object detectors behind one protocol: a batch of frames in, per-frame boxes, scores, labels out.

Every detector is a :class:`Detector`: called with a list of ``(H, W, 3)`` uint8 **BGR** frames
(what OpenCV decodes) it returns one :class:`Detections` per frame, in order. Boxes are
``x1, y1, x2, y2`` float64 pixels in the coordinates of the frame that went in (continuous
coordinates, as everywhere in flickermine), clipped to the frame.

Three kinds ship:

- :class:`TorchvisionDetector`: torchvision's Faster R-CNN models, from a local weights file, from
  torchvision's named weights (downloads; only when asked), or random (tests). Needs the optional
  extra ``pip install 'flickermine[torch]'``; without it, :class:`MissingExtraError`.
- :class:`OpenCVHOGPeopleDetector` and :class:`OpenCVHaarDetector`: OpenCV's built-in HOG people
  detector and the Haar cascades shipped in ``cv2.data.haarcascades``; no weights, CPU only.
- :class:`CallableDetector`: any Python function, for embedding flickermine in other pipelines.

Scores of the OpenCV detectors
------------------------------
HOG's SVM margin and a Haar cascade's level weight (the sum of its last stage's weak classifiers)
are unbounded. Both are mapped to ``0..1`` with the same fixed standard logistic,
``score = 1 / (1 + exp(-raw))`` (:func:`raw_to_score`; :func:`score_to_raw` is its inverse), so a
threshold means the same on both and on files written from raw values: raw 0 (the decision
boundary) is 0.5, raw 1.39 is 0.8 (the mining default ``score_threshold``), raw 3.89 is 0.98 (the
default ``sure_score``). The raw values are what the MOTChallenge files in ``../shared/data``
(``det/opencv_*.txt``) hold.

:func:`make_detector` builds a detector from its command-line name (:data:`DETECTOR_NAMES`) and
:func:`detector_info` describes one for provenance in output files.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence, Union, runtime_checkable

import numpy as np

from .errors import InputError, InputTypeError, MissingExtraError

__all__ = [
    "COCO_CATEGORIES",
    "CallableDetector",
    "DETECTOR_NAMES",
    "Detections",
    "HAAR_CASCADES",
    "Detector",
    "MissingExtraError",
    "OpenCVHOGPeopleDetector",
    "OpenCVHaarDetector",
    "TORCHVISION_MODELS",
    "TorchvisionDetector",
    "detector_info",
    "haar_cascade_path",
    "load_state_dict",
    "make_detector",
    "raw_to_score",
    "resolve_coco_category",
    "score_to_raw",
]

PathLike = Union[str, "os.PathLike[str]"]

#: torchvision's COCO category ids (the 80 used ids of 1..90) and names, as its detection models label them
COCO_CATEGORIES: dict[int, str] = dict(
    enumerate(
        "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant - "
        "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe - "
        "backpack umbrella - - handbag tie suitcase frisbee skis snowboard sports_ball kite "
        "baseball_bat baseball_glove skateboard surfboard tennis_racket bottle - wine_glass cup fork "
        "knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair "
        "couch potted_plant bed - dining_table - - toilet - tv laptop mouse remote keyboard "
        "cell_phone microwave oven toaster sink refrigerator - book clock vase scissors teddy_bear "
        "hair_drier toothbrush".split(),
        start=1,
    )
)
COCO_CATEGORIES = {i: name.replace("_", " ") for i, name in COCO_CATEGORIES.items() if name != "-"}
_COCO_CLASS_COUNT = 91  # torchvision's COCO models: background 0 + ids 1..90 (10 unused)

#: the torchvision Faster R-CNN builders this module knows
TORCHVISION_MODELS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn")

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


# ----------------------------------------------------------------------------------------------
# result and protocol


def _as_array(value: Any) -> np.ndarray:
    """numpy view of an array-like; torch tensors (any device) are detached and moved to the CPU."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if hasattr(value, "float") and getattr(value, "dtype", None) is not None and "float" in str(value.dtype):
            value = value.float()  # half/bfloat16 have no numpy dtype
        value = value.numpy()
    return np.asarray(value)


@dataclasses.dataclass(frozen=True, eq=False)
class Detections:
    """One frame's detections.

    ``boxes`` ``(N, 4)`` float64 ``x1, y1, x2, y2`` pixels of the original frame, ``x2 > x1`` and
    ``y2 > y1``; ``scores`` ``(N,)`` float64, finite (``0..1`` for every detector in this module);
    ``labels`` ``(N,)`` int64 category ids (COCO ids for torchvision's COCO models, 1 for
    single-class detectors; all 1 when not given). Inputs are converted (copies, read-only);
    invalid ones raise ValueError or TypeError naming the field and shape.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        boxes = _as_array(self.boxes)
        if boxes.dtype.kind not in "fiu":
            raise InputTypeError(f"boxes must be numeric, got dtype {boxes.dtype}")
        if boxes.size == 0 and boxes.ndim <= 2:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InputError(f"boxes must have shape (N, 4) as x1, y1, x2, y2, got {boxes.shape}")
        boxes = np.array(boxes, dtype=np.float64)
        count = boxes.shape[0]
        finite = np.isfinite(boxes).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise InputError(f"boxes[{row}] = {boxes[row].tolist()} contains NaN or infinity")
        inverted = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if inverted.any():
            row = int(np.flatnonzero(inverted)[0])
            raise InputError(f"boxes[{row}] = {boxes[row].tolist()} is empty or inverted: need x2 > x1 and y2 > y1")

        scores = _as_array(self.scores)
        if scores.dtype.kind not in "fiu":
            raise InputTypeError(f"scores must be numeric, got dtype {scores.dtype}")
        if scores.size == 0 and count == 0:
            scores = scores.reshape(0)
        if scores.shape != (count,):
            raise InputError(f"scores must have shape ({count},) to match {count} boxes, got {scores.shape}")
        scores = np.array(scores, dtype=np.float64)
        if not np.isfinite(scores).all():
            row = int(np.flatnonzero(~np.isfinite(scores))[0])
            raise InputError(f"scores[{row}] = {scores[row]} is not finite")

        if self.labels is None:
            labels = np.ones(count, dtype=np.int64)
        else:
            labels = _as_array(self.labels)
            if labels.size == 0 and count == 0:
                labels = labels.reshape(0)
            if labels.shape != (count,):
                raise InputError(f"labels must have shape ({count},) to match {count} boxes, got {labels.shape}")
            if labels.dtype.kind == "f" and count and not (np.isfinite(labels).all() and (labels == np.round(labels)).all()):
                raise InputError(f"labels must be integer category ids, got {labels[:5].tolist()}")
            if labels.dtype.kind not in "fiub":
                raise InputTypeError(f"labels must be integer category ids, got dtype {labels.dtype}")
            labels = np.array(labels, dtype=np.int64)
        for name, array in (("boxes", boxes), ("scores", scores), ("labels", labels)):
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))

    def select(self, keep: np.ndarray) -> "Detections":
        """The detections where the boolean mask (or index array) ``keep`` selects."""
        assert self.labels is not None  # __post_init__ fills it in
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])


@runtime_checkable
class Detector(Protocol):
    """What every detector is.

    - ``name``: what it is, e.g. ``"fasterrcnn_resnet50_fpn"`` or ``"opencv-hog"``;
    - ``category_names``: ``{label id: name}`` for the labels it outputs;
    - ``batch_size``: how many frames a caller should pass per call (the last batch may be smaller);
    - ``detector(frames)``: ``frames`` a list of ``(H, W, 3)`` uint8 BGR arrays (as decoded by
      OpenCV; sizes may differ); returns a list of :class:`Detections`, one per frame, in order,
      boxes in each frame's own pixel coordinates.
    """

    name: str
    category_names: dict[int, str]
    batch_size: int

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]: ...


def as_detector(detector: Any) -> Detector:
    """``detector`` itself when it is a :class:`Detector`; a plain function ``fn(frame) ->
    (boxes, scores[, labels])`` of one frame wrapped as one (:class:`CallableDetector`; wrap a
    function of a list of frames yourself, with ``batched=True``); anything else a TypeError,
    before any frame is read."""
    if isinstance(detector, Detector):
        return detector
    if callable(detector):
        return CallableDetector(detector, name=_qualname(detector))
    raise InputTypeError(
        f"a detector must be a Detector (name, category_names, batch_size, called on a list of frames) or a "
        f"function of one frame, got {type(detector).__name__}"
    )


def _check_frames(frames: Sequence[np.ndarray], detector: str) -> list[np.ndarray]:
    if isinstance(frames, np.ndarray):
        raise InputTypeError(f"detector {detector!r} takes a list of frames, got one array of shape {frames.shape}; pass [frame]")
    frames = list(frames)
    for i, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray):
            raise InputTypeError(f"detector {detector!r}, frame {i}: expected a numpy array, got {type(frame).__name__}")
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
            raise InputError(f"detector {detector!r}, frame {i}: expected an (H, W, 3) BGR image, got shape {frame.shape}")
        if frame.dtype != np.uint8:
            raise InputTypeError(f"detector {detector!r}, frame {i}: expected dtype uint8, got {frame.dtype}")
    return frames


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return int(batch_size)


def _clip_to_frame(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, shape: tuple) -> Detections:
    """Clip boxes to the frame and drop those left empty (wholly outside)."""
    height, width = shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    np.clip(boxes[:, 0::2], 0.0, float(width), out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0.0, float(height), out=boxes[:, 1::2])
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return Detections(boxes[keep], np.asarray(scores, dtype=np.float64)[keep], np.asarray(labels)[keep])


# ----------------------------------------------------------------------------------------------
# any Python callable


class CallableDetector:
    """Wrap a Python function as a :class:`Detector`.

    ``fn(frame) -> (boxes, scores)`` or ``(boxes, scores, labels)`` per ``(H, W, 3)`` uint8 BGR
    frame; with ``batched=True``, ``fn(frames) -> [one such result per frame]``. A result may also
    be a :class:`Detections` or a mapping with ``"boxes"``, ``"scores"`` and optional ``"labels"``
    (torchvision's output); numpy arrays, lists and torch tensors are accepted. ``boxes`` are
    ``(N, 4)`` ``x1, y1, x2, y2`` pixels of the frame. Every result is validated; an invalid one
    raises ValueError or TypeError naming the detector and the frame's index in the batch.
    Boxes are not clipped: the function's pixels are kept as given.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str = "callable",
        batch_size: int = 1,
        batched: bool = False,
        category_names: Optional[dict[int, str]] = None,
    ) -> None:
        if not callable(fn):
            raise InputTypeError(f"CallableDetector needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = str(name)
        self.batch_size = _check_batch_size(batch_size)
        self.batched = bool(batched)
        self.category_names = dict(category_names) if category_names is not None else {1: "object"}

    def __repr__(self) -> str:
        return f"CallableDetector({_qualname(self.fn)}, name={self.name!r}, batch_size={self.batch_size}, batched={self.batched})"

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        frames = _check_frames(frames, self.name)
        if self.batched:
            results = self.fn(frames)
            try:
                results = list(results)
            except TypeError:
                raise InputTypeError(
                    f"detector {self.name!r}: a batched function must return a list of per-frame results, "
                    f"got {type(results).__name__}"
                ) from None
            if len(results) != len(frames):
                raise InputError(f"detector {self.name!r} returned {len(results)} results for a batch of {len(frames)} frames")
        else:
            results = [self.fn(frame) for frame in frames]
        return [self._convert(result, i, len(frames)) for i, result in enumerate(results)]

    def _convert(self, result: Any, index: int, count: int) -> Detections:
        where = f"detector {self.name!r}, frame {index} of a batch of {count}"
        if isinstance(result, Detections):
            return result
        if isinstance(result, dict):
            if "boxes" not in result or "scores" not in result:
                raise InputError(f"{where}: a mapping result needs 'boxes' and 'scores', got keys {sorted(result)}")
            parts = (result["boxes"], result["scores"], result.get("labels"))
        elif isinstance(result, (tuple, list)) and len(result) in (2, 3):
            parts = (*result, None) if len(result) == 2 else tuple(result)
        else:
            described = f"a {type(result).__name__} of length {len(result)}" if isinstance(result, (tuple, list)) else type(result).__name__
            raise InputTypeError(f"{where}: expected (boxes, scores) or (boxes, scores, labels), got {described}")
        try:
            return Detections(*parts)
        except (ValueError, TypeError) as error:
            raise type(error)(f"{where}: {error}") from None

    def info(self) -> dict:
        return {"name": self.name, "model": "callable", "function": _qualname(self.fn), "weights": None, "category": None}


def _qualname(fn: Any) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{qualname}" if module else qualname


# ----------------------------------------------------------------------------------------------
# OpenCV built-ins


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


def _check_category_for(detector: str, category: Any, names: dict[int, str]) -> None:
    """A fixed-class detector accepts ``category`` only when it names what the detector finds."""
    if category is None:
        return
    text = str(category).strip().lower()
    if category in names or text in {name.lower() for name in names.values()} or text == str(next(iter(names))):
        return
    wanted = ", ".join(sorted(set(names.values())))
    raise InputError(f"detector {detector!r} finds only {wanted}; it cannot keep category {category!r}")


class OpenCVHOGPeopleDetector:
    """OpenCV's built-in HOG + linear SVM people detector (Dalal & Triggs; 64x128 window).

    ``cv2.HOGDescriptor`` with ``HOGDescriptor_getDefaultPeopleDetector()`` and
    ``detectMultiScale(frame, hitThreshold=hit_threshold, winStride=win_stride, padding=padding,
    scale=scale_step)``, run on the BGR frame resized by ``scale`` first (``scale=1.5`` finds people
    down to about 70 px tall instead of about 100 px, at 2.25x the cost); boxes are mapped back to
    the original frame and clipped to it. The defaults reproduce ``det/opencv_hog.txt`` of
    ``../shared/data`` (and ``scale=1.5`` ``det/opencv_hog_x1.5.txt``). Boxes are the detection
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
        rects, margins = self._hog.detectMultiScale(
            _resize(frame, self.scale),
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
    clipped. The defaults reproduce ``det/opencv_haar_*.txt`` of ``../shared/data``. Scores: the
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


# ----------------------------------------------------------------------------------------------
# torchvision Faster R-CNN


def _import_torch():
    try:
        import torch
        import torchvision  # noqa: F401
        import torchvision.models.detection  # noqa: F401
    except ImportError as error:
        raise MissingExtraError(
            f"torchvision detectors need torch and torchvision ({error}); install them with "
            "pip install 'flickermine[torch]'"
        ) from None
    return torch


def resolve_coco_category(category: Any) -> int:
    """A COCO category name (``"person"``, ``"dog"``, ``"traffic light"`` …, any case) or id
    (``1``, ``"18"``) -> torchvision's COCO id; ValueError listing close names when unknown."""
    if isinstance(category, (bool, np.bool_)):
        raise InputError(f"category must be a COCO name or id, got {category!r}")
    if isinstance(category, (int, np.integer)) or (isinstance(category, str) and category.strip().isdigit()):
        number = int(category)
        if number not in COCO_CATEGORIES:
            raise InputError(f"{number} is not a COCO category id (ids 1..90 of which 80 are used, e.g. 1 person, 18 dog, 7 train)")
        return number
    if not isinstance(category, str):
        raise InputError(f"category must be a COCO name or id, got {category!r}")
    text = " ".join(category.strip().lower().replace("_", " ").replace("-", " ").split())
    by_name = {name: i for i, name in COCO_CATEGORIES.items()}
    if text in by_name:
        return by_name[text]
    close = difflib.get_close_matches(text, list(by_name), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise InputError(
        f"unknown COCO category {category!r}{hint} (the 80 COCO names, e.g. 'person', 'dog', 'train', 'car'; or an id)"
    )


def _guess_architecture(state: dict) -> Optional[str]:
    """Which of :data:`TORCHVISION_MODELS` a state dict's keys belong to (None: cannot tell)."""
    keys = set(state)
    if "backbone.body.0.0.weight" in keys:  # MobileNetV3 features, numbered
        return "fasterrcnn_mobilenet_v3_large_fpn"
    if "backbone.body.conv1.weight" in keys:  # ResNet-50
        if "roi_heads.box_head.fc6.weight" in keys:  # v1: two-layer MLP head
            return "fasterrcnn_resnet50_fpn"
        if "roi_heads.box_head.0.0.weight" in keys:  # v2: conv head
            return "fasterrcnn_resnet50_fpn_v2"
    return None


def _box_predictor_classes(state: dict, path: str) -> int:
    cls = state.get("roi_heads.box_predictor.cls_score.weight")
    bbox = state.get("roi_heads.box_predictor.bbox_pred.weight")
    if cls is None or bbox is None:
        raise InputError(
            f"{path}: not a torchvision Faster R-CNN state dict (no roi_heads.box_predictor.cls_score / bbox_pred weights)"
        )
    classes = int(cls.shape[0])
    if int(bbox.shape[0]) != 4 * classes:
        raise InputError(f"{path}: box predictor has {classes} class scores but {bbox.shape[0]} box outputs (expected {4 * classes})")
    return classes


def load_state_dict(path: PathLike) -> dict:
    """Read a Faster R-CNN state dict from ``path``: a plain state dict, or a checkpoint dict with
    ``"model"`` or ``"state_dict"`` (torchvision's ``references/detection`` writes ``"model"``).
    Loaded with ``weights_only=True`` (no arbitrary code runs); a ``module.`` prefix (DDP) is removed."""
    torch = _import_torch()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # references/detection saves its args
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors come in many types
        raise InputError(
            f"{path}: cannot be read as a weights file with torch.load(weights_only=True) ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); save model.state_dict(), not the model"
        ) from None
    if isinstance(loaded, dict):
        for key in ("model", "state_dict"):
            if key in loaded and isinstance(loaded[key], dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise InputError(f"{path}: expected a state dict (or a dict with 'model' / 'state_dict'), got {type(loaded).__name__}")
    if loaded and all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module.") :]: v for k, v in loaded.items()}
    return loaded


class TorchvisionDetector:
    """A torchvision Faster R-CNN (``model``: one of :data:`TORCHVISION_MODELS`).

    Weights, one of:

    - ``weights=PATH``: a local file, a state dict or a checkpoint with ``"model"`` /
      ``"state_dict"``. Its class count comes from the box predictor's weight shapes: 91 is
      torchvision's COCO labelling (labels are COCO ids); 2 is one category + background
      (labels 1, named ``category``); any other count only with ``category=None``. Boxes a COCO
      model gives one of the 10 unused COCO ids (12, 26, 29, …; untrained) are dropped.
    - ``named_weights=True`` (or a weights name such as ``"COCO_V1"``): torchvision's named COCO
      weights, ``DEFAULT`` for True (a download: needs a network).
    - neither: random weights (91 COCO classes), useful only to test plumbing.

    ``weights_backbone`` goes to the torchvision builder (None: no download). ``category`` (a
    COCO name or id) keeps only that class. ``device`` ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …;
    None picks CUDA when available. ``score_threshold`` is the model's ``box_score_thresh``;
    ``min_size``/``max_size`` override its input resize (800/1333 by default); ``amp`` runs
    float16 autocast on CUDA (ignored elsewhere). ``gpu_decode``: where the detector runs on CUDA and
    torchcodec is installed, :class:`~flickermine.gpu_pipeline.DetectorPipeline` decodes video files
    on the GPU (NVDEC; pixels differ slightly from OpenCV's CPU decoding), else it says why not
    and decodes on the CPU. ``model_options`` go to the torchvision builder
    as they are (e.g. ``{"detections_per_img": 50, "rpn_post_nms_top_n_test": 300}``). Every check (category, class count, weights
    fitting the model) happens here, before any frame is read. Frames go through BGR -> RGB,
    uint8 -> float ``[0, 1]``, one batched forward pass per call under ``torch.inference_mode()``;
    outputs come back on the CPU as numpy.
    """

    def __init__(
        self,
        model: str = "fasterrcnn_resnet50_fpn",
        weights: Optional[PathLike] = None,
        named_weights: Union[bool, str] = False,
        weights_backbone: Optional[str] = None,
        category: Any = None,
        device: Optional[str] = None,
        batch_size: int = 4,
        score_threshold: float = 0.05,
        min_size: Optional[int] = None,
        max_size: Optional[int] = None,
        amp: bool = True,
        model_options: Optional[dict[str, Any]] = None,
        gpu_decode: bool = False,
    ) -> None:
        if model not in TORCHVISION_MODELS:
            close = difflib.get_close_matches(str(model), TORCHVISION_MODELS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown torchvision model {model!r}{hint}; choose one of {', '.join(TORCHVISION_MODELS)}")
        if weights is not None and named_weights:
            raise InputError("give either weights=PATH or named_weights=True, not both")
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise InputError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
        self.name = model
        self.model_name = model
        self.batch_size = _check_batch_size(batch_size)
        self.score_threshold = float(score_threshold)
        self.weights = str(weights) if weights is not None else None
        if named_weights is True:
            named_weights = "DEFAULT"
        if named_weights is not False and (not isinstance(named_weights, str) or not named_weights.strip()):
            raise InputError(f"named_weights must be True or a torchvision weights name such as 'DEFAULT', got {named_weights!r}")
        self.named_weights = named_weights or None  #: torchvision weights name, or None
        coco_id = resolve_coco_category(category) if category is not None else None  # before importing torch

        torch = _import_torch()
        from torchvision.models import detection

        state = load_state_dict(weights) if weights is not None else None
        classes = _box_predictor_classes(state, str(weights)) if state is not None else _COCO_CLASS_COUNT
        guess = _guess_architecture(state) if state is not None else None
        if guess is not None and guess != model:
            raise InputError(f"{weights}: these weights are for {guess}, not {model}; pick --detector {guess}")
        if classes == _COCO_CLASS_COUNT:
            self.category_names = dict(COCO_CATEGORIES)
            self._keep_label = coco_id
            self.category = COCO_CATEGORIES[coco_id] if coco_id is not None else None
        elif classes == 2:
            name = COCO_CATEGORIES[coco_id] if coco_id is not None else "object"
            self.category_names = {1: name}
            self._keep_label = None  # one class: nothing to filter
            self.category = COCO_CATEGORIES[coco_id] if coco_id is not None else None
        elif coco_id is None:
            self.category_names = {i: f"class {i}" for i in range(1, classes)}
            self._keep_label = None
            self.category = None
        else:
            raise InputError(
                f"{weights}: the weights have {classes} classes (box predictor), but category {category!r} needs "
                f"{_COCO_CLASS_COUNT} (torchvision's COCO labels) or 2 (the category + background)"
            )
        self.num_classes = classes

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.device = torch.device(device)
        except RuntimeError as error:
            raise InputError(f"unknown torch device {device!r}: {error}") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but torch sees no CUDA device")
        self.amp = bool(amp) and self.device.type == "cuda"
        self.gpu_decode = bool(gpu_decode)

        options: dict[str, Any] = {"box_score_thresh": self.score_threshold, **(model_options or {})}
        if min_size is not None:
            options["min_size"] = int(min_size)
        if max_size is not None:
            options["max_size"] = int(max_size)
        self.min_size, self.max_size = min_size, max_size
        builder = getattr(detection, model)
        if self.named_weights:
            try:
                net = builder(weights=self.named_weights, weights_backbone=weights_backbone, **options)
            except (KeyError, ValueError) as error:  # an unknown name: torchvision lists none
                raise InputError(f"{model}: no torchvision weights named {self.named_weights!r} ({error})") from None
        else:
            net = builder(weights=None, weights_backbone=weights_backbone, num_classes=classes, **options)
        if state is not None:
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as error:
                detail = " ".join(line.strip() for line in str(error).splitlines()[:2])
                raise InputError(f"{weights}: the weights do not fit {model} ({detail[:300]})") from None
        self._net = net.eval().to(self.device)
        self._coco_ids = np.array(sorted(COCO_CATEGORIES), dtype=np.int64)
        self._torch = torch

    def __repr__(self) -> str:
        return (
            f"TorchvisionDetector({self.model_name!r}, weights={self.weights!r}, named_weights={self.named_weights}, "
            f"category={self.category!r}, device={str(self.device)!r}, batch_size={self.batch_size})"
        )

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        frames = _check_frames(frames, self.name)
        if not frames:
            return []
        torch = self._torch
        with torch.inference_mode():
            images = []
            for frame in frames:
                tensor = torch.from_numpy(frame).to(self.device, non_blocking=True)
                images.append(tensor.permute(2, 0, 1).flip(0).float().div_(255.0))  # HWC BGR -> CHW RGB
            if self.amp:
                with torch.autocast(device_type=self.device.type, dtype=torch.float16):
                    outputs = self._net(images)
            else:
                outputs = self._net(images)
            results = []
            for frame, output in zip(frames, outputs):
                boxes = output["boxes"].float().cpu().numpy()
                scores = output["scores"].float().cpu().numpy()
                labels = output["labels"].cpu().numpy().astype(np.int64)
                if self._keep_label is not None:
                    keep = labels == self._keep_label
                elif self.num_classes == _COCO_CLASS_COUNT:  # the 10 unused COCO ids are never trained
                    keep = np.isin(labels, self._coco_ids)
                else:
                    keep = slice(None)
                boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
                results.append(_clip_to_frame(boxes, scores, labels, frame.shape))
        return results

    def info(self) -> dict:
        weights = self.weights if self.weights is not None else (f"torchvision {self.named_weights}" if self.named_weights else None)
        return {
            "name": self.name,
            "model": f"torchvision.models.detection.{self.model_name}",
            "weights": weights,
            "category": self.category,
            "num_classes": self.num_classes,
            "score": "softmax class probability",
            "options": {
                "score_threshold": self.score_threshold,
                "min_size": self.min_size,
                "max_size": self.max_size,
                "device": str(self.device),
                "amp": self.amp,
                "gpu_decode": self.gpu_decode,
            },
        }


# ----------------------------------------------------------------------------------------------
# by name


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
            from .detect.hog_svm import HogSvmDetector

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
