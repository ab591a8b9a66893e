"""Video -> COCO throughput on real video (pets09-s2l1, faster_rcnn detections).

Side by side in one run, best of ``--repeats``:
  * decode only (colour + gray, as the dataset writer decodes);
  * ``flickermine mine --out`` from the detections file, JPEG writing included, for the default
    settings (seed rule, mode hn) and for a setting that keeps many frames (support rule, mode
    hn+hp with hard positives);
  * two one-minute videos (pets09 looped twice, re-encoded: 1590 frames, 63.6 s at 25 fps each; the
    795-frame original decodes in under half a second, so worker start-up would dominate) with
    ``--workers 1`` and ``--workers 2``, the order alternating per round; the scaling is the median
    of the rounds' ratios.

    python bench/bench_dataset.py [--repeats 3] [--loops 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import PETS_DETECTIONS as DETS
from _common import PETS_VIDEO as VIDEO
from _common import looped_pets_videos, print_table, write_json


def decode_only() -> tuple[int, float]:
    from flickermine.video import open_video

    start = time.perf_counter()
    frames = sum(1 for _ in open_video(VIDEO).frames(gray=True, color=True))
    return frames, time.perf_counter() - start


def mine(videos, dets_dir, out: Path, config, workers: int) -> tuple[dict, float]:
    from flickermine.runner._mine_run import run_mining

    shutil.rmtree(out, ignore_errors=True)
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    result = run_mining(videos, out, config, detections=dets_dir, workers=workers, progress=False, log=lambda _: None)
    seconds = time.perf_counter() - start
    stats = {"kept_frames": len(result.coco["images"]), "frames": sum(v["frames"] for v in result.videos),
             "cores_busy": (_cpu_seconds() - cpu_before) / seconds}
    return stats, seconds


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (worker processes), all threads."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loops", type=int, default=2, help="pets09 loops per video of the workers comparison")
    parser.add_argument("--json", help="output path (default bench/results/dataset.json)")
    args = parser.parse_args()
    if not VIDEO.exists():
        print(f"needs {VIDEO} (../shared/data)", file=sys.stderr)
        return 1
    from flickermine.dataset._writer import RunConfig

    configs = {
        "seed, hn (defaults)": RunConfig(rule="seed"),  # the recorded results are seed's (default rule now: support)
        "support, hn+hp": RunConfig(rule="support", mode="hn+hp"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos_dir = tmp / "videos"
        dets_dir = tmp / "dets"
        videos_dir.mkdir()
        dets_dir.mkdir()
        shutil.copy(VIDEO, videos_dir / "a.avi")
        shutil.copy(DETS, dets_dir / "a.txt")
        one = [videos_dir / "a.avi"]
        (tmp / "long").mkdir()
        long_videos, long_dets, long_frames = looped_pets_videos(tmp / "long", args.loops, 2)
        best: dict[str, float] = {}
        kept: dict[str, int] = {}
        worker_seconds: dict[int, list[float]] = {1: [], 2: []}
        cores_busy: dict[int, list[float]] = {1: [], 2: []}
        frames = 0
        for round_ in range(args.repeats):
            frames, seconds = decode_only()
            best["decode"] = min(best.get("decode", 1e9), seconds)
            for name, config in configs.items():
                stats, seconds = mine(one, dets_dir, tmp / "out", config, 1)
                best[name] = min(best.get(name, 1e9), seconds)
                kept[name] = stats["kept_frames"]
            for workers in ((1, 2) if round_ % 2 == 0 else (2, 1)):  # alternate: drift cancels
                stats, seconds = mine(long_videos, long_dets, tmp / "out", configs["seed, hn (defaults)"], workers)
                worker_seconds[workers].append(seconds)
                cores_busy[workers].append(stats["cores_busy"])
            print(f"round {round_ + 1}: workers 1 {worker_seconds[1][-1]:.2f} s, workers 2 "
                  f"{worker_seconds[2][-1]:.2f} s (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        for workers in (1, 2):
            best[f"two videos, workers {workers}"] = statistics.median(worker_seconds[workers])
    fps = {"decode": frames / best["decode"]}
    for name in configs:
        fps[name] = frames / best[name]
    for workers in (1, 2):
        fps[f"two videos, workers {workers}"] = 2 * long_frames / best[f"two videos, workers {workers}"]
    rows = [["decode only (colour + gray)", f"{fps['decode']:.0f}", "1.00", "-"]]
    for name in configs:
        rows.append([f"mine --out: {name}", f"{fps[name]:.0f}", f"{fps[name] / fps['decode']:.2f}", kept[name]])
    for workers in (1, 2):
        key = f"two videos, workers {workers}"
        rows.append([f"mine --out: {key} (2 x {long_frames} frames, median)", f"{fps[key]:.0f}", "-", "-"])
    print(f"pets09-s2l1 ({frames} frames, 768x576), faster_rcnn detections, JPEG writing included, best of {args.repeats}")
    print_table(["run", "frames/s", "x decode", "kept frames"], rows)
    ratio = fps["seed, hn (defaults)"] / fps["decode"]
    scaling = statistics.median(one_ / two for one_, two in zip(worker_seconds[1], worker_seconds[2]))
    print(f"target mining from files >= 0.7x decode: {'met' if ratio >= 0.7 else 'NOT met'} ({ratio:.2f}x)")
    print(f"target --workers 2 >= 1.6x one worker: {'met' if scaling >= 1.6 else 'NOT met'} ({scaling:.2f}x)")
    busy = {w: statistics.median(v) for w, v in cores_busy.items()}
    # One worker already overlaps decoding (its own thread, FFmpeg's threads) with mining, so it
    # keeps more than one core busy; N workers can at most scale by N cores / that.
    print(f"cores kept busy (CPU time / wall time, median): workers 1 {busy[1]:.2f}, workers 2 {busy[2]:.2f} "
          f"of {os.cpu_count()}; so workers 2 can be at most {os.cpu_count() / busy[1]:.2f}x one worker here")
    write_json("dataset", {"frames": frames, "frames_per_second": fps, "kept_frames": kept,
                           "mining_over_decode": ratio, "workers_2_over_1": scaling,
                           "workers_videos": {"count": 2, "frames_each": long_frames},
                           "workers_seconds": worker_seconds, "cores_busy": cores_busy,
                           "load_average_after": os.getloadavg()}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
