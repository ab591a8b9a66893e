"""Mining many videos on a Ray cluster: one Ray task per video, the local path's shards and report.

:func:`run_videos_on_ray` has the contract of ``mine_run._run_parallel``: it mines the videos of
``todo`` (frames stay in order: a video is one task, never split) and fills ``report[key]`` with
the video's statistics and ``status="done"``, or ``status="failed"`` and ``error``. The task runs
:func:`flickermine.runner._mine_job.mine_video_job` on a worker, which writes the video's JPEGs and its shard
``DIR/shards/<video>.json`` (atomically) itself, so **the videos, their detection files and the
output folder must be at the same path on every worker** (shared storage: NFS, a cluster file
system, a bind mount). Nothing but the job description goes to a worker and nothing but the
shard's statistics and progress counts comes back; the merge into ``annotations.json`` happens on
the driver afterwards, exactly as in the local path, so the output is identical.

Faults: a task whose worker dies (killed, out of memory, node lost) is retried up to
``max_retries`` times; transient errors (``ConnectionError``, ``TimeoutError``: shared storage
hiccups) are retried too; bad input (an unreadable video, detections that do not fit) is never
retried and is reported at once. A video that fails every attempt is reported and the others
finish. Re-running the same command skips the videos whose shards exist (done in ``mine_run``).

Test-only fault hooks, read on the driver (and forwarded to the tasks) or on the worker:

* ``FLICKERMINE_TEST_KILL_ONCE=<marker file>``: the first task to mine a few frames creates the
  marker and kills its worker process (``os._exit``) mid-video; later attempts see the marker and
  run normally, so the retry path is exercised.
* ``FLICKERMINE_TEST_FAIL_VIDEO=<video key>``: the task of that video kills its worker mid-video
  on every attempt, so the video fails every retry.

Ray is an optional extra (``pip install 'flickermine[ray]'``) and is imported only here, lazily.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError, MissingExtraError
from ..io._mot import DetectionFileError
from ..mining._backends import BackendName
from ..video import VideoError
from ._mine_job import mine_video_job

INSTALL_HINT = "pip install 'flickermine[ray]'"
KILL_ONCE_ENV = "FLICKERMINE_TEST_KILL_ONCE"
FAIL_VIDEO_ENV = "FLICKERMINE_TEST_FAIL_VIDEO"
_FAULT_ENVS = (KILL_ONCE_ENV, FAIL_VIDEO_ENV)

#: errors a task raises that Ray retries (shared storage or network hiccups); other errors are
#: bad input, reported without a retry
TRANSIENT_ERRORS = (ConnectionError, TimeoutError)
#: errors that mean the video (or its detections) is bad: reported as in the local path
BAD_INPUT_ERRORS = (VideoError, DetectionFileError, OSError, ValueError)
#: object store of a local instance started here: only job descriptions and stats travel
LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2
#: how often the driver collects progress from the tasks, and a task sends it at most
POLL_SECONDS = 0.2
PROGRESS_SECONDS = 0.5
#: How long the driver waits for a cluster's port to answer before calling it unreachable.
CONNECT_TIMEOUT_SECONDS = 10.0


class RayNotInstalledError(MissingExtraError):
    """``--executor ray`` without Ray installed."""


def _import_ray():
    """The ``ray`` module, or :class:`RayNotInstalledError` saying how to install it."""
    try:
        import ray
    except ImportError as error:
        raise RayNotInstalledError(
            f"--executor ray needs Ray, which is not installed ({error}); install it with: {INSTALL_HINT}"
        ) from None
    return ray


# -- on the worker ------------------------------------------------------------------------------


class _ProgressSink:
    """A Ray actor that collects progress events from the tasks until the driver drains them."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def add(self, event: tuple) -> None:
        self.events.append(event)

    def drain(self) -> list[tuple]:
        events, self.events = self.events, []
        return events

    def ping(self) -> bool:
        return True


@contextlib.contextmanager
def _working_directory(folder: str | None):
    """Run in the driver's working directory when the job names relative paths."""
    if folder is None:
        yield
        return
    previous = os.getcwd()
    try:
        os.chdir(folder)
    except OSError as error:
        raise FileNotFoundError(
            f"relative paths need the driver's working directory {folder} on every worker ({error}); "
            "use absolute paths on shared storage"
        ) from None
    try:
        yield
    finally:
        os.chdir(previous)


def _die(sink) -> None:
    """Test fault: make sure the progress sent so far has arrived, then kill this worker process."""
    import ray

    with contextlib.suppress(Exception):
        ray.get(sink.ping.remote(), timeout=10)
    os._exit(17)


