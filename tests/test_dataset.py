"""Video -> COCO: end to end on real data, modes, resume, workers, failures, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flickermine import MiningParams
from flickermine.dataset._writer import RunConfig, select_frame
from flickermine.mining._miner import FrameVerdicts
from flickermine.mining._params import Reason
from flickermine.runner._inputs import expand_inputs, video_keys
from flickermine.runner._mine_run import run_mining

from .conftest import shared_data

# Exemptions relaxed so that real sequences give a few hard negatives to write.
LOOSE = MiningParams(sure_score=2.0, min_area=0.0, border=0)


def two_videos(tmp_path: Path) -> tuple[list[Path], Path]:
    """pets09-s2l1 and tud-campus (both named ``video``) with their Faster R-CNN detections."""
    videos = [shared_data("pets09-s2l1", "video.avi"), shared_data("tud-campus", "video.mp4")]
    dets = dets_folder(
        tmp_path,
        {
            "pets09-s2l1-video": shared_data("pets09-s2l1", "det", "faster_rcnn.txt"),
            "tud-campus-video": shared_data("tud-campus", "det", "faster_rcnn.txt"),
        },
    )
    return videos, dets


def dets_folder(tmp_path: Path, pairs: dict[str, Path]) -> Path:
    folder = tmp_path / "dets"
    folder.mkdir()
    for key, source in pairs.items():
        shutil.copy(source, folder / f"{key}.txt")
    return folder


def check_coco(out: Path) -> dict:
    from pycocotools.coco import COCO

    coco = COCO(str(out / "annotations.json"))
    data = json.loads((out / "annotations.json").read_text())
    for image in data["images"]:
        assert (out / image["file_name"]).is_file()
        assert {"id", "file_name", "width", "height", "video", "frame_index", "hard_negatives"} <= set(image)
    for ann in data["annotations"]:
        image = coco.imgs[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= image["width"] + 1e-6 and y + h <= image["height"] + 1e-6
        assert ann["area"] == pytest.approx(w * h, abs=1e-2) and ann["iscrowd"] == 0
        assert ann["source"] in ("detector", "tracker") and "segmentation" not in ann
    assert [i["id"] for i in data["images"]] == list(range(1, len(data["images"]) + 1))
    assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
    return data


@pytest.mark.real_data
def test_end_to_end_on_three_real_sequences(tmp_path):
    videos = [
        shared_data("pets09-s2l1", "video.avi"),
        shared_data("tud-campus", "video.mp4"),
        shared_data("otb-girl", "img"),
    ]
    keys = video_keys(videos)
    assert keys == ["pets09-s2l1-video", "tud-campus-video", "otb-girl"]
    dets = dets_folder(
        tmp_path,
        {
            keys[0]: shared_data("pets09-s2l1", "det", "faster_rcnn.txt"),
            keys[1]: shared_data("tud-campus", "det", "faster_rcnn.txt"),
            keys[2]: shared_data("otb-girl", "det", "opencv_haar_frontalface.txt"),
        },
    )
    out = tmp_path / "out"
    config = RunConfig(params=LOOSE, rule="seed", category="person", visualize=True)  # the counts below are seed's
    result = run_mining(videos, out, config, detections=dets, progress=False, log=lambda _: None)
    assert result.exit_code == 0
    data = check_coco(out)
    assert len(data["images"]) > 0 and len(data["annotations"]) > 0
    assert data["categories"] == [{"id": 1, "name": "person", "supercategory": "person"}]
    assert data["info"]["rule"] == "seed" and data["info"]["parameters"]["sure_score"] == 2.0
    # hn mode: every kept frame has a hard negative and a label.
    per_image = {i["id"]: 0 for i in data["images"]}
    for ann in data["annotations"]:
        per_image[ann["image_id"]] += 1
    assert all(per_image.values()) and all(i["hard_negatives"] for i in data["images"])
    report = json.loads((out / "report.json").read_text())
    assert [v["frames"] for v in report["videos"]] == [795, 71, 500]
    assert report["totals"]["hard_negatives"] >= len(data["images"])
    assert (out / "contact_sheet.png").is_file()
    assert len(list((out / "visualize").rglob("*.jpg"))) == len(data["images"])


def fake_verdicts(reasons, hard_positives=0):
    n = len(reasons)
    boxes = np.array([[10.0 * i, 0.0, 10.0 * i + 5, 5.0] for i in range(n)]).reshape(-1, 4)
    hp = np.array([[100.0, 100.0, 110.0, 120.0]] * hard_positives).reshape(-1, 4)
    return FrameVerdicts(0, boxes, np.full(n, 0.9), np.array(reasons, np.int8), hp)


@pytest.mark.parametrize(
    "reasons,hp,mode,kept,labels",
    [
        ([Reason.ISOLATED, Reason.PARTNER], 0, "hn", True, 1),
        ([Reason.ISOLATED], 0, "hn", False, 0),  # no pseudo-positive: not an hn frame
        ([Reason.ISOLATED], 0, "negatives", True, 0),  # a negative-only frame, no annotations
        ([Reason.PARTNER], 0, "negatives", False, 0),
        ([Reason.ISOLATED, Reason.PARTNER, Reason.SURE_SCORE], 0, "flickers-as-positives", True, 3),
        ([Reason.PARTNER], 1, "hp", True, 2),
        ([Reason.ISOLATED, Reason.PARTNER], 0, "hp", False, 0),
        ([Reason.ISOLATED, Reason.PARTNER], 0, "hn+hp", True, 1),
        ([Reason.PARTNER], 1, "hn+hp", True, 2),
    ],
)
def test_modes_select_frames_and_labels(reasons, hp, mode, kept, labels):
    keep, anns = select_frame(fake_verdicts(reasons, hp), mode)
    assert keep is kept and len(anns) == labels
    assert sum(a["source"] == "tracker" for a in anns) == (hp if mode in ("hp", "hn+hp") and kept else 0)


def test_expand_inputs(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("x.mp4", "y.avi", "notes.md"):
        (tmp_path / "a" / name).write_bytes(b"")
    seq = tmp_path / "a" / "seq" / "img1"
    seq.mkdir(parents=True)
    (seq / "000001.jpg").write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text("# videos\na/x.mp4\n\n")
    assert expand_inputs([tmp_path / "a"]) == [seq.resolve(), (tmp_path / "a" / "x.mp4").resolve(), (tmp_path / "a" / "y.avi").resolve()]
    assert expand_inputs([str(tmp_path / "a" / "*.avi")]) == [(tmp_path / "a" / "y.avi").resolve()]
    assert expand_inputs([listing, tmp_path / "a" / "x.mp4"]) == [(tmp_path / "a" / "x.mp4").resolve()]
    with pytest.raises(FileNotFoundError, match="matches nothing"):
        expand_inputs([str(tmp_path / "*.mkv")])
    # A link is named as given (its detections file is <link name>.txt), mined once with its target.
    link = tmp_path / "cam7.mp4"
    link.symlink_to(tmp_path / "a" / "x.mp4")
    assert expand_inputs([link, tmp_path / "a" / "x.mp4"]) == [link.absolute()]
    assert video_keys(expand_inputs([link])) == ["cam7"]
    assert video_keys([Path("/d/one/video.mp4"), Path("/d/two/video.mp4"), Path("/d/seq/img1")]) == ["one-video", "two-video", "seq"]


@pytest.mark.real_data
def test_bad_input_fails_before_any_work(tmp_path):
    video = shared_data("tud-campus", "video.mp4")
    out = tmp_path / "out"
    beyond = tmp_path / "dets.txt"
    beyond.write_text("1,-1,10,20,30,40,0.9\n80,-1,10,20,30,40,0.9\n")  # tud-campus has 71 frames
    from flickermine.io._mot import DetectionFileError

    with pytest.raises(DetectionFileError, match="line 2"):
        run_mining([video], out, RunConfig(), detections=beyond, progress=False, log=lambda _: None)
    assert not out.exists()
    good = shared_data("tud-campus", "det", "faster_rcnn.txt")
    run_mining([video], out, RunConfig(), detections=good, progress=False, log=lambda _: None)
    with pytest.raises(ValueError, match=r"holds a run with different settings \(params: .*window"):
        run_mining([video], out, RunConfig(params=MiningParams(window=3)), detections=good, progress=False, log=lambda _: None)
    # Same settings, other detections for the same video: not "done before", an error.
    other = tmp_path / "other.txt"
    other.write_text("".join(good.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(ValueError, match=r"mined from detections .*faster_rcnn.txt, whose content differs from .*other.txt"):
        run_mining([video], out, RunConfig(), detections=other, progress=False, log=lambda _: None)
    # Results are readable by whoever may read a file this process creates (not mkstemp's 0600).
    umask = os.umask(0)
    os.umask(umask)
    for name in ("annotations.json", "report.json", "run.json", "shards/video.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    with pytest.raises(ValueError, match="mode must be one of"):
        RunConfig(mode="positives")


@pytest.mark.real_data
def test_unreadable_video_is_reported_and_the_rest_finish(tmp_path):
    good = shared_data("tud-campus", "video.mp4")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(os.urandom(5000))
    dets = dets_folder(tmp_path, {"video": shared_data("tud-campus", "det", "faster_rcnn.txt")})
    lines = []
    result = run_mining([bad, good], tmp_path / "out", RunConfig(params=LOOSE, mode="negatives"), detections=dets, progress=False, log=lines.append)
    assert result.exit_code == 1
    assert [v["status"] for v in result.videos] == ["failed", "done"]
    assert any("broken.mp4" in line for line in lines)
    assert (tmp_path / "out" / "shards" / "video.json").exists()


def _dataset_files(out: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.name not in ("report.json",):
            data = path.read_bytes()
            if path.name == "annotations.json":
                coco = json.loads(data)
                coco["info"].pop("date_created")
                data = json.dumps(coco).encode()
            if path.parent.name == "shards":
                shard = json.loads(data)
                for key in ("seconds", "frames_per_second"):
                    shard.pop(key)
                data = json.dumps(shard).encode()
            files[str(path.relative_to(out))] = data
    return files


@pytest.mark.real_data
@pytest.mark.slow
def test_workers_and_resume_give_identical_output(tmp_path):
    videos, dets = two_videos(tmp_path)
    args = ["--detections", str(dets), "--mode", "negatives", "--sure-score", "2", "--min-area", "0", "--border", "0", "--quiet"]
    reference = tmp_path / "reference"
    command = [sys.executable, "-m", "flickermine.cli", "mine", *map(str, videos), "--out"]
    subprocess.run(command + [str(reference), *args], check=True, capture_output=True, timeout=600)
    expected = _dataset_files(reference)
    assert any(k.startswith("images/pets09-s2l1-video/") for k in expected)

    parallel = tmp_path / "parallel"
    subprocess.run(command + [str(parallel), *args, "--workers", "2"], check=True, capture_output=True, timeout=600)
    assert _dataset_files(parallel) == expected

    # Kill a run part-way through (after its first images are written), then run it again.
    resumed = tmp_path / "resumed"
    process = subprocess.Popen(command + [str(resumed), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((resumed / "images").rglob("*.jpg")):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (resumed / "annotations.json").exists()
    subprocess.run(command + [str(resumed), *args], check=True, capture_output=True, timeout=600)
    assert _dataset_files(resumed) == expected


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _running(pid: int) -> bool:
    try:  # a zombie (exited, not yet reaped by whoever adopted it) is not running
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.mark.real_data
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads worker processes from Linux /proc")
def test_workers_leave_when_the_run_is_killed(tmp_path):
    """A parent killed with SIGTERM cannot shut its pool down: its workers must not mine on."""
    videos, dets = two_videos(tmp_path)
    out = tmp_path / "out"
    # The support rule with hard positives mines at ~90 frames/s here: seconds of work per video.
    command = [sys.executable, "-m", "flickermine.cli", "mine", *map(str, videos), "--detections", str(dets),
               "--rule", "support", "--mode", "hn+hp", "--workers", "2", "--quiet", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and len(workers) < 3:
        workers |= _children(process.pid)  # two workers and multiprocessing's resource tracker
        time.sleep(0.05)
    assert process.poll() is None and workers, "the run ended before its workers could be seen"
    time.sleep(0.5)
    workers |= _children(process.pid)
    process.send_signal(signal.SIGTERM)
    process.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_running(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if _running(pid)], "workers went on after their parent was killed"
    assert not (out / "annotations.json").exists()


@pytest.mark.real_data
@pytest.mark.parametrize("workers", ["1", "2"])
def test_unknown_category_fails_before_any_work(tmp_path, capsys, workers):
    from flickermine.cli import main

    video = shared_data("tud-campus", "video.mp4")
    out = tmp_path / "out"
    code = main(["mine", str(video), str(shared_data("otb-girl", "img")), "--detector", "opencv-hog", "--category", "dog",
                 "--out", str(out), "--workers", workers, "--quiet"])
    assert code == 2
    assert "dog" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.real_data
def test_a_videos_thread_share_gives_the_same_shard_and_restores_opencv(tmp_path):
    """What --workers and Ray tasks do (a share of the cores): same shard, OpenCV's pool and the
    rule threads put back."""
    import cv2

    from flickermine.mining import set_num_threads
    from flickermine.runner._mine_job import VideoJob, mine_video_job

    job = VideoJob("video", shared_data("tud-campus", "video.mp4"), shared_data("tud-campus", "det", "faster_rcnn.txt"))
    before = cv2.getNumThreads()
    rule_threads = set_num_threads(5)
    shards = {}
    try:
        for threads in (None, 1, 3):
            out = tmp_path / str(threads)
            out.mkdir()
            stats = mine_video_job(job, out, RunConfig(rule="support", mode="hn+hp"), threads=threads)
            assert stats["frames"] == 71 and cv2.getNumThreads() == before
            assert set_num_threads(5) == 5  # put back after the call
            shard = json.loads((out / "shards" / "video.json").read_text())
            shard.pop("seconds"), shard.pop("frames_per_second")
            shards[threads] = shard
    finally:
        set_num_threads(rule_threads)
    assert shards[None] == shards[1] == shards[3] and shards[1]["images"]

