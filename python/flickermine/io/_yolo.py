"""A mined dataset in Ultralytics' YOLO layout (``flickermine export DIR --to yolo --out YOLO_DIR``).

What :func:`export_yolo` writes::

    YOLO_DIR/images/<name>.jpg     a copy of each image of DIR/annotations.json (hard links with
                                   ``link=True``); <name> is its file_name below ``images/`` with
                                   "/" made "_" (``images/video/000010.jpg`` -> ``video_000010.jpg``)
    YOLO_DIR/labels/<name>.txt     one line per box: ``class x_center y_center width height``, each
                                   normalised to [0, 1] by the image's size; EMPTY for a background
                                   image (a frame kept for its hard negatives alone, no label)
    YOLO_DIR/data.yaml             ``path`` (YOLO_DIR, absolute), ``train`` and ``val`` (both
                                   ``images``: one split), ``nc`` and ``names`` (class index ->
                                   category name)

Classes are the COCO categories in order of their ids, numbered from 0. The hard negatives a mined
image lists (``hard_negatives``) are not boxes: YOLO learns them as background, which is what
they are. Boxes are clipped to their image; a box left with no area is dropped, and counted.
Crowd annotations (``iscrowd`` 1) are skipped, as Ultralytics' own COCO converter does.

The folder is written beside its target under a temporary name and renamed into place at the
end: an existing non-empty ``YOLO_DIR`` is refused (:class:`~flickermine.errors.InputError`),
nothing in it overwritten, and a failed export leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Union

from ..errors import InputError
from . import _coco as coco_io

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["YoloExport", "export_yolo", "yolo_line", "data_yaml"]


@dataclasses.dataclass(frozen=True)
class YoloExport:
    """What :func:`export_yolo` wrote."""

    out: Path
    images: int  #: images (and label files) written
    boxes: int  #: label lines written
    backgrounds: int  #: images with an empty label file
    names: dict  #: {class index: category name}
    dropped: int = 0  #: boxes with no area left inside their image
    crowd: int = 0  #: crowd annotations skipped

    def line(self) -> str:
        extra = ""
        if self.dropped:
            extra += f", {self.dropped} boxes outside their image dropped"
        if self.crowd:
            extra += f", {self.crowd} crowd annotations skipped"
        return (
            f"{self.images} images ({self.backgrounds} background, empty label files), {self.boxes} boxes, "
            f"{len(self.names)} classes{extra} written to {self.out} (data.yaml)"
        )


def yolo_line(class_index: int, bbox: list, width: float, height: float) -> str | None:
    """The label line of a COCO ``bbox`` ``[x, y, w, h]`` pixels in a ``width`` x ``height``
    image, clipped to it; None when nothing of the box is inside."""
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if not (x2 > x1 and y2 > y1):
        return None
    values = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
    return f"{class_index} " + " ".join(f"{min(max(v, 0.0), 1.0):.6f}" for v in values)


def _yaml_string(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is valid YAML)."""
    return json.dumps(str(text), ensure_ascii=False)


def data_yaml(path: Path, names: dict, source: str | None = None) -> str:
    """The text of ``data.yaml`` (written by hand: no YAML library needed)."""
    lines = []
    if source:
        lines.append(f"# written by flickermine export from {source}".replace("\n", " "))
    lines += [
        f"path: {_yaml_string(str(path))}",
        "train: images",
        "val: images  # one split: the mined images; split them yourself for a held-out val",
        f"nc: {len(names)}",
        "names:",
    ]
    lines += [f"  {index}: {_yaml_string(name)}" for index, name in sorted(names.items())]
    return "\n".join(lines) + "\n"


def _target_name(file_name: str, taken: set[str]) -> str:
    """A flat, unused image name for ``file_name`` (unique by stem: labels pair with images by stem)."""
    parts = PurePosixPath(file_name.replace("\\", "/")).parts
    if len(parts) > 1 and parts[0] == "images":
        parts = parts[1:]
    name = "_".join(parts)
    stem, suffix = os.path.splitext(name)
    candidate, n = stem, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{stem}_{n}"
    taken.add(candidate.lower())
    return candidate + suffix


def _check_out(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise InputError(f"--out {out} exists and is not a folder; pick another --out")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"--out {out} exists and is not empty; pick another --out or delete it (nothing was written)")


def export_yolo(dataset: PathLike, out: PathLike, link: bool = False) -> YoloExport:
    """Write the mined dataset folder ``dataset`` (its ``annotations.json`` and images) to ``out``
    in Ultralytics' YOLO layout; see the module docstring. ``link=True`` hard-links the images
    (a copy where the file system cannot)."""
    dataset, out = Path(dataset), Path(out)
    annotations_file = dataset / "annotations.json"
    if not annotations_file.is_file():
        raise InputError(f"{dataset}: no annotations.json; give a folder written by `flickermine mine --out`")
    _check_out(out)
    coco = coco_io.load(annotations_file)

    categories = sorted(coco.get("categories") or [], key=lambda c: c["id"])
    index_of = {c["id"]: i for i, c in enumerate(categories)}
    names = {i: str(c.get("name", c["id"])) for i, c in enumerate(categories)}
    by_image: dict = {}
    for annotation in coco.get("annotations") or []:
        by_image.setdefault(annotation["image_id"], []).append(annotation)

    # Every check before anything is written.
    root = dataset.resolve()
    plan = []
    taken: set[str] = set()
    missing = []
    for image in coco["images"]:
        file_name = str(image["file_name"])
        source = (dataset / file_name).resolve()
        if not source.is_relative_to(root):
            raise InputError(f"{annotations_file}: image {image['id']} file_name {file_name!r} points outside {dataset}")
        if not source.is_file():
            missing.append(file_name)
            continue
        width, height = image.get("width"), image.get("height")
        if not (isinstance(width, (int, float)) and isinstance(height, (int, float)) and width > 0 and height > 0):
            raise InputError(f"{annotations_file}: image {image['id']} ({file_name}) has no positive width and height")
        for annotation in by_image.get(image["id"], []):
            if annotation["category_id"] not in index_of:
                raise InputError(
                    f"{annotations_file}: annotation {annotation['id']} has category_id {annotation['category_id']}, "
                    "not one of its categories"
                )
        plan.append((image, source, _target_name(file_name, taken)))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"{dataset}: {len(missing)} images of annotations.json are missing: {shown}")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp"
    boxes = backgrounds = dropped = crowd = 0
    try:
        (staging / "images").mkdir(parents=True)
        (staging / "labels").mkdir()
        for image, source, name in plan:
            target = staging / "images" / name
            if link:
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copy2(source, target)
            else:
                shutil.copy2(source, target)
            lines = []
            for annotation in by_image.get(image["id"], []):
                if annotation.get("iscrowd"):
                    crowd += 1
                    continue
                line = yolo_line(index_of[annotation["category_id"]], annotation["bbox"], image["width"], image["height"])
                if line is None:
                    dropped += 1
                else:
                    lines.append(line)
            boxes += len(lines)
            backgrounds += not lines
            (staging / "labels" / (os.path.splitext(name)[0] + ".txt")).write_text("".join(f"{line}\n" for line in lines))
        (staging / "data.yaml").write_text(data_yaml(out.resolve(), names, str(dataset)), encoding="utf-8")
        _check_out(out)  # again: something may have appeared there meanwhile
        if out.is_dir():
            out.rmdir()  # empty: replaced by the staged folder
        os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return YoloExport(out, len(plan), boxes, backgrounds, names, dropped, crowd)