def _mine_task(job, out: Path, config, backend: BackendName, detector_factory, sink, faults: dict, driver_cwd: str,
               threads: int) -> dict:
    """One video on a worker: ``{"status": "done", "stats": ...}`` or ``{"status": "failed", "error": ...}``.

    Bad input is returned, not raised, so Ray does not retry it; transient errors are raised for
    Ray to retry; a dead worker is retried by Ray.
    """
    import ray

    faults = {**{k: os.environ[k] for k in _FAULT_ENVS if os.environ.get(k)}, **faults}
    attempt = uuid.uuid4().hex
    sink.add.remote(("start", job.key, attempt, 0))
    unsent, last_sent = 0, time.monotonic()

    def send() -> None:
        nonlocal unsent, last_sent
        if unsent:
            sink.add.remote(("frames", job.key, attempt, unsent))
        unsent, last_sent = 0, time.monotonic()

    def on_frames(key: str, count: int) -> None:
        nonlocal unsent
        unsent += count
        if time.monotonic() - last_sent >= PROGRESS_SECONDS:
            send()
        if faults.get(FAIL_VIDEO_ENV) == key:
            send()
            _die(sink)
        marker = faults.get(KILL_ONCE_ENV)
        if marker:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                send()
                _die(sink)

    relative = not (Path(out).is_absolute() and Path(job.path).is_absolute()) or (
        job.detections is not None and not Path(job.detections).is_absolute()
    )
    try:
        with _working_directory(driver_cwd if relative else None):
            detector = detector_factory() if detector_factory is not None else None
            stats = mine_video_job(job, out, config, backend, detector, on_frames, threads=threads)
    except TRANSIENT_ERRORS:
        raise
    except BAD_INPUT_ERRORS as error:
        result: dict[str, Any] = {"status": "failed", "error": str(error)}
    else:
        result = {"status": "done", "stats": stats}
    send()
    with contextlib.suppress(Exception):  # progress is best effort: a lost sink never fails a video
        ray.get(sink.ping.remote(), timeout=30)  # calls to an actor arrive in order: all progress is in
    return result


# -- on the driver ------------------------------------------------------------------------------


def _connect(ray, address: str | None) -> bool:
    """Connect to ``address`` (or ``RAY_ADDRESS``), or start a small local instance; True when
    this call started Ray (and so must shut it down). An already initialized Ray is used as is."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "include_dashboard": False}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        ray.init(address="local", object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
    else:
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as error:
            hint = ""
            if not os.environ.get("RAY_AUTH_MODE"):
                hint = (
                    "; if the cluster uses token authentication (the default of Ray >= 2.5x), "
                    "set RAY_AUTH_MODE=token with its token in RAY_AUTH_TOKEN or ~/.ray/auth_token"
                )
            raise ConnectionError(
                f"cannot connect to the Ray cluster at {address or os.environ.get('RAY_ADDRESS')}: {error}{hint}"
            ) from None
    return True


def _check_resources(ray, cpus_per_video: float, gpus_per_video: float) -> None:
    """Refuse requests no node of the cluster could ever satisfy (Ray would wait forever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus_per_video and r.get("GPU", 0) >= gpus_per_video for r in nodes):
        have = ", ".join(f"{r.get('CPU', 0):g} CPU/{r.get('GPU', 0):g} GPU" for r in nodes) or "no nodes"
        raise InputError(
            f"no node of the Ray cluster has {cpus_per_video:g} CPU and {gpus_per_video:g} GPU for one video "
            f"(nodes: {have}); lower --cpus-per-video / --gpus-per-video or add such a node"
        )


def _failure_text(ray, error: BaseException, attempts: int) -> str:
    tries = f" ({attempts} attempt{'s' if attempts != 1 else ''})" if attempts else ""
    if isinstance(error, ray.exceptions.RayTaskError):
        cause = error.cause if getattr(error, "cause", None) is not None else error
        return f"{type(cause).__name__}: {cause}{tries}"
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"worker died{tries}: {type(error).__name__}: {first}"


class _Relay:
    """Feeds the driver's ``_Progress`` bars from the tasks' events; counts attempts per video."""

    def __init__(self, bars, frame_totals: dict, total_videos: int) -> None:
        self.bars = bars
        self.frame_totals = frame_totals
        self.total_videos = total_videos
        self.done_videos = 0
        self.attempt: dict[str, str] = {}
        self.counted: dict[str, int] = {}
        self.attempts: dict[str, int] = {}

    def handle(self, events: list[tuple]) -> None:
        for kind, key, attempt, count in events:
            if kind == "start":
                if key in self.attempt:  # a retry: take back the frames of the lost attempt
                    self.bars.frames(key, -self.counted.get(key, 0))
                else:
                    self.bars.start(key, self.frame_totals.get(key))
                self.attempt[key] = attempt
                self.counted[key] = 0
                self.attempts[key] = self.attempts.get(key, 0) + 1
            elif kind == "frames" and self.attempt.get(key) == attempt:
                self.counted[key] += count
                self.bars.frames(key, count)

    def finished(self, key: str) -> None:
        self.bars.done(key)
        self.done_videos += 1
        self.show_videos()

    def show_videos(self) -> None:
        if self.bars.enabled:
            with self.bars.lock:
                self.bars.overall.set_postfix_str(f"videos {self.done_videos}/{self.total_videos}", refresh=True)


