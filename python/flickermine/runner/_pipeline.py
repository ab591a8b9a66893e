"""Mine one video against a detections file: decode once, in order, stream verdicts to CSV."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Iterator, TextIO


from .._files import locked_output
from .._progress import progress_bar
from ..errors import InputError
from ..io._formats import open_detections
from ..mining._miner import FrameVerdicts, Miner
from ..mining._backends import BackendName
from ..mining._params import DEFAULT_RULE, MiningParams, Reason, Rule
from ..mining._rules import RuleName
from ..video import open_video
from ._loop import mine_stream

VERDICT_COLUMNS = ("frame", "x", "y", "w", "h", "score", "verdict", "reason")


@dataclasses.dataclass
class MiningSummary:
    """Counts and speed of one mining run. ``seconds`` includes decoding."""

    video: str
    frames: int
    detections: int  #: all detections of the file
    candidates: int  #: detections with score >= score_threshold
    hard_negatives: int
    seconds: float
    backend: str
    rule: str
    #: candidates per verdict reason (``Reason`` labels: isolated, sure_score, small, border, partner, ...)
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        return (
            f"{self.video}: {self.frames} frames, {self.detections} detections, {self.candidates} candidates, "
            f"{self.hard_negatives} hard negatives, {self.frames_per_second:.0f} frames/s "
            f"(rule {self.rule}, backend {self.backend})"
        )


class VerdictWriter:
    """Writes ``frame,x,y,w,h,score,verdict,reason`` rows (frame 1-based, MOT convention) as
    frames are decided, so an interrupted run keeps every frame decided before it stopped."""

    def __init__(self, stream: TextIO) -> None:
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow(VERDICT_COLUMNS)

    def write(self, verdicts: FrameVerdicts) -> None:
        for frame, x, y, w, h, score, verdict, reason in verdicts.rows():
            self._writer.writerow((frame, f"{x:.3f}", f"{y:.3f}", f"{w:.3f}", f"{h:.3f}", f"{score:.6f}", verdict, reason))


class VideoMiner:
    """Mining of one video against one MOT detections file, or a detector run in the same
    decoding pass (``detections=None, detector=...``).

    Opening checks the video and the whole detections file, so bad input fails before any
    frame is mined or any output is touched. Iterating decodes the video once, in order, and
    yields every frame's :class:`FrameVerdicts` in frame order.
    """

    def __init__(
        self,
        video: str | os.PathLike,
        detections: str | os.PathLike | None,
        params: MiningParams | None = None,
        rule: Rule | RuleName = DEFAULT_RULE,
        backend: BackendName = "auto",
        iou_first: bool = True,
        progress: bool = False,
        detector=None,
    ) -> None:
        if (detections is None) == (detector is None):
            raise InputError("give a detections file or a detector (exactly one)")
        self.miner = Miner(params, rule, backend, iou_first)
        self.source = open_video(video)
        self.detector = None
        self.detections = None
        self.count = 0  #: detections seen so far (all of them, with a detector)
        if detector is not None:
            from ..detect._detections import as_detector

            self.detector = as_detector(detector)
        else:
            assert detections is not None  # checked above: exactly one of the two
            self.detections = open_detections(
                detections, frame_count=self.source.frame_count, width=self.source.width, height=self.source.height
            )
        self.progress = progress

    def __iter__(self) -> Iterator[FrameVerdicts]:
        pairs: Any
        if self.detector is not None:
            from ._gpu_pipeline import DetectorPipeline

            pairs = DetectorPipeline(self.source, self.detector, gray=True, log=lambda message: None)
        else:
            pairs = self.detections
        with progress_bar(self.source.frame_count, self.source.name, enabled=self.progress) as bar:
            for step in mine_stream(self.source, pairs, [self.miner]):
                yield from step.verdicts[0]
                if step.frame is not None:
                    assert step.detections is not None
                    self.count += len(step.detections)
                    bar.update(1)


def mine_video(
    video: str | os.PathLike,
    detections: str | os.PathLike | None,
    params: MiningParams | None = None,
    rule: Rule | RuleName = DEFAULT_RULE,
    backend: BackendName = "auto",
    iou_first: bool = True,
    verdicts_csv: str | os.PathLike | None = None,
    progress: bool = False,
    detector=None,
) -> MiningSummary:
    """Mine ``video`` with the MOT ``detections`` file (or ``detector``, run in the same decoding
    pass, with ``detections=None``); optionally write every verdict to a CSV."""
    job = VideoMiner(video, detections, params, rule, backend, iou_first, progress, detector=detector)
    candidates = hard_negatives = 0
    reasons: dict[int, int] = {}
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        writer = None
        if verdicts_csv is not None:
            # Rows stream into a new temporary file renamed over the CSV on success, under a lock
            # (a second run writing the same CSV fails at once): an earlier result is never
            # clobbered by a failed run, and a failed run keeps every row it decided in .partial.
            final = Path(verdicts_csv)
            if final.is_dir():
                raise InputError(f"--verdicts {final} is a folder; name the CSV file to write")
            temporary = stack.enter_context(locked_output(final, keep_as=final.with_name(final.name + ".partial")))
            writer = VerdictWriter(stack.enter_context(open(temporary, "w", newline="")))
        for verdicts in job:
            candidates += len(verdicts.reasons)
            hard_negatives += int(verdicts.hard_negatives.sum())
            for code in verdicts.reasons.tolist():
                reasons[code] = reasons.get(code, 0) + 1
            if writer is not None:
                writer.write(verdicts)
    assert job.source.decoded_frames is not None  # the video was decoded to the end above
    return MiningSummary(
        video=str(video),
        frames=job.source.decoded_frames,
        detections=job.detections.count if job.detections is not None else job.count,
        candidates=candidates,
        hard_negatives=hard_negatives,
        seconds=time.perf_counter() - start,
        backend=job.miner.backend_name,
        rule=job.miner.rule.value,
        reasons={Reason(code).label: count for code, count in sorted(reasons.items())},
    )
