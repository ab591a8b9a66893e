"""The mined dataset and what trains on it.

- :mod:`._writer`: mined frames as a COCO dataset folder (``flickermine mine --out``): per-video
  shards, the merge, the report, the drawings and contact sheet;
- :mod:`._presets`: the paper's ablations as training presets (base set merged with a mined set);
- :mod:`._review`: the self-contained review page of a mined set (``flickermine review``), whose
  marks ``coco merge --reject`` honours;
- :mod:`._labelled_frames`: frames of a video with MOT ground truth as a COCO dataset (``flickermine
  coco from-mot``), to train and test a detector on.
"""

from __future__ import annotations

from ._labelled_frames import write_labelled_frames
from ._presets import Preset, prepare_training_set
from ._writer import MODES, Mode, RunConfig, ShardWriter, merge_shards, read_shard

__all__ = ["MODES", "Mode", "Preset", "RunConfig", "ShardWriter", "merge_shards", "prepare_training_set", "read_shard", "write_labelled_frames"]
