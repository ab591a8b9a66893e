"""``flickermine.mine(video, detector=..., out=DIR)``: one call to mine videos into a COCO dataset,
for embedding flickermine in other pipelines.

It runs what ``flickermine mine VIDEO --detector NAME --out DIR`` (or ``--detections FILE``) runs,
:func:`~flickermine.runner.run_mining`: same checks, same resumable folder, same
``annotations.json``, whose ``info["detector"]`` (and ``run.json``) records the detector. A
detector is a name of ``flickermine.detect.DETECTOR_NAMES``, a
:class:`~flickermine.detect.Detector`, or any function of one ``(H, W, 3)`` uint8 BGR
frame returning ``(boxes, scores[, labels])``, a mapping like torchvision's output, or a
:class:`~flickermine.detect.Detections` (wrapped by
:func:`~flickermine.detect.as_detector`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from ..dataset._writer import Mode, RunConfig
from ..detect._detections import CallableDetector, Detector, as_detector
from ..detect._registry import detector_info, make_detector
from ..detect._torchvision import TORCHVISION_MODELS
from ..errors import InputError, InputTypeError
from ..mining._backends import BackendName
from ..mining._params import DEFAULT_RULE, MiningParams, Rule
from ._mine_run import RunResult, run_mining

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["MineSummary", "mine"]


@dataclasses.dataclass(frozen=True)
class MineSummary:
    """What :func:`mine` wrote: the folder, its counts (summed over the videos), each video's row
    of ``report.json``, and the detector as recorded in ``info``."""

    out: Path
    images: int  #: images in annotations.json (kept frames of every video in the folder)
    annotations: int  #: labels in annotations.json
    hard_negatives: int
    pseudo_positives: int
    hard_positives: int
    frames: int
    detections: int
    videos: list  #: one dict per video: video, path, status (done | skipped ... | failed), counts
    detector: Optional[dict]  #: the detector recorded in annotations.json's info (None: detection files)
    coco: dict = dataclasses.field(repr=False)

    @property
    def annotations_file(self) -> Path:
        return self.out / "annotations.json"

    @property
    def failed(self) -> list:
        return [v for v in self.videos if v.get("status") == "failed"]

    @property
    def exit_code(self) -> int:
        """0: every video mined; 1: some failed (their rows say why), the rest were written."""
        return 1 if self.failed else 0

    def __str__(self) -> str:
        failed = f", {len(self.failed)} videos failed" if self.failed else ""
        return (
            f"{len(self.videos)} videos, {self.frames} frames, {self.detections} detections: {self.hard_negatives} hard "
            f"negatives; {self.images} images, {self.annotations} labels in {self.annotations_file}{failed}"
        )

    @classmethod
    def from_run(cls, result: RunResult, detector: Optional[dict]) -> "MineSummary":
        mined = [v for v in result.videos if v.get("status") != "failed"]

        def total(key: str) -> int:
            return sum(int(v.get(key) or 0) for v in mined)

        return cls(
            out=result.out, images=len(result.coco["images"]), annotations=len(result.coco["annotations"]),
            hard_negatives=total("hard_negatives"), pseudo_positives=total("pseudo_positives"),
            hard_positives=total("hard_positives"), frames=total("frames"), detections=total("detections"),
            videos=list(result.videos), detector=detector, coco=result.coco,
        )


def _stable_repr(detector: Any) -> Optional[str]:
    """``repr(detector)`` when it names the detector the same way every run (no memory address):
    run.json holds it, and a rerun into the folder must match it to resume."""
    try:
        text = repr(detector)
    except Exception:  # a user's object: any failure of its __repr__ just leaves it out
        return None
    return None if " at 0x" in text or len(text) > 500 else text


def _named_detector(name: str, category: str, options: dict) -> tuple[Callable[[], Detector], dict]:
    """The factory and the recorded info of a detector named as on the command line (``--detector``)."""
    options = dict(options)
    random_weights = bool(options.pop("random_weights", False))
    if name.strip() in TORCHVISION_MODELS:
        if not (options.get("weights") or options.get("named_weights") or random_weights):
            raise InputError(
                f"detector {name!r} needs its weights: detector_options={{'weights': PATH}} (a local checkpoint), "
                "{'named_weights': 'DEFAULT'} (from torch's cache), or {'random_weights': True} (plumbing and speed tests only)"
            )
    elif options.get("named_weights") or random_weights:
        raise InputError(f"detector {name!r}: named_weights and random_weights apply to torchvision detectors only")
    if category not in (None, "object"):
        options.setdefault("category", category)
    weights = options.get("weights")
    weights = str(weights) if weights is not None else None
    weights = weights or (f"torchvision {options['named_weights']}" if options.get("named_weights") else None)
    weights = weights or ("random" if random_weights else None)
    # as `flickermine mine --detector` records it: the CLI may resume a folder this wrote, and back
    info = {"name": name, "weights": weights, "category": category}
    return functools.partial(make_detector, name, **options), info


def _given_detector(detector: Any, options: dict) -> tuple[Callable[[], Detector], dict]:
    """The factory and the recorded info of a Detector or a function of one frame."""
    if options:
        if isinstance(detector, Detector):
            raise InputError("detector_options apply to a detector's name or a plain function, not to a Detector object")
        detector = CallableDetector(detector, **options)  # name, batch_size, batched, category_names
    built = as_detector(detector)  # a TypeError now for what is no detector
    info = detector_info(built)
    text = _stable_repr(detector)
    if text is not None:
        info["repr"] = text
    return functools.partial(as_detector, detector), info


def mine(
    video: Union[PathLike, Sequence[PathLike]],
    detector: Any = None,
    *,
    out: PathLike,
    detections: Optional[PathLike] = None,
    rule: Union[Rule, str] = DEFAULT_RULE,
    mode: Mode = "hn",
    category: str = "object",
    params: Optional[MiningParams] = None,
    backend: BackendName = "auto",
    workers: int = 1,
    visualize: bool = False,
    detector_options: Optional[dict] = None,
    progress: bool = False,
    log: Optional[Callable[[str], None]] = None,
    **overrides: Any,
) -> MineSummary:
    """Mine ``video`` (a video file, image folder, folder of videos, glob or ``.txt`` list; or a
    list of them) into the COCO dataset folder ``out``, as ``flickermine mine ... --out`` does.

    ``detector``: a name (``"opencv-hog"``, ``"fasterrcnn_resnet50_fpn"`` with
    ``detector_options={"weights": PATH}``...), a :class:`~flickermine.detect.Detector`,
    or a function of one frame (``detector_options`` then go to
    :class:`~flickermine.detect.CallableDetector`: ``name``, ``batch_size``,
    ``batched``, ``category_names``); or none, and ``detections`` a detections file (or a folder
    of them) instead. The detector is recorded in ``annotations.json``'s ``info["detector"]``:
    its name, or for a function its qualified name (and its ``repr`` where that holds no memory
    address). With ``workers > 1`` it must be picklable (a module-level function).

    ``params`` (default :class:`MiningParams`\\ ()) and ``overrides``, its fields by name
    (``score_threshold=0.5``...), set the rule's parameters. ``progress`` shows bars; ``log``
    receives the run's report lines (default: none printed). Returns a :class:`MineSummary`;
    a video that could not be read is in its ``failed``, the others are written.
    """
    if (detector is None) == (detections is None):
        raise InputError("give either detector=... or detections=... (a detections file or folder), not both" if detector is not None
                         else "give a detector=... (a name or a function of one frame) or detections=... (a file or folder)")
    if detector_options is not None and not isinstance(detector_options, dict):
        raise InputTypeError(f"detector_options must be a dict, got {type(detector_options).__name__}")
    fields = {f.name for f in dataclasses.fields(MiningParams)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InputTypeError(f"mine() got unknown parameters {', '.join(unknown)}; the mining parameters are {', '.join(sorted(fields))}")
    if params is not None and not isinstance(params, MiningParams):
        raise InputTypeError(f"params must be a MiningParams, got {type(params).__name__}")
    params = dataclasses.replace(params or MiningParams(), **overrides)
    rule_name = Rule(rule).value
    inputs = [video] if isinstance(video, (str, os.PathLike)) else list(video)

    factory: Optional[Callable[[], Detector]] = None
    info: Optional[dict] = None
    if detector is not None:
        if isinstance(detector, str):
            factory, info = _named_detector(detector, category, detector_options or {})
        else:
            factory, info = _given_detector(detector, detector_options or {})
        if workers > 1:
            try:
                pickle.dumps(factory)
            except Exception as error:  # pickle raises many kinds: PicklingError, AttributeError, TypeError
                raise InputError(
                    f"workers={workers} mines in other processes, which cannot receive this detector ({error}); "
                    "use workers=1, or a module-level function"
                ) from None
    config = RunConfig(params=params, rule=rule_name, mode=mode, category=category, detector=info, visualize=visualize)
    result = run_mining(
        inputs, out, config, detections=detections, detector_factory=factory, backend=backend, workers=workers,
        progress=progress, log=log if log is not None else (lambda line: None),
    )
    return MineSummary.from_run(result, info)
