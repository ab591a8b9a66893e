"""Object detectors behind one protocol: a batch of frames in, per-frame boxes, scores, labels out.

Every detector is a :class:`Detector`: called with a list of ``(H, W, 3)`` uint8 **BGR** frames
(what OpenCV decodes) it returns one :class:`Detections` per frame, in order. Boxes are
``x1, y1, x2, y2`` float64 pixels in the coordinates of the frame that went in (continuous
coordinates, as everywhere in flickermine), clipped to the frame.

Four kinds ship:

- :class:`~flickermine.detect.TorchvisionDetector`: torchvision's Faster R-CNN models,
  from a local weights file, from torchvision's named weights (read from torch's cache, never downloaded), or
  random (tests). Needs the optional extra ``pip install 'flickermine[torch]'``; without it,
  :class:`~flickermine.errors.MissingExtraError`.
- :class:`~flickermine.detect.OpenCVHOGPeopleDetector` and
  :class:`~flickermine.detect.OpenCVHaarDetector`: OpenCV's built-in HOG people detector
  and the Haar cascades shipped in ``cv2.data.haarcascades``; no weights, CPU only.
- :class:`~flickermine.detect.HogSvmDetector`: the trainable HOG + linear SVM.
- :class:`CallableDetector`: any Python function, for embedding flickermine in other pipelines.

:func:`~flickermine.detect.make_detector` builds a detector from its command-line name
and :func:`~flickermine.detect.detector_info` describes one for provenance in output files.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from .._boxes import check_boxes, check_scores, invalid_box_rows
from ..errors import InputError, InputTypeError

__all__ = ["CallableDetector", "Detections", "Detector", "as_detector"]


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

    #: other libraries' results as Detections; set by :mod:`flickermine.detect._adapters`
    from_torchvision: ClassVar[Callable[[Any], "Detections"]]
    from_ultralytics: ClassVar[Callable[[Any], "Detections"]]
    from_supervision: ClassVar[Callable[..., "Detections"]]

    def __post_init__(self) -> None:
        boxes = np.array(check_boxes(_as_array(self.boxes), "boxes"))  # a copy: made read-only below
        count = boxes.shape[0]
        scores = _as_array(self.scores)
        if scores.size == 0 and count == 0:
            scores = scores.reshape(0)
        scores = np.array(check_scores(scores, count, "scores"))

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
    keep = ~invalid_box_rows(boxes)
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
# checks the fixed-class detectors share (OpenCV's, the HOG-SVM)


def _check_category_for(detector: str, category: Any, names: dict[int, str]) -> None:
    """A fixed-class detector accepts ``category`` only when it names what the detector finds."""
    if category is None:
        return
    text = str(category).strip().lower()
    if category in names or text in {name.lower() for name in names.values()} or text == str(next(iter(names))):
        return
    wanted = ", ".join(sorted(set(names.values())))
    raise InputError(f"detector {detector!r} finds only {wanted}; it cannot keep category {category!r}")
