"""Box conventions and boundary validation shared by every backend.

Boxes are ``(N, 4)`` float64 arrays of ``x1, y1, x2, y2`` in pixels, continuous coordinates
(a box covering pixel columns 10..19 is ``x1=10, x2=20``); IoU has no ``+1``. Frames are
``(H, W)`` grayscale arrays, ``uint8`` or ``float32``, rows contiguous.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError, InputTypeError

GRAY_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))
#: Largest magnitude accepted in a float32 frame: sums of squares over a frame-sized window stay
#: far inside float32's range (3.4e38) in every backend.
MAX_FLOAT_INTENSITY = 1e15


def check_gray_frame(frame: object, name: str = "frame") -> np.ndarray:
    """Return ``frame`` if it is a valid grayscale frame, else raise ValueError/TypeError."""
    if not isinstance(frame, np.ndarray):
        raise InputTypeError(f"{name} must be a numpy array, got {type(frame).__name__}")
    if frame.ndim != 2:
        hint = " (colour? convert with cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))" if frame.ndim == 3 else ""
        raise InputError(f"{name} must be a 2D (H, W) grayscale array, but got shape {frame.shape}{hint}")
    if frame.dtype not in GRAY_DTYPES:
        raise InputTypeError(f"{name} must have dtype uint8 or float32, but got {frame.dtype} (shape {frame.shape})")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InputError(f"{name} must not be empty, but got shape {frame.shape}")
    if frame.strides[1] != frame.itemsize or frame.strides[0] < frame.shape[1] * frame.itemsize:
        raise InputError(
            f"{name} must have contiguous rows (C layout), but got strides {frame.strides} for shape "
            f"{frame.shape}; pass np.ascontiguousarray({name})"
        )
    if frame.dtype == np.float32:
        # min/max propagate NaN, so two passes catch NaN, infinity and values so large that their
        # squares overflow float32 sums (NCC is scale-free: intensities need not be 0..255).
        low, high = float(frame.min()), float(frame.max())
        if not (np.isfinite(low) and np.isfinite(high)):
            raise InputError(f"{name} (float32, shape {frame.shape}) contains NaN or infinity")
        if max(-low, high) > MAX_FLOAT_INTENSITY:
            raise InputError(
                f"{name} (float32, shape {frame.shape}) has values in [{low:.3g}, {high:.3g}]; "
                f"grayscale intensities must lie within +-{MAX_FLOAT_INTENSITY:.0e} (rescale the frame)"
            )
    return frame


def invalid_box_rows(boxes: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the rows of an ``(N, 4)`` x1, y1, x2, y2 array that are not boxes (NaN or
    infinity, ``x2 <= x1`` or ``y2 <= y1``). The one definition of a valid box."""
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])


