"""Keeping the detector busy: threaded decoding, pinned-memory batches, overlapped inference.

Video decoding is the usual reason a GPU sits idle during video inference. This module runs the
stages of ``flickermine detect`` and of fused ``flickermine mine`` side by side:

1. **decode**: :meth:`flickermine.video.VideoSource.frames` decodes in its own thread;
2. **assemble** (a thread): frames are stacked into ``(B, H, W, 3)`` uint8 BGR batches, in
   page-locked (pinned) memory when CUDA is available, so the copy to the GPU is asynchronous;
3. **infer** (a thread): one batched forward pass per batch, under float16 autocast (AMP) on CUDA;
4. **consume** (the caller): iterating :class:`DetectorPipeline` yields ``(frame, detections)``
   in frame order; what the caller does with them (the miner's NCC verdicts) runs while the
   next batch is being inferred, since the inference thread works up to ``lookahead`` batches
   ahead.

Memory stays bounded: each stage holds at most a few batches. With a
:class:`~flickermine.detect.TorchvisionDetector` the batch tensor goes to the model as it is
(one host-to-device copy per batch); any other detector gets the frames' numpy arrays.

Example::

    source = open_video("clip.mp4")
    pipeline = DetectorPipeline(source, detector, batch_size=8)
    for frame, detections in pipeline:
        for verdicts in miner.push(frame.gray, detections):
            ...
    print(pipeline.stats.line())   # frames/s (and GPU utilisation on CUDA)
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from typing import Any, Callable, Iterator, Optional

import numpy as np

from ..detect._torchvision import TorchvisionDetector
from ..errors import InputError
from ..video import Frame, VideoSource

__all__ = ["FrameBatch", "FramePrefetcher", "DetectorPipeline", "PipelineStats", "GpuUtilization", "run_pipeline"]

#: how often the GPU utilisation sampler asks NVML (seconds)
_SAMPLE_INTERVAL_S = 0.2
_DONE = object()


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _cuda_available(torch) -> bool:
    return torch is not None and torch.cuda.is_available()


@dataclasses.dataclass
class FrameBatch:
    """Consecutive frames and, when torch is importable, their colour images stacked as
    ``images``: a ``(B, H, W, 3)`` uint8 BGR tensor (pinned when ``pinned``), else None."""

    frames: list[Frame]
    images: Any = None
    pinned: bool = False

    def __len__(self) -> int:
        return len(self.frames)


class _Stage:
    """A daemon thread feeding a bounded queue; its errors are re-raised in the consumer, and
    closing stops it (a producer blocked on a full queue wakes up and exits)."""

    def __init__(self, name: str, produce: Callable[[Callable[[Any], bool]], None], depth: int) -> None:
        self._items: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._produce = produce
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            self._produce(self._put)
            self._put(_DONE)
        except BaseException as error:  # handed to the consumer
            self._put(error)

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                while True:
                    self._items.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)


class FramePrefetcher:
    """Batches of ``batch_size`` consecutive frames of ``source``, decoded and assembled in
    background threads (the last batch may be shorter; a change of frame size starts a new one).

    ``pin_memory``: None pins when CUDA is available. ``gray``/``color`` choose the arrays of each
    :class:`~flickermine.video.Frame` (``color`` is needed for ``images``). ``as_tensor``: stack
    the colour images into ``images`` when torch is importable (False: frames only, for detectors
    that take numpy arrays). At most ``prefetch_batches`` batches wait, so memory stays bounded.
    Iterate once.
    """

    def __init__(
        self,
        source: VideoSource,
        batch_size: int,
        *,
        gray: bool = True,
        color: bool = True,
        pin_memory: Optional[bool] = None,
        prefetch_batches: int = 2,
        as_tensor: bool = True,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(prefetch_batches, bool) or not isinstance(prefetch_batches, int) or prefetch_batches < 1:
            raise InputError(f"prefetch_batches must be an integer >= 1, got {prefetch_batches!r}")
        self.source = source
        self.batch_size = batch_size
        self.gray, self.color = gray, color
        # torch is imported only when a tensor is wanted (importing it takes seconds).
        torch = _torch() if (color and as_tensor) or pin_memory else None
        self._torch = torch if color and as_tensor else None
        self.pin_memory = _cuda_available(torch) if pin_memory is None else bool(pin_memory)
        if self.pin_memory and not _cuda_available(torch):
            raise InputError("pin_memory=True needs torch with CUDA available")
        self.pin_memory = self.pin_memory and self._torch is not None  # nothing to pin without a tensor
        self.prefetch_batches = prefetch_batches
        self._stage: Optional[_Stage] = None

    def _stack(self, frames: list[Frame]) -> FrameBatch:
        torch = self._torch
        if torch is None:
            return FrameBatch(frames)
        first = frames[0].color
        assert first is not None  # self._torch is set only when colour frames are asked for
        height, width = first.shape[:2]
        images = torch.empty((len(frames), height, width, 3), dtype=torch.uint8, pin_memory=self.pin_memory)
        for slot, frame in zip(images, frames):
            slot.copy_(torch.from_numpy(frame.color))
        return FrameBatch(frames, images, self.pin_memory)

    def _produce(self, put: Callable[[Any], bool]) -> None:
        batch: list[Frame] = []
        for frame in self.source.frames(gray=self.gray, color=self.color, prefetch=max(8, 2 * self.batch_size)):
            if batch and frame.color is not None and batch[0].color is not None and frame.color.shape != batch[0].color.shape:
                if not put(self._stack(batch)):
                    return
                batch = []
            batch.append(frame)
            if len(batch) == self.batch_size:
                if not put(self._stack(batch)):
                    return
                batch = []
        if batch:
            put(self._stack(batch))

    def __iter__(self) -> Iterator[FrameBatch]:
        if self._stage is not None:
            raise RuntimeError("a FramePrefetcher is iterated once; make a new one")
        self._stage = _Stage(f"flickermine-assemble-{self.source.name}", self._produce, self.prefetch_batches)
        try:
            yield from self._stage
        finally:
            self._stage.close()


class GpuUtilization:
    """Average GPU utilisation (percent) over a run, sampled in a thread by
    ``torch.cuda.utilization()`` (needs NVML: the ``nvidia-ml-py``/``pynvml`` package) or by
    ``pynvml`` directly. ``value`` is None when it cannot be measured (no GPU, no NVML)."""

    def __init__(self, device: Any = None) -> None:
        self.samples: list[float] = []
        self.why_not: Optional[str] = None
        self._read = self._reader(device)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _reader(self, device: Any) -> Optional[Callable[[], float]]:
        if device is not None and not str(device).startswith("cuda"):
            self.why_not = f"the detector runs on {device}"
            return None
        torch = _torch()
        if not _cuda_available(torch):
            self.why_not = "no CUDA device"
            return None
        index = torch.device(device).index if device is not None and torch.device(device).type == "cuda" else None
        index = torch.cuda.current_device() if index is None else index
        try:
            torch.cuda.utilization(index)
            return lambda: float(torch.cuda.utilization(index))
        except Exception:  # torch raises when NVML is missing; try pynvml itself
            pass
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception as error:
            self.why_not = f"NVML not available ({type(error).__name__}); pip install nvidia-ml-py"
            return None

    def __enter__(self) -> "GpuUtilization":
        if self._read is not None:
            self._thread = threading.Thread(target=self._sample, name="flickermine-gpu-utilization", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        read = self._read
        if read is None:  # never started without a reader
            return
        while not self._stop.wait(_SAMPLE_INTERVAL_S):
            try:
                self.samples.append(read())
            except Exception:
                return

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    @property
    def value(self) -> Optional[float]:
        return float(np.mean(self.samples)) if self.samples else None


@dataclasses.dataclass
class PipelineStats:
    """Throughput of one :class:`DetectorPipeline` run. ``seconds``: wall time from the first
    frame asked for to the last consumed; ``inference_seconds``: time inside the detector;
    ``consumer_seconds``: time the caller spent between frames (e.g. mining)."""

    frames: int = 0
    batches: int = 0
    seconds: float = 0.0
    inference_seconds: float = 0.0
    consumer_seconds: float = 0.0
    gpu_utilization: Optional[float] = None  #: percent, None when not measured
    gpu_utilization_note: Optional[str] = None
    device: str = "cpu"
    batch_size: int = 1
    amp: bool = False
    pinned: bool = False
    decode: str = "cpu"

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        """One line: frames, seconds, frames/s, where the time went, and the device. GPU wording
        (utilisation, AMP, pinned batches) only for a CUDA device."""
        head = (
            f"{self.frames} frames in {self.seconds:.1f} s: {self.frames_per_second:.1f} frames/s "
            f"(detector {self.inference_seconds:.1f} s, consumer {self.consumer_seconds:.1f} s)"
        )
        if not self.device.startswith("cuda"):
            return f"{head} [device {self.device}, batch {self.batch_size}, {self.decode} decode]"
        utilisation = f"{self.gpu_utilization:.0f}%" if self.gpu_utilization is not None else "n/a"
        if self.gpu_utilization is None and self.gpu_utilization_note:
            utilisation += f" ({self.gpu_utilization_note})"
        return (
            f"{head}, GPU utilisation {utilisation} [device {self.device}, batch {self.batch_size}, "
            f"AMP {'on' if self.amp else 'off'}, {'pinned' if self.pinned else 'pageable'} batches, {self.decode} decode]"
        )

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "frames_per_second": self.frames_per_second if self.seconds > 0 else None}

    @classmethod
    def from_dict(cls, values: dict) -> "PipelineStats":
        """The inverse of :meth:`as_dict` (what report.json holds)."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def infer_batch(detector: Any, batch: FrameBatch) -> list:
    """Detections of every frame of ``batch``: one forward pass.

    A :class:`~flickermine.detect.TorchvisionDetector` gets the stacked tensor (one
    asynchronous host-to-device copy from pinned memory, then the inference every torchvision
    detector runs, :func:`flickermine.detect._torchvision._infer_batch`), so the detections are those
    of calling it frame by frame. Any other detector is called with the frames' BGR arrays."""
    if not isinstance(detector, TorchvisionDetector) or batch.images is None:
        return detector([frame.color for frame in batch.frames])
    return detector._detect(batch.images)


