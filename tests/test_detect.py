"""Detect -> files, fused detect-and-mine, and classic mining on negative-only images."""

from __future__ import annotations

import json

import numpy as np
import pytest

import flickermine as fm
from flickermine.dataset._writer import RunConfig
from flickermine.runner._detect_job import detect_videos, mine_negatives
from flickermine.io._mot import DetectionFile
from flickermine.detect._detections import CallableDetector
from flickermine.runner._mine_run import run_mining

from .conftest import shared_data
from .test_dataset import LOOSE, _dataset_files


class Replay:
    """A 'detector' that replays a detections file frame by frame (deterministic, fast)."""

    def __init__(self, path, frames):
        self.frames = DetectionFile(path, frame_count=frames).per_frame(frames)

    def __call__(self, frame):
        _, boxes, scores = next(self.frames)
        return boxes, scores


@pytest.mark.slow
@pytest.mark.real_data
def test_fused_detect_and_mine_equals_detect_then_mine(tmp_path):
    video = shared_data("pets09-s2l1", "video.avi")
    dets = shared_data("pets09-s2l1", "det", "faster_rcnn.txt")
    config = RunConfig(params=LOOSE, mode="negatives")

    def detector():
        return CallableDetector(Replay(dets, 795), name="replay", batch_size=4)

    logged: list[str] = []
    summaries = detect_videos([video], tmp_path / "detected", detector(), progress=False, log=logged.append)
    assert summaries[0].frames == 795 and summaries[0].detections == 4359
    # The batched pipeline ran it: 199 batches of 4, and the end of the run says how fast.
    stats = summaries[0].pipeline
    assert (stats.frames, stats.batches, stats.batch_size) == (795, 199, 4) and stats.frames_per_second > 0
    assert any("frames/s" in line and "device cpu" in line and "GPU" not in line for line in logged), logged
    written = tmp_path / "detected" / "video.txt"
    assert DetectionFile(written).count == 4359

    from_files = tmp_path / "from_files"
    run_mining([video], from_files, config, detections=written, progress=False, log=lambda _: None)
    fused = tmp_path / "fused"
    logged.clear()
    run_mining([video], fused, config, detector_factory=detector, progress=False, log=logged.append)
    report = json.loads((fused / "report.json").read_text())["videos"][0]
    assert report["pipeline"]["frames"] == 795 and report["pipeline"]["batches"] == 199
    assert any(line.startswith("video: detector 795 frames") and "device cpu" in line for line in logged), logged
    a, b = _dataset_files(from_files), _dataset_files(fused)
    assert a.keys() == b.keys() and any(k.startswith("images/") for k in a)
    for key in a:
        if key.startswith("shards/"):
            sa, sb = json.loads(a[key]), json.loads(b[key])
            for key_ in ("detections_file", "detections_sha256"):  # a file, or none (fused)
                sa.pop(key_), sb.pop(key_)
            # label names: a MOT file carries none, the fused run has the detector's ("object");
            # annotations.json, compared below, names the category the same either way
            assert sa.pop("categories") == {} and sb.pop("categories") == {"1": "object"}
            assert sa == sb
        else:
            assert a[key] == b[key], key


@pytest.mark.real_data
def test_a_plain_function_is_a_detector(tmp_path):
    """A function of one frame passes for a detector wherever one is taken (wrapped as
    CallableDetector); anything else is refused before a frame is read."""
    video = shared_data("tud-campus", "video.mp4")
    dets = shared_data("tud-campus", "det", "faster_rcnn.txt")
    replay = Replay(dets, 71)
    summaries = detect_videos([video], tmp_path / "detected", replay, progress=False, log=lambda _: None)
    assert summaries[0].frames == 71 and summaries[0].detections == 321
    result = run_mining([video], tmp_path / "mined", RunConfig(params=LOOSE, mode="negatives"),
                        detector_factory=lambda: Replay(dets, 71), progress=False, log=lambda _: None)
    assert result.exit_code == 0 and result.videos[0]["detections"] == 321
    with pytest.raises(TypeError, match="a detector must be a Detector .* or a function of one frame, got int"):
        detect_videos([video], tmp_path / "nope", 42, progress=False, log=lambda _: None)
    assert not (tmp_path / "nope").exists()


@pytest.mark.real_data
def test_mine_negatives_keeps_the_most_confident(tmp_path):
    images = shared_data("otb-girl", "img")
    rng = np.random.default_rng(0)

    def fake(frame):
        h, w = frame.shape[:2]
        xy = rng.uniform(0, [w / 2, h / 2], (3, 2))
        return np.concatenate([xy, xy + 20], axis=1), rng.uniform(0.3, 1.0, 3)

    files = sorted(images.glob("*.jpg"))[:12]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    lines: list[str] = []
    coco = mine_negatives([str(f) for f in files[:6]] + [str(broken)] + [str(f) for f in files[6:]], tmp_path / "neg",
                          CallableDetector(fake, batch_size=5), category="person", min_score=0.5, top=10, log=lines.append)
    # The unreadable image is reported and skipped; the other 12 are mined.
    assert [line for line in lines if line.startswith("failed:")] == [f"failed: {broken}: cannot be read as an image"]
    report = json.loads((tmp_path / "neg" / "report.json").read_text())
    assert report["images"] == 13 and report["detections"] == 36 and report["hard_negatives"] == 10
    assert report["unreadable"] == [{"path": str(broken), "error": "cannot be read as an image"}]
    assert report["kept_images"] == len(coco["images"])
    assert coco["info"]["version"] == fm.__version__ and coco["info"]["detector"]["name"] == "callable"
    negatives = [n for image in coco["images"] for n in image["hard_negatives"]]
    assert len(negatives) == 10 and coco["annotations"] == []
    assert all(n["score"] >= 0.5 for n in negatives)
    for image in coco["images"]:
        scores = [n["score"] for n in image["hard_negatives"]]
        assert scores == sorted(scores, reverse=True)
        assert (tmp_path / "neg" / image["file_name"]).is_file()
    from pycocotools.coco import COCO

    assert len(COCO(str(tmp_path / "neg" / "annotations.json")).getImgIds()) == len(coco["images"])