def check_boxes(
    boxes: object, name: str = "boxes", *, integer: bool = False, frame_shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """Validate an ``(N, 4)`` x1, y1, x2, y2 array; return it as contiguous float64.

    The one box validator: the miner, the kernels, :class:`~flickermine.detect.Detections`
    and the detection file writers call it. ``integer=True``: integer pixel boxes (half-open, as
    the NCC kernels take them), returned as int64; a single ``(4,)`` box is one row.
    ``frame_shape=(H, W)``: every box must lie inside the frame. Raises ValueError/TypeError
    naming ``name`` and the first bad row.
    """
    array = np.asarray(boxes)
    if integer:
        if array.ndim == 1 and array.shape == (4,):
            array = array[None, :]
        if array.dtype.kind not in "iu":
            raise InputTypeError(f"{name} must be integer pixel boxes (x1, y1, x2, y2, half-open), but got dtype {array.dtype}")
    elif array.dtype.kind not in "fiu":
        raise InputTypeError(f"{name} must be a numeric array, but got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[1] != 4:
        if array.size == 0 and not integer:
            return np.zeros((0, 4), np.float64)
        raise InputError(f"{name} must have shape (N, 4) as x1, y1, x2, y2, but got shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.int64 if integer else np.float64)
    if frame_shape is not None:
        height, width = frame_shape[:2]
        bad = invalid_box_rows(array) | (array[:, 0] < 0) | (array[:, 1] < 0) | (array[:, 2] > width) | (array[:, 3] > height)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"{name}[{row}] = {array[row].tolist()} is empty or outside the {tuple(frame_shape)} frame")
        return array
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{name}[{row}] = {array[row].tolist()} contains NaN or infinity")
    inverted = invalid_box_rows(array)
    if inverted.any():
        row = int(np.flatnonzero(inverted)[0])
        raise InputError(
            f"{name}[{row}] = {array[row].tolist()} is empty or inverted: need x2 > x1 and y2 > y1 (x1, y1, x2, y2)"
        )
    return array


def check_scores(scores: object, count: int, name: str = "scores", frame: int | None = None) -> np.ndarray:
    """Validate an ``(N,)`` score array matching ``count`` boxes; return float64. ``frame``: the
    index of the frame whose boxes they score, named in the errors (e.g. a window's center)."""
    whose = f"the {count} boxes of frame {frame}" if frame is not None else "the boxes"
    try:
        array = np.asarray(scores)
    except ValueError:  # NumPy: "inhomogeneous shape", a ragged sequence such as one array per frame
        entries = list(scores)  # type: ignore[call-overload]  # asarray failed: a sequence
        lengths = [len(s) if hasattr(s, "__len__") else 1 for s in entries]
        raise InputError(
            f"{name} must be one (N,) array of numbers, the scores of {whose}, but got a ragged sequence of "
            f"{len(lengths)} entries of lengths {lengths}"
            + (" (one per frame?)" if frame is not None else "")
        ) from None
    if array.dtype.kind not in "fiu":
        raise InputTypeError(f"{name} must be a numeric array, but got dtype {array.dtype}")
    if array.ndim != 1 or array.shape[0] != count:
        raise InputError(f"{name} must have shape ({count},) to match {whose}, but got shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array))[0])
        raise InputError(f"{name}[{row}] = {array[row]} is not finite")
    return array


def clip_boxes(boxes: np.ndarray, width: int, height: int, name: str = "boxes") -> np.ndarray:
    """Clip ``(N, 4)`` boxes to the image ``[0, width] x [0, height]``.

    Boxes partly outside are clipped; a box entirely outside the image is an error. Integer
    boxes (the NCC kernels' pixel boxes) stay integer.
    """
    clipped = boxes.copy()
    integer = clipped.dtype.kind in "iu"
    np.clip(clipped[:, 0::2], 0, width if integer else float(width), out=clipped[:, 0::2])
    np.clip(clipped[:, 1::2], 0, height if integer else float(height), out=clipped[:, 1::2])
    outside = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise InputError(
            f"{name}[{row}] = {boxes[row].tolist()} lies entirely outside the {width}x{height} image"
        )
    return clipped


def pixel_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Round continuous boxes to half-open integer pixel boxes inside the image, >= 1 px each way.

    Every backend (the C++ one included) rounds this way: ``floor(v + 0.5)``, then
    ``x1`` into ``[0, W-1]`` and ``x2`` into ``[x1+1, W]``.
    """
    rounded = np.floor(boxes + 0.5).astype(np.int64)
    out = np.empty_like(rounded)
    for lo, hi, size in ((0, 2, width), (1, 3, height)):
        out[:, lo] = np.clip(rounded[:, lo], 0, size - 1)
        out[:, hi] = np.clip(rounded[:, hi], out[:, lo] + 1, size)
    return out


def grow_boxes(boxes: np.ndarray, margin: int, width: int, height: int) -> np.ndarray:
    """Grow integer pixel boxes by ``margin`` on every side, clipped to the image."""
    grown = boxes + np.array([-margin, -margin, margin, margin], dtype=np.int64)
    np.clip(grown[:, 0::2], 0, width, out=grown[:, 0::2])
    np.clip(grown[:, 1::2], 0, height, out=grown[:, 1::2])
    return grown


def box_areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _pairs_and_intersections(boxes_a: np.ndarray, boxes_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    inter_w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    inter_h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return a, b, np.clip(inter_w, 0.0, None) * np.clip(inter_h, 0.0, None)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), 0.0)


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every pair: ``(N, 4)`` x ``(M, 4)`` -> ``(N, M)`` float64; 0 where the union is 0."""
    with np.errstate(over="ignore", invalid="ignore"):
        a, b, inter = _pairs_and_intersections(boxes_a, boxes_b)
        union = box_areas(a)[:, None] + box_areas(b)[None, :] - inter
    out = _ratio(inter, union)
    overflow = ~(np.isfinite(union) & np.isfinite(inter))
    if overflow.any() and np.isfinite(a).all() and np.isfinite(b).all():
        # Finite coordinates near the double limit (a width, an area or the union overflowed): IoU
        # is scale-free, so those pairs take the IoU of the boxes scaled by 2^-600 (exact), as the C++.
        out[overflow] = iou_matrix(np.ldexp(a, -600), np.ldexp(b, -600))[overflow]
    return out


def intersection_over_area(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Share of each box of ``boxes_a`` ``(N, 4)`` inside each box of ``boxes_b`` ``(M, 4)``:
    ``(N, M)`` float64 ``|a ∩ b| / |a|``; 0 where ``a`` is empty. How a detection is matched to an
    ignore region (COCO's crowd boxes, MOT's flag-0 boxes), which may hold many objects."""
    a, _, inter = _pairs_and_intersections(boxes_a, boxes_b)
    return _ratio(inter, np.broadcast_to(box_areas(a)[:, None], inter.shape))