def _gpu_decoder(source: VideoSource, device: str, log: Callable[[str], None]):
    """A torchcodec CUDA decoder of ``source``, or None (with the reason logged)."""
    if source.is_folder:
        log("GPU decoding skipped: the input is an image folder (decoded by OpenCV)")
        return None
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError:
        log("GPU decoding skipped: torchcodec is not installed (pip install torchcodec); decoding on the CPU")
        return None
    try:
        return VideoDecoder(os.fspath(source.path), device=device)
    except Exception as error:  # no NVDEC, unsupported codec, CPU-only build, ...
        log(f"GPU decoding skipped: torchcodec cannot decode {source.path} on {device} ({error}); decoding on the CPU")
        return None


def _bgr_to_gray(torch, bgr: Any) -> Any:
    """cv2.COLOR_BGR2GRAY's fixed-point formula on a (B, H, W, 3) uint8 tensor."""
    b, g, r = bgr[..., 0].int(), bgr[..., 1].int(), bgr[..., 2].int()
    return ((b * 1868 + g * 9617 + r * 4899 + 8192) >> 14).to(torch.uint8)


class DetectorPipeline:
    """Run ``detector`` over every frame of ``source``; iterate to get ``(Frame, Detections)`` in
    frame order. Inference runs in a thread up to ``lookahead`` batches ahead of the caller, so the
    caller's work on batch k (the miner's NCC verdicts) overlaps the inference of batch k + 1.

    ``batch_size``: default the detector's. ``pin_memory``: None pins when CUDA is available.
    ``gray``: also decode grayscale (the miner needs it). ``gpu_decode``: decode on the GPU with
    torchcodec where it is installed and the detector is on CUDA (frames are then decoded by
    NVDEC: pixels differ slightly from OpenCV's); otherwise a message says why not and decoding
    stays on the CPU. None: the detector's own ``gpu_decode`` setting (False when it has none). After iteration, :attr:`stats` holds the :class:`PipelineStats`.
    """

    def __init__(
        self,
        source: VideoSource,
        detector: Any,
        batch_size: Optional[int] = None,
        *,
        gray: bool = True,
        pin_memory: Optional[bool] = None,
        prefetch_batches: int = 2,
        lookahead: int = 1,
        gpu_decode: Optional[bool] = None,
        log: Callable[[str], None] = print,
    ) -> None:
        if gpu_decode is None:
            gpu_decode = bool(getattr(detector, "gpu_decode", False))
        self.source = source
        self.detector = detector
        self.batch_size = int(batch_size if batch_size is not None else getattr(detector, "batch_size", 1))
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 1:
            raise InputError(f"lookahead must be an integer >= 1, got {lookahead!r}")
        self.lookahead = lookahead
        self.gray = gray
        self.log = log
        device = getattr(detector, "device", None)
        self.device = str(device) if device is not None else "cpu"
        self._decoder = None
        if gpu_decode:
            if not self.device.startswith("cuda"):
                log(f"GPU decoding skipped: the detector runs on {self.device}, not CUDA")
            else:
                self._decoder = _gpu_decoder(source, self.device, log)
        self._prefetcher = None
        if self._decoder is None:
            # Only torchvision takes the stacked tensor; other detectors get numpy frames, and
            # stacking for them would be a copy of every frame for nothing.
            self._prefetcher = FramePrefetcher(
                source, self.batch_size, gray=gray, color=True, pin_memory=pin_memory, prefetch_batches=prefetch_batches,
                as_tensor=isinstance(detector, TorchvisionDetector),
            )
        self.stats = PipelineStats(
            device=self.device,
            batch_size=self.batch_size,
            amp=bool(getattr(detector, "amp", False)),
            pinned=bool(self._prefetcher is not None and self._prefetcher.pin_memory),
            decode="gpu (torchcodec)" if self._decoder is not None else "cpu",
        )

    def _gpu_batches(self) -> Iterator[FrameBatch]:
        decoder = self._decoder
        assert decoder is not None  # only called when there is one
        torch = _torch()
        index = 0
        count = len(decoder)
        while index < count:
            stop = min(index + self.batch_size, count)
            rgb = decoder.get_frames_in_range(index, stop).data  # (B, 3, H, W) uint8 RGB on the GPU
            bgr = rgb.flip(1).permute(0, 2, 3, 1).contiguous()
            gray = _bgr_to_gray(torch, bgr).cpu().numpy() if self.gray else None
            colors = bgr.cpu().numpy()  # the miner and the COCO writer want host frames
            frames = [
                Frame(index + k, gray[k] if gray is not None else None, colors[k]) for k in range(stop - index)
            ]
            yield FrameBatch(frames, bgr, False)
            index = stop

    def _infer_all(self, put: Callable[[Any], bool]) -> None:
        # The prefetcher is made exactly when there is no GPU decoder.
        batches = iter(self._prefetcher) if self._prefetcher is not None else self._gpu_batches()
        try:
            for batch in batches:
                start = time.perf_counter()
                detections = infer_batch(self.detector, batch)
                self.stats.inference_seconds += time.perf_counter() - start
                if len(detections) != len(batch):
                    raise RuntimeError(f"the detector returned {len(detections)} results for {len(batch)} frames")
                if not put((batch.frames, detections)):
                    return
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[tuple[Frame, Any]]:
        start = time.perf_counter()
        stage = _Stage(f"flickermine-infer-{self.source.name}", self._infer_all, self.lookahead)
        with GpuUtilization(self.device) as utilization:
            try:
                for frames, detections in stage:
                    self.stats.batches += 1
                    handed = time.perf_counter()
                    for frame, result in zip(frames, detections):
                        self.stats.frames += 1
                        yield frame, result
                    self.stats.consumer_seconds += time.perf_counter() - handed
            finally:
                stage.close()
                self.stats.seconds = time.perf_counter() - start
                self.stats.gpu_utilization = utilization.value
                self.stats.gpu_utilization_note = utilization.why_not


def run_pipeline(
    source: VideoSource,
    detector: Any,
    consume: Callable[[Frame, Any], None],
    batch_size: Optional[int] = None,
    **options: Any,
) -> PipelineStats:
    """Call ``consume(frame, detections)`` for every frame of ``source`` in order (overlapping the
    detector's next batch) and return the :class:`PipelineStats`; ``options`` as
    :class:`DetectorPipeline`."""
    pipeline = DetectorPipeline(source, detector, batch_size, **options)
    for frame, detections in pipeline:
        consume(frame, detections)
    return pipeline.stats
