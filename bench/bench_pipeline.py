"""Whole-pipeline throughput and memory on real video (pets09-s2l1, faster_rcnn detections).

Side by side in one run, best of ``--repeats`` alternating rounds:
  * decode only: the miner's own decoder (background thread, grayscale), nothing else;
  * mining, seed rule, ``cpp`` backend with the IoU-first shortcut (decode included, verdict CSV written);
  * mining, seed rule, ``opencv`` backend without the shortcut (the authors' algorithm);
  * peak memory (max RSS of a fresh process) mining the video once and looped 10 times.

    python bench/bench_pipeline.py [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED_DATA, print_table, write_json

VIDEO = SHARED_DATA / "pets09-s2l1" / "video.avi"
DETS = SHARED_DATA / "pets09-s2l1" / "det" / "faster_rcnn.txt"

# Run in a child process so that its peak RSS is its own.
MEMORY_CHILD = r"""
import json, resource, sys, time
from flickermine import Miner, MiningParams
from flickermine.io.mot import DetectionFile
from flickermine.video import open_video
video, dets, loops, backend = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
miner = Miner(MiningParams(), "seed", backend)
frames = hard = 0
start = time.perf_counter()
for _ in range(loops):  # the video looped: decoded again from the start, in order, each time
    source = open_video(video)
    per_frame = DetectionFile(dets, frame_count=source.frame_count).detections(source.frame_count)
    for frame, found in zip(source.frames(gray=True), per_frame):
        for v in miner.push(frame.gray, found):
            hard += int(v.hard_negatives.sum())
        frames += 1
for v in miner.finish():
    hard += int(v.hard_negatives.sum())
print(json.dumps({"frames": frames, "hard_negatives": hard, "seconds": time.perf_counter() - start,
                  "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def decode_only() -> tuple[int, float]:
    from flickermine.video import open_video

    start = time.perf_counter()
    source = open_video(VIDEO)
    frames = sum(1 for _ in source.frames(gray=True))
    return frames, time.perf_counter() - start


def mine(backend: str, iou_first: bool, csv_path: Path) -> tuple[int, int, float]:
    from flickermine.runner.pipeline import mine_video

    start = time.perf_counter()
    summary = mine_video(VIDEO, DETS, backend=backend, iou_first=iou_first, verdicts_csv=csv_path)
    return summary.frames, summary.hard_negatives, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loops", type=int, default=10, help="how many times the video is looped for the memory test")
    parser.add_argument("--json", help="output path (default bench/results/pipeline.json)")
    args = parser.parse_args()
    if not VIDEO.exists():
        print(f"needs {VIDEO} (../shared/data)", file=sys.stderr)
        return 1

    best = {"decode": float("inf"), "cpp": float("inf"), "opencv_no_shortcut": float("inf")}
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            frames, seconds = decode_only()
            best["decode"] = min(best["decode"], seconds)
            counts["frames"] = frames
            frames, hard, seconds = mine("cpp", True, Path(tmp) / "cpp.csv")
            best["cpp"] = min(best["cpp"], seconds)
            counts["hard_negatives_cpp"] = hard
            frames, hard, seconds = mine("opencv", False, Path(tmp) / "opencv.csv")
            best["opencv_no_shortcut"] = min(best["opencv_no_shortcut"], seconds)
            counts["hard_negatives_opencv"] = hard

    fps = {k: counts["frames"] / v for k, v in best.items()}
    rows = [
        ["decode only", f"{fps['decode']:.0f}", "1.00", "-"],
        ["mine: cpp, IoU first", f"{fps['cpp']:.0f}", f"{fps['cpp'] / fps['decode']:.2f}", counts["hard_negatives_cpp"]],
        [
            "mine: opencv, no shortcut (authors')",
            f"{fps['opencv_no_shortcut']:.0f}",
            f"{fps['opencv_no_shortcut'] / fps['decode']:.2f}",
            counts["hard_negatives_opencv"],
        ],
    ]
    print(f"pets09-s2l1 ({counts['frames']} frames, 768x576), faster_rcnn detections, seed rule, best of {args.repeats}")
    print_table(["run", "frames/s", "x decode", "hard negatives"], rows)
    ratio = fps["cpp"] / fps["decode"]
    print(f"target mining >= 0.8x decode: {'met' if ratio >= 0.8 else 'NOT met'} ({ratio:.2f}x)")

    memory = {}
    for loops in (1, args.loops):
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(VIDEO), str(DETS), str(loops), "cpp"],
            capture_output=True, text=True, check=True,
        )
        memory[loops] = json.loads(out.stdout.strip().splitlines()[-1])
    print()
    print_table(
        ["input", "frames", "hard negatives", "peak RSS MiB"],
        [[f"video x{n}", m["frames"], m["hard_negatives"], f"{m['max_rss_mib']:.1f}"] for n, m in memory.items()],
    )
    growth = memory[args.loops]["max_rss_mib"] / memory[1]["max_rss_mib"]
    print(f"target peak memory x{args.loops} input <= 1.1x one pass: {'met' if growth <= 1.1 else 'NOT met'} ({growth:.3f}x)")
    write_json(
        "pipeline",
        {
            "video": str(VIDEO.name),
            "frames": counts["frames"],
            "frames_per_second": fps,
            "mining_over_decode": ratio,
            "opencv_no_shortcut_over_decode": fps["opencv_no_shortcut"] / fps["decode"],
            "hard_negatives": {"cpp": counts["hard_negatives_cpp"], "opencv_no_shortcut": counts["hard_negatives_opencv"]},
            "memory": {str(k): v for k, v in memory.items()},
            "memory_growth": growth,
        },
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
