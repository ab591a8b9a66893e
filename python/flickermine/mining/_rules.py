"""The flicker rules, written once in plain NumPy: the oracle every backend must match.

A backend that does not reimplement the rules (``numpy``, ``opencv``) calls these functions with
its own batched NCC search; the compiled backends run the same logic in their own code (``cpp``
in ``cpp/src/verdicts.cpp``, ``numba`` in jitted code) and are tested against this file, never
calling it.

Shared conventions for every function here:

* ``frames``: the window of grayscale frames, consecutive video frames, each ``(H, W)`` uint8
  or float32; ``center`` is the position in ``frames`` of the frame being judged. Only frames
  within ``params.window`` of ``center`` are used; the list is shorter near the video's ends.
* ``boxes``: per frame of ``frames``, the ``(N_i, 4)`` float64 x1, y1, x2, y2 pixel boxes of its
  candidate detections (``score >= score_threshold``), already clipped to the image.
* ``scores``: ``(N,)`` float64 scores of ``boxes[center]``.
* Returns ``(N,)`` int8 :class:`~flickermine.mining.Reason` codes, one per box of ``boxes[center]``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal, Sequence

import numpy as np

from .._boxes import box_areas, grow_boxes, iou_matrix, pixel_boxes
from ._params import MiningParams, Reason, Rule

#: ``(template_frame, template_boxes (K, 4) int64, search_frame, regions (K, 4) int64)`` ->
#: ``(best scores (K,) float64, best top-left corners (K, 2) int64 as x, y in image pixels)``.
#: What a ``rule=`` argument may name besides a :class:`~flickermine.mining.Rule` member.
RuleName = Literal["seed", "tracklet", "support"]

SearchBatch = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]

UNDECIDED = -1


def exemption_reasons(boxes: np.ndarray, scores: np.ndarray, width: int, height: int, params: MiningParams) -> np.ndarray:
    """Reason codes of exempt detections (sure score, then small, then border); -1 elsewhere."""
    reasons = np.full(len(boxes), UNDECIDED, dtype=np.int8)
    near_border = (
        (boxes[:, 0] < params.border)
        | (boxes[:, 1] < params.border)
        | (boxes[:, 2] > width - params.border)
        | (boxes[:, 3] > height - params.border)
    )
    # Assign in reverse priority so the first applicable reason wins.
    reasons[near_border] = Reason.BORDER
    reasons[box_areas(boxes) < params.min_area] = Reason.SMALL
    reasons[scores >= params.sure_score] = Reason.SURE_SCORE
    return reasons


def _window_range(num_frames: int, center: int, window: int) -> range:
    return range(max(0, center - window), min(num_frames, center + window + 1))


def _tracked_boxes(top_left: np.ndarray, template_boxes: np.ndarray) -> np.ndarray:
    sizes = template_boxes[:, 2:] - template_boxes[:, :2]
    return np.concatenate([top_left, top_left + sizes], axis=1).astype(np.float64)


def seed_verdicts(
    frames: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    scores: np.ndarray,
    center: int,
    params: MiningParams,
    search_batch: SearchBatch,
    iou_first: bool = True,
) -> np.ndarray:
    """Rule "seed": a detection with no partner in any neighbour frame is a hard negative.

    With ``iou_first`` the unmoved-box test ``IoU(e, d) > iou_threshold`` runs over every
    neighbour before any NCC. The verdicts are the same either way (the rule does not depend on
    the order of frames); only the reason of a non-hard-negative may move between
    ``PARTNER`` and ``APPEARANCE_CHANGED``.
    """
    height, width = frames[center].shape
    detections = boxes[center]
    reasons = exemption_reasons(detections, scores, width, height, params)
    undecided = np.flatnonzero(reasons == UNDECIDED)
    neighbours = [g for g in _window_range(len(frames), center, params.window) if g != center and len(boxes[g])]

    if iou_first:
        for g in neighbours:
            has_partner = (iou_matrix(detections[undecided], boxes[g]) > params.iou_threshold).any(axis=1)
            reasons[undecided[has_partner]] = Reason.PARTNER
            undecided = undecided[~has_partner]

    templates = pixel_boxes(detections, width, height)
    regions = grow_boxes(templates, params.margin, width, height)
    for g in neighbours:
        if not len(undecided):
            break
        best, top_left = search_batch(frames[center], templates[undecided], frames[g], regions[undecided])
        lost = best < params.ncc_threshold
        tracked = _tracked_boxes(top_left, templates[undecided])
        has_partner = (iou_matrix(tracked, boxes[g]) > params.iou_threshold).any(axis=1)
        if not iou_first:
            has_partner |= (iou_matrix(detections[undecided], boxes[g]) > params.iou_threshold).any(axis=1)
        has_partner &= ~lost
        reasons[undecided[lost]] = Reason.APPEARANCE_CHANGED
        reasons[undecided[has_partner]] = Reason.PARTNER
        undecided = undecided[~(lost | has_partner)]

    reasons[undecided] = Reason.ISOLATED
    return reasons


def tracklet_verdicts(
    frames: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    scores: np.ndarray,
    center: int,
    params: MiningParams,
    search_batch: SearchBatch,
) -> np.ndarray:
    """Rule "tracklet": track each detection frame by frame, up to ``window`` frames each way.

    The template is always the crop from the center frame; each step searches around the
    previous tracked box grown by ``margin``; a direction stops when the best NCC falls below
    ``ncc_threshold``. A tracked box overlapping a detection of its frame at
    ``IoU >= iou_threshold`` is a partner. Hard negative: at least one frame reached and no
    partner. Nothing reached: ``APPEARANCE_CHANGED`` (``NO_NEIGHBOURS`` in a one-frame window).
    """
    height, width = frames[center].shape
    detections = boxes[center]
    reasons = exemption_reasons(detections, scores, width, height, params)
    undecided = np.flatnonzero(reasons == UNDECIDED)
    templates = pixel_boxes(detections, width, height)
    frames_reached = np.zeros(len(detections), dtype=np.int64)
    in_window = _window_range(len(frames), center, params.window)

    for step in (1, -1):
        active = undecided[reasons[undecided] == UNDECIDED]
        previous = templates[active]
        g = center + step
        while len(active) and g in in_window:
            regions = grow_boxes(previous, params.margin, width, height)
            best, top_left = search_batch(frames[center], templates[active], frames[g], regions)
            tracking = best >= params.ncc_threshold
            tracked = _tracked_boxes(top_left, templates[active])
            frames_reached[active[tracking]] += 1
            has_partner = tracking & (iou_matrix(tracked, boxes[g]) >= params.iou_threshold).any(axis=1)
            reasons[active[has_partner]] = Reason.PARTNER
            keep = tracking & ~has_partner
            active = active[keep]
            previous = tracked[keep].astype(np.int64)
            g += step

    still = undecided[reasons[undecided] == UNDECIDED]
    reached = frames_reached[still] > 0
    reasons[still[reached]] = Reason.ISOLATED
    reasons[still[~reached]] = Reason.APPEARANCE_CHANGED if len(in_window) > 1 else Reason.NO_NEIGHBOURS
    return reasons


@dataclasses.dataclass(frozen=True)
class SupportEvidence:
    """What the support rule measures of the undecided detections of one frame.

    ``candidates``: ``(K,)`` int64 indices into ``boxes[center]`` of the detections not exempt;
    ``offsets``: ``(G,)`` int64 neighbour frames relative to the center, in frame order (every
    frame within ``window`` that the video has); ``ncc``: ``(K, G)`` float64
    best NCC of each candidate's center crop in each neighbour frame (searched in the box grown
    by ``margin``); ``overlap``: ``(K, G)`` float64 largest IoU of the tracked box with a
    detection of that frame (0 in a frame without detections).
    """

    candidates: np.ndarray
    offsets: np.ndarray
    ncc: np.ndarray
    overlap: np.ndarray


def support_evidence(
    frames: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    reasons: np.ndarray,
    center: int,
    params: MiningParams,
    search_batch: SearchBatch,
) -> SupportEvidence:
    """Search the center crop of every detection still :data:`UNDECIDED` in ``reasons`` (the
    output of :func:`exemption_reasons`) in every neighbour frame: see :class:`SupportEvidence`."""
    height, width = frames[center].shape
    detections = boxes[center]
    candidates = np.flatnonzero(reasons == UNDECIDED)
    neighbours = [g for g in _window_range(len(frames), center, params.window) if g != center]
    ncc = np.zeros((len(candidates), len(neighbours)))
    overlap = np.zeros((len(candidates), len(neighbours)))
    if len(candidates):
        templates = pixel_boxes(detections[candidates], width, height)
        regions = grow_boxes(templates, params.margin, width, height)
        for j, g in enumerate(neighbours):
            ncc[:, j], top_left = search_batch(frames[center], templates, frames[g], regions)
            if len(boxes[g]):
                overlap[:, j] = iou_matrix(_tracked_boxes(top_left, templates), boxes[g]).max(axis=1)
    offsets = np.array(neighbours, dtype=np.int64) - center
    return SupportEvidence(candidates, offsets.reshape(-1), ncc, overlap)


def support_decision(evidence: SupportEvidence, num_neighbours: int, params: MiningParams) -> np.ndarray:
    """``(K,)`` int8 reasons of the candidates of ``evidence``: a neighbour frame is *tracked* when
    NCC >= ``ncc_threshold`` and *supports* when also ``overlap >= support_iou``. ISOLATED when
    at least ``min_tracked`` frames are tracked and at most ``max_support`` of them support;
    fewer tracked frames: APPEARANCE_CHANGED (NO_NEIGHBOURS when ``num_neighbours`` is 0);
    more support: PARTNER."""
    tracked = evidence.ncc >= params.ncc_threshold
    tracked_frames = tracked.sum(axis=1)
    supporting_frames = (tracked & (evidence.overlap >= params.support_iou)).sum(axis=1)
    enough = tracked_frames >= params.min_tracked
    isolated = enough & (supporting_frames <= params.max_support * tracked_frames)
    reasons = np.full(len(evidence.candidates), Reason.PARTNER, dtype=np.int8)
    reasons[~enough] = Reason.APPEARANCE_CHANGED if num_neighbours else Reason.NO_NEIGHBOURS
    reasons[isolated] = Reason.ISOLATED
    return reasons


def support_verdicts(
    frames: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    scores: np.ndarray,
    center: int,
    params: MiningParams,
    search_batch: SearchBatch,
) -> np.ndarray:
    """Rule "support": isolation as a share of the neighbour frames the detection can be tracked into.

    For each neighbour frame ``g`` (every frame within ``window``, with or without detections),
    the center crop of ``d`` is searched in ``g`` inside ``d`` grown by ``margin`` (as in the
    seed rule). ``g`` is *tracked* when the best NCC >= ``ncc_threshold``, and *supports* ``d``
    when, moreover, a detection of ``g`` overlaps the tracked box at IoU >= ``support_iou``.
    ``d`` is a hard negative when it was tracked into at least ``min_tracked`` frames and at
    most ``max_support`` of them support it. Otherwise: too few tracked frames ->
    ``APPEARANCE_CHANGED`` (``NO_NEIGHBOURS`` in a one-frame window); too much support ->
    ``PARTNER``. (:func:`support_evidence` measures, :func:`support_decision` decides.)

    Unlike the seed rule, a partner must sit on the tracked box (a passer-by overlapping the
    unmoved box is no partner) and one lost frame or one stray overlap does not decide alone.
    """
    height, width = frames[center].shape
    reasons = exemption_reasons(boxes[center], scores, width, height, params)
    evidence = support_evidence(frames, boxes, reasons, center, params, search_batch)
    reasons[evidence.candidates] = support_decision(evidence, len(evidence.offsets), params)
    return reasons


def demote_duplicates(boxes: np.ndarray, reasons: np.ndarray, params: MiningParams) -> np.ndarray:
    """Every rule's last step: a hard negative whose IoU with a pseudo-positive of the same frame
    exceeds ``params.duplicate_iou`` becomes ``DUPLICATE``. It is a second, shifted box of an object
    the detector did find: false by the ground truth, but a window mostly on the object, which a
    detector trained to reject it learns to score real objects lower. ``boxes`` ``(N, 4)`` and
    ``reasons`` ``(N,)`` of one frame; returns new reasons (the input is left as it is)."""
    isolated = reasons == Reason.ISOLATED
    if params.duplicate_iou >= 1.0 or not isolated.any() or isolated.all():
        return reasons
    overlap = iou_matrix(boxes[isolated], boxes[~isolated]).max(axis=1)
    demoted = reasons.copy()
    demoted[np.flatnonzero(isolated)[overlap > params.duplicate_iou]] = Reason.DUPLICATE
    return demoted


#: ``(boxes per frame of the window, scores of boxes[center]) -> (N,) reasons of boxes[center]``:
#: a backend's ``frame_verdicts`` with everything else of the window fixed.
Decide = Callable[[Sequence[np.ndarray], np.ndarray], np.ndarray]


def _one_label(per_frame: Sequence[np.ndarray]) -> bool:
    """Whether the window holds at most one label (min == max: no sort, unlike np.unique)."""
    window_labels = np.concatenate(per_frame)
    return window_labels.size == 0 or window_labels.min() == window_labels.max()


def class_verdicts(
    boxes: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | None,
    scores: np.ndarray,
    center: int,
    params: MiningParams,
    decide: Decide,
) -> np.ndarray:
    """Every rule's verdicts with labels: what :class:`~flickermine.mining.Miner` and
    :func:`flickermine.mining.frame_verdicts` run around a backend's ``frame_verdicts``.

    Per class (the default): ``decide`` runs once per label of the center frame, on that label's
    detections of every frame of the window, so a detection pairs only with detections of its own
    label; the reasons are merged back in the original order. Then a detection isolated within its
    label but with a partner among all the window's detections (``decide`` on every label gives
    ``PARTNER``) becomes ``LABEL_FLICKER``: its box is consistent, its label flips. Last,
    :func:`demote_duplicates`, within each label. With ``labels`` None, ``params.class_agnostic``
    or a window of one label, this is ``demote_duplicates(boxes[center], decide(boxes, scores))``:
    the backend's verdicts as without labels. ``labels``: ``(N_i,)`` int per frame of the window.
    Backends stay unchanged: every call of ``decide`` is an ordinary window of boxes.
    """
    center_boxes = boxes[center]
    per_frame = None if labels is None or params.class_agnostic else [np.asarray(l, dtype=np.int64).reshape(-1) for l in labels]
    if per_frame is None or _one_label(per_frame):
        reasons = np.asarray(decide(boxes, scores), dtype=np.int8)
        return demote_duplicates(center_boxes, reasons, params)
    own = per_frame[center]
    reasons = np.full(len(own), UNDECIDED, dtype=np.int8)
    for label in np.unique(own):
        mine = own == label
        subset = [b[l == label] for b, l in zip(boxes, per_frame)]
        reasons[mine] = np.asarray(decide(subset, scores[mine]), dtype=np.int8)
    isolated = np.flatnonzero(reasons == Reason.ISOLATED)
    if len(isolated):
        window = list(boxes)
        window[center] = center_boxes[isolated]
        agnostic = np.asarray(decide(window, scores[isolated]), dtype=np.int8)
        reasons[isolated[agnostic == Reason.PARTNER]] = Reason.LABEL_FLICKER
    for label in np.unique(own):
        mine = np.flatnonzero(own == label)
        reasons[mine] = demote_duplicates(center_boxes[mine], reasons[mine], params)
    return reasons


def verdicts(
    frames: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    scores: np.ndarray,
    center: int,
    params: MiningParams,
    rule: Rule,
    search_batch: SearchBatch,
    iou_first: bool = True,
) -> np.ndarray:
    """Dispatch to :func:`seed_verdicts`, :func:`tracklet_verdicts` or :func:`support_verdicts`
    (``iou_first``: seed only)."""
    if rule is Rule.SEED:
        return seed_verdicts(frames, boxes, scores, center, params, search_batch, iou_first)
    if rule is Rule.SUPPORT:
        return support_verdicts(frames, boxes, scores, center, params, search_batch)
    return tracklet_verdicts(frames, boxes, scores, center, params, search_batch)


def search_each(search_one: Callable[[np.ndarray, np.ndarray], "tuple[float, int, int]"]) -> SearchBatch:
    """Make a :data:`SearchBatch` from a one-search function ``(template, region) -> (score, x, y)``
    whose ``x, y`` is the best top-left corner inside the region."""

    def search_batch(template_frame, template_boxes, search_frame, regions):
        scores = np.empty(len(template_boxes), dtype=np.float64)
        top_left = np.empty((len(template_boxes), 2), dtype=np.int64)
        for k, ((tx1, ty1, tx2, ty2), (rx1, ry1, rx2, ry2)) in enumerate(zip(template_boxes, regions)):
            score, x, y = search_one(template_frame[ty1:ty2, tx1:tx2], search_frame[ry1:ry2, rx1:rx2])
            scores[k] = score
            top_left[k] = (rx1 + x, ry1 + y)
        return scores, top_left

    return search_batch


#: IoU at which a tracked box "matches" a detection at the ends of a hard-positive gap (docs/rules.md#hard-positives).
HP_MATCH_IOU = 0.5


def hard_positives(
    frames: Sequence[np.ndarray],
    boxes: Sequence[np.ndarray],
    center: int,
    params: MiningParams,
    search_batch: SearchBatch,
) -> np.ndarray:
    """Hard positives of ``frames[center]``: objects detected around it but missed in it.

    A detection ``d`` of frame ``a`` (at most ``max_gap`` frames from the center, either side) is
    tracked towards and past the center, frame by frame (template from ``a``, search around the
    previous tracked box grown by ``margin``, stop when NCC < ``ncc_threshold``). If the frames
    from ``a`` up to and including the center are all *gaps* (the tracked box overlaps no
    detection: IoU < ``iou_threshold``), and within ``max_gap`` gap frames in all the track then
    *matches* a detection (IoU >= 0.5), the tracked box in the center frame is a hard positive.
    A partial overlap (between the two thresholds) or a lost track ends it without one; a match
    takes precedence over a gap (when ``iou_threshold`` > 0.5).

    Tracks come from both sides; duplicates (IoU >= 0.5 with a box already found) are dropped,
    keeping the first found: tracks from earlier frames first, nearest source frame first, then
    in the order of the source frame's boxes. Returns ``(M, 4)`` float64 x1, y1, x2, y2.
    """
    height, width = frames[center].shape
    found: list[np.ndarray] = []
    for direction in (1, -1):  # 1: sources before the center, tracked forward
        for distance in range(1, params.max_gap + 1):
            source = center - direction * distance
            if not 0 <= source < len(frames) or not len(boxes[source]):
                continue
            templates = pixel_boxes(boxes[source], width, height)
            active = np.arange(len(templates))
            previous = templates
            at_center = np.zeros((len(templates), 4))
            ended_here = np.zeros(len(templates), dtype=bool)
            for step in range(1, params.max_gap + 2):
                g = source + direction * step
                if not len(active) or not 0 <= g < len(frames):
                    break
                regions = grow_boxes(previous, params.margin, width, height)
                best, top_left = search_batch(frames[source], templates[active], frames[g], regions)
                tracked = _tracked_boxes(top_left, templates[active])
                overlap = iou_matrix(tracked, boxes[g]).max(axis=1) if len(boxes[g]) else np.zeros(len(active))
                tracking = best >= params.ncc_threshold
                matched = tracking & (overlap >= HP_MATCH_IOU)
                # An iou_threshold above 0.5 would make a box both: a detection at IoU >= 0.5
                # found the object, so that frame is a matched end, never a gap.
                gap = tracking & ~matched & (overlap < params.iou_threshold)
                if step > distance:
                    ended_here[active[matched]] = True
                if step == distance:
                    at_center[active[gap]] = tracked[gap]
                # Tracks go on only through gaps, and only while a matched end can still come.
                keep = gap & (step <= params.max_gap)
                active = active[keep]
                previous = tracked[keep].astype(np.int64)
            found.extend(at_center[ended_here])  # in the order of the source frame's boxes
    kept: list[np.ndarray] = []
    for box in found:
        if not kept or (iou_matrix(box[None], np.array(kept)) < HP_MATCH_IOU).all():
            kept.append(box)
    return np.array(kept, dtype=np.float64).reshape(-1, 4)


def rule_kernels(search_batch: SearchBatch):
    """The ``frame_verdicts`` and ``frame_hard_positives`` members of a backend whose only kernel
    of its own is ``search_batch`` (see :mod:`flickermine.mining._backends`)."""

    def frame_verdicts(
        frames: Sequence[np.ndarray],
        boxes: Sequence[np.ndarray],
        scores: np.ndarray,
        center: int,
        params: MiningParams,
        rule: Rule,
        iou_first: bool = True,
    ) -> np.ndarray:
        return verdicts(frames, boxes, scores, center, params, rule, search_batch, iou_first)

    def frame_hard_positives(
        frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray], center: int, params: MiningParams
    ) -> np.ndarray:
        return hard_positives(frames, boxes, center, params, search_batch)

    return frame_verdicts, frame_hard_positives
