"""The GPU path, measured on a lent GPU; builds nothing (run after `pip install .` with nvcc).

Prints and writes bench/results/gpu.json:

1. NCC: CUDA (one launch) vs C++ vs cv2.matchTemplate, ms per search (one template, one region)
   and per frame of searches (32 detections of one frame searched in a neighbour frame).
2. Faster R-CNN (resnet50_fpn and v2, random weights) frames/s at batch 1, 4, 8, 16, AMP off/on.
3. Decode-only frames/s (threaded decode + pinned batch assembly), and the fused pipeline's
   frames/s (decode -> batched AMP inference -> seed-rule mining, overlapped), each as a ratio
   to the bare detector at the pipeline's settings (resnet50_fpn, batch 8, AMP): the goal is
   the pipeline within 10% of the detector alone.

Frames: ../shared/data/pets09-s2l1/video.avi (768x576) when present, else a synthetic clip.

    python bench/bench_gpu.py [--cpu] [--frames 160] [--json PATH]

Without a CUDA GPU it prints that it needs one and exits 0; ``--cpu`` still runs the CPU rows
(C++ and OpenCV NCC, a short CPU detector and pipeline run) so the script itself can be checked.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

import flickermine
from flickermine.video import open_video
from flickermine import _core
from flickermine.mining._backends import unavailable_backends

from _common import SHARED_DATA, best_time, print_table, write_json

SIZES = [(32, 32), (64, 64), (128, 128), (200, 300)]
MARGIN = 100
SEARCHES_PER_FRAME = 32
MODELS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2")
BATCHES = (1, 4, 8, 16)
PIPELINE_MODEL, PIPELINE_BATCH = "fasterrcnn_resnet50_fpn", 8


def video_path(tmp: Path, frames: int) -> Path:
    real = SHARED_DATA / "pets09-s2l1" / "video.avi"
    if real.exists():
        return real
    rng = np.random.default_rng(0)
    folder = tmp / "synthetic"
    folder.mkdir()
    base = cv2.GaussianBlur(rng.random((640, 840, 3)).astype(np.float32), (0, 0), 2.0)
    base = ((base - base.min()) / (base.max() - base.min()) * 255).astype(np.uint8)
    for i in range(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), base[i % 60 : i % 60 + 576, i % 70 : i % 70 + 768])
    return folder


def gray_frames(path: Path, count: int) -> list[np.ndarray]:
    frames = []
    for frame in open_video(path).frames(gray=True):
        frames.append(frame.gray)
        if len(frames) == count:
            break
    return frames


def ncc_rows(frames: list[np.ndarray], cuda) -> list[dict]:
    center, neighbour = frames[0], frames[1]
    H, W = center.shape
    rng = np.random.default_rng(1)
    rows = []
    for h, w in SIZES:
        tx1, ty1 = (W - w) // 2, (H - h) // 2
        box = np.array([[tx1, ty1, tx1 + w, ty1 + h]], dtype=np.int64)
        region = np.array([[max(0, tx1 - MARGIN), max(0, ty1 - MARGIN), min(W, tx1 + w + MARGIN), min(H, ty1 + h + MARGIN)]])
        rx1, ry1, rx2, ry2 = region[0]
        templ = np.ascontiguousarray(center[ty1 : ty1 + h, tx1 : tx1 + w])
        crop = np.ascontiguousarray(neighbour[ry1:ry2, rx1:rx2])
        # A frame's worth of searches: SEARCHES_PER_FRAME boxes of this size scattered in the frame.
        xs = rng.integers(0, W - w + 1, SEARCHES_PER_FRAME)
        ys = rng.integers(0, H - h + 1, SEARCHES_PER_FRAME)
        boxes = np.column_stack([xs, ys, xs + w, ys + h]).astype(np.int64)
        regions = np.column_stack(
            [np.maximum(0, xs - MARGIN), np.maximum(0, ys - MARGIN), np.minimum(W, xs + w + MARGIN), np.minimum(H, ys + h + MARGIN)]
        ).astype(np.int64)
        crops = [(np.ascontiguousarray(center[b[1] : b[3], b[0] : b[2]]), np.ascontiguousarray(neighbour[r[1] : r[3], r[0] : r[2]])) for b, r in zip(boxes, regions)]

        def opencv_one():
            cv2.minMaxLoc(cv2.matchTemplate(crop, templ, cv2.TM_CCOEFF_NORMED))

        def opencv_frame():
            for t, c in crops:
                cv2.minMaxLoc(cv2.matchTemplate(c, t, cv2.TM_CCOEFF_NORMED))

        row = {
            "template": f"{h}x{w}",
            "region": f"{ry2 - ry1}x{rx2 - rx1}",
            "opencv_search_ms": best_time(opencv_one, repeats=3) * 1e3,
            "cpp_search_ms": best_time(lambda: _core.ncc_search_batch(center, box, neighbour, region), repeats=3) * 1e3,
            "opencv_frame_ms": best_time(opencv_frame, repeats=2) * 1e3,
            "cpp_frame_ms": best_time(lambda: _core.ncc_search_batch(center, boxes, neighbour, regions), repeats=2) * 1e3,
        }
        if cuda is not None:
            row["cuda_search_ms"] = best_time(lambda: cuda.ncc_search_batch(center, box, neighbour, region), repeats=3) * 1e3
            row["cuda_frame_ms"] = best_time(lambda: cuda.ncc_search_batch(center, boxes, neighbour, regions), repeats=3) * 1e3
        rows.append(row)
    return rows


def make_detector(model: str, batch: int, amp: bool, device: str, small: bool):
    from flickermine.detect._torchvision import TorchvisionDetector

    sizes = {"min_size": 256, "max_size": 352} if small else {}
    return TorchvisionDetector(model, weights=None, weights_backbone=None, device=device, batch_size=batch, amp=amp, **sizes)


def detector_fps(detector, color: np.ndarray, batch: int, frames: int, pinned: bool) -> float:
    """Frames/s of the bare detector on one pinned batch repeated (no decoding): its ceiling."""
    import torch

    from flickermine.runner._gpu_pipeline import FrameBatch, infer_batch
    from flickermine.video import Frame

    images = torch.from_numpy(np.repeat(color[None], batch, axis=0))
    if pinned:
        images = images.pin_memory()
    fake = FrameBatch([Frame(i, None, color) for i in range(batch)], images, pinned)
    infer_batch(detector, fake)  # warm-up: cuDNN autotuning, allocator
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    rounds = max(1, frames // batch)
    start = time.perf_counter()
    for _ in range(rounds):
        infer_batch(detector, fake)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return rounds * batch / (time.perf_counter() - start)


def decode_fps(path: Path, batch: int, frames: int) -> float:
    from flickermine.runner._gpu_pipeline import FramePrefetcher

    start, count = time.perf_counter(), 0
    for item in FramePrefetcher(open_video(path), batch):
        count += len(item)
        if count >= frames:
            break
    return count / (time.perf_counter() - start)


def pipeline_fps(path: Path, detector, frames: int) -> tuple[float, dict]:
    from flickermine.runner._gpu_pipeline import DetectorPipeline
    from flickermine.mining._miner import Miner
    from flickermine.mining._params import MiningParams

    # Random weights score low: take every detection as a candidate so the miner does real work.
    miner = Miner(MiningParams(score_threshold=0.0), "seed", "auto")
    pipeline = DetectorPipeline(open_video(path), detector, log=print)
    start, count = time.perf_counter(), 0
    for frame, detections in pipeline:
        keep = np.argsort(-detections.scores)[:20]  # at most 20 candidates a frame
        for _ in miner.push(frame.gray, detections.select(keep)):
            pass
        count += 1
        if count >= frames:
            break
    for _ in miner.finish():
        pass
    seconds = time.perf_counter() - start
    return count / seconds, {**pipeline.stats.as_dict(), "mining_backend": miner.backend_name}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="without a GPU, still run the CPU rows (short)")
    parser.add_argument("--frames", type=int, default=160, help="frames per detector / pipeline measurement")
    parser.add_argument("--json", help="output path (default bench/results/gpu.json)")
    args = parser.parse_args()

    try:
        import torch
    except ImportError:
        torch = None
    has_gpu = torch is not None and torch.cuda.is_available()
    cuda = flickermine.get_backend("cuda") if "cuda" in flickermine.available_backends() else None
    if not has_gpu and not args.cpu:
        print(
            "bench_gpu.py needs a CUDA GPU: "
            + ("torch is not installed" if torch is None else "torch sees no CUDA device")
            + f"; cuda backend: {'available' if cuda else unavailable_backends().get('cuda', 'unavailable')}. "
            "Run it on a GPU machine, or with --cpu for the CPU rows only."
        )
        return 0
    if torch is None:
        print("bench_gpu.py needs torch and torchvision (pip install 'flickermine[torch]')")
        return 0
    device = "cuda" if has_gpu else "cpu"
    frames = args.frames if has_gpu else min(args.frames, 8)
    payload: dict = {"device": torch.cuda.get_device_name(0) if has_gpu else "cpu (--cpu: not GPU figures)"}
    if cuda is not None:
        payload["cuda_backend"] = cuda.device_status()
    else:
        payload["cuda_backend"] = unavailable_backends().get("cuda")
    print(f"device: {payload['device']}; cuda backend: {payload['cuda_backend']}\n")

    with tempfile.TemporaryDirectory() as tmp:
        path = video_path(Path(tmp), max(frames, 32))
        grays = gray_frames(path, 2)
        color = next(iter(open_video(path).frames(gray=False, color=True))).color

        # 1. NCC
        ncc = ncc_rows(grays, cuda)
        payload["ncc"] = ncc
        headers = ["template", "region", "opencv/search", "cpp/search", "cuda/search",
                   f"opencv/frame({SEARCHES_PER_FRAME})", "cpp/frame", "cuda/frame", "cuda vs cpp (frame)"]
        table = []
        for r in ncc:
            cuda_search = f"{r['cuda_search_ms']:.3f}" if "cuda_search_ms" in r else "-"
            cuda_frame = f"{r['cuda_frame_ms']:.2f}" if "cuda_frame_ms" in r else "-"
            speedup = f"{r['cpp_frame_ms'] / r['cuda_frame_ms']:.1f}x" if "cuda_frame_ms" in r else "-"
            table.append([r["template"], r["region"], f"{r['opencv_search_ms']:.3f}", f"{r['cpp_search_ms']:.3f}", cuda_search,
                          f"{r['opencv_frame_ms']:.2f}", f"{r['cpp_frame_ms']:.2f}", cuda_frame, speedup])
        print("NCC, ms per search and per frame of searches (uint8, region = template + 100 px each side)")
        print_table(headers, table)

        # 2. detectors
        detector_rows = []
        models = MODELS if has_gpu else MODELS[:1]
        batches = BATCHES if has_gpu else (1, 4)
        for model in models:
            for amp in ((False, True) if has_gpu else (False,)):
                for batch in batches:
                    detector = make_detector(model, batch, amp, device, small=not has_gpu)
                    fps = detector_fps(detector, color, batch, max(frames, batch * 3) if has_gpu else batch, pinned=has_gpu)
                    detector_rows.append({"model": model, "batch": batch, "amp": amp, "frames_per_second": fps})
                    del detector
                    if has_gpu:
                        torch.cuda.empty_cache()
        payload["detector"] = detector_rows

        # 3. decode-only and the fused pipeline, as ratios to the bare detector
        reference = make_detector(PIPELINE_MODEL, PIPELINE_BATCH if has_gpu else 4, has_gpu, device, small=not has_gpu)
        bare = detector_fps(reference, color, reference.batch_size, max(frames, 3 * reference.batch_size) if has_gpu else 4, pinned=has_gpu)
        decode = decode_fps(path, reference.batch_size, frames)
        fused, stats = pipeline_fps(path, reference, frames)
        payload["reference"] = {"model": PIPELINE_MODEL, "batch": reference.batch_size, "amp": reference.amp, "frames_per_second": bare}
        payload["decode_only"] = {"frames_per_second": decode, "ratio_to_detector": decode / bare}
        payload["pipeline"] = {"frames_per_second": fused, "ratio_to_detector": fused / bare, "stats": stats}

        rows = [[r["model"], r["batch"], "on" if r["amp"] else "off", f"{r['frames_per_second']:.1f}",
                 f"{r['frames_per_second'] / bare:.2f}"] for r in detector_rows]
        rows.append(["decode only", reference.batch_size, "-", f"{decode:.1f}", f"{decode / bare:.2f}"])
        rows.append(["pipeline (decode+detect+mine)", reference.batch_size, "on" if reference.amp else "off", f"{fused:.1f}", f"{fused / bare:.2f}"])
        print(f"\nframes/s; ratio to the bare detector ({PIPELINE_MODEL}, batch {reference.batch_size}, "
              f"AMP {'on' if reference.amp else 'off'}: {bare:.1f} frames/s); goal: pipeline >= 0.90")
        print_table(["what", "batch", "AMP", "frames/s", "ratio"], rows)
        print(f"\npipeline: GPU utilisation {stats['gpu_utilization'] if stats['gpu_utilization'] is not None else 'n/a'}, "
              f"mining backend {stats['mining_backend']}")
        if not has_gpu:
            print("\n(--cpu: CPU figures at a reduced input size, not GPU figures)")
    write_json("gpu" if has_gpu else "gpu_cpu_rows", payload, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
