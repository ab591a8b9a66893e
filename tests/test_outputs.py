"""Outputs under concurrency, crashes and changed inputs: locks, atomic temporary files, sweeping
what killed runs left, merging earlier runs' shards, video fingerprints, one-line errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flickermine import _files
from flickermine.cli import main
from flickermine.dataset._writer import RunConfig
from flickermine.runner._mine_run import run_mining

from .conftest import shared_data

CLI = [sys.executable, "-m", "flickermine.cli", "mine"]
LOOSE_ARGS = ["--mode", "negatives", "--sure-score", "2", "--min-area", "0", "--border", "0", "--quiet"]


def _flickering(source: Path, target: Path, frames: range) -> Path:
    """``source``'s detections plus a box seen in one frame only every tenth frame (a hard
    negative), so that --mode negatives keeps frames."""
    extra = "".join(f"{f},-1,5.0,5.0,40.0,80.0,0.95,-1,-1,-1\n" for f in frames)
    target.write_text(source.read_text() + extra)
    return target


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def _wait_for(predicate, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            pytest.fail(f"the first run ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


def _second_run_fails_while_first_is_stopped(first: list[str], second: list[str], started) -> tuple[subprocess.CompletedProcess, int]:
    """Start ``first``, freeze it (SIGSTOP) once ``started()`` says it is writing, run ``second``
    to its end, then let the first finish; return the second's result and the first's exit code."""
    process = subprocess.Popen(first, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(started, process, "it started writing")
        process.send_signal(signal.SIGSTOP)
        second_result = subprocess.run(second, capture_output=True, text=True, timeout=120)
    finally:
        process.send_signal(signal.SIGCONT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return second_result, process.returncode


@pytest.mark.real_data
def test_two_verdicts_runs_to_one_csv_the_second_fails_at_once(tmp_path):
    video = shared_data("pets09-s2l1", "video.avi")
    dets = shared_data("pets09-s2l1", "det", "faster_rcnn.txt")
    out = tmp_path / "v.csv"
    command = CLI + [str(video), "--detections", str(dets), "--verdicts", str(out), "--quiet"]

    def writing() -> bool:
        return any(p.name.startswith(".v.csv.") and p.name.endswith(".tmp") for p in tmp_path.iterdir()) or (
            tmp_path / "v.csv.partial"
        ).exists()

    second, _ = _second_run_fails_while_first_is_stopped(command, command, writing)
    assert second.returncode == 2, second.stdout + second.stderr
    message = second.stderr.strip()
    assert "\n" not in message and "in use by another flickermine run" in message and str(out) in message
    rows = _rows(out)  # the first run's CSV, whole
    assert len(rows) == 4150 and int(rows[-1]["frame"]) == 795
    # no temporary file is left behind, and each run has its own (never a shared fixed name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".v.csv.lock", "v.csv"]


@pytest.mark.real_data
def test_two_mine_runs_into_one_folder_the_second_fails_at_once(tmp_path):
    video = shared_data("pets09-s2l1", "video.avi")
    dets = shared_data("pets09-s2l1", "det", "faster_rcnn.txt")
    out = tmp_path / "out"
    command = CLI + [str(video), "--detections", str(dets), "--out", str(out), *LOOSE_ARGS]
    second, _ = _second_run_fails_while_first_is_stopped(command, command, lambda: (out / "run.json").exists())
    assert second.returncode == 2, second.stdout + second.stderr
    message = second.stderr.strip()
    assert "\n" not in message and "in use by another flickermine run" in message and str(out) in message
    coco = json.loads((out / "annotations.json").read_text())
    assert coco["images"] and {i["video"] for i in coco["images"]} == {"video"}


@pytest.mark.real_data
def test_a_planted_partial_link_is_not_followed(tmp_path):
    video = shared_data("tud-campus", "video.mp4")
    dets = shared_data("tud-campus", "det", "faster_rcnn.txt")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "v.csv"
    (tmp_path / "v.csv.partial").symlink_to(victim)
    (tmp_path / ".v.csv.k1ll3d.tmp").write_text("what a SIGKILLed run left")  # swept under the lock
    (tmp_path / ".other.csv.k1ll3d.tmp").write_text("another file's: kept")
    assert main(["mine", str(video), "--detections", str(dets), "--verdicts", str(out), "--quiet"]) == 0
    assert victim.read_text() == "precious\n"
    assert len(_rows(out)) == 277
    assert not (tmp_path / ".v.csv.k1ll3d.tmp").exists() and (tmp_path / ".other.csv.k1ll3d.tmp").exists()
    # A failed run keeps its rows in v.csv.partial: it replaces the link, never writes through it.
    pets = shared_data("pets09-s2l1", "video.avi")
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(pets.read_bytes()[: pets.stat().st_size // 2])
    pets_dets = shared_data("pets09-s2l1", "det", "faster_rcnn.txt")
    assert main(["mine", str(truncated), "--detections", str(pets_dets), "--verdicts", str(out), "--quiet"]) == 2
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "v.csv.partial").is_symlink() and len(_rows(tmp_path / "v.csv.partial")) > 0
    assert len(_rows(out)) == 277  # the earlier result stays


def test_atomic_writes_create_exclusively_and_flush_file_and_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(_files.os, "fsync", fsync)
    target = tmp_path / "a.json"
    _files.write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert str(tmp_path) in synced and any(s.endswith(".tmp") or s == str(target) for s in synced)
    synced.clear()
    with _files.AtomicWriter(tmp_path / "b.txt") as writer:
        writer._handle.write("x")
    assert (tmp_path / "b.txt").read_text() == "x" and str(tmp_path) in synced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.txt"]


@pytest.mark.real_data
def test_what_killed_and_failed_runs_leave_is_removed(tmp_path, monkeypatch):
    good = shared_data("tud-campus", "video.mp4")
    pets = shared_data("pets09-s2l1", "video.avi")
    dets = tmp_path / "dets"
    dets.mkdir()
    _flickering(shared_data("tud-campus", "det", "faster_rcnn.txt"), dets / "video.txt", range(5, 71, 10))
    _flickering(shared_data("pets09-s2l1", "det", "faster_rcnn.txt"), dets / "truncated.txt", range(5, 300, 10))
    out = tmp_path / "out"
    args = ["--detections", str(dets), "--out", str(out), *LOOSE_ARGS]
    assert main(["mine", str(good), *args]) == 0
    # What a SIGKILL leaves: temporary files of run.json and of a shard, JPEGs of an unfinished video.
    planted = [out / ".run.json.k1llme.tmp", out / "shards" / ".video.json.abc123.tmp", out / ".report.json.x9y8z7.tmp"]
    for path in planted:
        path.write_text("half")
    (out / "images" / "ghost").mkdir()
    (out / "images" / "ghost" / "000001.jpg").write_bytes(b"jpeg")
    # A video that fails part-way (decoding stops before its detections end) after writing JPEGs.
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(pets.read_bytes()[: pets.stat().st_size // 2])
    import flickermine.runner._mine_run as mine_run

    discarded = {}
    real_discard = mine_run.discard_video

    def discard(out_dir, key):
        discarded[key] = len(list((out_dir / "images" / key).glob("*.jpg")))
        real_discard(out_dir, key)

    monkeypatch.setattr(mine_run, "discard_video", discard)
    lines = []
    result = run_mining(
        [good, truncated], out, RunConfig(params=_loose_params(), mode="negatives"), detections=dets,
        progress=False, log=lines.append,
    )
    assert [v["status"] for v in result.videos] == ["skipped (done before)", "failed"]
    assert not any(p.exists() for p in planted)
    assert not (out / "images" / "ghost").exists()
    assert discarded["truncated"] > 0  # it had written JPEGs before it failed
    assert not (out / "images" / "truncated").exists()  # listed by no shard: removed
    listed = {i["file_name"] for i in json.loads((out / "annotations.json").read_text())["images"]}
    on_disk = {str(p.relative_to(out)) for p in (out / "images").rglob("*.jpg")}
    assert listed == on_disk and listed


def _loose_params():
    from flickermine import MiningParams

    return MiningParams(sure_score=2.0, min_area=0.0, border=0)


@pytest.mark.real_data
def test_a_second_run_into_a_folder_keeps_the_first_runs_videos(tmp_path, capsys):
    video = shared_data("tud-campus", "video.mp4")
    dets = tmp_path / "dets"
    dets.mkdir()
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b", "c"):
        os.symlink(video, videos / f"{name}.mp4")
        _flickering(shared_data("tud-campus", "det", "faster_rcnn.txt"), dets / f"{name}.txt", range(5, 71, 10))
    out = tmp_path / "out"
    args = ["--detections", str(dets), "--out", str(out), *LOOSE_ARGS]
    assert main(["mine", str(videos / "a.mp4"), *args]) == 0
    assert main(["mine", str(videos / "b.mp4"), *args]) == 0
    assert main(["mine", str(videos / "c.mp4"), *args]) == 0
    coco = json.loads((out / "annotations.json").read_text())
    per_video = {v: sum(i["video"] == v for i in coco["images"]) for v in ("a", "b", "c")}
    assert per_video["c"] > 0 and per_video["a"] == per_video["b"] == per_video["c"]
    assert [i["id"] for i in coco["images"]] == list(range(1, len(coco["images"]) + 1))
    report = json.loads((out / "report.json").read_text())
    assert sorted(v["video"] for v in report["videos"]) == ["a", "b", "c"]
    assert report["totals"]["kept_frames"] == len(coco["images"])
    assert "mined by earlier runs" in capsys.readouterr().out


@pytest.mark.real_data
def test_a_changed_video_is_refused_on_resume(tmp_path, capsys):
    video = tmp_path / "cam.mp4"
    shutil.copy(shared_data("tud-campus", "video.mp4"), video)
    dets = shared_data("tud-campus", "det", "faster_rcnn.txt")
    out = tmp_path / "out"
    args = ["mine", str(video), "--detections", str(dets), "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert main(args) == 0  # unchanged: resumed as done
    stat = video.stat()
    # Same size and modification time, other bytes in the last MiB.
    data = bytearray(video.read_bytes())
    data[-10] ^= 0xFF
    video.write_bytes(bytes(data))
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"video {video} changed" in err and "head_tail_sha256" in err
    # Same bytes again, another modification time: refused too.
    data[-10] ^= 0xFF
    video.write_bytes(bytes(data))
    assert main(args) == 2
    assert "mtime_ns" in capsys.readouterr().err


@pytest.mark.real_data
def test_one_detections_file_for_two_videos_of_one_name_is_an_error(tmp_path):
    video = shared_data("tud-campus", "video.mp4")
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(video, tmp_path / folder / "video.mp4")
    dets = tmp_path / "dets"
    dets.mkdir()
    shutil.copy(shared_data("tud-campus", "det", "faster_rcnn.txt"), dets / "video.txt")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"video\.txt would pair with two videos, .*a/video\.mp4 and .*b/video\.mp4") as info:
        run_mining([tmp_path / "a" / "video.mp4", tmp_path / "b" / "video.mp4"], out, RunConfig(), detections=dets,
                   progress=False, log=lambda _: None)
    assert "a-video.txt" in str(info.value) and "b-video.txt" in str(info.value)
    assert not out.exists()
    # Named after their output names, each gets its own.
    os.rename(dets / "video.txt", dets / "a-video.txt")
    shutil.copy(dets / "a-video.txt", dets / "b-video.txt")
    result = run_mining([tmp_path / "a" / "video.mp4", tmp_path / "b" / "video.mp4"], out, RunConfig(), detections=dets,
                        progress=False, log=lambda _: None)
    assert [v["status"] for v in result.videos] == ["done", "done"]


@pytest.mark.real_data
@pytest.mark.parametrize("where, content", [("run.json", "[]"), ("shards/video.json", "[]"), ("shards/video.json", "{}")])
def test_malformed_run_and_shard_files_give_one_line_errors(tmp_path, capsys, where, content):
    video = shared_data("tud-campus", "video.mp4")
    dets = shared_data("tud-campus", "det", "faster_rcnn.txt")
    out = tmp_path / "out"
    args = ["mine", str(video), "--detections", str(dets), "--out", str(out), "--quiet"]
    assert main(args) == 0
    (out / where).write_text(content)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(out / where) in err, err


@pytest.mark.parametrize("keys", [["cam1"], ["cam1", "cam2"]])
def test_mine_progress_is_one_bar_per_video_only_with_several_videos(capsys, keys):
    from flickermine.runner._mine_run import _Progress

    bars = _Progress(10 * len(keys), True, keys)
    for key in keys:
        bars.start(key, 10)
        bars.frames(key, 10)
        bars.done(key)
    bars.close()
    err = capsys.readouterr().err
    named = {line.split(":")[0].strip() for line in err.replace("\r", "\n").splitlines() if "frame" in line}
    assert named == ({"cam1"} if len(keys) == 1 else {"all videos", "cam1", "cam2"})
    assert f"{10 * len(keys)}/{10 * len(keys)}" in err
