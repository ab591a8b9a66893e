"""Labelled images: an image (read when needed) with its object boxes and ignore regions.

What training and evaluation take, whether the labels come from a COCO file or from a video's
MOT ground truth. Boxes are ``(N, 4)`` float64 ``x1, y1, x2, y2`` pixels.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Callable, Union

import cv2
import numpy as np

from . import _coco as coco_files
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


def read_gray(path: PathLike) -> np.ndarray:
    """An image file as ``(H, W)`` uint8 grayscale; :class:`InputError` naming it if unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        reason = "no such file" if not Path(path).exists() else "not a readable image"
        raise InputError(f"{path}: {reason}")
    return image


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
            functools.partial(read_gray, root / image["file_name"]),
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
