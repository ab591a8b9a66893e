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
the same pixels give the same gray values whichever of ``gray``/``color`` is asked for. It is
computed in row strips (``_images.bgr_to_gray``), so OpenCV's thread pool is not woken for it.

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
import warnings
from pathlib import Path
from typing import Generator, Iterator, Optional, Union

import cv2
import numpy as np

from .._images import bgr_to_gray, read_image
from ..errors import FlickermineError, InputError, InputTypeError

__all__ = ["Frame", "VideoError", "CorruptImageWarning", "VideoSource", "open_video", "IMAGE_EXTENSIONS",
           "STRICT_ENV"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
#: folder names that say nothing about the sequence: the video is named after their parent
_GENERIC_FOLDER_NAMES = {"img", "img1", "images", "imgs", "frames", "jpegimages"}
#: how long the caller waits for the decoding thread to stop after closing the generator early
_STOP_TIMEOUT_S = 10.0

PathLike = Union[str, "os.PathLike[str]"]
#: ``open_video``'s default for ``strict`` when not given: "1" makes corrupt images errors (``mine --strict``
#: sets it for the run, so its worker processes inherit it)
STRICT_ENV = "FLICKERMINE_STRICT_IMAGES"


class VideoError(FlickermineError, OSError):
    """A video or image folder that cannot be opened or decoded; the message names the path."""


class CorruptImageWarning(UserWarning):
    """Images of a folder that decoded only partly (libjpeg fills the damage in); names them."""


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
    candidates = [
        entry
        for entry in entries
        if not entry.name.startswith(".") and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
    ]
    broken = sorted((entry.name for entry in candidates if entry.is_symlink() and not entry.is_file()), key=_natural_key)
    if broken:
        raise VideoError(
            f"{folder}: {len(broken)} image(s) are links to nothing (dangling): {', '.join(broken[:5])}"
            f"{' ...' if len(broken) > 5 else ''}; a frame left out would pair later frames with the wrong detections"
        )
    names = [entry.name for entry in candidates if entry.is_file()]
    names.sort(key=_natural_key)
    _check_numbering(folder, names)
    return [folder / name for name in names]


def _check_numbering(folder: Path, names: list[str]) -> None:
    """Raise VideoError where a numbered sequence (``0001.jpg``, ``frame_0002.jpg``...) has a gap.

    Frames are paired with detections by their position in the folder, so a missing ``0003.jpg``
    would pair ``0004.jpg`` with frame 3's boxes. Checked when every name is one prefix and a
    number; the step is the numbers' greatest common divisor (a folder of every 5th frame is fine).
    """
    numbered = []
    for name in names:
        match = re.fullmatch(r"(.*?)(\d+)", os.path.splitext(name)[0])
        if match is None:
            return
        numbered.append((match.group(1).lower(), int(match.group(2)), name))
    if len(numbered) < 2 or len({prefix for prefix, _, _ in numbered}) != 1:
        return
    for (_, before, before_name), (_, after, after_name) in zip(numbered, numbered[1:]):
        if before == after:
            raise VideoError(
                f"{folder}: {before_name} and {after_name} both have frame number {before}; "
                "keep one of them (frames pair with detections by position)"
            )
    step = 0
    for (_, before, _), (_, after, _) in zip(numbered, numbered[1:]):
        step = math.gcd(step, after - before)
    for (_, before, before_name), (_, after, after_name) in zip(numbered, numbered[1:]):
        if after - before != step:
            raise VideoError(
                f"{folder}: frame number {before + step} is missing (between {before_name} and {after_name}); "
                "a gap would pair every later frame with the wrong detections: restore the frame or renumber the folder"
            )


_JPEG_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")  # a marker: not stuffing (FF 00), a restart or fill


def _jpeg_fault(data: bytes) -> Optional[str]:
    """What libjpeg would warn about in ``data`` (then decode anyway, filling in gray), or None.

    Walks the markers: a file cut short, or bytes where a marker should be. Damage inside the
    compressed data itself (flipped bits) is not seen here.
    """
    size = len(data)
    truncated = "premature end of the JPEG data (truncated file)"
    if data[:2] != b"\xff\xd8":
        return "no JPEG start marker"
    position = 2
    while True:
        if position >= size:
            return truncated
        if data[position] != 0xFF:
            return f"extraneous bytes before a marker (offset {position})"
        while position < size and data[position] == 0xFF:
            position += 1
        if position >= size:
            return truncated
        marker = data[position]
        position += 1
        if marker == 0xD9:  # end of image
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
            continue
        if position + 2 > size:
            return truncated
        length = int.from_bytes(data[position : position + 2], "big")
        if length < 2:
            return f"bad segment length {length} (offset {position})"
        position += length
        if position > size:
            return truncated
        if marker == 0xDA:  # start of scan: compressed data up to the next marker
            found = _JPEG_MARKER.search(data, position)
            if found is None:
                return truncated
            position = found.start()


def _read_image(path: Path) -> tuple[np.ndarray, Optional[str]]:
    """Read one image as (H, W, 3) uint8 BGR and what is wrong with it, if it decoded only partly
    (a corrupt JPEG: see :func:`_jpeg_fault`); raise VideoError naming it when it does not decode."""
    try:
        image = read_image(path)  # a damaged JPEG decodes partly
    except (FileNotFoundError, InputError) as exc:
        raise VideoError(str(exc)) from exc
    fault = None
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as exc:  # pragma: no cover - it was read just now
        raise VideoError(f"{path}: cannot read the image: {exc.strerror or exc}") from exc
    if data[:2] == b"\xff\xd8":
        fault = _jpeg_fault(data)
    return image, fault


def _corrupt_error(path: Path, fault: str) -> VideoError:
    return VideoError(f"{path}: corrupt image ({fault}); it decodes only partly, and strict mode stops on it")


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
    has yielded: once it ran to the end, the true length of the video). For image folders,
    ``corrupt_images``: the images of the latest iteration that decoded only partly (a truncated
    JPEG...); they are warned about (:class:`CorruptImageWarning`, count and names) when the
    folder has been read, or, with ``strict``, the first one is a :class:`VideoError`.
    """

    def __init__(self, path: Path, *, images: Optional[list[Path]], width: int, height: int,
                 fps: float, frame_count: Optional[int], decode_threads: Optional[int] = None,
                 strict: bool = False) -> None:
        self.path = path
        self.decode_threads = decode_threads
        self.strict = strict
        self.corrupt_images: list[Path] = []
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
            corrupt: list[tuple[Path, str]] = []
            self.corrupt_images = []
            for index, image_path in enumerate(self._images):
                if stop.is_set():
                    return
                image, fault = _read_image(image_path)
                if fault is not None:
                    if self.strict:
                        raise _corrupt_error(image_path, fault)
                    corrupt.append((image_path, fault))
                    self.corrupt_images.append(image_path)
                if image.shape[:2] != (self.height, self.width):
                    raise VideoError(
                        f"{image_path}: image {index + 1} of folder {self.path} is "
                        f"{image.shape[1]}x{image.shape[0]}, but the folder's first image is "
                        f"{self.width}x{self.height}; all images of a folder must have the same size"
                    )
                yield image
            if corrupt:
                shown = ", ".join(f"{p.name} ({fault})" for p, fault in corrupt[:5])
                more = f" and {len(corrupt) - 5} more" if len(corrupt) > 5 else ""
                warnings.warn(
                    CorruptImageWarning(
                        f"{self.path}: {len(corrupt)} of {len(self._images)} image(s) are corrupt and decoded only "
                        f"partly: {shown}{more} (--strict makes this an error)"
                    ),
                    stacklevel=2,
                )
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
                            gray_image = bgr_to_gray(bgr)
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
                    gray_image = bgr_to_gray(bgr)
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


def open_video(path: PathLike, *, decode_threads: Optional[int] = None, strict: Optional[bool] = None) -> VideoSource:
    """Open a video file or a folder of images as a :class:`VideoSource`.

    ``decode_threads``: FFmpeg's decoding threads for a video file (None: FFmpeg's default, one
    per core; 1 when each core mines a video of its own, as ``--workers`` does).

    ``strict`` (image folders): a corrupt image (one that decodes only partly, such as a
    truncated JPEG) is a :class:`VideoError` instead of a :class:`CorruptImageWarning`; None:
    strict when the environment variable ``FLICKERMINE_STRICT_IMAGES`` is ``1``.

    Image folders must be numbered without gaps (``0001.jpg, 0002.jpg, 0004.jpg`` is refused,
    naming 3), and hold no dangling links: frames pair with detections by position.

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
        if strict is None:
            strict = os.environ.get(STRICT_ENV, "") == "1"
        first, fault = _read_image(images[0])
        if fault is not None and strict:
            raise _corrupt_error(images[0], fault)
        height, width = first.shape[:2]
        return VideoSource(path, images=images, width=width, height=height, fps=0.0, frame_count=len(images),
                           decode_threads=decode_threads, strict=bool(strict))
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
