"""The Ray executor against the local one: four videos of a minute or more, 2 CPUs each way.

Inputs: pets09-s2l1 (795 frames, 768x576) looped ``--loops`` times and re-encoded with
cv2.VideoWriter at 25 fps (2 loops: 1590 frames, 63.6 s of video) into a temp folder, copied to
four videos, each with the faster_rcnn detections replicated per loop. Default mining settings.

Per round (``--rounds``, the order alternating; medians reported, the overhead as the median of
each round's Ray time over the same round's local time):
  * local: ``run_mining(workers=2)`` (spawned processes), no Ray running;
  * ray: a local Ray instance with 2 CPUs already running (``ray.init(num_cpus=2)``, its idle
    workers started, as on a cluster started with ``ray start``), then ``run_mining(executor="ray")``
    with one CPU per video: the time of the run itself;
  * ray, cold: ``run_mining(executor="ray")`` with no Ray running: it starts a local instance and
    shuts it down (a one-off cost per command, not per video).
Both executors' outputs are checked to be identical (JPEGs and shards, timings aside).

    python bench/bench_ray.py [--rounds 5] [--loops 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import looped_pets_videos, print_table, write_json

VIDEOS = 4
FPS = 25.0
CPUS = 2


def fingerprint(out: Path) -> str:
    """Hash of the JPEGs and shards (timings aside): equal for identical output."""
    digest = hashlib.sha256()
    for path in sorted(out.rglob("*")):
        if not path.is_file() or path.name in ("report.json", "annotations.json"):
            continue
        data = path.read_bytes()
        if path.parent.name == "shards":
            shard = json.loads(data)
            for key in ("seconds", "frames_per_second"):
                shard.pop(key)
            data = json.dumps(shard, sort_keys=True).encode()
        digest.update(str(path.relative_to(out)).encode() + b"\0" + data)
    return digest.hexdigest()


def timed_run(videos, dets, out: Path, **options) -> tuple[float, str]:
    from flickermine.dataset._writer import RunConfig
    from flickermine.runner._mine_run import run_mining

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = run_mining(videos, out, RunConfig(rule="seed"), detections=dets, progress=False, log=lambda _: None, **options)
    seconds = time.perf_counter() - start
    assert result.exit_code == 0, result.failed
    return seconds, fingerprint(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loops", type=int, default=2, help="pets09 loops per video (2: 63.6 s at 25 fps)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import ray

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        tmp = Path(tmp)
        videos, dets, frames_per_video = looped_pets_videos(tmp, args.loops, VIDEOS, FPS)
        total_frames = frames_per_video * VIDEOS
        print(f"{VIDEOS} videos x {frames_per_video} frames ({frames_per_video / FPS:.1f} s each), {CPUS} CPUs\n")
        times: dict[str, list[float]] = {"local": [], "ray": [], "ray_cold": []}
        prints = set()
        for round_ in range(args.rounds):
            if round_ % 2 == 0:  # local first in even rounds, after Ray in odd ones: drift cancels
                seconds, fp = timed_run(videos, dets, tmp / "out-local", workers=CPUS)
                times["local"].append(seconds)
                prints.add(fp)

            ray.init(address="local", num_cpus=CPUS, object_store_memory=128 * 1024**2, include_dashboard=False, logging_level="WARNING")
            try:
                noop = ray.remote(num_cpus=1)(lambda: None)
                ray.get([noop.remote() for _ in range(CPUS)])  # the idle workers are up, as on a running cluster
                seconds, fp = timed_run(videos, dets, tmp / "out-ray", executor="ray", cpus_per_video=1)
                times["ray"].append(seconds)
                prints.add(fp)
            finally:
                ray.shutdown()

            seconds, fp = timed_run(videos, dets, tmp / "out-ray-cold", executor="ray", cpus_per_video=1)
            times["ray_cold"].append(seconds)
            prints.add(fp)

            if round_ % 2 == 1:
                seconds, fp = timed_run(videos, dets, tmp / "out-local", workers=CPUS)
                times["local"].append(seconds)
                prints.add(fp)
            print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()) + f"  (load {os.getloadavg()[0]:.1f})")

    identical = len(prints) == 1
    median = {k: statistics.median(v) for k, v in times.items()}
    # each round's Ray time against the same round's local time, then the median: robust to the
    # load of other users of the machine drifting between rounds
    overhead = statistics.median(r / l for r, l in zip(times["ray"], times["local"])) - 1
    overhead_cold = statistics.median(r / l for r, l in zip(times["ray_cold"], times["local"])) - 1
    rows = [
        ["local, --workers 2", f"{median['local']:.2f}", f"{total_frames / median['local']:.0f}", "-"],
        ["ray, 2 CPUs, running cluster", f"{median['ray']:.2f}", f"{total_frames / median['ray']:.0f}", f"{overhead:+.1%}"],
        ["ray, 2 CPUs, local start incl.", f"{median['ray_cold']:.2f}", f"{total_frames / median['ray_cold']:.0f}", f"{overhead_cold:+.1%}"],
    ]
    print()
    print_table(["executor", "seconds (median)", "frames/s (median)", "time vs local (median of rounds)"], rows)
    print(f"\noutputs identical: {identical}; Ray overhead on a running cluster {overhead:+.1%} (target < 15%)")
    write_json(
        "ray",
        {
            "videos": VIDEOS,
            "frames_per_video": frames_per_video,
            "video_seconds": frames_per_video / FPS,
            "cpus": CPUS,
            "rounds": args.rounds,
            "seconds": times,
            "median_seconds": median,
            "frames_per_second": {k: total_frames / v for k, v in median.items()},
            "ray_overhead": overhead,
            "ray_overhead_with_local_start": overhead_cold,
            "target_overhead": 0.15,
            "outputs_identical": identical,
            "ray_version": ray.__version__,
            "load_average_after": os.getloadavg(),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
