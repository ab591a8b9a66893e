"""Mining many videos into one COCO dataset: checks, executors, resume, progress, report.

A run is resumable: every finished video leaves an atomic shard in ``DIR/shards``; the same
command started again skips those videos and redoes only unfinished ones, then merges every
finished shard of the folder. Bad input (detections that do not fit their video, a folder
holding a run with other settings, an unknown detector, a video that changed since its shard was
mined) stops before any work; a video that cannot be read is reported and skipped, and what it
wrote is removed. One run at a time writes a folder: it holds ``DIR/.flickermine.lock`` (an
exclusive ``flock``) from its first write to its end, and a second run fails at once.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .._files import output_lock, video_fingerprint
from .._progress import progress_bar
from ..dataset._writer import (
    REPORT_COUNTS, VIDEO_FINGERPRINT_KEY, RunConfig, check_run_folder, contact_sheet, discard_video, finished_keys,
    merge_shards, read_shard, shard_path, shard_summary, sweep_unfinished, write_report,
)
from ..errors import InputError
from ..io._formats import open_detections
from ..io._mot import DetectionFileError
from ..mining._backends import BackendName, get_backend
from ..video import VideoError, open_video
from ._gpu_pipeline import PipelineStats
from ._inputs import expand_inputs, find_detections, video_keys
from ._mine_job import VideoJob, check_one_category, check_shard_inputs, mine_video_job
from ._ray_executor import check_options, run_videos_on_ray

if TYPE_CHECKING:
    import multiprocessing.queues


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


#: the --mode values that look for hard positives (the others leave their count at 0, unlooked-for)
HARD_POSITIVE_MODES = ("hp", "hn+hp")

REPORT_COLUMNS = ("video", "status", *REPORT_COUNTS, "frames_per_second")


def _format_report(videos: list[dict], hard_positives: bool = True) -> str:
    """The run's table; ``hard_positives=False`` (a ``--mode`` that does not look for them): "-"
    in their column, not a 0 that reads as "looked, found none"."""
    headers = ["video", "status", "frames", "detections", "hard neg.", "pseudo-pos.", "hard pos.", "kept", "frames/s"]
    rows = []
    for v in videos:
        rows.append([
            "-" if (c == "hard_positives" and not hard_positives) or v.get(c) is None else str(v.get(c, ""))
            for c in REPORT_COLUMNS
        ])
    totals = ["total", "", *(str(sum(v.get(c) or 0 for v in videos)) for c in REPORT_COLUMNS[2:8]), ""]
    if not hard_positives:
        totals[REPORT_COLUMNS.index("hard_positives")] = "-"
    table = [headers] + rows + [totals]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0 or n == len(table) - 2:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


class _Progress:
    """One overall bar (frames of all videos) and, when there are several videos, one bar per
    running video, fed by callbacks. With one video its bar is the overall one, named after it."""

    def __init__(self, total_frames: int | None, enabled: bool, keys: Sequence[str]) -> None:
        self.enabled = enabled
        self.per_video = len(keys) > 1
        self.bars: dict[str, Any] = {}  # tqdm bars
        self.lock = threading.Lock()
        if enabled:
            name = "all videos" if self.per_video or not keys else keys[0]
            self.overall = progress_bar(total_frames, name, leave=True, position=0)

    def start(self, key: str, total: int | None) -> None:
        if self.enabled and self.per_video:
            with self.lock:
                self.bars[key] = progress_bar(total, key, position=len(self.bars) + 1)

    def frames(self, key: str, count: int) -> None:
        if self.enabled:
            with self.lock:
                if self.per_video:
                    if key not in self.bars:
                        self.bars[key] = progress_bar(None, key, position=len(self.bars) + 1)
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


def _worker(job: VideoJob, out: Path, config: RunConfig, backend: BackendName, detector_factory, threads: int) -> dict:
    """Runs in a worker process: one video, progress sent back through the worker's queue."""
    detector = detector_factory() if detector_factory is not None else None

    def on_frames(key: str, count: int) -> None:
        assert _progress_queue is not None  # _worker_init ran first
        _progress_queue.put((key, count))

    return mine_video_job(job, out, config, backend, detector, on_frames, threads=threads)