def check_options(gpus_per_video: float, cpus_per_video: float, max_retries: int, address: str | None = None):
    """Refuse bad options, a missing Ray and an unreachable cluster before any work; return the
    ``ray`` module."""
    if cpus_per_video < 0 or gpus_per_video < 0 or (cpus_per_video == 0 and gpus_per_video == 0):
        raise InputError(f"--cpus-per-video/--gpus-per-video must be >= 0 and not both 0, got {cpus_per_video}/{gpus_per_video}")
    if max_retries < 0:
        raise InputError(f"--max-retries must be >= 0, got {max_retries}")
    ray = _import_ray()
    _check_reachable(address or os.environ.get("RAY_ADDRESS"))
    return ray


def _check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) nothing listens on: ``ray.init`` would
    retry it for many minutes, printing only "Failed to connect to GCS". ``auto``, ``local`` and
    None are Ray's to resolve."""
    if not address or address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port_text = target.rpartition(":")
    if not host or not port_text.isdigit():
        raise InputError(f"--address {address}: expected HOST:PORT (e.g. 10.0.0.5:6379) or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=timeout):
            pass
    except OSError as error:
        raise ConnectionError(
            f"cannot reach the Ray cluster at {address}: {error.strerror or error} "
            f"(is `ray start --head` running there, and is port {port_text} open to this machine?)"
        ) from None


def _drain(ray, sink) -> list[tuple]:
    try:
        return ray.get(sink.drain.remote(), timeout=30)
    except Exception:  # the sink died or hangs: the run goes on without progress
        return []


def run_videos_on_ray(
    todo: list,
    out: Path,
    config,
    backend: BackendName,
    detector_factory: Callable[[], object] | None,
    report: dict[str, dict],
    frame_totals: dict[str, int | None],
    bars,
    address: str | None = None,
    gpus_per_video: float = 0,
    cpus_per_video: float = 1,
    max_retries: int = 2,
) -> None:
    """Mine ``todo`` (``mine_job.VideoJob``s) as one Ray task per video; fill ``report``.

    ``address``: a Ray cluster (``host:port``, ``ray://host:port`` or ``auto``); None connects to
    ``RAY_ADDRESS`` when set, else starts a local instance for this run (all cores, a small object
    store, no dashboard) and shuts it down afterwards. An already initialized Ray is used as is.
    Each task asks for ``cpus_per_video`` CPUs and ``gpus_per_video`` GPUs (fractions allowed).
    """
    ray = check_options(gpus_per_video, cpus_per_video, max_retries, address)
    if not todo:
        return
    faults = {k: os.environ[k] for k in _FAULT_ENVS if os.environ.get(k)}
    started = _connect(ray, address)
    sink = None
    try:
        _check_resources(ray, cpus_per_video, gpus_per_video)
        sink = ray.remote(num_cpus=0)(_ProgressSink).remote()
        task = ray.remote(_mine_task).options(
            num_cpus=cpus_per_video,
            num_gpus=gpus_per_video,
            max_retries=max_retries,
            retry_exceptions=list(TRANSIENT_ERRORS),
            name="flickermine-video",
        )
        cwd = os.getcwd()
        # The task decodes with as many threads as CPUs it asked for (at least one), as local workers do.
        threads = max(1, int(cpus_per_video))
        jobs = {task.remote(job, out, config, backend, detector_factory, sink, faults, cwd, threads): job for job in todo}
        relay = _Relay(bars, frame_totals, len(todo))
        relay.show_videos()
        pending = list(jobs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
            relay.handle(_drain(ray, sink))
            for ref in ready:
                job = jobs[ref]
                entry = report[job.key]
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as error:
                    entry.update(status="failed", error=_failure_text(ray, error, relay.attempts.get(job.key, 0)))
                else:
                    if result["status"] == "done":
                        entry.update(result["stats"], status="done")
                    else:
                        entry.update(status="failed", error=result["error"])
                if relay.attempts.get(job.key, 1) > 1:
                    entry["attempts"] = relay.attempts[job.key]
                relay.finished(job.key)
        relay.handle(_drain(ray, sink))
    finally:
        if sink is not None:
            with contextlib.suppress(Exception):
                ray.kill(sink)
        if started:
            ray.shutdown()
