"""``flickermine.mine(video, detector=..., out=DIR)``: the embedding API (flickermine.runner._api)
runs what ``flickermine mine --out`` runs and records the detector in ``info``."""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np
import pytest

import flickermine
from flickermine.cli import main
from flickermine.errors import InputError
from flickermine.io import open_detections

from .conftest import shared_data


def _tud_campus():
    return shared_data("tud-campus", "video.mp4"), shared_data("tud-campus", "det", "faster_rcnn.txt")


class FileDetector:
    """A detector function answering each frame, in order, with the MOT file's boxes for its index."""

    def __init__(self, path):
        self.per_frame = list(open_detections(path).detections())
        self.calls = 0

    def __call__(self, frame):
        assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
        index = self.calls
        self.calls += 1
        if index >= len(self.per_frame):
            return np.zeros((0, 4)), np.zeros(0)
        detections = self.per_frame[index]
        return detections.boxes, detections.scores


def _content(folder):
    coco = json.loads((folder / "annotations.json").read_text())
    images = [(i["file_name"], i["hard_negatives"]) for i in coco["images"]]
    labels = [(a["image_id"], a["bbox"], a["score"]) for a in coco["annotations"]]
    return coco, images, labels


def test_mine_with_a_callable_matches_the_cli_with_the_file(tmp_path):
    video, dets = _tud_campus()
    assert main(["mine", str(video), "--detections", str(dets), "--rule", "support", "--out", str(tmp_path / "cli"), "--quiet"]) == 0

    detector = FileDetector(dets)
    summary = flickermine.mine(video, detector=detector, out=tmp_path / "api", rule="support")
    assert detector.calls >= 71  # every frame, once

    cli_coco, cli_images, cli_labels = _content(tmp_path / "cli")
    api_coco, api_images, api_labels = _content(tmp_path / "api")
    assert api_images == cli_images and api_labels == cli_labels
    assert len(api_images) > 0
    for image in api_coco["images"]:
        assert (tmp_path / "api" / image["file_name"]).is_file()

    recorded = api_coco["info"]["detector"]
    assert recorded["name"].endswith("FileDetector") and recorded["model"] == "callable"
    assert json.loads((tmp_path / "api" / "run.json").read_text())["detector"] == recorded
    assert cli_coco["info"]["detector"] is None

    assert isinstance(summary, flickermine.runner.MineSummary)
    assert summary.out == tmp_path / "api" and summary.exit_code == 0 and not summary.failed
    assert summary.images == len(api_images) and summary.annotations == len(api_labels)
    assert summary.frames == 71 and summary.hard_negatives == sum(len(n) for _, n in api_images if n) > 0
    assert summary.detector == recorded
    assert "hard negatives" in str(summary)


def test_mine_with_a_function_records_its_name_and_params(tmp_path):
    video, dets = _tud_campus()
    per_frame = FileDetector(dets).per_frame
    frames = iter(range(10**6))

    def my_detector(frame):
        index = next(frames)
        d = per_frame[index] if index < len(per_frame) else None
        return (d.boxes, d.scores) if d is not None else (np.zeros((0, 4)), np.zeros(0))

    summary = flickermine.mine(str(video), my_detector, out=tmp_path / "out", rule="support", score_threshold=0.6, sure_score=0.99)
    info = json.loads((tmp_path / "out" / "annotations.json").read_text())["info"]
    assert info["detector"]["function"].endswith("my_detector")
    assert "repr" not in info["detector"]  # a function's repr holds its memory address: not recorded
    assert info["parameters"]["score_threshold"] == 0.6 and info["parameters"]["sure_score"] == 0.99
    assert info["rule"] == "support"
    assert summary.detections > 0


def test_mine_with_detections_and_a_named_detector(tmp_path):
    video, dets = _tud_campus()
    summary = flickermine.mine([video], detections=dets, out=tmp_path / "files", rule="support", progress=False)
    assert summary.detector is None and summary.images > 0
    # a named detector, recorded as `flickermine mine --detector` records it, on a small image folder
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((160, 200, 3), 40 * i, np.uint8))
    named = flickermine.mine(frames, "opencv-hog", out=tmp_path / "hog", detector_options={"batch_size": 2})
    assert named.detector == {"name": "opencv-hog", "weights": None, "category": "object"}
    assert named.frames == 4 and named.exit_code == 0
    assert main(["mine", str(frames), "--detector", "opencv-hog", "--batch-size", "2", "--out", str(tmp_path / "hog"), "--quiet"]) == 0


def test_mine_refuses_bad_calls_before_any_work(tmp_path):
    video, dets = _tud_campus()
    out = tmp_path / "out"
    with pytest.raises(InputError, match="not both"):
        flickermine.mine(video, detector=lambda f: ([], []), detections=dets, out=out)
    with pytest.raises(InputError, match="give a detector"):
        flickermine.mine(video, out=out)
    with pytest.raises(TypeError, match="unknown parameters score_treshold"):
        flickermine.mine(video, detections=dets, out=out, score_treshold=0.5)
    with pytest.raises(TypeError, match="detector"):
        flickermine.mine(video, detector=42, out=out)
    with pytest.raises(InputError, match="needs its weights"):
        flickermine.mine(video, detector="fasterrcnn_resnet50_fpn", out=out)
    with pytest.raises(InputError, match="workers=2"):
        flickermine.mine(video, detector=lambda f: ([], []), out=out, workers=2)
    assert not out.exists()


def test_mine_is_loaded_lazily():
    import subprocess

    code = "import sys, flickermine; assert 'flickermine.runner' not in sys.modules; flickermine.mine; assert 'flickermine.runner._api' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    from flickermine import mine

    assert mine is flickermine.runner._api.mine
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        flickermine.nope  # noqa: B018
    pickle.dumps(mine)
