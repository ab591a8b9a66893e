"""Mining many videos into one COCO dataset: inputs, checks, workers, resume, progress, report.

A run is resumable: every finished video leaves an atomic shard in ``DIR/shards``; the same
command started again skips those videos and redoes only unfinished ones, then merges. Bad
input (detections that do not fit their video, a folder holding a run with other settings, an
unknown detector) stops before any work; a video that cannot be read is reported and skipped.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import glob
import json
import multiprocessing
import os
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import cv2
import numpy as np

from ._files import file_sha256
from .dataset import REPORT_COUNTS, RunConfig, ShardWriter, check_run_folder, contact_sheet, merge_shards, shard_path, shard_summary, write_report
from .detections import DetectionFileError
from .formats import open_detections
from .gpu_pipeline import DetectorPipeline, PipelineStats
from .miner import Miner
from .video import IMAGE_EXTENSIONS, VideoError, open_video
from .errors import InputError

if TYPE_CHECKING:
    import multiprocessing.queues

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts")
LIST_EXTENSIONS = (".lst", ".list", ".txt")
DETECTION_EXTENSIONS = (".txt", ".jsonl", ".det")


# -- inputs ------------------------------------------------------------------------------------


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir() if p.is_file())


def _expand_folder(folder: Path) -> list[Path]:
    if _has_images(folder):
        return [folder]
    found: list[Path] = []
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if child.is_dir():
            found += _expand_folder(child)
        elif child.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(child)
    return found


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Videos named by ``inputs``: video files, image folders (one video each), folders of videos
    (searched recursively), glob patterns, and text files listing any of these one a line
    (relative to the list's folder; ``#`` comments). Order is kept; duplicates are dropped."""
    videos: list[Path] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if any(c in text for c in "*?[") and not path.exists():
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise FileNotFoundError(f"{text}: the pattern matches nothing")
            videos += expand_inputs(matches)
        elif path.is_dir():
            found = _expand_folder(path)
            if not found:
                raise FileNotFoundError(f"{path}: the folder holds no videos and no images")
            videos += found
        elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
            lines = [line.strip() for line in path.read_text().splitlines()]
            entries = [str(path.parent / line) for line in lines if line and not line.startswith("#")]
            if not entries:
                raise FileNotFoundError(f"{path}: the list names no videos")
            videos += expand_inputs(entries)
        else:
            videos.append(path)  # a video file, or a missing one: reported when opened
    # Named by the path given (a link keeps its own name, which its detections file carries),
    # de-duplicated by what it points to (the same video listed twice is mined once).
    unique: dict[Path, Path] = {}
    for video in videos:
        unique.setdefault(video.resolve() if video.exists() else video, Path(os.path.abspath(video)))
    return list(unique.values())


def video_keys(videos: Sequence[Path]) -> list[str]:
    """Unique names for output folders: the video's name (file stem, or image folder's name),
    prefixed with parent folder names where two videos would share one."""

    def name(path: Path, depth: int) -> str:
        if path.name.lower() in {"img", "img1", "images", "imgs", "frames", "jpegimages"}:
            path = path.parent
        parts = list(path.parts)
        base = path.stem if path.suffix.lower() in VIDEO_EXTENSIONS else path.name
        prefix = [p for p in parts[-1 - depth : -1]] if depth else []
        return "-".join(prefix + [base]).replace(os.sep, "-")

    depth = [0] * len(videos)
    while True:
        keys = [name(v, d) for v, d in zip(videos, depth)]
        counts = collections.Counter(keys)
        clashing = [i for i, k in enumerate(keys) if counts[k] > 1]
        if not clashing:
            return keys
        progressed = False
        for i in clashing:
            if depth[i] < len(videos[i].parts) - 1:
                depth[i] += 1
                progressed = True
        if not progressed:
            return [f"{k}-{i + 1}" for i, k in enumerate(keys)]


def find_detections(video: Path, key: str, detections: str | os.PathLike | None, single: bool) -> Path:
    """The detections file of ``video``: ``detections`` itself when it is a file (one video),
    else ``detections/<key>.<ext>`` or ``detections/<video name>.<ext>``."""
    if detections is None:
        raise InputError("give --detections (a file or folder) or --detector")
    where = Path(detections)
    if where.is_file():
        if not single:
            raise InputError(f"--detections {where} is one file but {key} is one of several videos; pass a folder")
        return where
    if not where.is_dir():
        raise FileNotFoundError(f"--detections {where}: no such file or folder")
    names = [key, video.stem if video.is_file() else video.name]
    for name in names:
        for ext in DETECTION_EXTENSIONS:
            candidate = where / f"{name}{ext}"
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"no detections for video {video} in {where}: expected {where / (key + '.txt')} (or .jsonl)"
    )


