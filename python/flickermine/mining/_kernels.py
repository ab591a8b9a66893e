"""The typed public kernels: validate at the boundary, then dispatch to a backend.

Boxes are ``x1, y1, x2, y2`` float pixels (continuous, no ``+1``); pixel boxes for NCC are
half-open integer boxes; frames are ``(H, W)`` uint8 or float32 grayscale.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from ._backends import BackendName, get_backend
from .._boxes import check_boxes, check_gray_frame, check_scores, clip_boxes
from ._params import DEFAULT_RULE, MiningParams, Reason, Rule
from ._rules import RuleName, class_verdicts
from ..errors import InputError, InputTypeError

RuleLike = Union[Rule, str]


def _rule(rule: RuleLike) -> Rule:
    try:
        return Rule(rule)
    except ValueError:
        raise InputError(f"rule must be one of {[r.value for r in Rule]}, got {rule!r}") from None


#: Most threads :func:`set_num_threads` takes.
MAX_THREADS = 1024


def set_num_threads(threads: int) -> int:
    """Set how many threads the ``cpp`` backend spreads the detections of one frame over, the
    calling thread included, for the whole process (like ``cv2.setNumThreads``).

    Each detection of a frame is decided on its own, so they run in parallel; verdicts do not
    depend on the setting. ``0`` restores the default: one less than the cores this process may
    run on (the other one decodes), at least 1. The other backends run one thread.

    Returns:
        The setting replaced (0 when the ``cpp`` backend is not available here).
    """
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 0 <= threads <= MAX_THREADS:
        raise InputError(f"threads must be an integer >= 0 and <= {MAX_THREADS} (0: the default), got {threads!r}")
    try:
        from ._backends import cpp_backend
    except ImportError:  # _core not built
        return 0
    return cpp_backend.set_num_threads(int(threads))


def ncc_search_batch(
    template_frame: np.ndarray,
    template_boxes: np.ndarray,
    search_frame: np.ndarray,
    regions: np.ndarray,
    backend: BackendName = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Search each template crop of ``template_frame`` inside its region of ``search_frame``.

    Args:
        template_frame, search_frame: ``(H, W)`` uint8 or float32 grayscale, same dtype.
        template_boxes, regions: ``(K, 4)`` integer half-open pixel boxes (float boxes are refused),
            each clipped to its frame as every box is (docs/conventions.md: one partly outside is
            clipped, one entirely outside is an error); each region, clipped, at least as large as
            its template.
    Returns:
        ``scores`` ``(K,)`` float64, OpenCV ``TM_CCOEFF_NORMED`` (a flat window scores 0), and
        ``top_left`` ``(K, 2)`` int64 ``x, y`` of the best match in ``search_frame`` pixels
        (ties: first in row-major order).
    """
    template_frame = check_gray_frame(template_frame, "template_frame")
    search_frame = check_gray_frame(search_frame, "search_frame")
    if template_frame.dtype != search_frame.dtype:
        raise InputTypeError(f"template_frame ({template_frame.dtype}) and search_frame ({search_frame.dtype}) must share a dtype")
    # Boxes partly outside their frame are clipped to it, as everywhere (docs/conventions.md);
    # a box with nothing left inside is an error.
    height, width = template_frame.shape
    template_boxes = clip_boxes(check_boxes(template_boxes, "template_boxes", integer=True), width, height, "template_boxes")
    height, width = search_frame.shape
    regions = clip_boxes(check_boxes(regions, "regions", integer=True), width, height, "regions")
    if len(template_boxes) != len(regions):
        raise InputError(f"template_boxes has {len(template_boxes)} rows but regions has {len(regions)}")
    sizes = template_boxes[:, 2:] - template_boxes[:, :2]
    too_small = ((regions[:, 2:] - regions[:, :2]) < sizes).any(axis=1)
    if too_small.any():
        row = int(np.flatnonzero(too_small)[0])
        raise InputError(f"regions[{row}] = {regions[row].tolist()} is smaller than template_boxes[{row}] = {template_boxes[row].tolist()}")
    return get_backend(backend).ncc_search_batch(template_frame, template_boxes, search_frame, regions)


def ncc_search(
    template: np.ndarray, image: np.ndarray, region: Sequence[int] | None = None, backend: BackendName = "auto"
) -> tuple[float, int, int]:
    """Best match of ``template`` ``(h, w)`` inside ``region`` (x1, y1, x2, y2 half-open pixels;
    default the whole ``image``). Returns ``(score, x, y)``, the top-left corner in image pixels."""
    template = check_gray_frame(template, "template")
    image = check_gray_frame(image, "image")
    region = (0, 0, image.shape[1], image.shape[0]) if region is None else tuple(region)
    h, w = template.shape
    scores, top_left = ncc_search_batch(template, np.array([[0, 0, w, h]]), image, np.array([region]), backend)
    return float(scores[0]), int(top_left[0, 0]), int(top_left[0, 1])


