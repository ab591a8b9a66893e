"""The one decode -> detections -> Miner loop (runner/_loop.py): frames paired with a file's
Detections, every miner fed, the file checked against the decoded frame count."""

from __future__ import annotations

import numpy as np
import pytest

from flickermine import Miner, MiningParams
from flickermine.io._mot import DetectionFileError, write_mot
from flickermine.io._formats import open_detections
from flickermine.runner._loop import mine_stream
from flickermine.runner._pipeline import VideoMiner
from flickermine.video import open_video


def _clip(tmp_path, frames=6):
    import cv2

    rng = np.random.default_rng(0)
    folder = tmp_path / "img"
    folder.mkdir()
    for i in range(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return folder


def test_mine_stream_feeds_every_miner_and_finishes(tmp_path):
    folder = _clip(tmp_path)
    dets = tmp_path / "det.txt"
    box = np.array([[10.0, 10.0, 30.0, 40.0]])
    write_mot(dets, [(i, box, np.array([0.9])) for i in range(6)])
    source = open_video(folder)
    miners = [Miner(MiningParams(window=1)), Miner(MiningParams(window=2))]
    steps = list(mine_stream(source, open_detections(dets, frame_count=source.frame_count), miners))
    assert len(steps) == 7 and steps[-1].frame is None and steps[-1].detections is None
    assert [s.frame.index for s in steps[:-1]] == list(range(6))
    for m in range(2):
        decided = [v.frame_index for s in steps for v in s.verdicts[m]]
        assert decided == list(range(6))
    assert sorted(v.frame_index for v in VideoMiner(folder, dets, MiningParams(window=1))) == list(range(6))


def test_mine_stream_checks_the_file_against_the_decoded_frames(tmp_path):
    folder = _clip(tmp_path, frames=3)
    dets = tmp_path / "det.txt"
    dets.write_text("5,-1,1,1,10,10,0.9\n")
    source = open_video(folder)
    reader = open_detections(dets)  # no frame count: the file is checked once decoding ends
    with pytest.raises(DetectionFileError, match="beyond the end of the video"):
        list(mine_stream(source, reader, [Miner()]))
