"""Reading and writing files: detections (MOTChallenge in :mod:`._mot`; the authors' text format
and JSON Lines in :mod:`._formats`), COCO files (:mod:`._coco`: :func:`load_coco` reads and
validates one) and ground truth (:mod:`._ground_truth`: :func:`coco_labelled_images`, the
:class:`LabelledImage` list that :func:`flickermine.train.train_hog_svm` takes)."""

from __future__ import annotations

from ._coco import CocoFormatError, load as load_coco
from ._formats import (
    FORMATS,
    AuthorsDetectionFile,
    AuthorsWriter,
    DetectionFormat,
    JsonlDetectionFile,
    JsonlWriter,
    convert,
    detect_format,
    open_detections,
    open_writer,
)
from ._ground_truth import LabelledImage, coco_labelled_images
from ._mot import DetectionFile, DetectionFileError, DetectionReader, MotWriter, write_mot

__all__ = [
    "FORMATS",
    "AuthorsDetectionFile",
    "AuthorsWriter",
    "CocoFormatError",
    "DetectionFile",
    "DetectionFileError",
    "DetectionFormat",
    "DetectionReader",
    "JsonlDetectionFile",
    "JsonlWriter",
    "LabelledImage",
    "MotWriter",
    "coco_labelled_images",
    "convert",
    "detect_format",
    "load_coco",
    "open_detections",
    "open_writer",
    "write_mot",
]
