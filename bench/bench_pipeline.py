"""Mining speed relative to decoding, on real video (pets09-s2l1, 795 frames 768x576, MP43 AVI),
for every rule at the real Faster R-CNN detections (5.2 candidates a frame) and at denser files.

Each setting (rule x detections) runs ``--pairs`` interleaved pairs: a decode-only run, then a
mining run over the same frames, then the next pair. The figure is mine frames/s / decode frames/s
of each pair (= decode seconds / mine seconds), reported as median [min-max] over the pairs; no
best-of-N. Both runs of a pair decode the same first ``--frames`` frames with the miner's own
decoder (background thread, grayscale):

  * decode only: ``open_video(...).frames(gray=True)``, nothing else;
  * mine: what ``flickermine mine VIDEO --detections DETS --verdicts CSV --rule R`` runs (no images
    written): the detections file read along, ``runner._loop.mine_stream`` with one ``Miner``
    (``--backend``, default cpp; IoU-first shortcut on), every verdict row written to a CSV by
    ``runner._pipeline.VerdictWriter`` (``mine_video``'s loop, stopped after ``--frames`` frames).

The real file has 5.2 candidates (detections with score >= 0.8, the only ones the miner uses) a
frame, 5.5 detections. Denser files (10, 20, 50 candidates a frame on average) are made from the
real candidates: each extra "layer" is all of them shifted in time (frame f gets the boxes of frame f + t, t drawn
per layer, wrapping at the end), moved by one offset per layer (up to +-150 px in x and y) plus a
per-box jitter (normal, sigma 2 px), clamped inside the image, scores unchanged; the last layer
is thinned at random to the exact mean. So extra boxes have real sizes, scores and motion (they
move like the people they were copied from) but sit mostly on background. All draws come from
``numpy.random.default_rng(--seed)``.

The authors' algorithm (``--authors-frames``, first 100 frames by default, seed rule, real
detections): their public miner, for every frame holding a candidate, seeks the video to the
window's first frame (``cap.set(cv2.CAP_PROP_POS_FRAMES, f - window)``), re-reads the 2 * window + 1
frames of the window (grayscale here), and runs cv2.matchTemplate (TM_CCOEFF_NORMED) for each
candidate in each neighbour frame holding a candidate, partners tested frame by frame (no IoU-first
shortcut): ``rules.seed_verdicts(..., opencv_backend.ncc_search_batch, iou_first=False)``. It runs
in interleaved triples (decode only, flickermine seed rule, authors' algorithm) over the same
frames: its mine/decode ratio and flickermine's speedup over it (authors' seconds / flickermine's).

Then peak memory (max RSS of a fresh process) mining the video once and looped ``--loops`` times.

    python bench/bench_pipeline.py [--frames N] [--pairs K] [--rules seed,tracklet,support]
        [--densities real,10,20,50] [--authors-frames 100] [--backend cpp] [--json PATH]

By default every setting mines the whole video (795 frames); the whole run takes 4-7 minutes
on 2 cores (4.3 at load average 2-4, 7.2 at 4-7). ``--frames N`` mines the first N frames of every setting, ``--pairs K``
runs K pairs: ``--frames 100 --pairs 2`` is a quick look.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import SHARED_DATA, print_table, write_json

VIDEO = SHARED_DATA / "pets09-s2l1" / "video.avi"
DETS = SHARED_DATA / "pets09-s2l1" / "det" / "faster_rcnn.txt"
RULES = ("seed", "tracklet", "support")

# Run in a child process so that its peak RSS is its own.
MEMORY_CHILD = r"""
import json, resource, sys, time
from flickermine import Miner, MiningParams
from flickermine.io._mot import DetectionFile
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


# --------------------------------------------------------------------------------------------
# Detection files
# --------------------------------------------------------------------------------------------


def read_mot(path: Path) -> np.ndarray:
    """MOT rows as a float array (frame, id, x, y, w, h, score, ...)."""
    return np.array([[float(v) for v in line.split(",")] for line in path.read_text().splitlines() if line.strip()])


