"""What a run's inputs name: videos (files, image folders, folders of videos, globs, lists of
them), their unique output names, and each video's detections file."""

from __future__ import annotations

import collections
import glob
import os
from pathlib import Path
from typing import Sequence

from ..errors import InputError
from ..video import IMAGE_EXTENSIONS

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts")
LIST_EXTENSIONS = (".lst", ".list", ".txt")
DETECTION_EXTENSIONS = (".txt", ".jsonl", ".det")


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir() if p.is_file())


def _expand_folder(folder: Path) -> list[Path]:
    if _has_images(folder):
        return [folder]
    found: list[Path] = []
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if child.is_dir():
            found += _expand_folder(child)
        elif child.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(child)
    return found


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Videos named by ``inputs``: video files, image folders (one video each), folders of videos
    (searched recursively), glob patterns, and text files listing any of these one a line
    (relative to the list's folder; ``#`` comments). Order is kept; duplicates are dropped."""
    videos: list[Path] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if any(c in text for c in "*?[") and not path.exists():
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise FileNotFoundError(f"{text}: the pattern matches nothing")
            videos += expand_inputs(matches)
        elif path.is_dir():
            found = _expand_folder(path)
            if not found:
                raise FileNotFoundError(f"{path}: the folder holds no videos and no images")
            videos += found
        elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
            lines = [line.strip() for line in path.read_text().splitlines()]
            entries = [str(path.parent / line) for line in lines if line and not line.startswith("#")]
            if not entries:
                raise FileNotFoundError(f"{path}: the list names no videos")
            videos += expand_inputs(entries)
        else:
            videos.append(path)  # a video file, or a missing one: reported when opened
    # Named by the path given (a link keeps its own name, which its detections file carries),
    # de-duplicated by what it points to (the same video listed twice is mined once).
    unique: dict[Path, Path] = {}
    for video in videos:
        unique.setdefault(video.resolve() if video.exists() else video, Path(os.path.abspath(video)))
    return list(unique.values())


def video_keys(videos: Sequence[Path]) -> list[str]:
    """Unique names for output folders: the video's name (file stem, or image folder's name),
    prefixed with parent folder names where two videos would share one."""

    def name(path: Path, depth: int) -> str:
        if path.name.lower() in {"img", "img1", "images", "imgs", "frames", "jpegimages"}:
            path = path.parent
        parts = list(path.parts)
        base = path.stem if path.suffix.lower() in VIDEO_EXTENSIONS else path.name
        prefix = [p for p in parts[-1 - depth : -1]] if depth else []
        return "-".join(prefix + [base]).replace(os.sep, "-")

    depth = [0] * len(videos)
    while True:
        keys = [name(v, d) for v, d in zip(videos, depth)]
        counts = collections.Counter(keys)
        clashing = [i for i, k in enumerate(keys) if counts[k] > 1]
        if not clashing:
            return keys
        progressed = False
        for i in clashing:
            if depth[i] < len(videos[i].parts) - 1:
                depth[i] += 1
                progressed = True
        if not progressed:
            return [f"{k}-{i + 1}" for i, k in enumerate(keys)]


def find_detections(video: Path, key: str, detections: str | os.PathLike | None, single: bool) -> Path:
    """The detections file of ``video``: ``detections`` itself when it is a file (one video),
    else ``detections/<key>.<ext>`` or ``detections/<video name>.<ext>``."""
    if detections is None:
        raise InputError("give --detections (a file or folder) or --detector")
    where = Path(detections)
    if where.is_file():
        if not single:
            raise InputError(f"--detections {where} is one file but {key} is one of several videos; pass a folder")
        return where
    if not where.is_dir():
        raise FileNotFoundError(f"--detections {where}: no such file or folder")
    names = [key, video.stem if video.is_file() else video.name]
    for name in names:
        for ext in DETECTION_EXTENSIONS:
            candidate = where / f"{name}{ext}"
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"no detections for video {video} in {where}: expected {where / (key + '.txt')} (or .jsonl)"
    )