# -- one video ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VideoJob:
    key: str
    path: Path
    detections: Path | None  #: None: run the detector in the same decoding pass


def _detections_stream(job: VideoJob, source, detector, pipelines: list) -> Iterator[tuple]:
    """``(frame, boxes, scores)`` per decoded frame, from the file or from the detector; a
    detector runs in a :class:`DetectorPipeline` (appended to ``pipelines`` for its stats), which
    infers the next batch while the caller mines this one."""
    if job.detections is not None:
        dets = open_detections(job.detections, frame_count=source.frame_count, width=source.width, height=source.height)
        per_frame = dets.per_frame(source.frame_count)
        empty = (None, np.zeros((0, 4)), np.zeros(0))
        for frame in source.frames(gray=True, color=True):
            _, boxes, scores = next(per_frame, empty)
            yield frame, boxes, scores
        dets.check_frames_decoded(source.decoded_frames)
        return
    pipeline = DetectorPipeline(source, detector, gray=True, log=lambda message: None)
    pipelines.append(pipeline)
    for frame, result in pipeline:
        yield frame, result.boxes, result.scores


def mine_video_job(
    job: VideoJob,
    out: Path,
    config: RunConfig,
    backend: str = "auto",
    detector=None,
    on_frames: Callable[[str, int], None] | None = None,
    threads: int | None = None,
) -> dict:
    """Mine one video into its shard; return the shard's statistics (without its images).

    ``threads``: the cores this video may use, when several are mined at once (``--workers``, Ray
    tasks): FFmpeg decodes with that many threads and OpenCV's own thread pool is set to it for
    the duration of the call. None: the libraries' defaults (every core), for a video that has the
    machine.
    """
    if threads is None:
        return _mine_video_job(job, out, config, backend, detector, on_frames, None)
    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        return _mine_video_job(job, out, config, backend, detector, on_frames, threads)
    finally:
        cv2.setNumThreads(previous)


def _mine_video_job(job, out, config, backend, detector, on_frames, threads) -> dict:
    from .detectors import as_detector

    start = time.perf_counter()
    detector = as_detector(detector) if detector is not None else None
    source = open_video(job.path, decode_threads=threads)
    miner = Miner(config.params, config.rule, backend, hard_positives=config.mode in ("hp", "hn+hp"))
    writer = ShardWriter(out, job.key, config)
    colors: collections.deque = collections.deque(maxlen=2 * config.params.window + 1)
    detections = 0
    pending = 0
    pipelines: list = []
    for frame, boxes, scores in _detections_stream(job, source, detector, pipelines):
        colors.append(frame.color)
        detections += len(boxes)
        for verdicts in miner.push(frame.gray, boxes, scores):
            writer.add(verdicts, colors[verdicts.frame_index - (frame.index + 1 - len(colors))])
        pending += 1
        if on_frames is not None and pending >= 16:
            on_frames(job.key, pending)
            pending = 0
    last = source.decoded_frames or 0
    for verdicts in miner.finish():
        writer.add(verdicts, colors[verdicts.frame_index - (last - len(colors))])
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
    """The rules pair detections without looking at labels, and the dataset has one category: a
    detector that outputs many (a COCO model) must be told which one to mine."""
    from .detectors import as_detector

    detector = as_detector(detector)
    names = dict(getattr(detector, "category_names", None) or {})
    if getattr(detector, "category", None) is None and len(names) > 1:
        shown = ", ".join(list(names.values())[:6]) + (", ..." if len(names) > 6 else "")
        raise InputError(
            f"detector {detector.name!r} outputs {len(names)} categories ({shown}); mining treats every detection "
            "as one category: name the one to mine with --category (e.g. --category person)"
        )


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


# -- many videos -------------------------------------------------------------------------------


@dataclasses.dataclass
class RunResult:
    out: Path
    videos: list[dict]  #: per video: key, path, status (done | skipped | failed) and counts
    coco: dict

    @property
    def failed(self) -> list[dict]:
        return [v for v in self.videos if v["status"] == "failed"]

    @property
    def exit_code(self) -> int:
        """0: every video mined; 1: some failed (reported), the rest were written."""
        return 1 if self.failed else 0


REPORT_COLUMNS = ("video", "status", *REPORT_COUNTS, "frames_per_second")