def densify(rows: np.ndarray, per_frame: float, num_frames: int, width: int, height: int, seed: int,
            threshold: float = 0.8) -> np.ndarray:
    """``rows`` plus extra layers (see the module docstring) of its candidates (score >=
    ``threshold``: the boxes the miner uses) up to ``per_frame`` candidates a frame on average."""
    rng = np.random.default_rng(seed)
    candidates = rows[rows[:, 6] >= threshold]
    wanted = int(round(per_frame * num_frames)) - len(candidates)
    layers = [rows]
    while wanted > 0:
        shift = int(rng.integers(1, num_frames))
        dx, dy = rng.uniform(-150, 150, size=2)
        layer = candidates.copy()
        layer[:, 0] = (layer[:, 0] - 1 + shift) % num_frames + 1
        layer[:, 2] = np.clip(layer[:, 2] + dx + rng.normal(0, 2, len(layer)), 0, width - layer[:, 4])
        layer[:, 3] = np.clip(layer[:, 3] + dy + rng.normal(0, 2, len(layer)), 0, height - layer[:, 5])
        if len(layer) > wanted:
            layer = layer[np.sort(rng.choice(len(layer), wanted, replace=False))]
        layers.append(layer)
        wanted -= len(layer)
    dense = np.concatenate(layers)
    return dense[np.argsort(dense[:, 0], kind="stable")]


def write_mot(rows: np.ndarray, path: Path) -> Path:
    with open(path, "w") as out:
        for r in rows:
            out.write(f"{int(r[0])},-1,{r[2]:.3f},{r[3]:.3f},{r[4]:.3f},{r[5]:.3f},{r[6]:.6f},-1,-1,-1\n")
    return path


# --------------------------------------------------------------------------------------------
# Timed runs
# --------------------------------------------------------------------------------------------


DECODE_CORES: list[float] = []  # CPU seconds / wall seconds of every decode-only run


def decode_only(frames: int) -> tuple[int, float]:
    from flickermine.video import open_video

    start, cpu = time.perf_counter(), time.process_time()
    source = open_video(VIDEO)
    with contextlib.closing(source.frames(gray=True)) as decoded:
        count = sum(1 for _ in itertools.islice(decoded, frames))
    seconds = time.perf_counter() - start
    DECODE_CORES.append((time.process_time() - cpu) / seconds)
    return count, seconds


def mine(dets: Path, rule: str, backend: str, frames: int, csv_path: Path) -> tuple[int, int, float]:
    """``mine --verdicts`` on the first ``frames`` frames: (frames, hard negatives, seconds)."""
    from flickermine import Miner, MiningParams
    from flickermine.detect._detections import Detections
    from flickermine.io._formats import open_detections
    from flickermine.runner._loop import mine_stream
    from flickermine.runner._pipeline import VerdictWriter
    from flickermine.video import open_video

    start = time.perf_counter()
    source = open_video(VIDEO)
    reader = open_detections(dets, frame_count=source.frame_count, width=source.width, height=source.height)
    miner = Miner(MiningParams(), rule, backend, iou_first=True)
    per_frame = reader.detections(source.frame_count)
    count = hard = 0
    with contextlib.closing(source.frames(gray=True)) as decoded, open(csv_path, "w", newline="") as out:
        pairs = ((frame, next(per_frame, None) or Detections.empty()) for frame in itertools.islice(decoded, frames))
        writer = VerdictWriter(out)
        for step in mine_stream(source, pairs, [miner]):
            count += step.frame is not None
            for verdicts in step.verdicts[0]:
                hard += int(verdicts.hard_negatives.sum())
                writer.write(verdicts)
    return count, hard, time.perf_counter() - start


