"""Faults: a multi-video ``mine --out`` run killed (SIGKILL) just before each of its atomic
renames, then rerun, gives the uninterrupted run's output and leaves no temporary file; a full
disk, an exhausted quota or a read-only filesystem is reported naming the file being written.

The kills use the test-only fault hook of :mod:`flickermine._files`
(``FLICKERMINE_FAULT_COUNT_FILE``, ``FLICKERMINE_FAULT_AT_RENAME``)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flickermine import _files

from .conftest import shared_data

MINE = [sys.executable, "-m", "flickermine.cli", "mine"]
LOOSE_ARGS = ["--mode", "negatives", "--sure-score", "2", "--min-area", "0", "--border", "0", "--quiet", "--visualize"]
FAULT_VARIABLES = (_files._FAULT_COUNT_FILE, _files._FAULT_AT_RENAME)


@pytest.fixture
def two_videos(tmp_path):
    """Two copies of tud-campus (71 frames; copies, as two links to one file are one video) with
    their detections in a folder, one ``<stem>.txt`` each, plus a box seen every tenth frame
    only (a hard negative) so that frames are kept and JPEGs written."""
    video = shared_data("tud-campus", "video.mp4")
    source = shared_data("tud-campus", "det", "faster_rcnn.txt").read_text()
    (tmp_path / "videos").mkdir()
    (tmp_path / "dets").mkdir()
    videos = []
    for name in ("a", "b"):
        target = tmp_path / "videos" / f"{name}.mp4"
        target.write_bytes(video.read_bytes())
        videos.append(target)
        extra = "".join(f"{f},-1,5.0,5.0,40.0,80.0,0.95,-1,-1,-1\n" for f in range(5, 71, 10))
        (tmp_path / "dets" / f"{name}.txt").write_text(source + extra)
    return videos, tmp_path / "dets"


def _mine(videos, dets, out: Path, cwd: Path, **fault: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in FAULT_VARIABLES}
    env.update(fault)
    command = MINE + [str(v) for v in videos] + ["--detections", str(dets), "--out", str(out), *LOOSE_ARGS]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _leftovers(out: Path) -> list[str]:
    return sorted(
        str(p.relative_to(out)) for p in out.rglob("*")
        if _files.is_temporary_name(p.name) or p.name.endswith((".tmp", ".partial"))
    )


#: what changes from one run to the next: timings, dates, "done" vs "skipped (done before)"
_VOLATILE = {"seconds", "frames_per_second", "date_created", "status"}


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _snapshot(out: Path) -> dict:
    """Every file of a dataset folder: JSON files without their volatile fields, others by hash."""
    files = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = str(path.relative_to(out))
        if path.suffix == ".json":
            payload = _stable(json.loads(path.read_text()))
            if name == "report.json":
                payload["videos"] = sorted(payload["videos"], key=lambda v: v["video"])
            files[name] = payload
        else:
            files[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _uninterrupted(videos, dets, tmp_path) -> tuple[dict, list[str]]:
    """The reference output, and the targets of its renames in order (the fault hook's count)."""
    count_file = tmp_path / "renames.txt"
    out = tmp_path / "uninterrupted"
    result = _mine(videos, dets, out, tmp_path, **{_files._FAULT_COUNT_FILE: str(count_file)})
    assert result.returncode == 0, result.stderr
    targets = [line.split(" ", 1)[1] for line in count_file.read_text().splitlines()]
    names = [str(Path(t).relative_to(out)) for t in targets]
    # run.json, both shards, annotations.json, report.json, contact_sheet.png at least
    assert {"run.json", "shards/a.json", "shards/b.json", "annotations.json", "report.json"} <= set(names), names
    coco = json.loads((out / "annotations.json").read_text())
    assert {i["video"] for i in coco["images"]} == {"a", "b"}
    assert not _leftovers(out)
    return _snapshot(out), names


@pytest.mark.slow
@pytest.mark.real_data
def test_a_run_killed_at_each_rename_then_rerun_gives_the_uninterrupted_output(tmp_path, two_videos):
    videos, dets = two_videos
    reference, renames = _uninterrupted(videos, dets, tmp_path)
    left_by_kills: list[str] = []
    for n, name in enumerate(renames, start=1):
        out = tmp_path / f"killed-at-{n}"
        count_file = tmp_path / f"renames-{n}.txt"
        killed = _mine(
            videos, dets, out, tmp_path,
            **{_files._FAULT_AT_RENAME: str(n), _files._FAULT_COUNT_FILE: str(count_file)},
        )
        assert killed.returncode == -signal.SIGKILL, (n, name, killed.returncode, killed.stderr)
        done = [str(Path(line.split(" ", 1)[1]).relative_to(out)) for line in count_file.read_text().splitlines()]
        assert done == renames[:n], f"killed before rename {n}: the renames differ from the uninterrupted run's"
        assert not (out / name).exists() or name in renames[: n - 1]  # the n-th never happened
        left_by_kills += _leftovers(out)
        rerun = _mine(videos, dets, out, tmp_path)
        assert rerun.returncode == 0, (n, name, rerun.stderr)
        assert _leftovers(out) == [], f"killed before rename {n} ({name}): the rerun left temporary files"
        assert _snapshot(out) == reference, f"killed before rename {n} ({name}): the rerun's output differs"
    assert left_by_kills  # the kills did leave temporary files for the reruns to remove


@pytest.mark.slow
@pytest.mark.real_data
def test_a_rerun_killed_too_then_rerun_gives_the_uninterrupted_output(tmp_path, two_videos):
    """Killed before its shards' renames, and the rerun killed at its own first rename as well."""
    videos, dets = two_videos
    reference, renames = _uninterrupted(videos, dets, tmp_path)
    for n in (renames.index("shards/a.json") + 1, renames.index("shards/b.json") + 1):
        out = tmp_path / f"killed-twice-{n}"
        for at in (str(n), "1"):
            result = _mine(videos, dets, out, tmp_path, **{_files._FAULT_AT_RENAME: at})
            assert result.returncode == -signal.SIGKILL, (n, at, result.stderr)
        assert _mine(videos, dets, out, tmp_path).returncode == 0
        assert _leftovers(out) == [] and _snapshot(out) == reference, n


# --- a full disk, quota or read-only filesystem names the file ---------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS], ids=["ENOSPC", "EDQUOT", "EROFS"])
def test_a_full_disk_while_flushing_names_the_target(tmp_path, monkeypatch, code):
    target = tmp_path / "out" / "report.json"

    def no_space(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as caught:
        _files.write_json_atomic(target, {"a": 1})
    assert caught.value.errno == code and str(target) in str(caught.value)
    assert not target.exists() and _leftovers(tmp_path) == []


def test_a_full_disk_while_writing_names_the_target(tmp_path, monkeypatch):
    target = tmp_path / "annotations.json"
    real_write = os.write

    def no_space(fd, data):
        if fd > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(OSError) as caught:
        with _files.replaced_atomically(target) as temporary:
            fd = os.open(temporary, os.O_WRONLY)
            try:
                os.write(fd, b"{}")
            finally:
                os.close(fd)
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value) == f"[Errno {errno.ENOSPC}] No space left on device: '{target}'"
    assert not target.exists() and _leftovers(tmp_path) == []


def test_a_full_disk_in_an_atomic_writer_names_the_target(tmp_path, monkeypatch):
    """Lines buffered by an :class:`AtomicWriter` (the MOT and verdicts writers) that the disk
    refuses, when written out or when the file is closed: the target is named, nothing is left."""
    target = tmp_path / "verdicts.csv"

    class Lines(_files.AtomicWriter):
        def add(self, text):
            self._handle.write(text)
            self._handle.flush()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as caught:
        with Lines(target) as writer:
            writer.add("frame,x\n")
    assert caught.value.errno == errno.ENOSPC and str(target) in str(caught.value)
    assert not target.exists() and _leftovers(tmp_path) == []
    monkeypatch.undo()

    def full(self, text):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(Lines, "add", full)
    with pytest.raises(OSError) as caught:
        with Lines(target) as writer:
            writer.add("frame,x\n")
    assert caught.value.errno == errno.EDQUOT and str(target) in str(caught.value)
    assert not target.exists() and _leftovers(tmp_path) == []


def test_a_read_only_filesystem_when_creating_the_temporary_names_the_target(tmp_path, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    target = tmp_path / "run.json"
    with pytest.raises(OSError) as caught:
        _files.write_json_atomic(target, {})
    assert caught.value.errno == errno.EROFS and str(target) in str(caught.value)


def test_other_errors_keep_their_message(tmp_path, monkeypatch):
    def denied(fd):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "fsync", denied)
    with pytest.raises(PermissionError, match=r"^\[Errno 13\] Permission denied$"):
        _files.write_json_atomic(tmp_path / "x.json", {})


def test_the_cli_prints_one_line_naming_the_file_when_the_disk_is_full(tmp_path, monkeypatch, capsys):
    from flickermine.cli import main

    video = shared_data("tud-campus", "video.mp4")
    dets = shared_data("tud-campus", "det", "faster_rcnn.txt")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)  # run.json, the first file written, cannot be flushed
    out = tmp_path / "out"
    assert main(["mine", str(video), "--detections", str(dets), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "No space left on device" in err and str(out / "run.json") in err
    assert _leftovers(out) == []
