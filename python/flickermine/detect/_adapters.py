"""Other libraries' detection results as :class:`~flickermine.detect.Detections`.

Duck-typed: none of these libraries is a dependency, nor imported. Each array may be a NumPy
array, a list, or a tensor-like (torch, or anything with ``.cpu().numpy()``), on any device.

- :func:`from_torchvision`: one image's output of a torchvision detection model, a mapping with
  ``"boxes"`` ``(N, 4)`` ``x1, y1, x2, y2``, ``"scores"`` ``(N,)`` and ``"labels"`` ``(N,)``
  (the category ids of the model: COCO ids for the COCO weights); a list of one such mapping
  (what the model returns for a batch of one) is taken too.
- :func:`from_ultralytics`: one Ultralytics ``Results`` (``results.boxes.xyxy``, ``.conf``,
  ``.cls``; what ``model(frame)`` returns is a list of one: taken too). Labels are Ultralytics'
  class indices, 0-based (``results.names`` maps them to names).
- :func:`from_supervision`: a ``supervision.Detections`` (``.xyxy``, ``.confidence``,
  ``.class_id``); ``class_id`` None gives labels all 1, ``confidence`` None is refused (mining
  needs scores) unless ``default_score`` is given.

All three are also :class:`Detections`' static methods: ``Detections.from_torchvision(output)``.
Boxes are kept as given (not clipped), in the pixels of the image the model saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from ..errors import InputError, InputTypeError
from ._detections import Detections

__all__ = ["from_supervision", "from_torchvision", "from_ultralytics"]


def _numpy(value: Any, what: str) -> np.ndarray:
    """A NumPy array of a tensor-like (detached, moved to the CPU), an array or a list."""
    if value is None:
        raise InputError(f"{what} is None")
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):
        value = value.detach()
    if hasattr(value, "cpu"):
        value = value.cpu()
    if "bfloat16" in str(getattr(value, "dtype", "")) and hasattr(value, "float"):
        value = value.float()  # no NumPy dtype for it
    if hasattr(value, "numpy"):
        value = value.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise InputTypeError(f"{what}: not an array ({type(value).__name__}: {error})") from None


def _single(value: Any, kind: str, hint: str) -> Any:
    """``value``, or its one element when it is a list or tuple of one."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise InputError(f"{kind}: expected the result of one image, got a {type(value).__name__} of {len(value)}; {hint}")
        return value[0]
    return value


def _build(source: str, boxes: Any, scores: Any, labels: Any) -> Detections:
    boxes = _numpy(boxes, f"{source} boxes")
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    scores = _numpy(scores, f"{source} scores").reshape(-1)
    if labels is not None:
        labels = _numpy(labels, f"{source} labels").reshape(-1)
    try:
        return Detections(boxes, scores, labels)
    except (ValueError, TypeError) as error:
        raise type(error)(f"{source}: {error}") from None


def from_torchvision(output: Any) -> Detections:
    """One image's output of a torchvision detection model (``{"boxes", "scores", "labels"}``,
    tensors or arrays), or a list of one, as :class:`Detections`."""
    output = _single(output, "from_torchvision", "convert each image's output: [from_torchvision(o) for o in outputs]")
    if not isinstance(output, Mapping):
        raise InputTypeError(f"from_torchvision: expected a mapping with 'boxes', 'scores', 'labels', got {type(output).__name__}")
    missing = [key for key in ("boxes", "scores") if key not in output]
    if missing:
        raise InputError(f"from_torchvision: the output has no {' or '.join(repr(k) for k in missing)} (keys: {sorted(output)})")
    return _build("from_torchvision", output["boxes"], output["scores"], output.get("labels"))


def from_ultralytics(results: Any) -> Detections:
    """One Ultralytics ``Results`` (or a list of one: what ``model(frame)`` returns) as
    :class:`Detections`: ``boxes.xyxy``, ``boxes.conf``, and ``boxes.cls`` as labels (0-based
    class indices)."""
    results = _single(results, "from_ultralytics", "convert each image's Results: [from_ultralytics(r) for r in results]")
    boxes = getattr(results, "boxes", None)
    if boxes is None:
        extra = " (oriented boxes, results.obb, are not supported)" if getattr(results, "obb", None) is not None else ""
        raise InputError(f"from_ultralytics: expected an Ultralytics Results with .boxes, got {type(results).__name__}{extra}")
    for name in ("xyxy", "conf"):
        if not hasattr(boxes, name):
            raise InputTypeError(f"from_ultralytics: results.boxes has no .{name} ({type(boxes).__name__})")
    return _build("from_ultralytics", boxes.xyxy, boxes.conf, getattr(boxes, "cls", None))


def from_supervision(detections: Any, default_score: Optional[float] = None) -> Detections:
    """A ``supervision.Detections`` (``.xyxy``, ``.confidence``, ``.class_id``) as
    :class:`Detections`. Without confidences (a tracker's or a dataset's boxes), pass
    ``default_score``: else an InputError."""
    if not hasattr(detections, "xyxy"):
        raise InputTypeError(f"from_supervision: expected a supervision.Detections (.xyxy, .confidence, .class_id), got {type(detections).__name__}")
    boxes = _numpy(detections.xyxy, "from_supervision boxes")
    scores = getattr(detections, "confidence", None)
    if scores is None:
        if default_score is None:
            raise InputError(
                "from_supervision: the detections have no confidence; mining needs scores: pass default_score=..."
            )
        scores = np.full(len(boxes.reshape(-1, 4)), float(default_score))
    return _build("from_supervision", boxes, scores, getattr(detections, "class_id", None))


# Detections.from_torchvision(...) and the others (set here: detections.py cannot import this
# module, which imports it)
setattr(Detections, "from_torchvision", staticmethod(from_torchvision))
setattr(Detections, "from_ultralytics", staticmethod(from_ultralytics))
setattr(Detections, "from_supervision", staticmethod(from_supervision))
