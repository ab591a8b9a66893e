"""Labelled images: an image (read when needed) with its object boxes and ignore regions.

What training and evaluation take, whether the labels come from a COCO file or from a video's
MOT ground truth (:func:`read_mot_boxes`). Boxes are ``(N, 4)`` float64 ``x1, y1, x2, y2``
pixels; frames of a video are numbered from 1, as MOTChallenge files number them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import Callable, Union

import numpy as np

from . import _coco as coco_files
from .._images import read_image
from ..errors import InputError

PathLike = Union[str, "os.PathLike[str]"]


@dataclasses.dataclass(frozen=True)
class LabelledImage:
    """One image and its labels for one category.

    ``load()`` returns the image as ``(H, W)`` uint8 grayscale; ``boxes`` ``(N, 4)``: the objects;
    ``ignore`` ``(M, 4)``: regions that count neither way (COCO's crowd boxes, MOT's flag-0 boxes,
    boxes a trainer cannot learn from): a detection inside one is neither right nor wrong.
    """

    name: str
    load: Callable[[], np.ndarray]
    boxes: np.ndarray
    ignore: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4)))


def xywh_to_xyxy(bboxes: list) -> np.ndarray:
    """COCO ``[x, y, w, h]`` boxes → ``(N, 4)`` ``x1, y1, x2, y2``."""
    array = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    return np.column_stack([array[:, :2], array[:, :2] + array[:, 2:]])


def coco_labelled_images(coco: dict, images_dir: PathLike, category: str, source: str) -> list[LabelledImage]:
    """Every image of a COCO dict (``source``: its file, for messages), read from ``images_dir``,
    with the boxes of ``category`` (crowd boxes as ignore regions)."""
    category_id = coco_files.category_by_name(coco, category, source)["id"]
    objects: dict = {image["id"]: ([], []) for image in coco["images"]}
    for annotation in coco["annotations"]:
        if annotation["category_id"] == category_id and annotation["image_id"] in objects:
            objects[annotation["image_id"]][1 if annotation.get("iscrowd", 0) else 0].append(annotation["bbox"])
    root = Path(images_dir)
    return [
        LabelledImage(
            image["file_name"],
            functools.partial(read_image, root / image["file_name"], gray=True),
            xywh_to_xyxy(objects[image["id"]][0]),
            xywh_to_xyxy(objects[image["id"]][1]),
        )
        for image in coco["images"]
    ]


def only_category(coco: dict, category: str | None, source: str) -> str:
    """``category``, or the file's one category when not given (an error naming them if several)."""
    if category is not None:
        coco_files.category_by_name(coco, category, source)
        return category
    names = [c["name"] for c in coco["categories"]]
    if len(names) != 1:
        raise InputError(f"{source} has {len(names)} categories ({', '.join(map(repr, names)) or 'none'}): name one with --category")
    return names[0]


def read_mot_boxes(path: PathLike) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """A MOT ground-truth file ``frame,id,x,y,w,h[,flag,...]``: ``(boxes, ignore)``, each a dict
    from 1-based frame to ``(K, 4)`` boxes; rows with flag 0 are ignore regions (a missing flag
    column counts as 1). Raises FileNotFoundError, or InputError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground truth {path}: no such file")
    rows: dict[int, list] = {}
    ignored: dict[int, list] = {}
    with open(path, newline="") as stream:
        for number, line in enumerate(stream, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split(",") if "," in text else text.split()
            if len(fields) < 6:
                raise InputError(f"{path}:{number}: expected frame,id,x,y,w,h[,flag,...], got {text[:80]!r}")
            try:
                values = [float(v) for v in fields[:7]]
            except ValueError:
                raise InputError(f"{path}:{number}: a field is not a number: {text[:80]!r}") from None
            frame, _, x, y, w, h = values[:6]
            flag = values[6] if len(values) > 6 else 1.0
            if not all(math.isfinite(v) for v in values) or frame != int(frame) or frame < 1:
                raise InputError(f"{path}:{number}: frame must be an integer >= 1 and fields finite: {text[:80]!r}")
            if w <= 0 or h <= 0:
                raise InputError(f"{path}:{number}: width and height must be > 0: {text[:80]!r}")
            (ignored if flag == 0 else rows).setdefault(int(frame), []).append((x, y, x + w, y + h))
    as_arrays = lambda table: {f: np.array(b, dtype=np.float64) for f, b in table.items()}  # noqa: E731
    return as_arrays(rows), as_arrays(ignored)


#: Most frames one selection may name (a typo such as 1-1000000000 is an error, not a long run).
MAX_SELECTED_FRAMES = 10_000_000


#: The last frame of an open span ("100-"): past any video's end, below 2**31 for the C++ core.
OPEN_END = 2**31 - 1


def parse_frame_bounds(text: str, option: str = "--frames", open_end: bool = False) -> tuple[int, int]:
    """``"FIRST-LAST"`` (1-based, inclusive; ``"7"`` is one frame; with ``open_end``, ``"100-"``
    runs to :data:`OPEN_END`) as ``(first, last)``; an InputError naming ``option`` otherwise."""
    return _bounds(text, text, option, "FIRST-LAST or FIRST- with 1-based frames, e.g. 1-405" if open_end
                   else "FIRST-LAST with 1-based frames, e.g. 1-405", open_end)


def _bounds(span: str, text: str, option: str, form: str, open_end: bool) -> tuple[int, int]:
    """``span`` (``text`` or a part of it) read as FIRST-LAST; errors quote ``text`` and ``form``."""
    first, dash, last = span.strip().partition("-")
    try:
        lo = int(first)
        hi = (OPEN_END if open_end and not last.strip() else int(last)) if dash else lo
    except ValueError:
        raise InputError(f"{option} {text!r}: expected {form}") from None
    if lo < 1 or hi < lo:
        raise InputError(f"{option} {text!r}: need 1 <= FIRST <= LAST")
    return lo, hi


def parse_frame_span(text: str, option: str = "--frames") -> range:
    """``"FIRST-LAST[/STEP]"`` (:func:`parse_frame_bounds`, closed, then every STEP-th frame) as
    a range of frame numbers; an InputError naming ``option`` otherwise."""
    form = "FIRST-LAST[/STEP] with 1-based frames, e.g. 1-240/3"
    span, _, step = text.strip().partition("/")
    try:
        stride = int(step) if step else 1
    except ValueError:
        raise InputError(f"{option} {text!r}: expected {form}") from None
    lo, hi = _bounds(span, text, option, form, open_end=False)
    if stride < 1:
        raise InputError(f"{option} {text!r}: need STEP >= 1")
    if (hi - lo) // stride + 1 > MAX_SELECTED_FRAMES:
        raise InputError(f"{option} {text!r}: more than {MAX_SELECTED_FRAMES} frames")
    return range(lo, hi + 1, stride)


def parse_frame_selection(text: str, option: str = "--frames") -> list[int]:
    """Comma-separated spans (:func:`parse_frame_span`), e.g. ``"1-240/3,601-795"``: the sorted
    frame numbers, each once."""
    frames: set[int] = set()
    for part in text.split(","):
        frames.update(parse_frame_span(part, option))
        if len(frames) > MAX_SELECTED_FRAMES:
            raise InputError(f"{option} {text!r}: more than {MAX_SELECTED_FRAMES} frames")
    return sorted(frames)
