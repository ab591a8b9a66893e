"""One video of a mining run: decode it once, detect (or read its detections file), mine, and
write its shard. What every executor runs, locally or on a Ray worker (:func:`mine_video_job`)."""

from __future__ import annotations

import collections
import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterable

import cv2

from .._files import file_sha256
from ..dataset._writer import RunConfig, ShardWriter, shard_summary
from ..detect._detections import Detections, as_detector
from ..errors import InputError
from ..io._formats import open_detections
from ..io._mot import DetectionReader
from ..mining._backends import BackendName
from ..mining._kernels import set_num_threads
from ..mining._miner import Miner
from ..video import Frame, open_video
from ._gpu_pipeline import DetectorPipeline
from ._loop import mine_stream


@dataclasses.dataclass(frozen=True)
class VideoJob:
    key: str
    path: Path
    detections: Path | None  #: None: run the detector in the same decoding pass


def _detections_for(job: VideoJob, source, detector, pipelines: list) -> DetectionReader | Iterable[tuple[Frame, Detections]]:
    """The job's detections file, or its detector running in a :class:`DetectorPipeline`
    (appended to ``pipelines`` for its stats), which infers the next batch while the caller mines
    this one."""
    if job.detections is not None:
        return open_detections(job.detections, frame_count=source.frame_count, width=source.width, height=source.height)
    pipeline = DetectorPipeline(source, detector, gray=True, log=lambda message: None)
    pipelines.append(pipeline)
    return pipeline


def mine_video_job(
    job: VideoJob,
    out: Path,
    config: RunConfig,
    backend: BackendName = "auto",
    detector=None,
    on_frames: Callable[[str, int], None] | None = None,
    threads: int | None = None,
) -> dict:
    """Mine one video into its shard; return the shard's statistics (without its images).

    ``threads``: the cores this video may use, when several are mined at once (``--workers``, Ray
    tasks): FFmpeg decodes with that many threads, OpenCV's own thread pool is set to it and the
    rules run on one less (at least one; :func:`~flickermine.mining.set_num_threads`) for the
    duration of the call. None: the libraries' defaults, for a video that has the machine.
    """
    if threads is None:
        return _mine_video_job(job, out, config, backend, detector, on_frames, None)
    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    previous_rules = set_num_threads(max(threads - 1, 1))
    try:
        return _mine_video_job(job, out, config, backend, detector, on_frames, threads)
    finally:
        cv2.setNumThreads(previous)
        set_num_threads(previous_rules)


def _mine_video_job(job, out, config, backend, detector, on_frames, threads) -> dict:
    start = time.perf_counter()
    detector = as_detector(detector) if detector is not None else None
    source = open_video(job.path, decode_threads=threads)
    miner = Miner(config.params, config.rule, backend, hard_positives=config.mode in ("hp", "hn+hp"))
    writer = ShardWriter(out, job.key, config)
    colors: collections.deque = collections.deque(maxlen=2 * config.params.window + 1)
    detections = 0
    pending = 0
    pipelines: list = []
    found = _detections_for(job, source, detector, pipelines)
    # names of the labels, for the COCO categories: the JSONL file's label names, or the detector's
    names = getattr(found, "category_names", None) if detector is None else getattr(detector, "category_names", None)
    writer.category_names = {int(k): str(v) for k, v in (names or {}).items()}
    for step in mine_stream(source, found, [miner], color=True):
        if step.frame is not None:
            assert step.detections is not None
            colors.append(step.frame.color)
            detections += len(step.detections)
            first = step.frame.index + 1 - len(colors)  # index of colors[0]
        else:  # the video ended: the miner decides its last frames
            first = (source.decoded_frames or 0) - len(colors)
        for verdicts in step.verdicts[0]:
            writer.add(verdicts, colors[verdicts.frame_index - first])
        if step.frame is None:
            break
        pending += 1
        if on_frames is not None and pending >= 16:
            on_frames(job.key, pending)
            pending = 0
    if on_frames is not None and pending:
        on_frames(job.key, pending)
    seconds = time.perf_counter() - start
    shard = writer.finish(
        {
            "path": str(job.path),
            "detections_file": str(job.detections) if job.detections else None,
            "detections_sha256": file_sha256(job.detections) if job.detections else None,
            "width": source.width,
            "height": source.height,
            "frames": source.decoded_frames,
            "detections": detections,
            "seconds": round(seconds, 3),
            "frames_per_second": round((source.decoded_frames or 0) / seconds, 1) if seconds > 0 else None,
            "backend": miner.backend_name,
        }
    )
    stats = shard_summary(shard)
    if pipelines:  # fused detection: frames/s and GPU utilisation, for report.json and the log
        stats["pipeline"] = pipelines[0].stats.as_dict()
    return stats


def check_one_category(detector) -> None:
    """Formerly refused a detector of many categories (mining paired detections whatever their
    labels, into a one-category dataset). Mining is per class now (a detection pairs only with
    detections of its own label; ``--class-agnostic`` for the old pairing) and the COCO output
    lists every category of the detector, so every detector is accepted; only checked to be one."""
    as_detector(detector)


def check_shard_inputs(shard: dict, job: VideoJob, where: Path) -> None:
    """Refuse to resume from a shard mined from another video or other detections than ``job``'s:
    same key, different input would otherwise be skipped as done and merged without a word."""
    if shard.get("path") and Path(shard["path"]).resolve() != job.path.resolve():
        raise InputError(
            f"{where} was mined from {shard['path']}, not {job.path}: pick another --out, or delete the shard to mine again"
        )
    recorded = shard.get("detections_sha256")  # absent in shards written before it was recorded
    if job.detections is not None and recorded and recorded != file_sha256(job.detections):
        raise InputError(
            f"{where} was mined from detections {shard.get('detections_file')}, whose content differs from "
            f"{job.detections}: pick another --out, or delete the shard to mine again"
        )