def _threads_per_video(parallel_videos: int) -> int:
    """Cores each of ``parallel_videos`` videos mined at once gets: a fair share, at least one."""
    return max(1, (os.cpu_count() or 1) // parallel_videos)


def run_mining(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    config: RunConfig,
    detections: str | os.PathLike | None = None,
    detector_factory: Callable[[], object] | None = None,
    backend: BackendName = "auto",
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
    then unused): see :mod:`flickermine.runner._ray_executor` for ``ray_address``, ``gpus_per_video``,
    ``cpus_per_video`` and ``max_retries``.
    """
    out = Path(out)
    videos = expand_inputs(inputs)
    if not videos:
        raise InputError("no videos to mine")
    keys = video_keys(videos)
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    # -- executor "ray" (flickermine.runner._ray_executor): fail before any work when Ray is missing
    if executor not in ("local", "ray"):
        raise InputError(f"executor must be 'local' or 'ray', got {executor!r}")
    if executor == "ray":
        check_options(gpus_per_video, cpus_per_video, max_retries, ray_address)
    backend_name = get_backend(backend).NAME  # an unknown or missing backend fails now

    # Checks before any work: every readable video's detections must fit it.
    report: dict[str, dict] = {}
    jobs: list[VideoJob] = []
    paired: dict[Path, VideoJob] = {}
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
            other = paired.setdefault(dets_path.resolve(), VideoJob(key, path, dets_path))
            if other.key != key:
                raise InputError(
                    f"--detections {detections}: {dets_path} would pair with two videos, {other.path} and {path}: "
                    f"name each file after its video's output name ({other.key}.txt, {key}.txt)"
                )
            open_detections(dets_path, frame_count=source.frame_count, width=source.width, height=source.height)
        jobs.append(VideoJob(key, path, dets_path))
    check_run_folder(out, config, create=False)
    todo = _plan(out, jobs, report)
    # The detector is built here even when workers build their own: an unknown category or
    # weights of the wrong class count must fail before any work, not once per video.
    detector = detector_factory() if detector_factory is not None and todo else None
    if detector is not None:
        check_one_category(detector)
    if not (executor == "local" and workers == 1):
        detector = None  # workers build their own
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out / LOCK_NAME, out):
        # Under the lock, again: a run that held the folder until now may have changed it.
        check_run_folder(out, config, create=False)
        swept = sweep_unfinished(out)
        if swept:
            log(f"removed what killed runs left in {out}: {', '.join(swept)}")
        todo = _plan(out, jobs, report)
        check_run_folder(out, config)
        return _run_locked(
            out, config, keys, todo, report, frame_totals, detector, detector_factory, backend, backend_name,
            workers, progress, log, executor, ray_address, gpus_per_video, cpus_per_video, max_retries,
        )


#: the lock file a run holds in its dataset folder (see :func:`flickermine._files.output_lock`)
LOCK_NAME = ".flickermine.lock"


def _plan(out: Path, jobs: list[VideoJob], report: dict[str, dict]) -> list[VideoJob]:
    """The jobs without a finished shard; the others are checked (same video, same detections)
    and reported as done before."""
    todo = []
    for job in jobs:
        where = shard_path(out, job.key)
        if where.exists():
            shard = read_shard(where)
            check_shard_inputs(shard, job, where)
            _check_video_unchanged(shard, job, where)
            report[job.key].update(shard_summary(shard), status="skipped (done before)")
        else:
            todo.append(job)
    return todo


def _check_video_unchanged(shard: dict, job: VideoJob, where: Path) -> None:
    """Refuse to resume from a shard whose video has changed since (size, modification time, or
    the hash of its first and last MiB): it would be skipped as done."""
    recorded = shard.get(VIDEO_FINGERPRINT_KEY)
    if not isinstance(recorded, dict):
        return  # a shard written before fingerprints were recorded
    now = video_fingerprint(job.path)
    changed = [f"{name} {recorded.get(name)!r} then, {value!r} now" for name, value in now.items() if recorded.get(name) != value]
    if changed:
        raise InputError(
            f"video {job.path} changed since {where} was mined from it ({'; '.join(changed)}): "
            "delete the shard to mine it again, or pick another --out"
        )


def _run_locked(
    out, config, keys, todo, report, frame_totals, detector, detector_factory, backend, backend_name,
    workers, progress, log, executor, ray_address, gpus_per_video, cpus_per_video, max_retries,
) -> RunResult:
    bars = _Progress(sum(frame_totals.get(j.key) or 0 for j in todo) or None, progress, [j.key for j in todo])
    try:
        if executor == "ray":
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

    for key in keys:  # a video that failed part-way: its JPEGs are listed by no shard
        if report[key].get("status") == "failed" and not shard_path(out, key).exists():
            discard_video(out, key)
    earlier = [k for k in finished_keys(out) if k not in set(keys)]
    for key in earlier:
        report[key] = {"video": key, **shard_summary(read_shard(shard_path(out, key))), "status": "kept (earlier run)"}
    coco = merge_shards(out, keys, config, backend_name)
    rows = [report[k] for k in keys + earlier]
    if earlier:
        log(f"{out} also holds {len(earlier)} video(s) mined by earlier runs, merged too: {', '.join(earlier)}")
    write_report(out, rows, config, backend_name)
    if config.visualize:
        contact_sheet(out, coco)
    log(_format_report(rows, hard_positives=config.mode in HARD_POSITIVE_MODES))
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
                            _threads_per_video(min(workers, len(todo)))): job
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