def format_report(videos: list[dict]) -> str:
    headers = ["video", "status", "frames", "detections", "hard neg.", "pseudo-pos.", "hard pos.", "kept", "frames/s"]
    rows = []
    for v in videos:
        rows.append([str(v.get(c, "")) if v.get(c) is not None else "-" for c in REPORT_COLUMNS])
    totals = ["total", "", *(str(sum(v.get(c) or 0 for v in videos)) for c in REPORT_COLUMNS[2:8]), ""]
    table = [headers] + rows + [totals]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0 or n == len(table) - 2:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


class _Progress:
    """One overall bar (frames of all videos) and one bar per running video, fed by callbacks."""

    def __init__(self, total_frames: int | None, enabled: bool) -> None:
        self.enabled = enabled
        self.bars: dict[str, Any] = {}  # tqdm bars
        self.lock = threading.Lock()
        if enabled:
            from tqdm import tqdm

            self._tqdm = tqdm
            self.overall = tqdm(total=total_frames, desc="all videos", unit="frame", position=0, dynamic_ncols=True)

    def start(self, key: str, total: int | None) -> None:
        if self.enabled:
            with self.lock:
                self.bars[key] = self._tqdm(total=total, desc=key, unit="frame", leave=False, dynamic_ncols=True, position=len(self.bars) + 1)

    def frames(self, key: str, count: int) -> None:
        if self.enabled:
            with self.lock:
                if key not in self.bars:
                    self.bars[key] = self._tqdm(desc=key, unit="frame", leave=False, dynamic_ncols=True, position=len(self.bars) + 1)
                self.bars[key].update(count)
                self.overall.update(count)

    def done(self, key: str) -> None:
        if self.enabled:
            with self.lock:
                bar = self.bars.pop(key, None)
                if bar is not None:
                    bar.close()

    def close(self) -> None:
        if self.enabled:
            for bar in list(self.bars.values()):
                bar.close()
            self.overall.close()


_progress_queue: multiprocessing.queues.Queue[tuple[str, int]] | None = None  # set in each worker process by _worker_init


def _worker_init(progress_queue, parent_pid: int) -> None:
    """Runs once in each worker process: keep the progress queue, and leave when the parent does.

    A parent killed outright (SIGTERM, SIGKILL, an OOM kill) cannot shut its pool down; without
    this its workers would go on mining, orphaned, and race a rerun of the same command."""
    global _progress_queue
    _progress_queue = progress_queue

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="flickermine-parent-watch", daemon=True).start()


def _worker(job: VideoJob, out: Path, config: RunConfig, backend: str, detector_factory, threads: int) -> dict:
    """Runs in a worker process: one video, progress sent back through the worker's queue."""
    detector = detector_factory() if detector_factory is not None else None

    def on_frames(key: str, count: int) -> None:
        assert _progress_queue is not None  # _worker_init ran first
        _progress_queue.put((key, count))

    return mine_video_job(job, out, config, backend, detector, on_frames, threads=threads)


