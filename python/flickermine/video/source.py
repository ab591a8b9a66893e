"""Video input: decode once, in order, never seek.

:func:`open_video` opens a video file (anything ``cv2.VideoCapture`` reads: mp4, avi, mkv, mov,
webm, ...) or a folder of images (jpg/jpeg/png/bmp, sorted naturally by the numbers in their
names, as in MOTChallenge's ``img1/`` or OTB's ``img/``) as a :class:`VideoSource`.
:meth:`VideoSource.frames` yields :class:`Frame` objects decoded strictly in order by a background
thread (OpenCV releases the GIL while decoding, so decoding overlaps the caller's work) through a
bounded queue, so memory does not grow with the video.

Frame ``i`` (0-based) is the ``i``-th frame decoded from the start; it is frame ``i + 1`` of a
MOTChallenge box file. Grayscale frames are always ``cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)`` of
the decoded colour frame (for image folders too, never the JPEG decoder's own grayscale path), so
the same pixels give the same gray values whichever of ``gray``/``color`` is asked for.

This module never changes OpenCV's global state (``cv2.setNumThreads`` and the like); the number of
FFmpeg decoding threads of one video is its own setting (``open_video(..., decode_threads=1)``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import queue
import re
import threading
import time
from pathlib import Path
from typing import Generator, Iterator, Optional, Union

import cv2
import numpy as np

from ..errors import FlickermineError, InputError, InputTypeError

__all__ = ["Frame", "VideoError", "VideoSource", "open_video", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: folder names that say nothing about the sequence: the video is named after their parent
_GENERIC_FOLDER_NAMES = {"img", "img1", "images", "imgs", "frames", "jpegimages"}
#: how long the caller waits for the decoding thread to stop after closing the generator early
_STOP_TIMEOUT_S = 10.0

PathLike = Union[str, "os.PathLike[str]"]


class VideoError(FlickermineError, OSError):
    """A video or image folder that cannot be opened or decoded; the message names the path."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """One decoded frame. ``index`` is 0-based (the ``index + 1``-th frame of the video)."""

    index: int
    gray: Optional[np.ndarray] = None  #: ``(H, W)`` uint8, or None when not asked for
    color: Optional[np.ndarray] = None  #: ``(H, W, 3)`` uint8 BGR, or None when not asked for


def _natural_key(name: str) -> tuple:
    # Alternating text and numbers ("img", 10, ".jpg"): numbers compare as numbers, so
    # frame_9.jpg < frame_10.jpg; the name itself breaks ties (0010.jpg vs 10.jpg).
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), name


def _list_images(folder: Path) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise VideoError(f"{folder}: cannot list the folder: {exc.strerror or exc}") from exc
    names = [
        entry.name
        for entry in entries
        if not entry.name.startswith(".")
        and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
        and entry.is_file()
    ]
    names.sort(key=_natural_key)
    return [folder / name for name in names]


def _read_image(path: Path) -> np.ndarray:
    """Read one image as (H, W, 3) uint8 BGR, or raise VideoError naming it."""
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # pragma: no cover - OpenCV reports most failures as None
        raise VideoError(f"{path}: cannot read the image: {exc}") from exc
    if image is None:
        reason = "no such file" if not path.exists() else "not a readable image (corrupt or unsupported format)"
        raise VideoError(f"{path}: cannot read the image: {reason}")
    return image


def _open_capture(path: Path, decode_threads: Optional[int] = None) -> cv2.VideoCapture:
    if decode_threads is None:
        capture = cv2.VideoCapture(str(path))
    else:
        # Frame threads cost CPU time (15-25% more per frame, measured here) for wall time: worth it
        # when the decoder has the machine to itself, not when every core runs a video of its own.
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, decode_threads])
        if not capture.isOpened():  # not an FFmpeg input: let OpenCV pick a backend, its threads
            capture.release()
            capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoError(
            f"{path}: OpenCV cannot open it as a video (not a video, corrupt or truncated, or an "
            f"unsupported codec)"
        )
    return capture


class VideoSource:
    """A video file or image folder, read front to back; see :func:`open_video`.

    Attributes: ``path`` (a :class:`~pathlib.Path`), ``width`` and ``height`` (pixels, from the
    first decoded frame), ``fps`` (float, 0.0 when unknown; always 0.0 for image folders),
    ``frame_count`` (the container's claim, None when it makes none; exact for image folders: only a
    hint for files), ``name`` (file stem, or folder name; for generic folder names such as ``img1``,
    ``img`` or ``JPEGImages`` the parent folder's name), ``is_folder``, and ``decoded_frames``
    (None before :meth:`frames` is first iterated, then the number of frames the latest iteration
    has yielded: once it ran to the end, the true length of the video).
    """

    def __init__(self, path: Path, *, images: Optional[list[Path]], width: int, height: int,
                 fps: float, frame_count: Optional[int], decode_threads: Optional[int] = None) -> None:
        self.path = path
        self.decode_threads = decode_threads
        self.is_folder = images is not None
        self._images = images
        self.width = width
        self.height = height
        self.fps = fps
        self.frame_count = frame_count
        self.decoded_frames: Optional[int] = None
        if self.is_folder and path.name.lower() in _GENERIC_FOLDER_NAMES and path.parent.name:
            self.name = path.parent.name
        else:
            self.name = path.stem if not self.is_folder else path.name

    def __repr__(self) -> str:
        kind = "folder" if self.is_folder else "file"
        return (
            f"VideoSource({str(self.path)!r}, {kind}, {self.width}x{self.height}, fps={self.fps:g}, "
            f"frame_count={self.frame_count})"
        )

    def __len__(self) -> int:
        if self.frame_count is None:
            raise InputTypeError(f"{self.path}: the container does not say how many frames it holds")
        return self.frame_count

    # -- decoding ----------------------------------------------------------------------------

    def _bgr_frames(self, stop: threading.Event) -> Generator[np.ndarray, None, None]:
        """Yield decoded BGR frames in order, checking their size; runs in the decoding thread."""
        if self._images is not None:
            for index, image_path in enumerate(self._images):
                if stop.is_set():
                    return
                image = _read_image(image_path)
                if image.shape[:2] != (self.height, self.width):
                    raise VideoError(
                        f"{image_path}: image {index + 1} of folder {self.path} is "
                        f"{image.shape[1]}x{image.shape[0]}, but the folder's first image is "
                        f"{self.width}x{self.height}; all images of a folder must have the same size"
                    )
                yield image
            return
        capture = _open_capture(self.path, self.decode_threads)
        try:
            index = 0
            while not stop.is_set():
                ok, image = capture.read()
                if not ok or image is None:
                    if index == 0:
                        raise VideoError(f"{self.path}: the first frame cannot be decoded (corrupt or truncated?)")
                    return
                if image.ndim == 2:  # some backends give gray for gray-only streams
                    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
                elif image.ndim == 3 and image.shape[2] == 4:
                    image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
                if image.shape[:2] != (self.height, self.width) or image.dtype != np.uint8:
                    raise VideoError(
                        f"{self.path}: frame {index + 1} is {image.shape[1]}x{image.shape[0]} "
                        f"{image.dtype}, but the first frame was {self.width}x{self.height} uint8; "
                        f"videos whose frame size changes are not supported"
                    )
                index += 1
                yield image
        finally:
            capture.release()

    def frames(self, gray: bool = True, color: bool = False, prefetch: int = 8) -> Iterator[Frame]:
        """Yield every :class:`Frame` in order, decoded by a background thread.

        ``gray``/``color`` choose which arrays each frame carries (at least one). At most
        ``prefetch`` decoded frames wait in the queue, so memory stays bounded. Errors of the
        decoding thread (a :class:`VideoError` for an unreadable image, ...) are raised here.
        Closing the generator early (``break``, ``.close()``, garbage collection) stops the thread
        and releases the capture. Every call decodes from the start again (the video is never
        sought). Arrays are fresh for every frame: the caller may keep them.
        """
        if not gray and not color:
            raise InputError("frames(): ask for gray=True, color=True or both")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise InputError(f"frames(): prefetch must be an integer >= 1, got {prefetch!r}")
        return self._frames(gray, color, prefetch)

    def _frames(self, want_gray: bool, want_color: bool, prefetch: int) -> Iterator[Frame]:
        items: queue.Queue = queue.Queue(maxsize=prefetch)
        stop = threading.Event()
        done = object()

        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    items.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def decode() -> None:
            try:
                bgr: Optional[np.ndarray]  # dropped (None) below when only gray is wanted
                with contextlib.closing(self._bgr_frames(stop)) as decoded:  # releases the capture
                    for index, bgr in enumerate(decoded):
                        # Colour conversion goes to whichever side is idle: here when frames are
                        # already waiting (the caller is the slower side), else to the caller, which
                        # is then waiting for us anyway (that overlaps it with the next decode).
                        gray_image = None
                        if want_gray and not items.empty():
                            gray_image = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
                            if not want_color:
                                bgr = None  # do not queue colour nobody asked for
                        if not put((index, bgr, gray_image)):
                            return
                put(done)
            except BaseException as exc:  # handed to the caller, re-raised there
                put(exc)

        self.decoded_frames = 0
        thread = threading.Thread(target=decode, name=f"flickermine-decode-{self.name}", daemon=True)
        thread.start()
        try:
            while True:
                item = items.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                index, bgr, gray_image = item
                if want_gray and gray_image is None:
                    gray_image = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
                self.decoded_frames += 1
                yield Frame(index, gray_image, bgr if want_color else None)
        finally:
            stop.set()
            # Free the queue so a decoder blocked on put() wakes, sees `stop` and exits; give up
            # waiting after _STOP_TIMEOUT_S (a hung backend must not hang the caller: the thread
            # is a daemon and releases the capture when it gets out).
            deadline = time.monotonic() + _STOP_TIMEOUT_S
            while thread.is_alive() and time.monotonic() < deadline:
                try:
                    while True:
                        items.get_nowait()
                except queue.Empty:
                    pass
                thread.join(timeout=0.05)


def open_video(path: PathLike, *, decode_threads: Optional[int] = None) -> VideoSource:
    """Open a video file or a folder of images as a :class:`VideoSource`.

    ``decode_threads``: FFmpeg's decoding threads for a video file (None: FFmpeg's default, one
    per core; 1 when each core mines a video of its own, as ``--workers`` does).

    Checks up front that the first frame decodes (then releases the capture again; decoding
    starts over in :meth:`VideoSource.frames`). Raises :class:`VideoError` for a missing path, a
    folder without images, or a file OpenCV cannot open or whose first frame does not decode.
    """
    path = Path(os.fspath(path))
    if decode_threads is not None and (
        isinstance(decode_threads, bool) or not isinstance(decode_threads, int) or decode_threads < 1
    ):
        raise InputError(f"decode_threads must be None or an integer >= 1, got {decode_threads!r}")
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if path.is_dir():
        images = _list_images(path)
        if not images:
            hint = ""
            for sub in sorted(path.iterdir(), key=lambda p: p.name) if os.access(path, os.R_OK) else []:
                if sub.is_dir() and sub.name.lower() in _GENERIC_FOLDER_NAMES and _list_images(sub):
                    hint = f"; did you mean {sub}?"
                    break
            raise VideoError(
                f"{path}: the folder holds no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}){hint}"
            )
        first = _read_image(images[0])
        height, width = first.shape[:2]
        return VideoSource(path, images=images, width=width, height=height, fps=0.0, frame_count=len(images),
                           decode_threads=decode_threads)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise VideoError(
            f"{path}: is a single image, not a video; pass its folder ({path.parent}) to read the "
            f"folder's images as one video"
        )
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path}: permission denied")
    capture = _open_capture(path)
    try:
        ok, first = capture.read()
        if not ok or first is None:
            raise VideoError(f"{path}: the first frame cannot be decoded (corrupt or truncated video?)")
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        count = float(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    height, width = first.shape[:2]
    fps = fps if math.isfinite(fps) and fps > 0 else 0.0
    frame_count = int(round(count)) if math.isfinite(count) and count >= 1 else None
    return VideoSource(path, images=None, width=width, height=height, fps=fps, frame_count=frame_count,
                       decode_threads=decode_threads)
