"""Labelled frames of a video as a COCO dataset: what a detector is trained and tested on.

A video with MOTChallenge ground truth (pedestrian benchmarks, any sequence labelled with a MOT
tool) becomes ``OUT/images/<video>_<frame>.jpg`` plus ``OUT/annotations.json``, the layout
``flickermine train`` and ``flickermine evaluate`` read. Frames are decoded once, front to back,
and decoding stops after the last frame asked for.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn, Sequence, Union

import cv2
import numpy as np

from .._progress import progress_bar
from ..errors import InputError
from ..io import _coco as coco_files
from ..io._ground_truth import read_mot_boxes
from ..video import open_video

PathLike = Union[str, "os.PathLike[str]"]

#: JPEG quality of the written frames (OpenCV's default; visually lossless for training).
JPEG_QUALITY = 95


def write_labelled_frames(
    video: PathLike,
    ground_truth: PathLike,
    frames: Sequence[int],
    out: PathLike,
    category: str = "person",
    progress: bool = False,
) -> dict:
    """Write ``frames`` (1-based frame numbers, as in the ground truth) of ``video`` (a file or an
    image folder) under ``out`` with their MOT ``ground_truth`` boxes as a COCO file; returns it.

    Every frame asked for becomes an image, with or without boxes (a frame without boxes is a
    negative image). Ground-truth boxes are ``category`` annotations, as the file gives them (not
    clipped to the frame); rows flagged 0 become crowd annotations (``iscrowd: 1``), which
    training and evaluation treat as regions where a detection is neither right nor wrong.

    ``out`` must be new or an empty folder: nothing is overwritten. Any error (a frame past the
    video's end, an unreadable ground truth, a failed write) removes what this call wrote.
    """
    out = Path(out)
    wanted = sorted(set(int(f) for f in frames))
    if not wanted:
        raise InputError("no frames asked for")
    if wanted[0] < 1:
        raise InputError(f"frame numbers start at 1, got {wanted[0]}")
    if not category or not category.strip():
        raise InputError("category must be a non-empty name, e.g. person")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not an empty folder; pick a new --out (nothing is overwritten)")
    boxes, ignore = read_mot_boxes(ground_truth)
    source = open_video(video)
    if source.is_folder and source.frame_count is not None and wanted[-1] > source.frame_count:  # exact for folders
        _past_the_end(video, source.frame_count, wanted)

    made_out = not out.exists()
    images_dir = out / "images"
    coco: dict = {"images": [], "annotations": [], "categories": [{"id": 1, "name": category.strip()}]}
    try:
        images_dir.mkdir(parents=True)
        remaining = iter(wanted)
        target = next(remaining)
        with progress_bar(len(wanted), f"{source.name}: frames", enabled=progress) as bar:
            for number, frame in enumerate(source.frames(gray=False, color=True), start=1):
                if number < target:
                    continue
                name = f"images/{source.name}_{number:06d}.jpg"
                color = frame.color
                assert color is not None  # asked for: frames(color=True)
                if not cv2.imwrite(str(out / name), color, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                    raise OSError(f"{out / name}: could not be written")
                _add_image(coco, name, color.shape, boxes.get(number, _NONE), ignore.get(number, _NONE))
                bar.update(1)
                target = next(remaining, 0)
                if not target:
                    break
        if target:
            _past_the_end(video, source.decoded_frames or 0, wanted)
        coco_files.write(coco, out / "annotations.json")
    except BaseException:
        shutil.rmtree(out if made_out else images_dir, ignore_errors=True)
        raise
    return coco


_NONE = np.zeros((0, 4))


def _past_the_end(video: PathLike, length: int, wanted: Sequence[int]) -> NoReturn:
    first = next(f for f in wanted if f > length)
    raise InputError(f"{video}: has {length} frames, but frame {first} is asked for")


def _add_image(coco: dict, file_name: str, shape: tuple, objects: np.ndarray, crowds: np.ndarray) -> None:
    image_id = len(coco["images"]) + 1
    coco["images"].append({"id": image_id, "file_name": file_name, "width": int(shape[1]), "height": int(shape[0])})
    for crowd, group in ((0, objects), (1, crowds)):
        for x1, y1, x2, y2 in group.tolist():
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": crowd,
            })
