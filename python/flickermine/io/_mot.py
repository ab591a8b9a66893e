"""MOTChallenge detection files (``det.txt``) in and out.

One box a line: ``frame,id,x_left,y_top,width,height,score[,x,y,z]``. Frame numbers start at 1
and mean the N-th frame decoded from the start of the video (index ``N - 1``). Blank lines and
lines starting with ``#`` are skipped; columns beyond the seventh are ignored; fields may also be
separated by whitespace instead of commas (some tools write that).

:class:`DetectionFile` validates the whole file in one streaming pass when it is constructed, so
a bad line fails before any mining starts, with the file and line named. :meth:`DetectionFile.per_frame`
then streams the boxes frame by frame: for a file sorted by frame (what detectors write) it reads
the file again a chunk at a time, so memory does not grow with the file; an unsorted file is
loaded whole and sorted by frame (stable: a frame's boxes keep their order in the file).

:func:`write_mot` and :class:`MotWriter` write ``frame,-1,x,y,w,h,score,-1,-1,-1`` lines to a
temporary file beside the target and rename it into place only on success.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from typing import Iterable, Iterator, Optional, Sequence, TextIO, Union

import numpy as np

from .._files import AtomicWriter
from .._boxes import check_boxes, check_scores
from ..detect._detections import Detections
from ..errors import InputError

__all__ = ["DetectionFile", "DetectionFileError", "DetectionReader", "MotWriter", "write_mot"]

PathLike = Union[str, "os.PathLike[str]"]

_COLUMNS = ("frame", "id", "x", "y", "width", "height", "score")
_COLUMNS_HINT = "frame,id,x,y,w,h,score"
_MAX_FRAME = 2**31 - 1  # beyond any real video; keeps frame numbers exact in int64/float64
_CHUNK_BYTES = 1 << 20  # lines read per chunk: about 1 MiB of text (~20k lines)
_SHOW_CHARS = 120  # longest line text quoted in a message
_SPACE_AFTER_NEWLINE = re.compile(r"\n[ \t\r\f\v]")  # a line starting with whitespace


class DetectionFileError(InputError):
    """A detection file that cannot be used; ``path`` and ``line`` (1-based, or None) say where."""

    def __init__(self, message: str, path: Optional[PathLike] = None, line: Optional[int] = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line

    def __reduce__(self):  # keep path and line through pickling (multiprocessing)
        return (type(self), (str(self), self.path, self.line))


def _quote(text: str) -> str:
    text = text.strip()
    if len(text) > _SHOW_CHARS:
        text = text[:_SHOW_CHARS] + "..."
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _far_corners_valid(x: np.ndarray, y: np.ndarray, w: np.ndarray, h: np.ndarray) -> bool:
    """Whether every ``x + w`` and ``y + h`` is finite and past ``x`` and ``y`` in float64 (a
    positive ``w=1e-300``, or one under ``x``'s precision, leaves ``x2 == x1``: no box at all)."""
    with np.errstate(over="ignore", invalid="ignore"):
        x2, y2 = x + w, y + h
        return bool(((x2 > x) & (y2 > y) & np.isfinite(x2) & np.isfinite(y2)).all())


def _far_corner_problem(x: float, y: float, w: float, h: float) -> Optional[str]:
    """Why the box ``x, y, w, h`` (finite, ``w, h > 0``) has no x2, y2 beyond x1, y1 in float64;
    None when it has."""
    for start, size, start_name, size_name in ((x, w, "x", "width"), (y, h, "y", "height")):
        end = start + size
        if not math.isfinite(end):
            return f"{start_name} + {size_name} = {start!r} + {size!r} overflows"
        if end <= start:
            return (
                f"{size_name} {size!r} is too small for {start_name}={start!r}: the box has no {size_name} "
                f"in float64 ({start_name} + {size_name} == {start_name})"
            )
    return None


def _check_optional_int(value: object, name: str, minimum: int) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be None or an integer >= {minimum}, got {value!r}")
    return int(value)


class DetectionReader:
    """What every detection file reader provides (:class:`DetectionFile` and the readers of
    :mod:`flickermine.io._formats`).

    - :meth:`detections`: one :class:`~flickermine.detect.Detections` per frame, in
      order (what the miner takes);
    - :meth:`per_frame`: the same as ``(index, boxes, scores)`` rows (what the writers take);
    - :meth:`check_frames_decoded`: the file against the number of frames the video decoded to.

    Subclasses implement ``per_frame`` and ``_first_frame_beyond``; a format whose files must
    list every frame overrides ``_check_decoded``.
    """

    path: PathLike
    count: int
    max_frame: int
    #: the image size boxes must touch (None: not checked)
    width: Optional[int] = None
    height: Optional[int] = None

    def per_frame(self, num_frames: Optional[int] = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        raise NotImplementedError

    def _labels_per_frame(self, num_frames: Optional[int]) -> Iterator[tuple[np.ndarray, np.ndarray, Optional[list]]]:
        """``(boxes, scores, labels or None)`` per frame; formats with labels override it."""
        return ((boxes, scores, None) for _, boxes, scores in self.per_frame(num_frames))

    def detections(self, num_frames: Optional[int] = None) -> Iterator[Detections]:
        """One :class:`~flickermine.detect.Detections` per frame index ``0 .. N-1``, in
        order (``N`` as in :meth:`per_frame`); labels where the file gives them (category names
        become the ids of :attr:`category_names`), else all 1."""
        ids = {name: label for label, name in self.category_names.items()}
        for boxes, scores, labels in self._labels_per_frame(num_frames):
            if labels is not None:
                labels = [ids.get(v, v) if isinstance(v, str) else v for v in labels]
            if labels is not None and not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
                labels = None  # a name not in category_names (the file changed): Detections holds ids
            yield Detections(boxes, scores, None if labels is None else np.asarray(labels, np.int64))

    @property
    def category_names(self) -> dict[int, str]:
        """``{label id: name}`` of the category names the file gives as labels (JSONL), numbered by
        first appearance after its largest integer label; empty for files without names."""
        return dict(getattr(self, "_category_names", None) or {})

    def check_frames_decoded(self, decoded: int) -> None:
        """Raise DetectionFileError when the file does not fit a video of ``decoded`` frames
        (naming the first line beyond the video, for most formats).

        Call it once the video has been decoded to the end: containers' frame counts can be wrong.
        """
        checked = _check_optional_int(decoded, "decoded", 0)
        if checked is None:
            raise InputError("decoded must be an integer >= 0, got None")
        self._check_decoded(checked)

    def _check_decoded(self, decoded: int) -> None:
        if self.max_frame <= decoded:
            return
        line, frame, text = self._first_frame_beyond(decoded)  # only on this error path: reads the file again
        raise self._error(line, f"frame {frame} is beyond the end of the video, which decoded to {decoded} frames", text)

    def _first_frame_beyond(self, decoded: int) -> tuple[int, int, Optional[str]]:
        """``(line, frame, line text)`` of the first box line whose frame is beyond ``decoded``."""
        raise NotImplementedError

    def _error(self, line: Optional[int], problem: str, text: Optional[str] = None) -> DetectionFileError:
        raise NotImplementedError

    # -- the box checks every format shares: vectorised (a whole chunk at once) and per line --------

    def _touch_image(self, x1, y1, x2, y2):
        """Whether boxes ``x1, y1, x2, y2`` (floats or arrays) overlap the ``width`` x ``height``
        image; True where a size is not known."""
        inside = True
        if self.width is not None:
            inside = inside & (x1 < self.width) & (x2 > 0)
        if self.height is not None:
            inside = inside & (y1 < self.height) & (y2 > 0)
        return inside

    def _xywh_all_valid(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, h: np.ndarray) -> bool:
        """The fast path: whether every box ``x, y, w, h`` passes :meth:`_xywh_problem`."""
        finite = np.isfinite(x).all() and np.isfinite(y).all() and np.isfinite(w).all() and np.isfinite(h).all()
        if not (finite and (w > 0).all() and (h > 0).all() and _far_corners_valid(x, y, w, h)):
            return False
        return bool(np.all(self._touch_image(x, y, x + w, y + h)))

    def _xywh_problem(self, x: float, y: float, w: float, h: float) -> Optional[str]:
        """Why the finite box ``x, y, w, h`` of one line is refused; None when it is a box."""
        if w <= 0:
            return f"width {w!r} is not positive"
        if h <= 0:
            return f"height {h!r} is not positive"
        # The miner takes x1, y1, x2, y2: a box must still have a width and a height once its far
        # corner is computed in float64.
        corner_problem = _far_corner_problem(x, y, w, h)
        if corner_problem is not None:
            return corner_problem
        return self._outside_problem(x, y, x + w, y + h, f"x={x!r}, y={y!r}, w={w!r}, h={h!r}")

    def _outside_problem(self, x1: float, y1: float, x2: float, y2: float, described: str) -> Optional[str]:
        """The error for a box entirely outside the image (``described`` as the file gives it)."""
        if self._touch_image(x1, y1, x2, y2):
            return None
        size = f"{self.width if self.width is not None else '?'}x{self.height if self.height is not None else '?'}"
        return f"box {described} lies entirely outside the {size} image"

    def _open_text(self) -> TextIO:
        """The file opened for reading text (a BOM skipped, undecodable bytes kept as surrogates so
        the line checks can name them); open errors as a :class:`DetectionFileError`."""
        try:
            return open(self.path, encoding="utf-8-sig", errors="surrogateescape")
        except FileNotFoundError:
            raise self._error(None, "no such file") from None
        except IsADirectoryError:
            raise self._error(None, "is a folder, not a detection file") from None
        except OSError as exc:
            raise self._error(None, f"cannot open it: {exc.strerror or exc}") from exc


class DetectionFile(DetectionReader):
    """A validated MOTChallenge detection file.

    ``DetectionFile(path, frame_count=None, width=None, height=None)`` reads the whole file once
    and raises :class:`DetectionFileError` (naming the file and line) for: a missing or unreadable
    file; a line with fewer than 7 columns or a non-numeric field among the first 7; NaN or
    infinity; width or height <= 0, or too small to give the box a width or height in float64
    (``x + w == x``: ``w=1e-300``), or ``x + w`` overflowing; a frame number that is not an
    integer, is <= 0, or is beyond ``frame_count`` (when given); a box entirely outside the ``width`` x ``height`` image (when
    given; a box partly outside is fine, the miner clips it).

    Attributes: ``path``, ``frame_count``, ``width``, ``height`` (as given), ``count`` (boxes),
    ``max_frame`` (largest 1-based frame number, 0 for a file without boxes) and ``is_sorted``
    (frame numbers never decrease down the file).
    """

    def __init__(self, path: PathLike, frame_count: Optional[int] = None, width: Optional[int] = None,
                 height: Optional[int] = None) -> None:
        self.path = path
        self.frame_count = _check_optional_int(frame_count, "frame_count", 0)
        self.width = _check_optional_int(width, "width", 1)
        self.height = _check_optional_int(height, "height", 1)
        self.count = 0
        self.max_frame = 0
        self.is_sorted = True
        last_frame = 0
        for _, data in self._chunks():
            if not len(data):
                continue
            frames = data[:, 0]
            self.count += len(frames)
            if self.is_sorted and (frames[0] < last_frame or np.any(frames[1:] < frames[:-1])):
                self.is_sorted = False
            last_frame = int(frames[-1])
            self.max_frame = max(self.max_frame, int(frames.max()))

    def __repr__(self) -> str:
        return (
            f"DetectionFile({str(self.path)!r}, count={self.count}, max_frame={self.max_frame}, "
            f"sorted={self.is_sorted})"
        )

    # -- errors --------------------------------------------------------------------------------

    def _error(self, line: Optional[int], problem: str, text: Optional[str] = None) -> DetectionFileError:
        where = f"{self.path} line {line}" if line is not None else f"{self.path}"
        shown = f" ({_COLUMNS_HINT}: {_quote(text)})" if text is not None else ""
        return DetectionFileError(f"{where}: {problem}{shown}", self.path, line)

    def _line_text(self, line: int) -> Optional[str]:
        try:
            with open(self.path, encoding="utf-8-sig", errors="surrogateescape") as handle:
                for number, text in enumerate(handle, 1):
                    if number == line:
                        return text
        except OSError:
            pass
        return None

    # -- parsing -------------------------------------------------------------------------------

    def _chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(line_numbers (K,) int64, data (K, 7) float64)`` for every ~1 MiB of lines."""
        handle = self._open_text()
        first_line = 1
        with handle:
            while True:
                try:
                    lines = handle.readlines(_CHUNK_BYTES)
                except OSError as exc:
                    raise self._error(None, f"cannot read it: {exc.strerror or exc}") from exc
                if not lines:
                    return
                yield self._parse_chunk(lines, first_line)
                first_line += len(lines)

    def _parse_chunk(self, lines: list[str], first_line: int) -> tuple[np.ndarray, np.ndarray]:
        """Parse and validate lines; the fast path (np.loadtxt + vectorized checks) falls back to
        the exact line-by-line parser whenever anything looks wrong, which raises the error."""
        # Blank and comment lines are dropped here (np.loadtxt keeps whitespace-only lines, and its
        # own comment handling would also accept comments after the data, which the exact parser
        # rejects).
        joined = "".join(lines)
        # (A cheap test; should a line slip through, np.loadtxt returns fewer rows than expected
        # and the exact parser takes over below.)
        if "#" in joined or "\n\n" in joined or joined[:1].isspace() or _SPACE_AFTER_NEWLINE.search(joined):
            kept: Sequence[int] = [i for i, text in enumerate(lines) if text.lstrip()[:1] not in ("", "#")]
            data_lines = [lines[i] for i in kept]
        else:
            kept, data_lines = range(len(lines)), lines
        delimiter = "," if data_lines and "," in data_lines[0] else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "input contained no data"
                data = np.loadtxt(data_lines, delimiter=delimiter, usecols=range(7), comments=None,
                                  dtype=np.float64, ndmin=2)
        except (ValueError, IndexError):
            return self._parse_slow(lines, first_line)
        if len(data) != len(kept):
            return self._parse_slow(lines, first_line)
        line_numbers = np.asarray(kept, dtype=np.int64) + first_line
        if not len(data) or not self._all_valid(data):
            return self._parse_slow(lines, first_line)
        return line_numbers, data

    def _all_valid(self, data: np.ndarray) -> bool:
        frame = data[:, 0]
        limit = _MAX_FRAME if self.frame_count is None else self.frame_count
        # NaN and infinity fail the frame comparisons; the box columns are checked by _xywh_all_valid.
        if not ((frame >= 1) & (frame <= limit) & (frame == np.floor(frame))).all():
            return False
        if not (np.isfinite(data[:, 1]).all() and np.isfinite(data[:, 6]).all()):  # id, score
            return False
        return self._xywh_all_valid(data[:, 2], data[:, 3], data[:, 4], data[:, 5])

    def _parse_slow(self, lines: list[str], first_line: int) -> tuple[np.ndarray, np.ndarray]:
        numbers: list[int] = []
        rows: list[tuple[float, ...]] = []
        for offset, text in enumerate(lines):
            row = self._parse_line(text, first_line + offset)
            if row is not None:
                numbers.append(first_line + offset)
                rows.append(row)
        data = np.array(rows, dtype=np.float64).reshape(-1, 7)
        return np.asarray(numbers, dtype=np.int64), data

    def _parse_line(self, text: str, line: int) -> Optional[tuple[float, ...]]:
        """One line -> 7 floats, None for a blank or comment line; raises with the exact reason."""
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            return None
        fields = stripped.split(",") if "," in stripped else stripped.split()
        if len(fields) < 7:
            raise self._error(line, f"{len(fields)} columns, need at least 7", text)
        values = []
        for name, field in zip(_COLUMNS, fields):
            field = field.strip()
            try:
                value = float(field)
            except ValueError:
                problem = f"{name} {_quote(field)} is not a number" if field else f"{name} is empty"
                raise self._error(line, problem, text) from None
            if not math.isfinite(value):
                raise self._error(line, f"{name} is {field} (NaN and infinity are not allowed)", text)
            values.append(value)
        frame, _, x, y, w, h, _ = values
        if frame != math.floor(frame):
            raise self._error(line, f"frame number {fields[0].strip()} is not an integer", text)
        if frame <= 0:
            raise self._error(line, f"frame number {int(frame)} is not positive (MOTChallenge frames start at 1)", text)
        if frame > _MAX_FRAME:
            raise self._error(line, f"frame number {fields[0].strip()} is too large", text)
        if self.frame_count is not None and frame > self.frame_count:
            raise self._error(line, f"frame {int(frame)} is beyond the video's {self.frame_count} frames", text)
        box_problem = self._xywh_problem(x, y, w, h)
        if box_problem is not None:
            raise self._error(line, box_problem, text)
        return tuple(values)

    # -- checks after decoding -----------------------------------------------------------------

    def _first_frame_beyond(self, decoded: int) -> tuple[int, int, Optional[str]]:
        for line_numbers, data in self._chunks():
            beyond = np.flatnonzero(data[:, 0] > decoded)
            if len(beyond):
                line = int(line_numbers[beyond[0]])
                return line, int(data[beyond[0], 0]), self._line_text(line)
        raise self._error(None, "the file changed while it was being read")  # pragma: no cover

    # -- streaming -----------------------------------------------------------------------------

    def _groups(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame, rows (K, 7))`` for every frame with boxes, frames increasing."""
        if not self.is_sorted:
            parts = [data for _, data in self._chunks()]
            data = np.concatenate(parts) if parts else np.zeros((0, 7))
            data = data[np.argsort(data[:, 0], kind="stable")]
            chunks: Iterable[np.ndarray] = [data]
        else:
            chunks = (data for _, data in self._chunks())
        pending_frame = 0
        pending: list[np.ndarray] = []
        for data in chunks:
            if not len(data):
                continue
            frames = data[:, 0].astype(np.int64)
            bounds = np.flatnonzero(frames[1:] != frames[:-1]) + 1
            starts = np.concatenate(([0], bounds))
            ends = np.concatenate((bounds, [len(frames)]))
            for start, end in zip(starts.tolist(), ends.tolist()):
                frame = int(frames[start])
                if frame == pending_frame:
                    pending.append(data[start:end])
                    continue
                if frame < pending_frame:
                    raise self._error(None, "the file changed while it was being read (frames no longer sorted)")
                if pending:
                    yield pending_frame, np.concatenate(pending) if len(pending) > 1 else pending[0]
                pending_frame, pending = frame, [data[start:end]]
        if pending:
            yield pending_frame, np.concatenate(pending) if len(pending) > 1 else pending[0]

    def per_frame(self, num_frames: Optional[int] = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(index, boxes, scores)`` for every frame index ``0 .. N-1`` in order.

        ``N`` is ``num_frames``, else ``frame_count``, else ``max_frame``. ``boxes`` is a fresh
        ``(K, 4)`` float64 array of ``x1, y1, x2, y2``; ``scores`` ``(K,)`` float64; frames without
        detections get ``(0, 4)`` and ``(0,)`` arrays. Boxes of frames beyond ``num_frames`` raise
        :class:`DetectionFileError` (before anything is yielded).
        """
        num_frames = _check_optional_int(num_frames, "num_frames", 0)
        total = num_frames if num_frames is not None else self.frame_count if self.frame_count is not None else self.max_frame
        self.check_frames_decoded(total)
        return self._per_frame(total)

    def _per_frame(self, total: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        next_index = 0
        for frame, rows in self._groups():
            index = frame - 1
            if index >= total:  # only if the file changed since validation
                raise self._error(None, f"the file changed while it was being read (frame {frame} > {total})")
            while next_index < index:
                yield next_index, np.zeros((0, 4), np.float64), np.zeros(0, np.float64)
                next_index += 1
            boxes = np.empty((len(rows), 4), np.float64)
            boxes[:, 0:2] = rows[:, 2:4]
            boxes[:, 2:4] = rows[:, 2:4] + rows[:, 4:6]
            yield index, boxes, rows[:, 6].copy()
            next_index = index + 1
        while next_index < total:
            yield next_index, np.zeros((0, 4), np.float64), np.zeros(0, np.float64)
            next_index += 1


class MotWriter(AtomicWriter):
    """Write MOTChallenge detection lines atomically.

    ``with MotWriter(path) as out: out.write(index, boxes, scores)`` writes
    ``frame,-1,x,y,w,h,score,-1,-1,-1`` lines (``frame = index + 1``: ``index`` is 0-based like
    everywhere else in flickermine; coordinates with 3 decimals, scores with 6) to a temporary file
    in the target's folder, renamed over ``path`` when the block ends without an exception (or on
    :meth:`close`) and deleted when it raises (or on :meth:`abort`). ``count`` is the number of
    boxes written.
    """

    def write(self, index: int, boxes: object, scores: object) -> None:
        """Write the boxes (``(K, 4)`` x1,y1,x2,y2) and scores of 0-based frame ``index``."""
        if self._handle is None:
            raise InputError(f"{self.path}: MotWriter is closed")
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise InputError(f"index must be a 0-based frame index (an integer >= 0), got {index!r}")
        boxes = check_boxes(boxes, "boxes")
        scores = check_scores(scores, len(boxes), "scores")
        if not len(boxes):
            return
        frame = int(index) + 1
        self._handle.write("".join(
            f"{frame},-1,{x1:.3f},{y1:.3f},{x2 - x1:.3f},{y2 - y1:.3f},{score:.6f},-1,-1,-1\n"
            for (x1, y1, x2, y2), score in zip(boxes.tolist(), scores.tolist())
        ))
        self.count += len(boxes)


def write_mot(path: PathLike, rows: Iterable[tuple[int, object, object]]) -> int:
    """Write ``(index, boxes, scores)`` rows (what :meth:`DetectionFile.per_frame` yields: 0-based
    frame index, ``(K, 4)`` x1,y1,x2,y2, ``(K,)`` scores) as a MOTChallenge file, atomically.
    Returns the number of boxes written."""
    with MotWriter(path) as writer:
        for index, boxes, scores in rows:
            writer.write(index, boxes, scores)
    return writer.count
