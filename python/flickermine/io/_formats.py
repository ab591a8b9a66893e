"""Detection file formats beside MOTChallenge: the authors' text format and JSON Lines.

Three formats are read, written and converted (``FORMATS``); every reader has the interface of
:class:`flickermine.io.DetectionFile` and every writer that of
:class:`flickermine.io.MotWriter`. Boxes are ``x1, y1, x2, y2`` float64 in pixels,
frames are 0-based indexes in the API.

``mot``
    MOTChallenge ``det.txt``: see :mod:`flickermine.io._mot`.

``authors`` (the text format of Jin et al.'s public miner)
    For every frame of the video, in order, a header line, a count line, then that many box
    lines::

        FRAME NUMBER: 1
        2
        649.441 231.502 44.417 86.130 0.995474
        252.783 207.732 35.813 96.641 0.991175
        FRAME NUMBER: 2
        0
        ...

    Box lines are ``x y w h score``, whitespace-separated, ``x, y`` the top-left corner, in
    pixels. The header is matched without regard to case or spacing around the colon. Blank
    lines are skipped. **Frame numbering**: files numbered from 0 and from 1 both exist; the
    first header decides (it must be 0 or 1: frame ``n`` is index ``n - first``) and every
    later header must be the previous one plus 1 ("every frame present, in order"). Writers
    number from 1 unless given ``first_frame=0``. The file holds every frame of the video, so
    its frame count must match the video's: ``frame_count`` given to the reader, and the
    frames decoded (:meth:`AuthorsDetectionFile.check_frames_decoded`), must both equal it.

``jsonl`` (JSON Lines)
    One JSON object a line, one line per frame::

        {"frame": 1, "xyxy": [[649.441, 231.502, 693.858, 317.632]], "scores": [0.995474]}
        {"frame": 3, "xyxy": [], "scores": []}
        {"frame": 4, "xyxy": [[10, 20, 40, 60]], "scores": [0.5], "labels": ["person"]}

    - ``frame``: integer >= 1, the N-th frame decoded (index ``N - 1``), as in MOTChallenge;
    - ``xyxy``: list of ``[x1, y1, x2, y2]`` boxes in pixels, ``x2 > x1`` and ``y2 > y1``;
    - ``scores``: list of numbers, one per box;
    - ``labels`` (optional): list of category ids (integers) or names (strings), one per box.

    A missing ``xyxy`` / ``scores`` means no boxes; other keys are ignored. Frames without
    detections may be omitted or present with empty lists; a frame appears at most once.
    Lines sorted by frame (what the writer produces) are streamed; an unsorted file is loaded
    whole and sorted by frame when read. Blank lines are skipped; NaN and infinity are
    rejected. The writer writes one line for every frame it is given (empty lists included),
    coordinates with 3 decimals and scores with 6, like the MOT writer.

Readers validate the whole file when constructed and raise
:class:`~flickermine.io.DetectionFileError` naming the file and the line. Writers write
to a temporary file beside the target and rename it into place only on success; indexes must
not decrease (a repeated index adds boxes to that frame), and skipped frames are written as
frames without boxes where the format records them.

:func:`detect_format` sniffs a file's format from its first non-blank line,
:func:`open_detections` returns the right reader, :func:`open_writer` the right writer and
:func:`convert` converts one file into another, streaming.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Optional, Sequence, Union

import numpy as np

from .._files import AtomicWriter
from .._boxes import check_boxes, check_scores, invalid_box_rows
from ..errors import InputError, InputTypeError
from ._mot import (
    _MAX_FRAME, DetectionFile, DetectionFileError, DetectionReader, MotWriter, _check_optional_int,
    _quote,
)

__all__ = [
    "FORMATS",
    "DetectionFormat",
    "AuthorsDetectionFile",
    "AuthorsWriter",
    "JsonlDetectionFile",
    "JsonlWriter",
    "convert",
    "detect_format",
    "format_from_extension",
    "open_detections",
    "open_writer",
    "write_authors",
    "write_jsonl",
]

PathLike = Union[str, "os.PathLike[str]"]

#: A detections file format's name.
DetectionFormat = Literal["mot", "authors", "jsonl"]
FORMATS: tuple[DetectionFormat, ...] = ("mot", "authors", "jsonl")

_HEADER = re.compile(r"frame\s+number\s*:\s*(.*)", re.IGNORECASE)
_HEADER_HINT = "FRAME NUMBER: n"
_BOX_HINT = "x y w h score"
_COUNT_HINT = "number of boxes"
_JSON_EXTENSIONS = (".jsonl", ".ndjson")
_BLOCK_LINES = 16384  # box lines of the authors' format parsed together
_Empty = tuple[np.ndarray, np.ndarray]


def _empty() -> _Empty:
    return np.zeros((0, 4), np.float64), np.zeros(0, np.float64)


def _check_format(format: Optional[str], name: str = "format") -> Optional[DetectionFormat]:
    if format is None:
        return None
    if format not in FORMATS:
        raise InputError(f"unknown detections {name} {format!r}: choose one of {', '.join(FORMATS)}")
    return format  # narrowed by the membership test


class _Reader(DetectionReader):
    """What the readers share with DetectionFile: arguments, errors, opening the file."""

    format = ""

    def __init__(self, path: PathLike, frame_count: Optional[int], width: Optional[int], height: Optional[int]) -> None:
        self.path = path
        self.frame_count = _check_optional_int(frame_count, "frame_count", 0)
        self.width = _check_optional_int(width, "width", 1)
        self.height = _check_optional_int(height, "height", 1)
        self.count = 0
        self.max_frame = 0

    def _error(self, line: Optional[int], problem: str, text: Optional[str] = None, hint: str = "") -> DetectionFileError:
        where = f"{self.path} line {line}" if line is not None else f"{self.path}"
        shown = ""
        if text is not None:
            shown = f" ({hint}: {_quote(text)})" if hint else f" ({_quote(text)})"
        return DetectionFileError(f"{where}: {problem}{shown}", self.path, line)

    def _lines(self) -> Iterator[tuple[int, str]]:
        """``(line number, text)`` for every non-blank line, with open/read errors as DetectionFileError."""
        handle = self._open_text()
        with handle:
            number = 0
            while True:
                try:
                    text = handle.readline()
                except OSError as exc:
                    raise self._error(None, f"cannot read it: {exc.strerror or exc}") from exc
                if not text:
                    return
                number += 1
                if text.strip():
                    yield number, text

    def _line_text(self, line: int) -> Optional[str]:
        """The text of ``line`` (error paths only: reads the file again)."""
        for number, text in self._lines():
            if number == line:
                return text
        return None  # pragma: no cover


# -- the authors' text format ---------------------------------------------------------------------


class AuthorsDetectionFile(_Reader):
    """A validated detections file in the authors' text format (see the module docstring).

    ``AuthorsDetectionFile(path, frame_count=None, width=None, height=None)`` reads the whole
    file once and raises :class:`DetectionFileError` (naming the file and line) for: a missing or
    unreadable file; a line where a ``FRAME NUMBER: n`` header belongs that is not one; a first
    frame numbered other than 0 or 1; a frame number that is not the previous one plus 1
    (frames out of order or missing); a count line that is not a non-negative integer; a count
    that does not match the box lines that follow; a box line without exactly 5 numbers, with
    NaN or infinity, or with width or height <= 0 (or too small to give ``x + w > x`` in float64,
    or overflowing); more frames than ``frame_count``, or fewer
    (when given); a box entirely outside the ``width`` x ``height`` image (when given).

    Attributes: ``path``, ``frame_count``, ``width``, ``height`` (as given), ``count`` (boxes),
    ``frames`` (frames in the file), ``max_frame`` (the 1-based number of its last frame, the
    same as ``frames``; 0 for an empty file), ``first_frame`` (0 or 1 as the file numbers them;
    None for an empty file) and ``is_sorted`` (always True).
    """

    format = "authors"
    is_sorted = True

    def __init__(self, path: PathLike, frame_count: Optional[int] = None, width: Optional[int] = None,
                 height: Optional[int] = None) -> None:
        super().__init__(path, frame_count, width, height)
        self.frames = 0
        self.first_frame: Optional[int] = None
        self._last_line = 0
        for _, boxes, _ in self._records():
            self.frames += 1
            self.count += len(boxes)
        self._last_line = self._scanned_to
        self.max_frame = self.frames
        if self.frame_count is not None and self.frames < self.frame_count:
            raise self._error(
                self._last_line or None,
                f"the file ends after {self.frames} frames, but the video has {self.frame_count} "
                "(the authors' format lists every frame)",
            )

    def __repr__(self) -> str:
        return (f"AuthorsDetectionFile({str(self.path)!r}, count={self.count}, frames={self.frames}, "
                f"first_frame={self.first_frame})")

    def _records(self, limit: Optional[int] = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Parse and validate, yielding ``(index, boxes, scores)`` frame by frame; a frame at or
        beyond ``limit`` (default ``frame_count``) is an error.

        The structure (headers, counts) is checked line by line; box lines are gathered over
        frames up to about ``_BLOCK_LINES`` and parsed together (vectorized), so memory stays
        bounded. Before a structural error is raised the gathered boxes are parsed, so the error
        reported is always the first in the file.
        """
        limit = self.frame_count if limit is None else limit
        expect = "header"
        index = -1
        first = 0
        header_line = count_line = 0
        count_text = ""
        count = count_left = 0
        frames: list[tuple[int, int]] = []  # (index, box lines) of the gathered frames
        lines: list[tuple[int, str]] = []  # (line, text) of their box lines
        self._scanned_to = 0

        def fail(line: Optional[int], problem: str, text: Optional[str] = None, hint: str = "") -> DetectionFileError:
            self._parse_block(frames, lines)  # an earlier bad box line raises first
            return self._error(line, problem, text, hint)

        for line, text in self._lines():
            self._scanned_to = line
            if expect == "boxes" and text.lstrip()[:1] not in "fF":  # the common case, kept cheap
                lines.append((line, text))
                count_left -= 1
                if not count_left:
                    frames.append((index, count))
                    expect = "header"
                    if len(lines) >= _BLOCK_LINES:
                        yield from self._parse_block(frames, lines)
                        frames, lines = [], []
                continue
            stripped = text.strip()
            header = _HEADER.fullmatch(stripped)
            if expect == "boxes":
                if header is not None:
                    got = count - count_left
                    raise fail(
                        count_line,
                        f"frame {index + first} says {count} boxes, but {got} box line"
                        f"{' follows' if got == 1 else 's follow'} before the next header (line {line})",
                        count_text, _COUNT_HINT,
                    )
                self._parse_block(frames, lines)  # earlier box lines first, then this one
                for earlier in lines[sum(k for _, k in frames):]:
                    self._parse_box(*earlier)
                self._parse_box(line, text)  # starts with f or F: not a number; this raises
                raise self._error(line, "not a box line", text, _BOX_HINT)  # pragma: no cover
            if expect == "header":
                if header is None:
                    if index < 0:
                        problem = f"missing header: the file must start with '{_HEADER_HINT}'"
                    elif len(stripped.split()) == 5:
                        problem = (f"frame {index + first} has more box lines than its count {count} (line "
                                   f"{count_line}), or the header of frame {index + first + 1} is missing")
                    else:
                        problem = f"missing header: expected '{_HEADER_HINT}' for frame {index + first + 1}"
                    raise fail(line, problem, text)
                number_text = header.group(1).strip()
                try:
                    number = int(number_text)
                except ValueError:
                    raise fail(line, f"frame number {_quote(number_text)} is not an integer", text) from None
                if index < 0:
                    if number not in (0, 1):
                        raise fail(line, f"the first frame is numbered {number}: it must be 0 or 1", text)
                    first = self.first_frame = number
                elif number != index + first + 1:
                    order = "out of order" if number <= index + first else "missing"
                    raise fail(
                        line,
                        f"frame {number} follows frame {index + first}: frames {order} (every frame must be "
                        "present, in order)",
                        text,
                    )
                index += 1
                if limit is not None and index >= limit:
                    raise fail(
                        line,
                        f"frame {number} is beyond the video's {limit} frames (the file has more frames than the "
                        "video)",
                        text,
                    )
                header_line = line
                expect = "count"
            else:  # expect == "count"
                if header is not None:
                    raise fail(header_line, f"frame {index + first} has no count line (the next header follows "
                               f"at line {line})", self._line_text(header_line))
                try:
                    count = int(stripped)
                except ValueError:
                    count = -1
                if count < 0:
                    raise fail(line, f"frame {index + first}: {_quote(stripped)} is not a box count (an integer "
                               ">= 0)", text, _COUNT_HINT)
                count_line, count_text = line, text
                if count == 0:
                    frames.append((index, 0))
                    expect = "header"
                else:
                    count_left = count
                    expect = "boxes"
        if expect == "count":
            raise fail(header_line, f"frame {index + first} has no count line (the file ends)",
                       self._line_text(header_line))
        if expect == "boxes":
            raise fail(
                count_line, f"frame {index + first} says {count} boxes, but the file ends after {count - count_left}",
                count_text, _COUNT_HINT,
            )
        yield from self._parse_block(frames, lines)

    _NAMES = ("x", "y", "w", "h", "score")

    def _parse_block(self, frames: list[tuple[int, int]], lines: list[tuple[int, str]]) -> list:
        """``(index, boxes x1y1x2y2, scores)`` of the gathered frames. Box lines are parsed by
        ``np.loadtxt``; the exact line-by-line parser (which raises the error) takes over when
        anything looks wrong. Frames whose boxes were not all gathered yet are left out."""
        complete = sum(k for _, k in frames)
        rows = lines[:complete]
        data = None
        if rows:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    data = np.loadtxt([text for _, text in rows], dtype=np.float64, comments=None, ndmin=2)
            except (ValueError, IndexError):
                data = None
            if data is not None and (data.shape != (len(rows), 5) or not self._all_valid(data)):
                data = None
            if data is None:
                data = np.array([self._parse_box(line, text) for line, text in rows], dtype=np.float64)
        else:
            data = np.zeros((0, 5), np.float64)
        boxes = data[:, :4].copy()
        boxes[:, 2:4] += boxes[:, 0:2]
        scores = data[:, 4].copy()
        out = []
        start = 0
        for index, k in frames:
            out.append((index, boxes[start:start + k].copy(), scores[start:start + k].copy()))
            start += k
        return out

    def _all_valid(self, data: np.ndarray) -> bool:
        return bool(np.isfinite(data[:, 4]).all()) and self._xywh_all_valid(data[:, 0], data[:, 1], data[:, 2], data[:, 3])

    def _parse_box(self, line: int, text: str) -> list[float]:
        fields = text.split()
        if len(fields) != 5:
            raise self._error(line, f"{len(fields)} fields, need 5", text, _BOX_HINT)
        values = []
        for name, field in zip(self._NAMES, fields):
            try:
                value = float(field)
            except ValueError:
                raise self._error(line, f"{name} {_quote(field)} is not a number", text, _BOX_HINT) from None
            if not math.isfinite(value):
                raise self._error(line, f"{name} is {field} (NaN and infinity are not allowed)", text, _BOX_HINT)
            values.append(value)
        x, y, w, h, _ = values
        box_problem = self._xywh_problem(x, y, w, h)
        if box_problem is not None:
            raise self._error(line, box_problem, text, _BOX_HINT)
        return values

    def per_frame(self, num_frames: Optional[int] = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(index, boxes, scores)`` for every frame index ``0 .. N-1`` in order, streaming.

        ``N`` is ``num_frames``, else ``frame_count``, else the file's frames; a file with a
        different number of frames than ``N`` raises :class:`DetectionFileError` (before
        anything is yielded). ``boxes`` is a fresh ``(K, 4)`` float64 array of ``x1, y1, x2, y2``.
        """
        num_frames = _check_optional_int(num_frames, "num_frames", 0)
        total = num_frames if num_frames is not None else self.frame_count if self.frame_count is not None else self.frames
        self.check_frames_decoded(total)
        return self._per_frame(total)

    def _per_frame(self, total: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        produced = 0
        for record in self._records(limit=total):
            produced += 1
            yield record
        if produced != total:  # only if the file changed since validation
            raise self._error(None, f"the file changed while it was being read ({produced} frames, not {total})")

    def _check_decoded(self, decoded: int) -> None:
        """The file must have exactly ``decoded`` frames. More frames: names the header of the
        first frame beyond the video. Fewer: names the last line."""
        if self.frames == decoded:
            return
        if self.frames < decoded:
            raise self._error(
                self._last_line or None,
                f"the file ends after {self.frames} frames, but the video decoded to {decoded} frames "
                "(the authors' format lists every frame)",
            )
        for _ in self._records(limit=decoded):  # raises at the header of frame index `decoded`
            pass
        raise self._error(None, "the file changed while it was being read")  # pragma: no cover


class _FrameWriter(AtomicWriter):
    """Buffers one frame so repeated indexes merge, fills skipped frames, pads to ``frame_count``."""

    _name = "writer"

    def __init__(self, path: PathLike, frame_count: Optional[int] = None) -> None:
        self.frame_count = _check_optional_int(frame_count, "frame_count", 0)
        super().__init__(path)
        self._next = 0  # first index not yet written
        self._pending: Optional[int] = None  # the frame being gathered
        self._boxes: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._labels: list = []
        self._labeled: Optional[bool] = None  # whether the pending frame's boxes have labels

    def write(self, index: int, boxes: object, scores: object, labels: Optional[Sequence] = None) -> None:
        """Write the boxes (``(K, 4)`` x1,y1,x2,y2) and scores of 0-based frame ``index``."""
        if self._handle is None:
            raise InputError(f"{self.path}: {type(self).__name__} is closed")
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise InputError(f"index must be a 0-based frame index (an integer >= 0), got {index!r}")
        index = int(index)
        if self.frame_count is not None and index >= self.frame_count:
            raise InputError(f"{self.path}: index {index} is beyond the video's {self.frame_count} frames")
        boxes = check_boxes(boxes, "boxes")
        scores = check_scores(scores, len(boxes), "scores")
        labels = self._check_labels(labels, len(boxes))
        if index != self._pending:
            floor = self._pending + 1 if self._pending is not None else self._next
            if index < floor:
                raise InputError(f"{self.path}: frame index {index} after {floor - 1}: write frames in order")
            self._flush()
            self._fill(index)
            self._pending = index
        if len(boxes):
            labeled = labels is not None
            if self._labeled is not None and labeled != self._labeled:
                raise InputError(f"{self.path}: frame index {index}: labels given for some of its boxes only")
            self._labeled = labeled
            self._boxes.append(boxes)
            self._scores.append(scores)
            self._labels += labels or []
        self.count += len(boxes)

    def _check_labels(self, labels: Optional[Sequence], count: int) -> Optional[list]:
        if labels is None:
            return None
        raise InputError(f"{self.path}: the {self._name} format has no labels")

    def _flush(self) -> None:
        if self._pending is None:
            return
        if self._boxes:
            boxes = np.concatenate(self._boxes) if len(self._boxes) > 1 else self._boxes[0]
            scores = np.concatenate(self._scores) if len(self._scores) > 1 else self._scores[0]
        else:
            boxes, scores = _empty()
        self._emit(self._pending, boxes, scores, self._labels if self._labeled else None)
        self._next = self._pending + 1
        self._pending, self._boxes, self._scores, self._labels, self._labeled = None, [], [], [], None

    def _fill(self, stop: int) -> None:
        while self._next < stop:
            self._emit_empty(self._next)
            self._next += 1

    def _finish(self) -> None:
        self._flush()
        if self.frame_count is not None:
            self._fill(self.frame_count)

    def _emit(self, index: int, boxes: np.ndarray, scores: np.ndarray, labels: Optional[list]) -> None:
        raise NotImplementedError

    def _emit_empty(self, index: int) -> None:
        self._emit(index, *_empty(), None)


class AuthorsWriter(_FrameWriter):
    """Write the authors' text format atomically.

    ``with AuthorsWriter(path, first_frame=1, frame_count=None) as out: out.write(index, boxes,
    scores)`` writes a ``FRAME NUMBER: n`` header (``n = index + first_frame``), the count and
    ``x y w h score`` lines (3 decimals, scores 6) for every frame: indexes must not decrease, a
    repeated index adds boxes to its frame, skipped frames are written with count 0, and with
    ``frame_count`` the frames after the last one written are added on close. The file is
    written beside ``path`` and renamed over it when the block ends without an exception (or
    on :meth:`close`), deleted when it raises (or on :meth:`abort`). ``count`` is the number of
    boxes written.
    """

    _name = "authors"

    def __init__(self, path: PathLike, first_frame: int = 1, frame_count: Optional[int] = None) -> None:
        if isinstance(first_frame, bool) or first_frame not in (0, 1):
            raise InputError(f"first_frame must be 0 or 1, got {first_frame!r}")
        self.first_frame = int(first_frame)
        super().__init__(path, frame_count)

    def _emit(self, index: int, boxes: np.ndarray, scores: np.ndarray, labels: Optional[list]) -> None:
        parts = [f"FRAME NUMBER: {index + self.first_frame}\n{len(boxes)}\n"]
        for (x1, y1, x2, y2), score in zip(boxes.tolist(), scores.tolist()):
            # round the corners, not the sizes: x + w is then within 0.0005 of x2
            r1, s1, r2, s2 = round(x1, 3), round(y1, 3), round(x2, 3), round(y2, 3)
            if r2 > r1 and s2 > s1:
                box = f"{r1:.3f} {s1:.3f} {r2 - r1:.3f} {s2 - s1:.3f}"
            else:  # a box thinner than the rounding: keep it valid
                box = f"{x1!r} {y1!r} {x2 - x1!r} {y2 - y1!r}"
            parts.append(f"{box} {score:.6f}\n")
        assert self._handle is not None  # _emit runs only while the file is open
        self._handle.write("".join(parts))


def write_authors(path: PathLike, rows, first_frame: int = 1, frame_count: Optional[int] = None) -> int:
    """Write ``(index, boxes, scores)`` rows (what ``per_frame`` yields) in the authors' format,
    atomically. Returns the number of boxes written."""
    with AuthorsWriter(path, first_frame=first_frame, frame_count=frame_count) as writer:
        for index, boxes, scores in rows:
            writer.write(index, boxes, scores)
    return writer.count


# -- JSON Lines -------------------------------------------------------------------------------------


@dataclass
class _JsonRecord:
    line: int
    frame: int
    boxes: np.ndarray
    scores: np.ndarray
    labels: Optional[list]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class JsonlDetectionFile(_Reader):
    """A validated JSON Lines detections file (schema in the module docstring).

    ``JsonlDetectionFile(path, frame_count=None, width=None, height=None)`` reads the whole file
    once and raises :class:`DetectionFileError` (naming the file and line) for: a missing or
    unreadable file; a line that is not a JSON object; a missing ``frame``, or one that is not an
    integer, is <= 0 or is beyond ``frame_count`` (when given); a frame listed twice; ``xyxy``
    that is not a list of 4-number boxes; NaN or infinity; a box with ``x2 <= x1`` or
    ``y2 <= y1`` (width or height not positive); scores or labels whose number differs from the
    boxes'; a box entirely outside the ``width`` x ``height`` image (when given).

    Attributes: ``path``, ``frame_count``, ``width``, ``height`` (as given), ``count`` (boxes),
    ``frames`` (lines in the file), ``max_frame`` (the largest frame number in the file, with
    boxes or not; 0 for an empty file), ``has_labels`` and ``is_sorted`` (frame numbers increase
    down the file).
    """

    format = "jsonl"

    def __init__(self, path: PathLike, frame_count: Optional[int] = None, width: Optional[int] = None,
                 height: Optional[int] = None) -> None:
        super().__init__(path, frame_count, width, height)
        self.frames = 0
        self.is_sorted = True
        self.has_labels = False
        last = 0
        names: list[str] = []  # category names given as labels, in order of first appearance
        largest = 0  # the largest integer label
        for record in self._records():
            self.frames += 1
            self.count += len(record.boxes)
            self.has_labels = self.has_labels or record.labels is not None
            for label in record.labels or ():
                if isinstance(label, str):
                    if label not in names:
                        names.append(label)
                else:
                    largest = max(largest, label)
            if record.frame == last and self.is_sorted:
                raise self._error(record.line, f"frame {record.frame} is listed twice (one line per frame)",
                                  self._line_text(record.line))
            if record.frame < last:
                self.is_sorted = False
            last = record.frame
            self.max_frame = max(self.max_frame, record.frame)
        if not self.is_sorted:
            self._check_duplicates()
        self._category_names = {largest + 1 + i: name for i, name in enumerate(names)}

    def __repr__(self) -> str:
        return (f"JsonlDetectionFile({str(self.path)!r}, count={self.count}, max_frame={self.max_frame}, "
                f"sorted={self.is_sorted})")

    def _check_duplicates(self) -> None:
        """An unsorted file (loaded whole when read anyway): name the first line repeating a frame."""
        seen: dict[int, int] = {}
        for line, text in self._lines():
            frame = json.loads(text)["frame"]
            if frame in seen:
                raise self._error(line, f"frame {frame} is listed twice (also on line {seen[frame]}; one line "
                                  "per frame)", text)
            seen[frame] = line

    def _records(self) -> Iterator[_JsonRecord]:
        for line, text in self._lines():
            yield self._parse_line(line, text)

    def _parse_line(self, line: int, text: str) -> _JsonRecord:
        def bad(problem: str) -> DetectionFileError:
            return self._error(line, problem, text)

        try:
            obj = json.loads(text)
        except RecursionError:
            raise bad("not usable JSON: nested too deeply (arrays or objects inside thousands of others)") from None
        except ValueError as exc:
            message = getattr(exc, "msg", str(exc))
            column = getattr(exc, "colno", None)
            raise bad(f"not valid JSON: {message}" + (f" (column {column})" if column else "")) from None
        if not isinstance(obj, dict):
            raise bad(f"expected a JSON object {{\"frame\": n, \"xyxy\": [...], \"scores\": [...]}}, got "
                      f"{type(obj).__name__ if not isinstance(obj, list) else 'a list'}")
        if "frame" not in obj:
            raise bad("no \"frame\" (the 1-based frame number)")
        frame = obj["frame"]
        if isinstance(frame, bool) or not isinstance(frame, int):
            raise bad(f"frame {json.dumps(frame)} is not an integer")
        if frame <= 0:
            raise bad(f"frame {frame} is not positive (frames start at 1)")
        if frame > _MAX_FRAME:
            raise bad(f"frame {frame} is too large")
        if self.frame_count is not None and frame > self.frame_count:
            raise bad(f"frame {frame} is beyond the video's {self.frame_count} frames")
        xyxy = obj.get("xyxy", [])
        scores = obj.get("scores", [])
        labels = obj.get("labels")
        arrays = self._fast_arrays(xyxy, scores, text)
        if arrays is None:
            self._check_boxes_exactly(line, text, xyxy, scores)
            arrays = np.array(xyxy, dtype=np.float64).reshape(-1, 4), np.array(scores, dtype=np.float64)
        if labels is not None:
            if not isinstance(labels, list):
                raise bad("\"labels\" must be a list of category ids or names")
            if len(labels) != len(xyxy):
                raise bad(f"{len(labels)} labels for {len(xyxy)} boxes")
            for i, label in enumerate(labels):
                if isinstance(label, bool) or not isinstance(label, (int, str)):
                    raise bad(f"label {i} {json.dumps(label)} is not a category id (integer) or name (string)")
        return _JsonRecord(line, frame, arrays[0], arrays[1], labels)

    def _fast_arrays(self, xyxy: object, scores: object, text: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """Vectorized validation of the usual line: the arrays, or None to check exactly."""
        if not isinstance(xyxy, list) or not isinstance(scores, list) or len(xyxy) != len(scores):
            return None
        if not xyxy:
            return _empty()
        if "true" in text or "false" in text:  # JSON booleans would pass as numbers in NumPy
            return None
        try:
            boxes, values = np.array(xyxy), np.array(scores)
        except ValueError:
            return None
        if boxes.dtype.kind not in "fi" or values.dtype.kind not in "fi":
            return None
        if boxes.shape != (len(xyxy), 4) or values.shape != (len(xyxy),):
            return None
        boxes, values = boxes.astype(np.float64), values.astype(np.float64)
        x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
        if invalid_box_rows(boxes).any() or not np.isfinite(values).all():
            return None
        if not np.all(self._touch_image(x1, y1, x2, y2)):
            return None
        return boxes, values

    def _check_boxes_exactly(self, line: int, text: str, xyxy: object, scores: object) -> None:
        """Raise the exact error for the first bad box or score."""
        def bad(problem: str) -> DetectionFileError:
            return self._error(line, problem, text)

        if not isinstance(xyxy, list):
            raise bad("\"xyxy\" must be a list of [x1, y1, x2, y2] boxes")
        for i, box in enumerate(xyxy):
            if not isinstance(box, list) or len(box) != 4:
                raise bad(f"box {i} {json.dumps(box)} is not [x1, y1, x2, y2]")
            if not all(_is_number(v) for v in box):
                raise bad(f"box {i} {json.dumps(box)} has a value that is not a number")
            if not all(math.isfinite(v) for v in box):
                raise bad(f"box {i} {json.dumps(box)} has NaN or infinity")
            x1, y1, x2, y2 = box
            if x2 <= x1:
                raise bad(f"box {i} {json.dumps(box)}: width {x2 - x1!r} is not positive (need x2 > x1)")
            if y2 <= y1:
                raise bad(f"box {i} {json.dumps(box)}: height {y2 - y1!r} is not positive (need y2 > y1)")
            outside = self._outside_problem(float(x1), float(y1), float(x2), float(y2), f"{i} {json.dumps(box)}")
            if outside is not None:
                raise bad(outside)
        if not isinstance(scores, list):
            raise bad("\"scores\" must be a list of numbers")
        if len(scores) != len(xyxy):
            raise bad(f"{len(scores)} scores for {len(xyxy)} boxes")
        for i, score in enumerate(scores):
            if not _is_number(score):
                raise bad(f"score {i} {json.dumps(score)} is not a number")
            if not math.isfinite(score):
                raise bad(f"score {i} is {score} (NaN and infinity are not allowed)")

    def _sorted_records(self) -> Iterator[_JsonRecord]:
        if self.is_sorted:
            return self._records()
        records = list(self._records())
        records.sort(key=lambda r: r.frame)
        return iter(records)

    def per_frame(self, num_frames: Optional[int] = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(index, boxes, scores)`` for every frame index ``0 .. N-1`` in order.

        ``N`` is ``num_frames``, else ``frame_count``, else ``max_frame``; frames the file omits
        get ``(0, 4)`` and ``(0,)`` arrays. Frames beyond ``num_frames`` raise
        :class:`DetectionFileError` (before anything is yielded). Streams a sorted file.
        """
        return (item[:3] for item in self.per_frame_with_labels(num_frames))

    def per_frame_with_labels(self, num_frames: Optional[int] = None) -> Iterator[tuple[int, np.ndarray, np.ndarray, Optional[list]]]:
        """Like :meth:`per_frame`, with a fourth item: the frame's labels (a list), or None where
        the file gives none."""
        num_frames = _check_optional_int(num_frames, "num_frames", 0)
        total = num_frames if num_frames is not None else self.frame_count if self.frame_count is not None else self.max_frame
        self.check_frames_decoded(total)
        return self._per_frame(total)

    def _per_frame(self, total: int) -> Iterator[tuple[int, np.ndarray, np.ndarray, Optional[list]]]:
        next_index = 0
        for record in self._sorted_records():
            index = record.frame - 1
            if index >= total or index < next_index:  # only if the file changed since validation
                raise self._error(None, "the file changed while it was being read")
            while next_index < index:
                yield (next_index, *_empty(), None)
                next_index += 1
            yield index, record.boxes, record.scores, record.labels
            next_index = index + 1
        while next_index < total:
            yield (next_index, *_empty(), None)
            next_index += 1

    def _labels_per_frame(self, num_frames: Optional[int]) -> Iterator[tuple[np.ndarray, np.ndarray, Optional[list]]]:
        return (item[1:] for item in self.per_frame_with_labels(num_frames))

    def _first_frame_beyond(self, decoded: int) -> tuple[int, int, Optional[str]]:
        for line, text in self._lines():
            frame = json.loads(text)["frame"]
            if frame > decoded:
                return line, frame, text
        raise self._error(None, "the file changed while it was being read")  # pragma: no cover


def _round_box(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    rounded = [round(x1, 3), round(y1, 3), round(x2, 3), round(y2, 3)]
    if rounded[2] <= rounded[0] or rounded[3] <= rounded[1]:  # thinner than the rounding: keep it valid
        return [x1, y1, x2, y2]
    return rounded


class JsonlWriter(_FrameWriter):
    """Write JSON Lines detections atomically.

    ``with JsonlWriter(path, frame_count=None) as out: out.write(index, boxes, scores, labels=None)``
    writes one ``{"frame": index + 1, "xyxy": [...], "scores": [...]}`` line per frame given
    (empty lists included; ``"labels"`` when given: category ids or names, one per box;
    coordinates rounded to 3 decimals, scores to 6). Indexes must not decrease, a repeated index
    adds boxes to its frame; frames skipped between two writes are omitted (the schema allows
    it), and with ``frame_count`` the frames after the last one written are written empty on
    close, so the file records the video's length. Temporary file and rename as
    :class:`~flickermine.io.MotWriter`. ``count`` is the number of boxes written.
    """

    _name = "jsonl"

    def _check_labels(self, labels: Optional[Sequence], count: int) -> Optional[list]:
        if labels is None:
            return None
        labels = [label.item() if isinstance(label, np.generic) else label for label in labels]
        if len(labels) != count:
            raise InputError(f"labels must have {count} items to match the boxes, got {len(labels)}")
        for label in labels:
            if isinstance(label, bool) or not isinstance(label, (int, str)):
                raise InputTypeError(f"labels must be category ids (integers) or names (strings), got {label!r}")
        return labels

    def _fill(self, stop: int) -> None:  # omitted frames are not written, except the padding at the end
        self._next = max(self._next, stop)

    def _finish(self) -> None:
        self._flush()
        if self.frame_count is not None:
            while self._next < self.frame_count:
                self._emit_empty(self._next)
                self._next += 1

    def _emit(self, index: int, boxes: np.ndarray, scores: np.ndarray, labels: Optional[list]) -> None:
        record = {
            "frame": index + 1,
            "xyxy": [_round_box(*box) for box in boxes.tolist()],
            "scores": [round(score, 6) for score in scores.tolist()],
        }
        if labels is not None:
            record["labels"] = labels
        assert self._handle is not None  # _emit runs only while the file is open
        self._handle.write(json.dumps(record, separators=(", ", ": "), allow_nan=False) + "\n")


def write_jsonl(path: PathLike, rows, frame_count: Optional[int] = None) -> int:
    """Write ``(index, boxes, scores[, labels])`` rows as JSON Lines, atomically. Returns the
    number of boxes written."""
    with JsonlWriter(path, frame_count=frame_count) as writer:
        for row in rows:
            writer.write(*row)
    return writer.count


# -- choosing and converting ------------------------------------------------------------------------


def format_from_extension(path: PathLike) -> Optional[DetectionFormat]:
    """``"jsonl"`` for ``.jsonl`` / ``.ndjson`` files, else None (text files may be MOT or the
    authors' format)."""
    return "jsonl" if Path(os.fspath(path)).suffix.lower() in _JSON_EXTENSIONS else None


def detect_format(path: PathLike) -> DetectionFormat:
    """The format of a detections file from its first non-blank line: ``FRAME NUMBER:`` ->
    ``"authors"``; ``{`` -> ``"jsonl"``; anything else -> ``"mot"``. A file with no non-blank
    line is ``"jsonl"`` when named ``.jsonl``, else ``"mot"``. A missing or unreadable file
    raises :class:`DetectionFileError`."""
    reader = _Reader(path, None, None, None)
    for _, text in reader._lines():
        stripped = text.strip()
        if _HEADER.match(stripped):
            return "authors"
        if stripped.startswith("{"):
            return "jsonl"
        return "mot"
    return format_from_extension(path) or "mot"


_READERS = {"mot": DetectionFile, "authors": AuthorsDetectionFile, "jsonl": JsonlDetectionFile}


def open_detections(path: PathLike, format: Optional[DetectionFormat] = None, frame_count: Optional[int] = None,
                    width: Optional[int] = None, height: Optional[int] = None):
    """A validated reader of ``path``: :class:`~flickermine.io.DetectionFile` (mot),
    :class:`AuthorsDetectionFile` or :class:`JsonlDetectionFile`; ``format`` None sniffs it
    (:func:`detect_format`)."""
    format = _check_format(format) or detect_format(path)
    return _READERS[format](path, frame_count=frame_count, width=width, height=height)


def open_writer(path: PathLike, format: DetectionFormat, first_frame: int = 1, frame_count: Optional[int] = None):
    """A writer of ``format`` to ``path`` (:class:`~flickermine.io.MotWriter`,
    :class:`AuthorsWriter` or :class:`JsonlWriter`), all used as ``with open_writer(...) as out:
    out.write(index, boxes, scores)``. ``first_frame`` (0 or 1) numbers the authors' frames;
    ``frame_count`` makes the authors' and JSON Lines writers list the frames after the last one
    written (MOT files have no place for frames without boxes)."""
    checked = _check_format(format)
    if checked is None:
        raise InputError(f"a format is needed to write {path}: choose one of {', '.join(FORMATS)}")
    format = checked
    if format != "authors" and first_frame != 1:
        raise InputError(f"first_frame applies to the authors' format only, not {format}")
    if format == "authors":
        return AuthorsWriter(path, first_frame=first_frame, frame_count=frame_count)
    if format == "jsonl":
        return JsonlWriter(path, frame_count=frame_count)
    _check_optional_int(frame_count, "frame_count", 0)
    return MotWriter(path)


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert_file` did."""

    boxes: int
    frames: int
    src_format: DetectionFormat
    dst_format: DetectionFormat


def convert_file(src: PathLike, dst: PathLike, src_format: Optional[DetectionFormat] = None, dst_format: Optional[DetectionFormat] = None,
                 frame_count: Optional[int] = None, first_frame: int = 1) -> ConvertResult:
    """:func:`convert`, returning the formats used and the frame count too."""
    source: DetectionFormat = _check_format(src_format, "source format") or detect_format(src)
    target: DetectionFormat = _check_format(dst_format, "target format") or format_from_extension(dst) or "mot"
    reader = open_detections(src, source, frame_count=frame_count)
    total = frame_count if frame_count is not None else reader.max_frame
    keep_labels = source == "jsonl" and target == "jsonl" and reader.has_labels
    rows = reader.per_frame_with_labels(total) if keep_labels else reader.per_frame(total)
    with open_writer(dst, target, first_frame=first_frame, frame_count=total) as writer:
        for row in rows:
            writer.write(*row)
    return ConvertResult(writer.count, total, source, target)


def convert(src: PathLike, dst: PathLike, src_format: Optional[DetectionFormat] = None, dst_format: Optional[DetectionFormat] = None,
            frame_count: Optional[int] = None, first_frame: int = 1) -> int:
    """Convert detections file ``src`` to ``dst``, streaming; returns the number of boxes.

    ``src_format`` None sniffs the source (:func:`detect_format`); ``dst_format`` None is
    ``jsonl`` for a ``.jsonl`` target, else ``mot``. ``frame_count`` is the video's frame count
    (validated against the source; it also sets how many frames the authors' and JSON Lines
    outputs list); without it, the source's own frames. ``first_frame`` numbers an authors'
    output. ``dst`` is replaced atomically (it may be ``src``). Labels survive JSON Lines to JSON
    Lines; the other formats have none.
    """
    return convert_file(src, dst, src_format, dst_format, frame_count, first_frame).boxes
