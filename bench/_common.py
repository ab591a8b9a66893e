"""Shared helpers of the benchmark scripts: timing, tables, JSON output, data paths."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"


def best_time(fn: Callable[[], object], repeats: int = 7, min_seconds: float = 0.05) -> float:
    """Best wall time of one call of ``fn`` over ``repeats`` rounds (each round loops until
    ``min_seconds`` to beat timer resolution): the least disturbed measurement."""
    fn()  # warm up (JIT, caches)
    best = float("inf")
    for _ in range(repeats):
        calls = 0
        start = time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / calls)
    return best


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def write_json(name: str, payload: dict, path: str | None = None) -> Path:
    out = Path(path) if path else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        **payload,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {out}")
    return out


PETS_VIDEO = SHARED_DATA / "pets09-s2l1" / "video.avi"
PETS_DETECTIONS = SHARED_DATA / "pets09-s2l1" / "det" / "faster_rcnn.txt"


def looped_pets_videos(folder: Path, loops: int, count: int, fps: float = 25.0) -> tuple[list[Path], Path, int]:
    """``count`` videos ``folder/cam<n>.mp4``, each pets09-s2l1 (795 frames, 768x576) looped
    ``loops`` times and re-encoded with cv2.VideoWriter (mp4v) at ``fps``, and ``folder/dets/``
    with the faster_rcnn detections replicated per loop under the same names.

    Returns ``(videos, detections folder, frames per video)``. The shared video decodes in under
    half a second: longer inputs keep process start-up out of throughput figures."""
    import shutil

    import cv2

    capture = cv2.VideoCapture(str(PETS_VIDEO))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    first = folder / "cam1.mp4"
    writer = cv2.VideoWriter(str(first), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0]))
    for _ in range(loops):
        for frame in frames:
            writer.write(frame)
    writer.release()
    lines = [line.split(",") for line in PETS_DETECTIONS.read_text().splitlines() if line.strip()]
    looped = [",".join([str(int(float(f[0])) + k * len(frames))] + f[1:]) for k in range(loops) for f in lines]
    dets = folder / "dets"
    dets.mkdir()
    videos = [first]
    for n in range(1, count + 1):
        if n > 1:
            videos.append(folder / f"cam{n}.mp4")
            shutil.copy(first, videos[-1])
        (dets / f"cam{n}.txt").write_text("\n".join(looped) + "\n")
    return videos, dets, len(frames) * loops
