"""The GPU path: the CUDA backend against the NumPy oracle (needs a GPU), a compile-only check of
the CUDA sources (needs nvcc), and the threaded prefetch + batched inference of
flickermine.runner._gpu_pipeline (CPU, a tiny torchvision model)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import threading

import numpy as np
import pytest

import flickermine
from flickermine.runner import _gpu_pipeline as gpu_pipeline
from flickermine.detect._detections import Detections
from flickermine.video import open_video
from flickermine.mining._backends import get_backend, unavailable_backends
from flickermine._boxes import iou_matrix
from flickermine.mining._params import MiningParams, Rule

from .conftest import ROOT, texture

# -- the CUDA backend (needs a GPU) ------------------------------------------------------------

CUDA_REASON = unavailable_backends().get("cuda", "")
needs_gpu = pytest.mark.skipif(
    "cuda" not in flickermine.available_backends(), reason=f"cuda backend not available here: {CUDA_REASON}"
)


@pytest.fixture(scope="module")
def cuda():
    return get_backend("cuda")


@pytest.fixture(scope="module")
def oracle():
    return get_backend("numpy")


def random_searches(rng, frame_shape, count):
    height, width = frame_shape
    templates, regions = [], []
    for _ in range(count):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        templates.append([x, y, x + w, y + h])
        grow = int(rng.integers(0, 30))
        regions.append([max(0, x - grow), max(0, y - grow), min(width, x + w + grow), min(height, y + h + grow)])
    return np.array(templates, dtype=np.int64), np.array(regions, dtype=np.int64)


@needs_gpu
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_ncc_search_batch_matches_the_oracle(cuda, oracle, rng, dtype):
    first = texture(rng, 120, 160)
    second = np.roll(first, (3, -5), axis=(0, 1))
    second[40:70, 50:90] = 128  # a flat patch: windows inside it score exactly 0
    first, second = first.astype(dtype), second.astype(dtype)
    templates, regions = random_searches(rng, first.shape, 60)
    scores, top_left = cuda.ncc_search_batch(first, templates, second, regions)
    expected_scores, expected_top_left = oracle.ncc_search_batch(first, templates, second, regions)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6, rtol=0)
    # Positions agree except where two placements score within rounding of each other.
    differ = np.flatnonzero((top_left != expected_top_left).any(axis=1))
    for k in differ:
        x, y = top_left[k] - regions[k, :2]
        tx1, ty1, tx2, ty2 = templates[k]
        score_map = oracle.ncc_score_map(first[ty1:ty2, tx1:tx2], second[regions[k, 1] : regions[k, 3], regions[k, 0] : regions[k, 2]])
        assert score_map[y, x] >= expected_scores[k] - 1e-9, f"search {k}: {top_left[k]} vs {expected_top_left[k]}"


@needs_gpu
def test_ties_go_to_the_first_position_and_flat_scores_zero(cuda):
    pattern = np.random.default_rng(1).integers(0, 256, (6, 6)).astype(np.uint8)
    frame = np.zeros((40, 40), dtype=np.uint8)
    frame[20:26, 5:11] = pattern  # later in row-major order
    frame[8:14, 30:36] = pattern  # first: smaller y
    templates = np.array([[5, 20, 11, 26], [0, 0, 4, 4]], dtype=np.int64)  # the second is flat
    regions = np.array([[0, 0, 40, 40], [0, 0, 40, 40]], dtype=np.int64)
    scores, top_left = cuda.ncc_search_batch(frame, templates, frame, regions)
    assert scores[0] == pytest.approx(1.0, abs=1e-12) and tuple(top_left[0]) == (30, 8)
    assert scores[1] == 0.0 and tuple(top_left[1]) == (0, 0)


@needs_gpu
def test_multi_frame_launch_matches_pairwise_searches(cuda, rng):
    frames = [texture(rng, 90, 110) for _ in range(4)]
    templates, regions = random_searches(rng, frames[0].shape, 24)
    template_index = rng.integers(0, 4, len(templates))
    search_index = rng.integers(0, 4, len(templates))
    scores, top_left = cuda.ncc_search_multi(frames, template_index, templates, search_index, regions)
    for k in range(len(templates)):
        one, where = cuda.ncc_search_batch(frames[template_index[k]], templates[k : k + 1], frames[search_index[k]], regions[k : k + 1])
        assert scores[k] == one[0] and (top_left[k] == where[0]).all()


@needs_gpu
def test_iou_matches_the_oracle(cuda, rng):
    a = np.sort(rng.random((37, 4)) * 100, axis=1)[:, [0, 1, 2, 3]]
    a = np.column_stack([a[:, 0], a[:, 1], a[:, 0] + 1 + a[:, 2], a[:, 1] + 1 + a[:, 3]])
    b = a[::-1] + rng.random((37, 4))
    np.testing.assert_allclose(cuda.iou(a, b), iou_matrix(a, b), rtol=0, atol=1e-12)
    assert cuda.iou(np.zeros((0, 4)), b).shape == (0, 37)


@needs_gpu
@pytest.mark.parametrize("rule", [Rule.SEED, Rule.TRACKLET])
def test_frame_verdicts_and_hard_positives_match_the_oracle(cuda, oracle, rng, rule):
    base = texture(rng, 200, 260)
    frames = [np.ascontiguousarray(np.roll(base, (2 * g, 3 * g), axis=(0, 1))) for g in range(7)]
    boxes = []
    for g in range(7):
        found = rng.random((5, 2)) * np.array([150, 100]) + 50
        boxes.append(np.column_stack([found, found + rng.integers(40, 70, (5, 2))]).clip(0, [260, 200, 260, 200]))
    boxes[2] = np.zeros((0, 4))
    scores = rng.random(len(boxes[3])) * 0.15 + 0.82
    params = MiningParams(window=3, margin=20)
    expected = oracle.frame_verdicts(frames, boxes, scores, 3, params, rule)
    np.testing.assert_array_equal(cuda.frame_verdicts(frames, boxes, scores, 3, params, rule), expected)
    np.testing.assert_allclose(
        cuda.frame_hard_positives(frames, boxes, 3, params), oracle.frame_hard_positives(frames, boxes, 3, params)
    )


def test_cuda_backend_is_listed_with_a_reason_when_unavailable():
    if "cuda" in flickermine.available_backends():
        assert get_backend("cuda").NAME == "cuda"
    else:
        assert CUDA_REASON  # the registry says why (not built, no device, ...)
        assert get_backend("auto").NAME != "cuda"


# -- compile-only check of the CUDA sources (needs nvcc) ---------------------------------------

CUDA_SOURCES = ROOT / "cpp" / "cuda"
BINDINGS = ROOT / "cpp" / "python"
INCLUDES = [f"-I{ROOT / 'cpp' / 'include'}", f"-I{CUDA_SOURCES}"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_cuda_sources_compile(tmp_path):
    command = [
        "nvcc", "-std=c++17", "-c", "-O1", "-arch=sm_80", *INCLUDES, "-Xcompiler", "-Wall",
        str(CUDA_SOURCES / "ncc_cuda.cu"), "-o", str(tmp_path / "ncc_cuda.o"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr
    # The bindings are plain C++ (no CUDA headers): a syntax check with the host compiler.
    pybind11 = pytest.importorskip("pybind11")
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        return
    command = [
        compiler, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", f"-I{pybind11.get_include()}",
        f"-I{sysconfig.get_paths()['include']}", *INCLUDES, str(BINDINGS / "bindings_cuda.cpp"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


# -- threaded prefetch and batched inference on the CPU -----------------------------------------


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    import cv2

    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("clip")
    for index in range(7):
        color = np.stack([texture(rng, 72, 96) for _ in range(3)], axis=-1)
        color[20:50, 30:70] = (40 * index % 255, 200, 90)  # an object-ish block
        assert cv2.imwrite(str(folder / f"{index:04d}.png"), color)
    return folder


def test_prefetcher_batches_in_order(image_folder):
    torch = pytest.importorskip("torch")
    source = open_video(image_folder)
    batches = list(gpu_pipeline.FramePrefetcher(source, 3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [f.index for b in batches for f in b.frames] == list(range(7))
    for batch in batches:
        assert batch.images.dtype == torch.uint8 and tuple(batch.images.shape) == (len(batch), 72, 96, 3)
        assert batch.pinned == torch.cuda.is_available()
        for frame, image in zip(batch.frames, batch.images):
            np.testing.assert_array_equal(image.numpy(), frame.color)
            assert frame.gray is not None
    with pytest.raises(ValueError, match="batch_size"):
        gpu_pipeline.FramePrefetcher(source, 0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="pin_memory"):
            gpu_pipeline.FramePrefetcher(source, 2, pin_memory=True)


@pytest.mark.slow
def test_batched_pipeline_gives_the_detections_of_frame_by_frame(image_folder):
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from flickermine.detect._torchvision import TorchvisionDetector

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    detector = TorchvisionDetector(
        "fasterrcnn_mobilenet_v3_large_fpn", weights=None, weights_backbone=None, device="cpu", batch_size=3,
        score_threshold=0.0, min_size=64, max_size=96,
        model_options={"rpn_post_nms_top_n_test": 50, "detections_per_img": 10},
    )
    source = open_video(image_folder)
    pipeline = gpu_pipeline.DetectorPipeline(source, detector, log=lambda message: None)
    results = list(pipeline)
    assert [frame.index for frame, _ in results] == list(range(7))
    assert sum(len(d) for _, d in results) > 0  # threshold 0: random weights still give boxes
    # Compared with calling the detector on the same groups of frames: a batch of 3 and a batch of 1
    # differ in the last float bits, and with random weights (many near-tied scores) that can
    # reorder boxes, so frame-by-frame calls are not a fair reference; the same batches are.
    for start in range(0, 7, 3):
        group = results[start:start + 3]
        direct = detector([frame.color for frame, _ in group])
        for (frame, detections), alone in zip(group, direct):
            assert len(detections) == len(alone)
            np.testing.assert_allclose(detections.boxes, alone.boxes, rtol=0, atol=1e-3)
            np.testing.assert_allclose(detections.scores, alone.scores, rtol=0, atol=1e-5)
            np.testing.assert_array_equal(detections.labels, alone.labels)
    stats = pipeline.stats
    assert stats.frames == 7 and stats.batches == 3 and stats.batch_size == 3
    assert stats.decode == "cpu"
    assert stats.gpu_utilization is None and "GPU" not in stats.line() and "[device cpu, batch 3" in stats.line()
    assert "frames/s" in stats.line() and not stats.pinned and not stats.amp


def test_consumer_overlaps_the_next_batch(image_folder):
    """While the caller works on batch k, the detector is already running batch k + 1."""
    second_batch_started = threading.Event()
    calls = []

    def detector(frames):
        calls.append(len(frames))
        if len(calls) == 2:
            second_batch_started.set()
        return [Detections(np.zeros((0, 4)), np.zeros(0)) for _ in frames]

    source = open_video(image_folder)
    seen = []

    def consume(frame, detections):
        if frame.index == 0:  # still in batch 0: batch 1 must start without us
            assert second_batch_started.wait(timeout=20), "the detector did not run ahead of the consumer"
        seen.append(frame.index)

    stats = gpu_pipeline.run_pipeline(source, detector, consume, batch_size=2, gpu_decode=True, log=lambda m: None)
    assert seen == list(range(7)) and calls == [2, 2, 2, 1] and stats.frames == 7


def test_gpu_decode_follows_the_detector_and_says_why_not(image_folder):
    pytest.importorskip("torchvision")
    from flickermine.detect._torchvision import TorchvisionDetector
    from flickermine.detect._registry import make_detector

    detector = TorchvisionDetector(
        "fasterrcnn_mobilenet_v3_large_fpn", weights=None, weights_backbone=None, device="cpu", gpu_decode=True,
    )
    assert detector.gpu_decode and detector.info()["options"]["gpu_decode"] is True
    messages: list[str] = []
    pipeline = gpu_pipeline.DetectorPipeline(open_video(image_folder), detector, log=messages.append)
    assert pipeline.stats.decode == "cpu"
    assert messages == ["GPU decoding skipped: the detector runs on cpu, not CUDA"]
    with pytest.raises(ValueError, match="--gpu-decode applies to torchvision detectors on CUDA"):
        make_detector("opencv-hog", gpu_decode=True)


def test_pipeline_errors_reach_the_caller(image_folder):
    def broken(frames):
        raise RuntimeError("detector exploded")

    source = open_video(image_folder)
    with pytest.raises(RuntimeError, match="detector exploded"):
        list(gpu_pipeline.DetectorPipeline(source, broken, 2, log=lambda m: None))


@pytest.mark.slow
def test_bench_gpu_without_a_gpu_exits_zero():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the benchmark would run for real")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_gpu.py")], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "needs a CUDA GPU" in result.stdout
