"""The mined dataset and what trains on it.

- :mod:`.writer`: mined frames as a COCO dataset folder (``flickermine mine --out``): per-video
  shards, the merge, the report, the drawings and contact sheet;
- :mod:`.presets`: the paper's ablations as training presets (base set merged with a mined set).
"""
