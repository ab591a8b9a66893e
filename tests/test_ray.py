"""The Ray executor: same output as the local one, workers killed mid-video, videos that always fail.

A local Ray instance (2 CPUs) is started once for the tests that need it (marked ``ray``: deselect
them with ``-m 'not ray'``) and shut down after; they skip when Ray is not installed
(``pip install 'flickermine[ray]'``). The checks of options and messages run without a cluster.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from flickermine.dataset._writer import RunConfig
from flickermine.runner._inputs import video_keys
from flickermine.runner._mine_run import run_mining

from .conftest import shared_data
from .test_dataset import LOOSE, _dataset_files, dets_folder

pytestmark = [
    # Ray's own modules warn about their dependencies now and then; not ours to fail on.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install 'flickermine[ray]')")
CONFIG = RunConfig(params=LOOSE, mode="negatives", category="person")
CLIP_FRAMES = 150


def _write_clip(source: Path, dets: Path, folder: Path) -> tuple[Path, Path]:
    """The first CLIP_FRAMES frames of ``source`` re-encoded with cv2.VideoWriter, and their detections."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    clip = folder / "clip.avi"
    writer = None
    for _ in range(CLIP_FRAMES):
        ok, frame = capture.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frame.shape[1], frame.shape[0]))
        writer.write(frame)
    writer.release()
    capture.release()
    clip_dets = folder / "clip.txt"
    lines = [line for line in dets.read_text().splitlines() if line.strip() and int(float(line.split(",")[0])) <= CLIP_FRAMES]
    clip_dets.write_text("\n".join(lines) + "\n")
    return clip, clip_dets


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[list[Path], Path, dict[str, bytes]]:
    """Three short videos, their detections folder, and the local executor's output files."""
    base = tmp_path_factory.mktemp("ray-inputs")
    clip, clip_dets = _write_clip(
        shared_data("pets09-s2l1", "video.avi"), shared_data("pets09-s2l1", "det", "opencv_haar_fullbody.txt"), base / "clip"
    )
    videos = [shared_data("tud-campus", "video.mp4"), shared_data("otb-girl", "img"), clip]
    keys = video_keys(videos)
    assert keys == ["video", "otb-girl", "clip"]
    dets = dets_folder(
        base,
        {
            keys[0]: shared_data("tud-campus", "det", "faster_rcnn.txt"),
            keys[1]: shared_data("otb-girl", "det", "opencv_haar_frontalface.txt"),
            keys[2]: clip_dets,
        },
    )
    reference = base / "local"
    result = run_mining(videos, reference, CONFIG, detections=dets, workers=2, progress=False, log=lambda _: None)
    assert result.exit_code == 0
    expected = _dataset_files(reference)
    assert any(name.startswith("images/clip/") for name in expected)
    return videos, dets, expected


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'flickermine[ray]')")
    ray.init(address="local", num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()


def _mine_on_ray(videos, dets, out, **options):
    lines: list[str] = []
    result = run_mining(videos, out, CONFIG, detections=dets, executor="ray", progress=False, log=lines.append, **options)
    return result, lines


# slow: these three share the module fixtures that start Ray and mine the reference (~7 s)
@pytest.mark.slow
@needs_ray
@pytest.mark.ray
@pytest.mark.real_data
def test_ray_output_is_identical_to_local(tmp_path, inputs, cluster):
    videos, dets, expected = inputs
    out = tmp_path / "ray"
    result, _ = _mine_on_ray(videos, dets, out)
    assert result.exit_code == 0
    assert [v["status"] for v in result.videos] == ["done"] * 3
    assert _dataset_files(out) == expected
    report = json.loads((out / "report.json").read_text())
    assert [v["frames"] for v in report["videos"]] == [71, 500, CLIP_FRAMES]


@pytest.mark.slow
@needs_ray
@pytest.mark.ray
@pytest.mark.real_data
def test_worker_killed_mid_video_is_retried(tmp_path, inputs, cluster, monkeypatch):
    videos, dets, expected = inputs
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("FLICKERMINE_TEST_KILL_ONCE", str(marker))
    out = tmp_path / "ray"
    result, _ = _mine_on_ray(videos, dets, out, max_retries=2)
    assert marker.exists(), "the fault hook did not fire"
    assert result.exit_code == 0
    assert [v["status"] for v in result.videos] == ["done"] * 3
    assert sorted(v.get("attempts", 1) for v in result.videos) == [1, 1, 2]  # one video ran twice
    assert _dataset_files(out) == expected


@pytest.mark.slow
@needs_ray
@pytest.mark.ray
@pytest.mark.real_data
def test_video_failing_every_retry_is_reported_and_the_rest_finish(tmp_path, inputs, cluster, monkeypatch):
    videos, dets, expected = inputs
    monkeypatch.setenv("FLICKERMINE_TEST_FAIL_VIDEO", "otb-girl")
    out = tmp_path / "ray"
    result, lines = _mine_on_ray(videos, dets, out, max_retries=1)
    assert result.exit_code == 1
    assert [v["status"] for v in result.videos] == ["done", "failed", "done"]
    failed = result.videos[1]
    assert failed["attempts"] == 2 and "worker died (2 attempts)" in failed["error"]
    assert any(line.startswith("failed:") and "otb-girl" in line for line in lines)
    written = _dataset_files(out)
    assert not (out / "shards" / "otb-girl.json").exists()
    for name, data in expected.items():
        if name.startswith(("images/clip/", "images/video/", "shards/clip.json", "shards/video.json")):
            assert written[name] == data

    # The same command again (no fault) mines only the failed video and gives the full output.
    monkeypatch.delenv("FLICKERMINE_TEST_FAIL_VIDEO")
    result, _ = _mine_on_ray(videos, dets, out)
    assert [v["status"] for v in result.videos] == ["skipped (done before)", "done", "skipped (done before)"]
    assert _dataset_files(out) == expected


def test_without_ray_the_executor_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from flickermine.cli import main
    from flickermine.runner._ray_executor import RayNotInstalledError

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    video = tmp_path / "v.mp4"
    with pytest.raises(RayNotInstalledError, match=r"pip install 'flickermine\[ray\]'") as info:
        run_mining([video], tmp_path / "out", CONFIG, detections=tmp_path, executor="ray", progress=False, log=lambda _: None)
    assert isinstance(info.value, ImportError)
    assert main(["mine", str(video), "--detections", str(tmp_path), "--out", str(tmp_path / "out"), "--executor", "ray"]) == 2
    assert "pip install 'flickermine[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing was started


def test_executor_name_is_checked(tmp_path):
    with pytest.raises(ValueError, match="executor must be"):
        run_mining([tmp_path / "v.mp4"], tmp_path / "out", CONFIG, executor="dask", progress=False, log=lambda _: None)


def test_ray_options_are_checked_before_any_work(tmp_path):
    out = tmp_path / "out"
    for options, message in [({"cpus_per_video": -1}, "cpus-per-video"), ({"cpus_per_video": 0}, "not both 0"), ({"max_retries": -1}, "max-retries")]:
        with pytest.raises(ValueError, match=message):
            run_mining([tmp_path / "v.mp4"], out, CONFIG, executor="ray", progress=False, log=lambda _: None, **options)
    assert not out.exists()


@needs_ray
@pytest.mark.real_data
def test_an_unreachable_cluster_fails_at_once(tmp_path, capsys):
    """ray.init retries a dead address for minutes; the driver says so before any work."""
    import socket
    import time

    from flickermine.cli import main

    with socket.socket() as probe:  # a port nothing listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out"
    video = shared_data("tud-campus", "video.mp4")
    dets = shared_data("tud-campus", "det", "faster_rcnn.txt")
    start = time.monotonic()
    code = main(["mine", str(video), "--detections", str(dets), "--out", str(out), "--executor", "ray",
                 "--address", f"127.0.0.1:{port}", "--quiet"])
    assert code == 2 and time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in err and "ray start --head" in err
    assert not out.exists()
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        run_mining([video], out, CONFIG, detections=dets, executor="ray", ray_address="head-node", progress=False)