def authors_mine(dets: Path, frames: int) -> tuple[int, int, float, float]:
    """The authors' access pattern (module docstring): (frames judged, hard negatives, seconds,
    seconds spent seeking and re-reading)."""
    import cv2

    from flickermine import MiningParams
    from flickermine.mining import _rules as rules
    from flickermine.mining._backends import opencv_backend

    params = MiningParams()
    start = time.perf_counter()
    rows = read_mot(dets)
    cap = cv2.VideoCapture(str(VIDEO))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    boxes, scores = [], []
    for f in range(total):
        r = rows[(rows[:, 0] == f + 1) & (rows[:, 6] >= params.score_threshold)]
        boxes.append(np.concatenate([r[:, 2:4], r[:, 2:4] + r[:, 4:6]], axis=1))
        scores.append(r[:, 6])
    hard, seek_read = 0, 0.0
    for f in range(min(frames, total)):
        if not len(boxes[f]):
            continue
        lo, hi = max(0, f - params.window), min(total - 1, f + params.window)
        reading = time.perf_counter()
        cap.set(cv2.CAP_PROP_POS_FRAMES, lo)
        window = []
        for _ in range(lo, hi + 1):
            ok, image = cap.read()
            if not ok:
                break
            window.append(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        seek_read += time.perf_counter() - reading
        reasons = rules.seed_verdicts(
            window, boxes[lo : lo + len(window)], scores[f], f - lo, params, opencv_backend.ncc_search_batch, iou_first=False
        )
        hard += int((reasons == 0).sum())
    cap.release()
    return min(frames, total), hard, time.perf_counter() - start, seek_read


def rules_alone(dets: Path, rule: str, frames: int, thread_counts: list[int], pairs: int) -> dict[int, list[float]]:
    """ms a frame of the cpp rules alone (frames decoded beforehand, no decoding running), for each
    thread count, interleaved over ``pairs`` rounds: how the rules scale where cores are free."""
    from flickermine import MiningParams
    from flickermine.io._formats import open_detections
    from flickermine.mining import set_num_threads
    from flickermine.mining._backends import cpp_backend
    from flickermine.mining._params import Rule
    from flickermine.video import open_video

    params = MiningParams()
    source = open_video(VIDEO)
    with contextlib.closing(source.frames(gray=True)) as decoded:
        gray = [f.gray for f in itertools.islice(decoded, frames)]
    reader = open_detections(dets, frame_count=source.frame_count, width=source.width, height=source.height)
    found = list(itertools.islice(reader.detections(source.frame_count), len(gray)))
    keep = [d.scores >= params.score_threshold for d in found]
    boxes = [d.boxes[k] for d, k in zip(found, keep)]
    scores = [d.scores[k] for d, k in zip(found, keep)]
    times: dict[int, list[float]] = {n: [] for n in thread_counts}
    previous = set_num_threads(thread_counts[0])
    try:
        for _ in range(pairs):
            for n in thread_counts:
                set_num_threads(n)
                start = time.perf_counter()
                for c in range(len(gray)):
                    lo, hi = max(0, c - params.window), min(len(gray) - 1, c + params.window)
                    if len(boxes[c]):
                        cpp_backend.frame_verdicts(gray[lo : hi + 1], boxes[lo : hi + 1], scores[c], c - lo, params, Rule(rule))
                times[n].append((time.perf_counter() - start) * 1000 / len(gray))
    finally:
        set_num_threads(previous)
    return times


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def fmt(s: dict, digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, help="mine the first N frames in every setting (default: all)")
    parser.add_argument("--pairs", type=int, default=5, help="interleaved decode/mine pairs per setting (default 5)")
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--densities", default="real,10,20,50", help="'real' and/or mean candidates (score >= 0.8) a frame")
    parser.add_argument("--backend", default="cpp")
    parser.add_argument("--authors-frames", type=int, default=100, help="frames for the authors' algorithm (0: skip)")
    parser.add_argument("--loops", type=int, default=10, help="how many times the video is looped for the memory test (0: skip)")
    parser.add_argument("--seed", type=int, default=0, help="RNG seed of the extra boxes")
    parser.add_argument("--scaling", default="1,2",
                        help="thread counts for the rules-alone timing (support rule, first 300 frames; '' to skip)")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads the cpp rules spread a frame's detections over (flickermine.mining.set_num_threads; "
                             "default 0: the library's default, cores - 1)")
    parser.add_argument("--json", help="output path (default bench/results/pipeline.json)")
    args = parser.parse_args()
    if not VIDEO.exists():
        print(f"needs {VIDEO} (../shared/data)", file=sys.stderr)
        return 1
    import cv2

    from flickermine import get_backend

    from flickermine.mining import set_num_threads

    backend = get_backend(args.backend).NAME
    set_num_threads(args.threads)
    from flickermine import _core

    rule_threads = _core.num_threads()  # what the setting resolved to (0: the default)
    cap = cv2.VideoCapture(str(VIDEO))
    total, width, height = (int(cap.get(p)) for p in (cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    rules = args.rules.split(",")
    load_start = loadavg()
    began = time.perf_counter()
    real = read_mot(DETS)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for density in args.densities.split(","):
            if density == "real":
                files[density] = DETS
            else:
                files[density] = write_mot(densify(real, float(density), total, width, height, args.seed), Path(tmp) / f"dets{density}.txt")
        decode_only(total)  # the file in the page cache before anything is timed
        for density, dets in files.items():
            frames = min(args.frames, total) if args.frames else total
            rows = read_mot(dets)
            in_frames = rows[rows[:, 0] <= frames]
            per_frame = len(in_frames) / frames
            candidates = float((in_frames[:, 6] >= 0.8).sum()) / frames
            for rule in rules:
                ratios, mine_fps, decode_fps, hard = [], [], [], set()
                for _ in range(args.pairs):
                    n, t_decode = decode_only(frames)
                    m, h, t_mine = mine(dets, rule, backend, frames, Path(tmp) / "verdicts.csv")
                    assert n == m == frames, (n, m, frames)
                    ratios.append(t_decode / t_mine)
                    decode_fps.append(n / t_decode)
                    mine_fps.append(m / t_mine)
                    hard.add(h)
                row = {
                    "detections": density, "detections_per_frame": per_frame, "candidates_per_frame": candidates,
                    "rule": rule, "frames": frames, "pairs": args.pairs, "hard_negatives": sorted(hard),
                    "mine_over_decode": spread(ratios), "mine_fps": spread(mine_fps), "decode_fps": spread(decode_fps),
                }
                results.append(row)
                print(f"  {density:>4} {rule:>8}: {fmt(row['mine_over_decode'], 3)}  ({statistics.median(mine_fps):.0f} frames/s, load {loadavg()[0]})", file=sys.stderr, flush=True)

        scaling = []
        counts = [int(n) for n in args.scaling.split(",") if n]
        if counts and backend == "cpp":
            for density, dets in files.items():
                times = rules_alone(dets, "support", min(300, args.frames or total), counts, args.pairs)
                scaling.append({"detections": density, "rule": "support", "frames": min(300, args.frames or total),
                                "ms_per_frame": {str(n): spread(v) for n, v in times.items()}})

        authors = None
        if args.authors_frames > 0:
            frames = min(args.authors_frames, total)
            t: dict[str, list[float]] = {"decode": [], "flickermine": [], "authors": [], "seek_read_share": []}
            hard = {"flickermine": set(), "authors": set()}
            for _ in range(args.pairs):
                n, seconds = decode_only(frames)
                t["decode"].append(seconds)
                _, h, seconds = mine(DETS, "seed", backend, frames, Path(tmp) / "verdicts.csv")
                t["flickermine"].append(seconds)
                hard["flickermine"].add(h)
                _, h, seconds, seek_read = authors_mine(DETS, frames)
                t["authors"].append(seconds)
                t["seek_read_share"].append(seek_read / seconds)
                hard["authors"].add(h)
            authors = {
                "frames": frames, "pairs": args.pairs, "rule": "seed",
                "authors_over_decode": spread([d / a for d, a in zip(t["decode"], t["authors"])]),
                "flickermine_over_decode": spread([d / m for d, m in zip(t["decode"], t["flickermine"])]),
                "flickermine_speedup": spread([a / m for a, m in zip(t["authors"], t["flickermine"])]),
                "authors_fps": spread([frames / a for a in t["authors"]]),
                "flickermine_fps": spread([frames / m for m in t["flickermine"]]),
                "decode_fps": spread([frames / d for d in t["decode"]]),
                "authors_seek_and_read_share": spread(t["seek_read_share"]),
                "hard_negatives": {k: sorted(v) for k, v in hard.items()},
            }
    timing_seconds = time.perf_counter() - began
    load_end = loadavg()

    print(f"\npets09-s2l1 ({total} frames, {width}x{height}), backend {backend}, mine --verdicts (CSV) vs decode only,")
    print(f"mine frames/s / decode frames/s per interleaved pair, median [min-max] over {args.pairs} pairs")
    print(f"load average (1, 5, 15 min) {load_start} at the start, {load_end} at the end, {os.cpu_count()} CPUs")
    decode_cores = spread(DECODE_CORES)
    print(f"rule threads (cpp): {rule_threads}; decoding alone keeps {fmt(decode_cores)} cores busy (CPU s / wall s)")
    table = [
        [
            "real (faster_rcnn)" if r["detections"] == "real" else f"{r['detections']} a frame (synthetic)",
            f"{r['candidates_per_frame']:.1f}", r["frames"], r["rule"], fmt(r["mine_over_decode"], 3),
            f"{r['mine_fps']['median']:.0f}", f"{r['decode_fps']['median']:.0f}", "/".join(map(str, r["hard_negatives"])),
        ]
        for r in results
    ]
    print_table(["detections", "candidates a frame", "frames", "rule", "mine/decode", "mine fps", "decode fps", "hard neg."], table)
    if scaling:
        counts_run = list(scaling[0]["ms_per_frame"])
        print(f"\nsupport rule alone (frames decoded beforehand, nothing else running), ms a frame, "
              f"median [min-max] over {args.pairs} interleaved rounds, by rule threads")
        print_table(
            ["detections", "frames"] + [f"{n} thread(s)" for n in counts_run] + [f"{counts_run[0]} / {n}" for n in counts_run[1:]],
            [
                [r["detections"], r["frames"]] + [fmt(r["ms_per_frame"][n]) for n in counts_run]
                + [f"{r['ms_per_frame'][counts_run[0]]['median'] / r['ms_per_frame'][n]['median']:.2f}x" for n in counts_run[1:]]
                for r in scaling
            ],
        )
    if authors:
        print(f"\nauthors' algorithm (seek + re-read 2*window+1 frames per frame with a candidate, cv2.matchTemplate), "
              f"seed rule, real detections, first {authors['frames']} frames, {args.pairs} interleaved triples")
        print_table(
            ["run", "mine/decode", "frames/s", "hard neg."],
            [
                ["decode only", "1", f"{authors['decode_fps']['median']:.0f}", "-"],
                [f"flickermine seed ({backend})", fmt(authors["flickermine_over_decode"], 3), f"{authors['flickermine_fps']['median']:.0f}",
                 "/".join(map(str, authors["hard_negatives"]["flickermine"]))],
                ["authors' algorithm", fmt(authors["authors_over_decode"], 4), f"{authors['authors_fps']['median']:.1f}",
                 "/".join(map(str, authors["hard_negatives"]["authors"]))],
            ],
        )
        print(f"flickermine speedup over the authors' algorithm: {fmt(authors['flickermine_speedup'], 1)}x; "
              f"the authors' time spent seeking and re-reading: {fmt(authors['authors_seek_and_read_share'], 2)}")

    memory = {}
    if args.loops > 0:
        for loops in (1, args.loops):
            out = subprocess.run(
                [sys.executable, "-c", MEMORY_CHILD, str(VIDEO), str(DETS), str(loops), backend],
                capture_output=True, text=True, check=True,
            )
            memory[str(loops)] = json.loads(out.stdout.strip().splitlines()[-1])
        print()
        print_table(
            ["input", "frames", "hard negatives", "peak RSS MiB"],
            [[f"video x{n}", m["frames"], m["hard_negatives"], f"{m['max_rss_mib']:.1f}"] for n, m in memory.items()],
        )
        growth = memory[str(args.loops)]["max_rss_mib"] / memory["1"]["max_rss_mib"]
        print(f"peak memory x{args.loops} input / one pass: {growth:.3f}x")

    write_json(
        "pipeline",
        {
            "video": VIDEO.name, "video_frames": total, "backend": backend,
            "command": "python bench/bench_pipeline.py " + " ".join(sys.argv[1:]),
            "method": "interleaved pairs (decode only, then mine --verdicts over the same first N frames); "
                      "ratio = decode seconds / mine seconds per pair; median, min, max over the pairs",
            "synthetic_detections": "densities are candidates (score >= 0.8) a frame; extra layers of the real faster_rcnn candidates, each shifted in time (one offset "
                                    "per layer, wrapping), moved by one offset per layer (uniform +-150 px) plus "
                                    f"per-box jitter (normal, sigma 2 px), clamped in the image; last layer thinned "
                                    f"at random to the exact mean; numpy default_rng({args.seed})",
            "load_average": {"start": load_start, "end": load_end, "cpus": os.cpu_count()},
            "rule_threads": rule_threads,
            "decode_only_cores_busy": decode_cores,
            "timing_seconds": timing_seconds,
            "results": results,
            "rules_alone_by_threads": scaling,
            "authors_algorithm": authors,
            "memory": memory,
        },
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
