"""Jobs that decode videos or images once, in order, run a detector and write what it found.

- :mod:`.inputs`: the videos a run's inputs name, and their detections files;
- :mod:`.mine_job`: one video of a mining run (:func:`~.mine_job.mine_video_job`), what every
  executor runs; :mod:`.mine_run`: a whole run (``flickermine mine --out``) with local worker
  processes or :mod:`.ray_executor`'s Ray tasks;
- :mod:`.pipeline`: one video's verdicts (``flickermine mine --verdicts``);
- :mod:`.gpu_pipeline`: decoding, batching and inference side by side;
- :mod:`.detect_job`: ``flickermine detect`` and ``mine-negatives``;
- :mod:`.demo`: the synthetic clip of ``flickermine demo``;
- :mod:`.api`: :func:`~.api.mine`, one call for embedding (``flickermine.mine``).
"""

from __future__ import annotations

from .api import MineSummary, mine
from .detect_job import detect_videos, mine_negatives
from .gpu_pipeline import DetectorPipeline
from .loop import MinedFrame, mine_stream
from .mine_run import RunResult, run_mining
from .pipeline import MiningSummary, VideoMiner, mine_video

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
