"""flickermine: mine hard examples for object detectors from unlabelled video.

Detections isolated in time ("flickers") are hard negatives (Jin et al., ECCV 2018). See
:mod:`flickermine.mining._rules` for the rules and :class:`MiningParams` for their defaults.

:func:`flickermine.mine` (``flickermine.mine(video, detector=fn, out=DIR)``) mines videos into a COCO
dataset in one call, as ``flickermine mine`` does; it lives in :mod:`flickermine.runner._api` and is
loaded on first use.

Boxes everywhere are ``x1, y1, x2, y2`` float pixels, continuous coordinates; frames are
``(H, W)`` uint8 or float32 grayscale arrays; frame indices are 0-based (MOT files add 1).
"""

from __future__ import annotations

import importlib.metadata as _metadata

# The one version source is pyproject.toml; an installed package (wheel or editable) carries it.
try:
    __version__ = _metadata.version("flickermine")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

from .detect._detections import Detections
from .mining._backends import BACKENDS, available_backends, get_backend
from .mining._kernels import frame_hard_positives, frame_verdicts, iou, ncc_search, ncc_search_batch
from .mining._miner import FrameVerdicts, Miner, mine_frames
from .mining._params import MiningParams, Reason, Rule

__all__ = [
    "__version__",
    "BACKENDS",
    "Detections",
    "FrameVerdicts",
    "Miner",
    "MiningParams",
    "Reason",
    "Rule",
    "available_backends",
    "frame_hard_positives",
    "frame_verdicts",
    "get_backend",
    "iou",
    "mine",
    "mine_frames",
    "ncc_search",
    "ncc_search_batch",
]


def __getattr__(name: str):
    """``flickermine.mine``, loaded on first use: it runs whole jobs (:mod:`flickermine.runner`, a
    stage above this package's mining API), so ``import flickermine`` does not load them."""
    if name == "mine":
        from .runner._api import mine

        return mine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
