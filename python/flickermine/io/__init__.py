"""Reading and writing files: detections (MOTChallenge in :mod:`.mot`; the authors' text format
and JSON Lines in :mod:`.formats`), COCO files (:mod:`.coco`) and ground truth (:mod:`.ground_truth`)."""

from __future__ import annotations

from . import coco, ground_truth
from .formats import (
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
from .mot import DetectionFile, DetectionFileError, DetectionReader, MotWriter, write_mot

__all__ = [
    "FORMATS",
    "AuthorsDetectionFile",
    "AuthorsWriter",
    "DetectionFile",
    "DetectionFileError",
    "DetectionFormat",
    "DetectionReader",
    "JsonlDetectionFile",
    "JsonlWriter",
    "MotWriter",
    "coco",
    "convert",
    "detect_format",
    "ground_truth",
    "open_detections",
    "open_writer",
    "write_mot",
]
