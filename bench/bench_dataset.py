"""Video -> COCO throughput on real video (pets09-s2l1, faster_rcnn detections).

Side by side in one run, best of ``--repeats``:
  * decode only (colour + gray, as the dataset writer decodes);
  * ``flickermine mine --out`` from the detections file, JPEG writing included, for the default
    settings (seed rule, mode hn) and for a setting that keeps many frames (support rule, mode
    hn+hp with hard positives);
  * two videos (pets09 twice) with ``--workers 1`` and ``--workers 2``.

    python bench/bench_dataset.py [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import SHARED_DATA, print_table, write_json

VIDEO = SHARED_DATA / "pets09-s2l1" / "video.avi"
DETS = SHARED_DATA / "pets09-s2l1" / "det" / "faster_rcnn.txt"


def decode_only() -> tuple[int, float]:
    from flickermine.video import open_video

    start = time.perf_counter()
    frames = sum(1 for _ in open_video(VIDEO).frames(gray=True, color=True))
    return frames, time.perf_counter() - start


def mine(videos, dets_dir, out: Path, config, workers: int) -> tuple[dict, float]:
    from flickermine.run import run_mining

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = run_mining(videos, out, config, detections=dets_dir, workers=workers, progress=False, log=lambda _: None)
    seconds = time.perf_counter() - start
    return {"kept_frames": len(result.coco["images"]), "frames": sum(v["frames"] for v in result.videos)}, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="output path (default bench/results/dataset.json)")
    args = parser.parse_args()
    if not VIDEO.exists():
        print(f"needs {VIDEO} (../shared/data)", file=sys.stderr)
        return 1
    from flickermine.dataset import RunConfig

    configs = {
        "seed, hn (defaults)": RunConfig(),
        "support, hn+hp": RunConfig(rule="support", mode="hn+hp"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos_dir = tmp / "videos"
        dets_dir = tmp / "dets"
        videos_dir.mkdir()
        dets_dir.mkdir()
        for name in ("a", "b"):
            shutil.copy(VIDEO, videos_dir / f"{name}.avi")
            shutil.copy(DETS, dets_dir / f"{name}.txt")
        one = [videos_dir / "a.avi"]
        two = [videos_dir / "a.avi", videos_dir / "b.avi"]
        best: dict[str, float] = {}
        kept: dict[str, int] = {}
        frames = 0
        for _ in range(args.repeats):
            frames, seconds = decode_only()
            best["decode"] = min(best.get("decode", 1e9), seconds)
            for name, config in configs.items():
                stats, seconds = mine(one, dets_dir, tmp / "out", config, 1)
                best[name] = min(best.get(name, 1e9), seconds)
                kept[name] = stats["kept_frames"]
            for workers in (1, 2):
                _, seconds = mine(two, dets_dir, tmp / "out", configs["seed, hn (defaults)"], workers)
                best[f"two videos, workers {workers}"] = min(best.get(f"two videos, workers {workers}", 1e9), seconds)
    fps = {"decode": frames / best["decode"]}
    for name in configs:
        fps[name] = frames / best[name]
    for workers in (1, 2):
        fps[f"two videos, workers {workers}"] = 2 * frames / best[f"two videos, workers {workers}"]
    rows = [["decode only (colour + gray)", f"{fps['decode']:.0f}", "1.00", "-"]]
    for name in configs:
        rows.append([f"mine --out: {name}", f"{fps[name]:.0f}", f"{fps[name] / fps['decode']:.2f}", kept[name]])
    for workers in (1, 2):
        key = f"two videos, workers {workers}"
        rows.append([f"mine --out: {key}", f"{fps[key]:.0f}", f"{fps[key] / fps['decode']:.2f}", "-"])
    print(f"pets09-s2l1 ({frames} frames, 768x576), faster_rcnn detections, JPEG writing included, best of {args.repeats}")
    print_table(["run", "frames/s", "x decode", "kept frames"], rows)
    ratio = fps["seed, hn (defaults)"] / fps["decode"]
    scaling = fps["two videos, workers 2"] / fps["two videos, workers 1"]
    print(f"target mining from files >= 0.7x decode: {'met' if ratio >= 0.7 else 'NOT met'} ({ratio:.2f}x)")
    print(f"target --workers 2 >= 1.6x one worker: {'met' if scaling >= 1.6 else 'NOT met'} ({scaling:.2f}x)")
    write_json("dataset", {"frames": frames, "frames_per_second": fps, "kept_frames": kept,
                           "mining_over_decode": ratio, "workers_2_over_1": scaling}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
