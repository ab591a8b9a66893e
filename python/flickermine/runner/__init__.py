"""Jobs that decode videos or images once, in order, run a detector and write what it found.

- :mod:`._inputs`: the videos a run's inputs name, and their detections files;
- :mod:`._mine_job`: one video of a mining run (:func:`~._mine_job.mine_video_job`), what every
  executor runs; :mod:`._mine_run`: a whole run (``flickermine mine --out``) with local worker
  processes or :mod:`._ray_executor`'s Ray tasks;
- :mod:`._pipeline`: one video's verdicts (``flickermine mine --verdicts``);
- :mod:`._gpu_pipeline`: decoding, batching and inference side by side;
- :mod:`._detect_job`: ``flickermine detect`` and ``mine-negatives``;
- :mod:`._demo`: the synthetic clip of ``flickermine demo``;
- :mod:`._api`: :func:`~._api.mine`, one call for embedding (``flickermine.mine``).
"""

from __future__ import annotations

from ._api import MineSummary, mine
from ._detect_job import detect_videos, mine_negatives
from ._gpu_pipeline import DetectorPipeline
from ._loop import MinedFrame, mine_stream
from ._mine_run import RunResult, run_mining
from ._pipeline import MiningSummary, VideoMiner, mine_video

__all__ = [
    "DetectorPipeline",
    "MineSummary",
    "MinedFrame",
    "MiningSummary",
    "RunResult",
    "VideoMiner",
    "detect_videos",
    "mine",
    "mine_negatives",
    "mine_stream",
    "mine_video",
    "run_mining",
]