def threads_per_video(parallel_videos: int) -> int:
    """Cores each of ``parallel_videos`` videos mined at once gets: a fair share, at least one."""
    return max(1, (os.cpu_count() or 1) // parallel_videos)


def run_mining(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    config: RunConfig,
    detections: str | os.PathLike | None = None,
    detector_factory: Callable[[], object] | None = None,
    backend: str = "auto",
    workers: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
    executor: str = "local",
    ray_address: str | None = None,
    gpus_per_video: float = 0,
    cpus_per_video: float = 1,
    max_retries: int = 2,
) -> RunResult:
    """Mine every video of ``inputs`` into the dataset folder ``out``; see the module docstring.

    ``detector_factory`` (a picklable callable returning a detector) runs detection in the same
    decoding pass instead of reading ``detections``.

    ``executor="ray"`` mines one Ray task per video instead of local processes (``workers`` is
    then unused): see :mod:`flickermine.ray_executor` for ``ray_address``, ``gpus_per_video``,
    ``cpus_per_video`` and ``max_retries``.
    """
    out = Path(out)
    videos = expand_inputs(inputs)
    if not videos:
        raise InputError("no videos to mine")
    keys = video_keys(videos)
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    # -- executor "ray" (flickermine.ray_executor): fail before any work when Ray is missing
    if executor not in ("local", "ray"):
        raise InputError(f"executor must be 'local' or 'ray', got {executor!r}")
    if executor == "ray":
        from .ray_executor import check_options

        check_options(gpus_per_video, cpus_per_video, max_retries, ray_address)
    from .backends import get_backend

    backend_name = get_backend(backend).NAME  # an unknown or missing backend fails now

    # Checks before any work: every readable video's detections must fit it.
    report: dict[str, dict] = {}
    jobs: list[VideoJob] = []
    frame_totals: dict[str, int | None] = {}
    for key, path in zip(keys, videos):
        entry = {"video": key, "path": str(path)}
        report[key] = entry
        try:
            source = open_video(path)
        except VideoError as error:
            entry.update(status="failed", error=str(error))
            continue
        frame_totals[key] = source.frame_count
        dets_path = None
        if detector_factory is None:
            dets_path = find_detections(path, key, detections, single=len(videos) == 1)
            open_detections(dets_path, frame_count=source.frame_count, width=source.width, height=source.height)
        jobs.append(VideoJob(key, path, dets_path))
    check_run_folder(out, config, create=False)
    todo = []
    for job in jobs:
        if shard_path(out, job.key).exists():
            shard = json.loads(shard_path(out, job.key).read_text())
            check_shard_inputs(shard, job, shard_path(out, job.key))
            report[job.key].update(shard_summary(shard), status="skipped (done before)")
        else:
            todo.append(job)
    # The detector is built here even when workers build their own: an unknown category or
    # weights of the wrong class count must fail before any work, not once per video.
    detector = detector_factory() if detector_factory is not None and todo else None
    if detector is not None:
        check_one_category(detector)
    if not (executor == "local" and workers == 1):
        detector = None  # workers build their own
    out.mkdir(parents=True, exist_ok=True)
    check_run_folder(out, config)

    bars = _Progress(sum(frame_totals.get(j.key) or 0 for j in todo) or None, progress)
    try:
        if executor == "ray":
            from .ray_executor import run_videos_on_ray

            run_videos_on_ray(
                todo, out, config, backend, detector_factory, report, frame_totals, bars,
                address=ray_address, gpus_per_video=gpus_per_video, cpus_per_video=cpus_per_video, max_retries=max_retries,
            )
        elif workers == 1 or len(todo) <= 1:
            for job in todo:
                bars.start(job.key, frame_totals.get(job.key))
                try:
                    stats = mine_video_job(job, out, config, backend, detector, bars.frames)
                    report[job.key].update(stats, status="done")
                except (VideoError, DetectionFileError, OSError, ValueError) as error:
                    report[job.key].update(status="failed", error=str(error))
                finally:
                    bars.done(job.key)
        else:
            _run_parallel(todo, out, config, backend, detector_factory, workers, bars, report, frame_totals)
    finally:
        bars.close()

    coco = merge_shards(out, keys, config, backend_name)
    rows = [report[k] for k in keys]
    write_report(out, rows, config, backend_name)
    if config.visualize:
        contact_sheet(out, coco)
    log(format_report(rows))
    for row in rows:
        if row.get("pipeline"):
            log(f"{row['video']}: detector {PipelineStats.from_dict(row['pipeline']).line()}")
    for row in rows:
        if row["status"] == "failed":
            log(f"failed: {row['video']}: {row['error']}")  # the error names the file
    log(f"{len(coco['images'])} images, {len(coco['annotations'])} annotations written to {out / 'annotations.json'}")
    return RunResult(out, rows, coco)


def _run_parallel(todo, out, config, backend, detector_factory, workers, bars, report, frame_totals) -> None:
    # spawn: the parent holds threads (progress, decoding) that fork would copy half-way.
    context = multiprocessing.get_context("spawn")
    # A plain multiprocessing queue handed to each worker at start (no manager process to orphan).
    progress_queue = context.Queue()
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set() or not progress_queue.empty():
            try:
                key, count = progress_queue.get(timeout=0.1)
            except queue.Empty:
                continue
            bars.frames(key, count)

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    try:
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_worker_init, initargs=(progress_queue, os.getpid())
        ) as pool:
            futures = {
                pool.submit(_worker, job, out, config, backend, detector_factory,
                            threads_per_video(min(workers, len(todo)))): job
                for job in todo
            }
            for future in concurrent.futures.as_completed(futures):
                job = futures[future]
                try:
                    report[job.key].update(future.result(), status="done")
                except (VideoError, DetectionFileError, OSError, ValueError) as error:
                    report[job.key].update(status="failed", error=str(error))
                except concurrent.futures.process.BrokenProcessPool as error:
                    report[job.key].update(status="failed", error=f"worker died: {error}")
                bars.done(job.key)
    finally:
        stop.set()
        pumper.join(timeout=5)
        progress_queue.close()
