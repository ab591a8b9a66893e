"""The one decode -> detections -> Miner loop every mining path runs.

:func:`mine_stream` pairs each decoded frame with its
:class:`~flickermine.detect.Detections` (read from a detections file, or produced by a
detector in a :class:`~flickermine.runner.DetectorPipeline`), pushes them to one or
more :class:`~flickermine.mining.Miner` objects and yields what each decided, frame by frame;
a file is checked against the number of frames the video decoded to once decoding ends. Used by
:mod:`._pipeline` (``mine --verdicts``), :mod:`._mine_job` (``mine --out``) and
:func:`flickermine.evaluate.mine_candidates` (several miners on one decoding pass).
"""

from __future__ import annotations

from typing import Iterable, Iterator, NamedTuple, Optional, Sequence, Union

from ..detect._detections import Detections
from ..io._mot import DetectionReader
from ..mining._miner import FrameVerdicts, Miner
from ..video._source import Frame, VideoSource

__all__ = ["MinedFrame", "mine_stream"]


class MinedFrame(NamedTuple):
    """One step of :func:`mine_stream`.

    ``frame`` and ``detections``: the frame just pushed, or both None for the last step (after the
    video ended, when the miners decide their last frames); ``verdicts[i]``: the frames miner ``i``
    decided in this step (zero or more, in frame order).
    """

    frame: Optional[Frame]
    detections: Optional[Detections]
    verdicts: list[list[FrameVerdicts]]


def _read_along(source: VideoSource, reader: DetectionReader, color: bool) -> Iterator[tuple[Frame, Detections]]:
    per_frame = reader.detections(source.frame_count)
    for frame in source.frames(gray=True, color=color):
        yield frame, next(per_frame, None) or Detections.empty()
    assert source.decoded_frames is not None  # set by frames()
    reader.check_frames_decoded(source.decoded_frames)


def mine_stream(
    source: VideoSource,
    detections: Union[DetectionReader, Iterable[tuple[Frame, Detections]]],
    miners: Sequence[Miner],
    color: bool = False,
) -> Iterator[MinedFrame]:
    """Decode ``source`` once, in order, and mine every frame with every one of ``miners``.

    ``detections``: a detections file reader (frames are decoded here, grayscale, and in colour
    too with ``color=True``; the file is checked against the decoded frame count at the end), or
    an iterable of ``(frame, detections)`` pairs that decodes ``source`` itself (a
    :class:`~flickermine.runner.DetectorPipeline` with ``gray=True``).
    """
    pairs = _read_along(source, detections, color) if isinstance(detections, DetectionReader) else detections
    for frame, found in pairs:
        assert frame.gray is not None  # decoded in grayscale
        yield MinedFrame(frame, found, [miner.push(frame.gray, found) for miner in miners])
    yield MinedFrame(None, None, [miner.finish() for miner in miners])
