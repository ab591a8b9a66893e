"""The streaming miner: frames in, in order, once; each frame's verdicts out once its window is complete.

Memory holds one window of ``2 * window + 1`` frames whatever the video's length.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Iterable, Iterator, NamedTuple, Optional, Union

import numpy as np

from ._backends import BackendName, get_backend
from .._boxes import check_boxes, check_gray_frame, check_scores, clip_boxes
from ..detect._detections import Detections
from ._params import DEFAULT_RULE, HARD_NEGATIVE, PSEUDO_POSITIVE, MiningParams, Reason, Rule
from ._rules import RuleName, class_verdicts
from ..errors import InputError


_ISOLATED = int(Reason.ISOLATED)
_LABELS = {int(r): r.label for r in Reason}


@dataclasses.dataclass(frozen=True)
class FrameVerdicts:
    """The decided candidates of one frame.

    Attributes:
        frame_index: 0-based index of the frame in the video (MOT files number it ``+1``).
        boxes: ``(N, 4)`` float64 x1, y1, x2, y2 pixels of the candidates (``score >=
            score_threshold``), clipped to the image.
        scores: ``(N,)`` float64 detector scores.
        reasons: ``(N,)`` int8 :class:`Reason` codes.
        hard_positives: ``(M, 4)`` float64 x1, y1, x2, y2 tracked boxes of objects the detector
            missed in this frame (empty unless the miner looks for hard positives).
        labels: ``(N,)`` int64 category ids of the candidates, from the pushed
            :class:`~flickermine.detect.Detections` (all 1 when none were given).
        hard_positive_labels: ``(M,)`` int64 category ids of ``hard_positives``: the label of the
            detections they were tracked from (per class unless ``class_agnostic``; all 1 else).
    """

    frame_index: int
    boxes: np.ndarray
    scores: np.ndarray
    reasons: np.ndarray
    hard_positives: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4)))
    labels: Optional[np.ndarray] = None
    hard_positive_labels: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if self.labels is None:
            object.__setattr__(self, "labels", np.ones(len(self.scores), dtype=np.int64))
        if self.hard_positive_labels is None or len(self.hard_positive_labels) != len(self.hard_positives):
            object.__setattr__(self, "hard_positive_labels", np.ones(len(self.hard_positives), dtype=np.int64))

    @property
    def hard_negatives(self) -> np.ndarray:
        """``(N,)`` bool: which candidates are hard negatives."""
        return self.reasons == Reason.ISOLATED

    @property
    def pseudo_positives(self) -> np.ndarray:
        """``(N,)`` bool: candidates that are not hard negatives."""
        return self.reasons != Reason.ISOLATED

    def rows(self) -> Iterator[tuple]:
        """``(frame (1-based), x, y, w, h, score, verdict, reason)`` per candidate."""
        for (x1, y1, x2, y2), score, reason in zip(self.boxes.tolist(), self.scores.tolist(), self.reasons.tolist()):
            verdict = HARD_NEGATIVE if reason == _ISOLATED else PSEUDO_POSITIVE
            yield (self.frame_index + 1, x1, y1, x2 - x1, y2 - y1, score, verdict, _LABELS[reason])


class _Entry(NamedTuple):
    frame: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


class Miner:
    """Decide flicker verdicts on a stream of frames.

    Push frames in order with their detections; :meth:`push` returns the frames whose window is
    now complete (frame ``f`` is decided when ``f + window`` arrives), :meth:`finish` the rest.

    Example::

        miner = Miner(MiningParams(window=5), rule="seed", backend="auto")
        for gray, detections in zip(frames, per_frame_detections):   # Detections per frame
            for verdicts in miner.push(gray, detections):
                ...
        for verdicts in miner.finish():
            ...
    """

    def __init__(
        self,
        params: MiningParams | None = None,
        rule: Rule | RuleName = DEFAULT_RULE,
        backend: BackendName = "auto",
        iou_first: bool = True,
        hard_positives: bool = False,
    ) -> None:
        self.params = params or MiningParams()
        self.find_hard_positives = hard_positives
        try:
            self.rule = Rule(rule)
        except ValueError:
            raise InputError(f"rule must be one of {[r.value for r in Rule]}, got {rule!r}") from None
        self.backend = get_backend(backend)
        self.iou_first = iou_first
        self._buffer: collections.deque[_Entry] = collections.deque(maxlen=2 * self.params.window + 1)
        self._pushed = 0  # frames pushed so far
        self._decided = 0  # frames whose verdicts were returned
        self._finished = False

    @property
    def backend_name(self) -> str:
        return self.backend.NAME

    @property
    def frames_pushed(self) -> int:
        return self._pushed

    def push(
        self, frame: np.ndarray, detections: Union[Detections, np.ndarray], scores: Optional[np.ndarray] = None
    ) -> list[FrameVerdicts]:
        """Add the next frame.

        Args:
            frame: ``(H, W)`` uint8 or float32 grayscale; same shape and dtype for every frame.
                The miner keeps a reference until the frame leaves its window: do not modify it.
            detections: all the frame's :class:`~flickermine.detect.Detections`;
                boxes are clipped to the image here (a box entirely outside is an error) and only
                ``score >= score_threshold`` take part; labels are carried to the verdicts.
                The bare-array form ``push(frame, boxes, scores)`` (``(N, 4)`` x1, y1, x2, y2
                and ``(N,)``) is accepted too.
        Returns:
            The verdicts of the frames decided by this push (zero or one).
        """
        if self._finished:
            raise RuntimeError("Miner.push() after finish(); make a new Miner for a new video")
        where = f"frame {self._pushed}"
        frame = check_gray_frame(frame, where)
        if self._buffer:
            first = self._buffer[0].frame
            if frame.shape != first.shape or frame.dtype != first.dtype:
                raise InputError(
                    f"{where} has shape {frame.shape} and dtype {frame.dtype}, but earlier frames have "
                    f"{first.shape} {first.dtype}"
                )
        if isinstance(detections, Detections):
            if scores is not None:
                raise InputError(f"{where}: pass push(frame, detections) or push(frame, boxes, scores), not both")
            boxes, scores, labels = detections.boxes, detections.scores, detections.labels
            assert labels is not None  # Detections fills it in
        else:
            if scores is None:
                raise InputError(f"{where}: push(frame, boxes) needs the scores: push(frame, boxes, scores) or push(frame, Detections(...))")
            boxes = check_boxes(detections, f"boxes of {where}")
            scores = check_scores(scores, len(boxes), f"scores of {where}")
            labels = np.ones(len(boxes), dtype=np.int64)
        candidates = scores >= self.params.score_threshold
        height, width = frame.shape
        boxes = clip_boxes(boxes[candidates], width, height, f"boxes of {where}")
        self._buffer.append(_Entry(frame, boxes, scores[candidates], labels[candidates]))
        self._pushed += 1
        if self._pushed - 1 - self.params.window >= 0:
            return [self._decide(self._pushed - 1 - self.params.window)]
        return []

    def finish(self) -> list[FrameVerdicts]:
        """Decide the last frames (their windows are clipped at the end of the video)."""
        self._finished = True
        return [self._decide(f) for f in range(self._decided, self._pushed)]

    def _decide(self, frame_index: int) -> FrameVerdicts:
        first_index = self._pushed - len(self._buffer)
        center = frame_index - first_index
        lo = max(0, center - self.params.window)
        window = list(self._buffer)[lo : center + self.params.window + 1]
        entry = self._buffer[center]
        if len(entry.boxes):
            frames = [e.frame for e in window]

            def decide(boxes, scores):
                return self.backend.frame_verdicts(frames, boxes, scores, center - lo, self.params, self.rule, self.iou_first)

            # per class unless params.class_agnostic; then LABEL_FLICKER and DUPLICATE (rules.class_verdicts)
            reasons = class_verdicts([e.boxes for e in window], [e.labels for e in window], entry.scores, center - lo, self.params, decide)
        else:
            reasons = np.zeros(0, dtype=np.int8)
        verdicts = FrameVerdicts(
            frame_index, entry.boxes, entry.scores, np.asarray(reasons, dtype=np.int8), labels=entry.labels
        )
        if self.find_hard_positives:
            # A frame without any detection may be exactly the one where an object was missed.
            frames = [e.frame for e in window]
            present = np.unique(np.concatenate([e.labels for e in window]))
            if self.params.class_agnostic or len(present) <= 1:
                found = np.asarray(
                    self.backend.frame_hard_positives(frames, [e.boxes for e in window], center - lo, self.params),
                    dtype=np.float64,
                ).reshape(-1, 4)
                found_labels = np.full(len(found), present[0] if len(present) == 1 and not self.params.class_agnostic else 1, dtype=np.int64)
            else:  # per class: an object of one class missed where another class was detected is still missed
                parts, part_labels = [], []
                for label in present:
                    boxes = [e.boxes[e.labels == label] for e in window]
                    part = np.asarray(self.backend.frame_hard_positives(frames, boxes, center - lo, self.params), dtype=np.float64).reshape(-1, 4)
                    parts.append(part)
                    part_labels.append(np.full(len(part), label, dtype=np.int64))
                found, found_labels = np.concatenate(parts), np.concatenate(part_labels)
            verdicts = dataclasses.replace(verdicts, hard_positives=found, hard_positive_labels=found_labels)
        self._decided = frame_index + 1
        return verdicts


def mine_frames(
    frames: Iterable[np.ndarray],
    detections: Iterable[Union[Detections, tuple[np.ndarray, np.ndarray]]],
    params: MiningParams | None = None,
    rule: Rule | RuleName = DEFAULT_RULE,
    backend: BackendName = "auto",
    iou_first: bool = True,
    hard_positives: bool = False,
) -> Iterator[FrameVerdicts]:
    """Mine a stream of grayscale frames with their :class:`~flickermine.detect.Detections`
    (or ``(boxes, scores)`` pairs); yields verdicts in frame order.

    ``frames`` and ``detections`` are consumed together, one item each per frame; they must have
    the same length.
    """
    miner = Miner(params, rule, backend, iou_first, hard_positives)
    detections = iter(detections)
    for index, frame in enumerate(frames):
        try:
            found = next(detections)
        except StopIteration:
            raise InputError(f"detections ended at frame {index} but frames go on") from None
        if isinstance(found, Detections):
            yield from miner.push(frame, found)
        else:
            boxes, scores = found
            yield from miner.push(frame, boxes, scores)
    if next(detections, None) is not None:
        raise InputError(f"detections go on past the last frame ({miner.frames_pushed} frames)")
    yield from miner.finish()
