"""The mining itself: the flicker rules and their parameters, the kernels that run them on a
backend, and the streaming miner.

- :mod:`._params`: :class:`~._params.MiningParams`, the rules and the reason codes;
- :mod:`._rules`: the rules, in NumPy (docs/rules.md);
- :mod:`._backends`: the kernels (C++, CUDA, Numba, OpenCV, NumPy) behind one interface;
- :mod:`._kernels`: the typed public kernels (``frame_verdicts``, ``iou``, ``ncc_search`` ...),
  validating their inputs before a backend sees them;
- :mod:`._miner`: :class:`~._miner.Miner`, frames and detections in, verdicts out.

The package root (``import flickermine``) re-exports their public names.
"""

from __future__ import annotations

from ._backends import BACKENDS, Backend, BackendName, available_backends, get_backend, unavailable_backends
from ._kernels import frame_hard_positives, frame_verdicts, iou, ncc_search, ncc_search_batch, set_num_threads
from ._miner import FrameVerdicts, Miner, mine_frames
from ._params import MiningParams, Reason, Rule
from ._rules import RuleName

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendName",
    "FrameVerdicts",
    "Miner",
    "MiningParams",
    "Reason",
    "Rule",
    "RuleName",
    "available_backends",
    "frame_hard_positives",
    "frame_verdicts",
    "get_backend",
    "iou",
    "mine_frames",
    "ncc_search",
    "ncc_search_batch",
    "set_num_threads",
    "unavailable_backends",
]