def iou(boxes_a: np.ndarray, boxes_b: np.ndarray, backend: BackendName = "auto") -> np.ndarray:
    """IoU of ``(N, 4)`` and ``(M, 4)`` x1, y1, x2, y2 boxes (continuous pixels): ``(N, M)`` float64."""
    return get_backend(backend).iou(check_boxes(boxes_a, "boxes_a"), check_boxes(boxes_b, "boxes_b"))


def _check_window(frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray], center: int):
    if len(frames) == 0:
        raise InputError("frames must hold at least the center frame")
    if len(boxes) != len(frames):
        raise InputError(f"boxes has {len(boxes)} entries but frames has {len(frames)}; give one (N_i, 4) array per frame")
    if not 0 <= center < len(frames):
        raise InputError(f"center {center} is outside the window of {len(frames)} frames")
    checked_frames = [check_gray_frame(f, f"frames[{i}]") for i, f in enumerate(frames)]
    first = checked_frames[0]
    for i, f in enumerate(checked_frames):
        if f.shape != first.shape or f.dtype != first.dtype:
            raise InputError(f"frames[{i}] has shape {f.shape} and dtype {f.dtype}, but frames[0] has {first.shape} {first.dtype}")
    height, width = first.shape
    checked_boxes = [
        clip_boxes(check_boxes(b, f"boxes[{i}]"), width, height, f"boxes[{i}]") for i, b in enumerate(boxes)
    ]
    return checked_frames, checked_boxes


def frame_verdicts(
    frames: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    scores: np.ndarray,
    center: int,
    params: MiningParams | None = None,
    rule: RuleLike = DEFAULT_RULE,
    backend: BackendName = "auto",
    iou_first: bool = True,
    labels: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Verdicts of the detections of ``frames[center]`` given its window.

    Args:
        frames: consecutive ``(H, W)`` uint8 or float32 grayscale frames around the judged one.
        boxes: one ``(N_i, 4)`` x1, y1, x2, y2 array per frame. Boxes are clipped to the image and
            only those of ``score >= params.score_threshold`` should be passed (the miner does both).
        scores: ``(N,)`` scores of ``boxes[center]``.
        center: index in ``frames`` of the judged frame.
        iou_first: seed rule only; decide by ``IoU(e, d)`` before any NCC (same verdicts, less work).
        labels: optional ``(N_i,)`` integer category ids per frame, like ``boxes``: a detection then
            pairs only with detections of its own label (unless ``params.class_agnostic``) and one
            partnered only by another label is ``Reason.LABEL_FLICKER``; None: one class.
    Returns:
        ``(N,)`` int8 :class:`Reason` codes; ``Reason.ISOLATED`` marks a hard negative.
    """
    params = params or MiningParams()
    rule = _rule(rule)
    checked_frames, checked_boxes = _check_window(frames, boxes, center)
    scores = check_scores(scores, len(checked_boxes[center]), "scores", frame=center)
    checked_labels = None if labels is None else _check_labels(labels, checked_boxes)
    chosen = get_backend(backend)

    def decide(window_boxes, window_scores):
        return chosen.frame_verdicts(checked_frames, window_boxes, window_scores, center, params, rule, iou_first)

    return class_verdicts(checked_boxes, checked_labels, scores, center, params, decide)


def _check_labels(labels: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(labels) != len(boxes):
        raise InputError(f"labels has {len(labels)} entries but frames has {len(boxes)}; give one (N_i,) array per frame")
    checked = []
    for i, (found, frame_boxes) in enumerate(zip(labels, boxes)):
        array = np.asarray(found)
        if array.size == 0 and len(frame_boxes) == 0:
            array = array.reshape(0)
        if array.shape != (len(frame_boxes),):
            raise InputError(f"labels[{i}] must have shape ({len(frame_boxes)},) to match boxes[{i}], got {array.shape}")
        if array.dtype.kind not in "iu" and not (array.dtype.kind == "f" and np.isfinite(array).all() and (array == np.round(array)).all()):
            raise InputTypeError(f"labels[{i}] must be integer category ids, got dtype {array.dtype}")
        checked.append(array.astype(np.int64))
    return checked


def frame_hard_positives(
    frames: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    center: int,
    params: MiningParams | None = None,
    backend: BackendName = "auto",
) -> np.ndarray:
    """Hard positives of ``frames[center]``: objects detected in frames around it but missed in it.

    Arguments as :func:`frame_verdicts` (the frames within ``params.max_gap`` of ``center`` are
    used). Returns ``(M, 4)`` float64 x1, y1, x2, y2 tracked boxes; see
    :func:`flickermine.mining._rules.hard_positives`.
    """
    params = params or MiningParams()
    checked_frames, checked_boxes = _check_window(frames, boxes, center)
    return get_backend(backend).frame_hard_positives(checked_frames, checked_boxes, center, params)


__all__ = ["frame_hard_positives", "ncc_search", "ncc_search_batch", "iou", "frame_verdicts", "Reason", "Rule", "MiningParams"]
