"""Fine-tune a torchvision Faster R-CNN on a COCO file: the last step of the mining loop.

The defaults are the paper's fine-tuning: SGD, momentum 0.9, weight decay 5e-4, learning rate 1e-3
divided by 10 at iterations 10000 and 20000, one image per iteration. An iteration is one optimizer
step on ``batch_size`` images. Images with no annotations are real negatives (``boxes`` of shape
(0, 4)); crowd annotations are left out, as torchvision's reference scripts do.

The data order is a function of ``seed`` and the iteration alone (one seeded permutation per pass
over the images, a seeded coin per sample for the horizontal flip), and a checkpoint holds the
model, optimizer, scheduler, AMP scaler, iteration and every RNG state, so a run resumed with
``resume=True`` reaches the weights of an uninterrupted run (bit for bit on CPU; on CUDA the atomic
adds in some kernels may differ in the last bits). Ctrl-C stops the run when the iteration under
way ends and saves a checkpoint of that iteration, which resumes the same way; a second Ctrl-C
aborts at once, saving nothing (the state in the middle of an iteration would not resume exactly).
A checkpoint also keeps the sha256 of the COCO files trained on (:func:`data_fingerprint`), and
resuming with other settings or other file contents is refused.

Files written in ``out``:

    train.log         the run's log (settings, loss every ``log_every`` iterations, validations)
    checkpoint.pt     the latest full checkpoint, every ``checkpoint_every`` iterations and at the end
    best.pt           the model with the best validation AP so far (with ``val``)
    final.pt          the model after the last iteration
    validation.jsonl  one line of AP figures per validation

``best.pt``, ``final.pt`` and ``checkpoint.pt`` all load with
:func:`~flickermine.detect._torchvision.load_detector` and ``flickermine evaluate``: they carry the
architecture, input size and category names. Building models and reading weights is
:mod:`flickermine.detect._torchvision`'s, which evaluation shares.

torch and torchvision are imported inside the functions, so the rest of flickermine works without
them; :func:`~flickermine.detect._torchvision.require_torch` says how to install them.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence, Union, cast

import numpy as np

from .._files import file_sha256, replaced_atomically
from .._progress import progress_bar
from ..detect._torchvision import (
    _CLASS_SCORE_KEY,
    _COCO_CLASS_COUNT,
    CHECKPOINT_FORMAT,
    COCO_CATEGORIES,
    TORCHVISION_MODELS,
    _load_state,
    _read_torch_file,
    _state_dict_of,
    build_model,
    require_cached_weights,
    read_image_tensor,
    require_torch,
    resolve_device,
)
from ..errors import InputError
from ..evaluate._coco_ap import average_precision
from ..evaluate._on_coco import detect_coco_images
from ..io import _coco as coco_files

PathLike = Union[str, Path]

_LOGGER_NAME = "flickermine.training"  # the module's old name, kept: logging configurations may know it


# --------------------------------------------------------------------------------------------------
# settings


@dataclasses.dataclass
class TrainConfig:
    """Everything that decides a training run. Paths are COCO files and image folders."""

    train: PathLike
    out: PathLike
    images: PathLike | None = None  #: image root of ``train`` (default: the train file's folder)
    iterations: int = 30000
    val: PathLike | None = None
    val_images: PathLike | None = None  #: image root of ``val`` (default: ``images``, else the val file's folder)
    model: str = "fasterrcnn_resnet50_fpn"
    weights: PathLike | None = None  #: local checkpoint or state dict to start from
    new_head: bool = False  #: with ``weights``: load all but the box predictor, which starts afresh
    torchvision_weights: str | None = None  #: named torchvision detector weights, e.g. "DEFAULT" (from torch's cache)
    backbone_weights: str | None = None  #: named torchvision backbone weights, e.g. "DEFAULT" (from torch's cache)
    category: str | None = None  #: one category against background; None: every category of ``train``
    #: backbone batch norm frozen and early backbone layers fixed, as torchvision does for pretrained
    #: weights; None: yes when starting from any weights, no from random initialisation
    frozen_batchnorm: bool | None = None
    trainable_backbone_layers: int = 3  #: with frozen batch norm: backbone stages trained (torchvision's default)
    lr: float = 1e-3
    lr_steps: Sequence[int] = (10000, 20000)
    lr_decay: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 1
    hflip: bool = True
    min_size: int = 800  #: px, shorter image side after resizing (torchvision's transform)
    max_size: int = 1333  #: px, cap on the longer side
    #: more keyword arguments of torchvision's FasterRCNN (numbers only), e.g.
    #: ``{"rpn_post_nms_top_n_train": 500, "box_batch_size_per_image": 128}``; kept in checkpoints
    model_options: dict | None = None
    checkpoint_every: int = 1000
    val_every: int | None = None  #: default: ``checkpoint_every``
    seed: int = 0
    device: str | None = None  #: "cpu", "cuda", "cuda:1"...; None: cuda when available
    amp: bool = True  #: mixed precision; used on CUDA only
    workers: int = 2  #: data-loading processes (0: load in the training process)
    resume: bool = False
    log_every: int = 20
    progress: bool = True
    preset: str | None = None  #: recorded only; see flickermine.dataset._presets
    #: the COCO files the training set was made from, by the option that named them; with a preset
    #: ``{"--train": base, "--mined": mined}`` (``train`` is then their merge); None: ``{"--train":
    #: train}``. Checkpoints keep their sha256, and ``val``'s: a resumed run must find them unchanged
    sources: dict[str, PathLike] | None = None

    def __post_init__(self) -> None:
        if self.model not in TORCHVISION_MODELS:
            raise InputError(f"--model must be one of {', '.join(TORCHVISION_MODELS)}, got {self.model!r}")
        positive = {
            "iterations": self.iterations,
            "batch_size": self.batch_size,
            "checkpoint_every": self.checkpoint_every,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "log_every": self.log_every,
        }
        if self.val_every is not None:
            positive["val_every"] = self.val_every
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive whole number, got {value!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"lr must be a positive number, got {self.lr!r}")
        if not 0 < self.lr_decay <= 1:
            raise InputError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}")
        steps = list(self.lr_steps)
        if any(not isinstance(s, int) or s < 1 for s in steps) or steps != sorted(set(steps)):
            raise InputError(f"lr_steps must be increasing positive iterations, got {self.lr_steps!r}")
        self.lr_steps = tuple(steps)
        if self.workers < 0:
            raise InputError(f"workers must be 0 or more, got {self.workers!r}")
        for key, value in (self.model_options or {}).items():
            if not isinstance(value, (int, float)):
                raise InputError(f"model_options[{key!r}] must be a number, got {value!r}")
        if self.sources is not None and (not isinstance(self.sources, dict) or not self.sources):
            raise InputError(f"sources must map options to COCO files, e.g. {{'--train': 'train.json'}}; got {self.sources!r}")
        if self.weights is not None and self.torchvision_weights is not None:
            raise InputError("give --weights (a local file) or --torchvision-weights (named weights in torch's cache), not both")
        if self.frozen_batchnorm is None:
            self.frozen_batchnorm = any(w is not None for w in (self.weights, self.torchvision_weights, self.backbone_weights))

    def fingerprint(self) -> dict:
        """The settings a resumed run must share with the run it continues."""
        return {
            "train": str(Path(self.train).resolve()),
            "model": self.model,
            "category": self.category,
            "lr": self.lr,
            "lr_steps": list(self.lr_steps),
            "lr_decay": self.lr_decay,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "hflip": self.hflip,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "model_options": dict(self.model_options or {}),
            "torchvision_weights": self.torchvision_weights,
            "backbone_weights": self.backbone_weights,
            "frozen_batchnorm": self.frozen_batchnorm,
            "trainable_backbone_layers": self.trainable_backbone_layers,
            "seed": self.seed,
        }


def data_fingerprint(sources: dict[str, PathLike], val: PathLike | None = None) -> dict[str, dict]:
    """``{option: {"path", "sha256"}}`` of the files ``sources`` names and of ``val`` (as ``--val``).

    The settings a run records say how it trained, not on what: a resumed run given another
    ``--mined`` set, or the same path rewritten, would mix two data sets in one set of weights.
    """
    files = {**sources, **({"--val": val} if val is not None else {})}
    fingerprint = {}
    for option, path in files.items():
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{option} {path}: no such file")
        fingerprint[option] = {"path": str(path.resolve()), "sha256": file_sha256(path)}
    return fingerprint


#: what a training checkpoint (``checkpoint.pt``) holds that a resumed run restores
RESUME_KEYS = ("model", "optimizer", "scheduler", "scaler", "rng", "iteration", "config")


def _not_a_checkpoint(path: Path, why: str) -> InputError:
    return InputError(
        f"--resume: {path}: not a flickermine training checkpoint ({why}); delete the run folder to "
        "start over, or train into another --out"
    )


def _first_line(error: BaseException, limit: int = 160) -> str:
    text = (str(error).strip().splitlines() or [""])[0].strip() or type(error).__name__
    if text.startswith("[enforce fail at ") and "] " in text:  # torch's C++ source location
        text = text.split("] ", 1)[1].lstrip(". ") or text
    sentence = text.split(". ")[0]
    text = sentence if len(sentence) >= 30 else text  # the first sentence, not the advice after it
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_failure(error: BaseException) -> str:
    """Why torch.load refused a file, in a few words (its own messages run to paragraphs of advice
    that does not apply: to load untrusted pickles)."""
    text = _first_line(error)
    if text.startswith("Weights only load failed"):
        return "torch.load refuses it: not a file of tensors (another program's pickle, or no torch file)"
    if text.startswith("mmap can only be used"):
        return "torch.load refuses it: not a torch zip file"
    return f"torch.load refuses it: {type(error).__name__}: {text}"


def load_resume_checkpoint(torch, path: PathLike, mmap: bool = False) -> dict:
    """The ``checkpoint.pt`` of a run to resume (loaded ``weights_only``), checked to hold what a
    resumed run restores; an empty, corrupt, truncated or foreign file (another program's, a bare
    state dict, ``final.pt``) is an :class:`InputError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise _not_a_checkpoint(path, "an empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4..." of a foreign pickle
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except MemoryError:
        raise
    except OSError as error:
        if error.filename is not None:
            raise  # cannot be read (permissions...): the message names the file
        raise _not_a_checkpoint(path, _load_failure(error)) from error
    except Exception as error:  # torch.load fails in many ways: zip, pickle, EOF, storage errors
        raise _not_a_checkpoint(path, _load_failure(error)) from error
    if not isinstance(checkpoint, dict):
        raise _not_a_checkpoint(path, f"it holds a {type(checkpoint).__name__}, not a dict")
    missing = [key for key in RESUME_KEYS if key not in checkpoint]
    if missing:
        raise _not_a_checkpoint(path, f"no {', '.join(map(repr, missing))}")
    for key, kind in (("model", dict), ("optimizer", dict), ("scheduler", dict), ("scaler", dict), ("rng", dict), ("config", dict)):
        if not isinstance(checkpoint[key], kind):
            raise _not_a_checkpoint(path, f"its {key!r} is a {type(checkpoint[key]).__name__}, not a dict")
    iteration = checkpoint["iteration"]
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise _not_a_checkpoint(path, f"its 'iteration' is {iteration!r}, not a count")
    data = checkpoint.get("data")
    if data is not None and not (
        isinstance(data, dict)
        and all(isinstance(v, dict) and isinstance(v.get("path"), str) and isinstance(v.get("sha256"), str) for v in data.values())
    ):
        raise _not_a_checkpoint(path, "its 'data' is not a record of files and their sha256")
    return checkpoint


def check_resume_data(out: PathLike, fingerprint: dict[str, dict]) -> None:
    """ValueError unless the checkpoint in ``out`` was trained on the files of ``fingerprint``
    (:func:`data_fingerprint`), compared by content. A checkpoint that predates fingerprints passes.
    A checkpoint that is not one (empty, corrupt, foreign) is an :class:`InputError` naming it."""
    torch, _ = require_torch()
    checkpoint_path = Path(out) / "checkpoint.pt"
    # mmap: only the small "data" entry is needed, not gigabytes of weights and optimizer state
    # (a file torch.save wrote in its legacy format cannot be mapped: read whole then)
    try:
        checkpoint = load_resume_checkpoint(torch, checkpoint_path, mmap=True)
    except InputError:
        checkpoint = load_resume_checkpoint(torch, checkpoint_path)
    recorded = checkpoint.get("data")
    if recorded is None:
        return
    changes = []
    for option in sorted(set(recorded) | set(fingerprint)):
        then, now = recorded.get(option), fingerprint.get(option)
        if now is None:
            changes.append(f"{option} {then['path']} was given then, not now")
        elif then is None:
            changes.append(f"{option} {now['path']} is given now, not then")
        elif then["sha256"] != now["sha256"]:
            moved = "" if then["path"] == now["path"] else f", when it was {then['path']}"
            changes.append(f"{option} {now['path']}: sha256 {then['sha256'][:12]}... then, {now['sha256'][:12]}... now{moved}")
    if changes:
        raise InputError(
            f"--resume: {out} was trained on other data ({'; '.join(changes)}); resume with the files it "
            "started with, or train into another --out"
        )


@dataclasses.dataclass
class TrainResult:
    out: Path
    iteration: int  #: iterations done in total (this run and any it resumed)
    losses: list[float]  #: total loss of each iteration run in this call
    validations: list[dict]  #: this call's validations: iteration, AP, AP50, AP75
    best_ap: float | None
    checkpoint: Path
    final: Path
    best: Path | None


# --------------------------------------------------------------------------------------------------
# model


def load_weights(model, path: PathLike, new_head: bool = False, categories: Sequence[dict] | None = None) -> str | None:
    """Load a local checkpoint or state dict into ``model``, checking the class count first.

    ``categories``: the training set's, label ``i`` being ``categories[i - 1]``. A box predictor
    with another class count loads with ``new_head`` (everything but the predictor; it starts
    afresh), or when the weights know every one of ``categories`` by name: a flickermine
    checkpoint's own categories, or torchvision's COCO labels for a 91-class state dict. Then only
    the predictor's rows of background and those categories are kept, so a COCO detector
    fine-tuned for ``dog`` starts from what it learnt of dogs. Returns a line for the log saying
    which rows were kept, or None.
    """
    loaded = _read_torch_file(path)
    state = _state_dict_of(loaded, path)
    wanted = model.roi_heads.box_predictor.cls_score.out_features
    note = None
    if _CLASS_SCORE_KEY in state and not new_head:
        held = int(state[_CLASS_SCORE_KEY].shape[0])
        if held != wanted:
            known = _labels_by_name(loaded, held)
            unknown = [c["name"] for c in categories or [] if c["name"] not in known]
            if categories is None or len(categories) + 1 != wanted or unknown:
                why = ""
                if known and unknown:
                    kind = "a COCO category" if held == _COCO_CLASS_COUNT else "one of its categories"
                    why = f"; {', '.join(map(repr, unknown))} is not {kind}, so its rows cannot be kept"
                raise InputError(
                    f"{path}: its box predictor has {held} classes ({held - 1} categories + background), "
                    f"the training set needs {wanted} ({wanted - 1} + background){why}; pass --new-head to load "
                    "everything else and start the box predictor afresh"
                )
            labels = [known[c["name"]] for c in categories]
            state = _predictor_rows(state, [0, *labels])
            kept = ", ".join(f"{c['name']} (label {label})" for c, label in zip(categories, labels))
            note = f"box predictor: the rows of background and {kept} of the {held} in {path}"
    if new_head:
        state = {k: v for k, v in state.items() if not k.startswith("roi_heads.box_predictor.")}
    result = _load_state(model, state)
    missing = [k for k in result.missing_keys if not (new_head and k.startswith("roi_heads.box_predictor."))]
    if missing or result.unexpected_keys:
        raise InputError(
            f"{path}: does not fit this architecture ({len(missing)} missing keys, e.g. {missing[:3]}; "
            f"{len(result.unexpected_keys)} unexpected, e.g. {result.unexpected_keys[:3]}); "
            "was it trained with another --model?"
        )
    return note


def _labels_by_name(loaded: Any, classes: int) -> dict[str, int]:
    """The predictor label of each category name the weights know (empty: they do not say)."""
    if isinstance(loaded, dict) and loaded.get("format") == CHECKPOINT_FORMAT:
        return {c["name"]: label for label, c in enumerate(loaded["categories"], start=1)}
    if classes == _COCO_CLASS_COUNT:  # torchvision's COCO detectors: the label is the COCO category id
        return {name: coco_id for coco_id, name in COCO_CATEGORIES.items()}
    return {}


def _predictor_rows(state: dict, rows: list[int]) -> dict:
    """``state`` with the box predictor cut to classes ``rows``, in that order. ``bbox_pred`` holds
    four rows per class, (dx, dy, dw, dh), class after class."""
    torch, _ = require_torch()
    classes = torch.tensor(rows)
    box_rows = (classes[:, None] * 4 + torch.arange(4)).reshape(-1)
    state = dict(state)
    for suffix in ("weight", "bias"):
        for layer, index in (("cls_score", classes), ("bbox_pred", box_rows)):
            key = f"roi_heads.box_predictor.{layer}.{suffix}"
            state[key] = state[key].index_select(0, index).clone()
    return state


# --------------------------------------------------------------------------------------------------
# data


def _epoch_order(seed: int, epoch: int, count: int) -> list[int]:
    """The image order of pass ``epoch`` over ``count`` images: a function of seed and epoch only."""
    return random.Random(f"{seed}/{epoch}").sample(range(count), count)


def flips(seed: int, sample: int) -> bool:
    """Whether the ``sample``-th image drawn in the run is flipped horizontally (a seeded coin)."""
    return random.Random(f"{seed}/flip/{sample}").random() < 0.5


class _CocoDetectionSet:
    """Training samples by global sample number: ``sample = iteration * batch_size + slot``.

    ``labels`` maps category ids of the file to model labels (1..K); annotations of other categories
    are ignored. Each sample is ``(image (3, H, W) float in [0, 1], target)`` with ``target["boxes"]``
    of shape (N, 4) float32 xyxy pixels (N may be 0) and ``target["labels"]`` of shape (N,) int64.
    """

    def __init__(self, coco: dict, images_dir: Path, labels: dict, seed: int, hflip: bool, source: str) -> None:
        if not coco["images"]:
            raise InputError(f"{source}: no images to train on")
        self.images = coco["images"]
        self.images_dir = images_dir
        self.seed = seed
        self.hflip = hflip
        boxes_of: dict = {image["id"]: [] for image in self.images}
        self.skipped_boxes = 0
        for annotation in coco["annotations"]:
            label = labels.get(annotation["category_id"])
            if label is None or annotation.get("iscrowd", 0):
                continue
            x, y, w, h = (float(v) for v in annotation["bbox"])
            if w < 1 or h < 1:  # torchvision refuses empty boxes; a sub-pixel box teaches nothing
                self.skipped_boxes += 1
                continue
            boxes_of[annotation["image_id"]].append((x, y, x + w, y + h, label))
        self.boxes = [boxes_of[image["id"]] for image in self.images]
        self._order_cache: tuple[int, list[int]] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def image_index(self, sample: int) -> int:
        epoch, position = divmod(sample, len(self.images))
        if self._order_cache is None or self._order_cache[0] != epoch:
            self._order_cache = (epoch, _epoch_order(self.seed, epoch, len(self.images)))
        return self._order_cache[1][position]

    def __getitem__(self, sample: int):
        import torch

        index = self.image_index(sample)
        image = read_image_tensor(self.images_dir / self.images[index]["file_name"])
        rows = self.boxes[index]
        boxes = torch.tensor([row[:4] for row in rows], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([row[4] for row in rows], dtype=torch.int64)
        if self.hflip and flips(self.seed, sample):
            width = image.shape[-1]
            image = image.flip(-1)
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        return image, {"boxes": boxes, "labels": labels}


class _Batches:
    """Batches of global sample numbers for iterations ``start .. stop - 1``."""

    def __init__(self, start: int, stop: int, batch_size: int) -> None:
        self.start, self.stop, self.batch_size = start, stop, batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for iteration in range(self.start, self.stop):
            yield [iteration * self.batch_size + slot for slot in range(self.batch_size)]

    def __len__(self) -> int:
        return self.stop - self.start


def _collate(batch):
    return tuple(zip(*batch))


# --------------------------------------------------------------------------------------------------
# checkpoints


def _rng_states(torch) -> dict:
    # The legacy tuple: numpy's global RandomState is always an MT19937.
    kind, keys, position, has_gauss, cached = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
    states = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


@contextlib.contextmanager
def _restoring(torch, path: Path, part: str):
    """Restoring ``part`` of a resumed checkpoint: an entry that does not fit (another model's
    weights, a mangled optimizer or RNG state) is an :class:`InputError` naming the file."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise _not_a_checkpoint(path, f"its {part!r} does not fit: {_first_line(error)}") from error


def _set_rng_states(torch, states: dict) -> None:
    python_state = states["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _save_atomic(torch, payload: dict, path: Path) -> None:
    with replaced_atomically(path) as temporary:
        try:
            torch.save(payload, temporary)
        except RuntimeError as error:
            # torch's own zip writer reports a full disk as "PytorchStreamWriter failed writing
            # file data/0: file write failed", naming neither the file nor the cause
            if "write" not in str(error).lower():
                raise
            raise OSError(f"{path}: cannot write the checkpoint (a full disk, a quota?): {_first_line(error)}") from error


def _model_payload(model, config: TrainConfig, categories: list[dict], iteration: int) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "model_name": config.model,
        "min_size": config.min_size,
        "max_size": config.max_size,
        "model_options": dict(config.model_options or {}),
        "frozen_batchnorm": bool(config.frozen_batchnorm),
        "categories": categories,
        "iteration": iteration,
        "model": model.state_dict(),
    }


# --------------------------------------------------------------------------------------------------
# Ctrl-C


class _StopAtIterationEnd:
    """While active, a first SIGINT only asks the loop to stop when the iteration under way ends.

    A KeyboardInterrupt raised anywhere in an iteration can land after ``optimizer.step()`` and
    before the counter, the scheduler and the RNG move on; a checkpoint of that state does not
    resume to the weights of an uninterrupted run. So the first Ctrl-C sets ``requested`` and the
    loop saves and stops at the next boundary; a second Ctrl-C raises KeyboardInterrupt at once
    (for a hung iteration), and then no checkpoint is saved. The caller's handler is put back on
    exit. Only Python's default handler is replaced: a program that installed its own, or ignores
    SIGINT, keeps its choice; signals reach the main thread only, so elsewhere this does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> "_StopAtIterationEnd":
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        # os.write, not print: the handler may run while tqdm is inside a write to stderr
        os.write(2, b"\nflickermine: stopping when this iteration ends (Ctrl-C again to abort without a checkpoint)\n")


def _ignore_sigint(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the training process: a terminal sends SIGINT to the
    whole process group, and a worker that exits on it makes the loader fail instead of stopping."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------------------------------
# training


def train(config: TrainConfig) -> TrainResult:
    """Fine-tune as ``config`` says; see the module docstring for the files written in ``config.out``.

    Every train and val image is checked to be a readable file before anything is written.
    """
    torch, _ = require_torch()
    out = Path(config.out)
    train_path = Path(config.train)
    train_coco = coco_files.load(train_path)
    images_dir = Path(config.images) if config.images is not None else train_path.parent
    if not images_dir.is_dir():
        raise FileNotFoundError(f"--images {images_dir}: no such folder")
    coco_files.require_images(train_coco, images_dir, train_path, "--images")

    if config.category is not None:
        chosen = [coco_files.category_by_name(train_coco, config.category, str(train_path))]
    else:
        chosen = sorted(train_coco["categories"], key=lambda c: c["id"])
        if not chosen:
            raise InputError(f"{train_path}: no categories")
    categories = [{"id": c["id"], "name": c["name"]} for c in chosen]
    label_of_category_id = {c["id"]: label for label, c in enumerate(categories, start=1)}

    val_coco = val_images_dir = None
    if config.val is not None:
        val_path = Path(config.val)
        val_coco = coco_files.load(val_path)
        val_images_dir = Path(config.val_images or config.images or val_path.parent)
        coco_files.require_images(val_coco, val_images_dir, val_path, "--val-images")
        val_names = {c["name"] for c in val_coco["categories"]}
        absent = [c["name"] for c in categories if c["name"] not in val_names]
        if absent:
            raise InputError(f"{val_path}: no category named {', '.join(map(repr, absent))} (it has {sorted(val_names)})")

    checkpoint_path = out / "checkpoint.pt"
    if checkpoint_path.exists() and not config.resume:
        raise InputError(f"{out} holds a run already ({checkpoint_path}); pass --resume to continue it or pick another --out")
    if config.resume and not checkpoint_path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
    data = data_fingerprint(config.sources or {"--train": train_path}, config.val)
    if config.resume:
        check_resume_data(out, data)
    # Named weights missing from torch's cache stop the run before --out is made.
    if config.torchvision_weights is not None:
        require_cached_weights(config.model, config.torchvision_weights)
    elif config.backbone_weights is not None:
        require_cached_weights(config.model, config.backbone_weights, backbone=True)
    out.mkdir(parents=True, exist_ok=True)
    logger = _open_log(out / "train.log")
    try:
        return _train(torch, config, out, train_coco, images_dir, categories, label_of_category_id, val_coco, val_images_dir, data, logger)
    finally:
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)


def _open_log(path: Path) -> logging.Logger:
    logger = logging.getLogger(_LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the log file is the record; the console shows the progress bar
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    # warnings (training from random initialisation, boxes left out...) also reach the console
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("flickermine: warning: %(message)s"))
    logger.addHandler(console)
    return logger


def _train(torch, config, out, train_coco, images_dir, categories, label_of_category_id, val_coco, val_images_dir, data, logger):
    device = resolve_device(config.device)
    use_amp = bool(config.amp and device.type == "cuda")
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)  # also seeds every CUDA device

    model = build_model(
        config.model,
        len(categories) + 1,
        config.min_size,
        config.max_size,
        torchvision_weights=config.torchvision_weights,
        backbone_weights=config.backbone_weights,
        model_options=config.model_options,
        frozen_batchnorm=bool(config.frozen_batchnorm) and config.torchvision_weights is None and config.backbone_weights is None,
        trainable_backbone_layers=config.trainable_backbone_layers,
    )
    start = 0
    best_ap: float | None = None
    checkpoint = None
    if config.resume:
        checkpoint = load_resume_checkpoint(torch, out / "checkpoint.pt")
        differences = [
            f"{key}: {checkpoint['config'].get(key)!r} then, {value!r} now"
            for key, value in config.fingerprint().items()
            if checkpoint["config"].get(key) != value
        ]
        if differences:
            raise InputError(f"--resume: {out} was trained with other settings ({'; '.join(differences)})")
        with _restoring(torch, out / "checkpoint.pt", "model"):
            model.load_state_dict(checkpoint["model"])
        start, best_ap = int(checkpoint["iteration"]), checkpoint.get("best_ap")
    elif config.weights is not None:
        loaded_head = load_weights(model, config.weights, new_head=config.new_head, categories=categories)
        if loaded_head:
            logger.info("%s", loaded_head)
    model.to(device)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.lr_steps), gamma=config.lr_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if checkpoint is not None:
        with _restoring(torch, out / "checkpoint.pt", "optimizer"):
            optimizer.load_state_dict(checkpoint["optimizer"])
        with _restoring(torch, out / "checkpoint.pt", "scheduler"):
            scheduler_state = dict(checkpoint["scheduler"])
            scheduler_state["milestones"] = collections.Counter({int(k): v for k, v in scheduler_state["milestones"].items()})
            scheduler.load_state_dict(scheduler_state)
        with _restoring(torch, out / "checkpoint.pt", "scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        with _restoring(torch, out / "checkpoint.pt", "rng"):
            _set_rng_states(torch, checkpoint["rng"])

    dataset = _CocoDetectionSet(train_coco, images_dir, label_of_category_id, config.seed, config.hflip, str(config.train))
    negatives = sum(1 for rows in dataset.boxes if not rows)
    logger.info(
        "%s %s: %d images (%d without boxes: negatives), %d boxes, categories %s; iterations %d..%d on %s%s",
        "resume" if config.resume else "start",
        config.model,
        len(dataset),
        negatives,
        sum(len(rows) for rows in dataset.boxes),
        [c["name"] for c in categories],
        start,
        config.iterations,
        device,
        " with AMP" if use_amp else "",
    )
    # what the run does, not what was asked: AMP is used on CUDA only, and the device is resolved
    settings = {**dataclasses.asdict(config), "amp": use_amp, "device": str(device)}
    logger.info("settings %s", json.dumps(settings, default=str))
    logger.info("data %s", json.dumps(data))
    if checkpoint is not None and "data" not in checkpoint:
        logger.warning("the checkpoint predates data fingerprints: the data files were not compared")
    if dataset.skipped_boxes:
        logger.warning("%d boxes narrower or shorter than 1 px left out", dataset.skipped_boxes)
    if config.weights is None and config.torchvision_weights is None and not config.resume:
        logger.warning("no --weights: training from random initialisation%s", "" if config.backbone_weights else " (backbone too)")

    val_every = config.val_every or config.checkpoint_every
    category_id_of_label_val = {}
    if val_coco is not None:
        val_id_of_name = {c["name"]: c["id"] for c in val_coco["categories"]}
        category_id_of_label_val = {label: val_id_of_name[c["name"]] for label, c in enumerate(categories, start=1)}

    def save_checkpoint(iteration: int) -> None:
        scheduler_state = scheduler.state_dict()
        scheduler_state["milestones"] = dict(scheduler_state["milestones"])  # a Counter does not load with weights_only
        payload = _model_payload(model, config, categories, iteration)
        payload.update(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler_state,
                "scaler": scaler.state_dict(),
                "rng": _rng_states(torch),
                "best_ap": best_ap,
                "config": config.fingerprint(),
                "data": data,
            }
        )
        _save_atomic(torch, payload, out / "checkpoint.pt")

    losses: list[float] = []
    validations: list[dict] = []
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=_Batches(start, config.iterations, config.batch_size),
        collate_fn=_collate,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        # its own generator: the loader draws a seed when it starts, which must not shift the
        # global RNG that the RPN and box samplers use (a resumed run starts it elsewhere)
        generator=torch.Generator().manual_seed(config.seed),
        worker_init_fn=_ignore_sigint,
    )
    bar = progress_bar(config.iterations, "train", "it", config.progress, leave=True, initial=start)
    smoothed = None
    iteration = start
    started = time.perf_counter()
    completed = saved_at = start  # iterations finished, and the one checkpoint.pt holds
    stopped = False  # stopped at an iteration's end, as the first Ctrl-C asks
    model.train()
    try:
        with _StopAtIterationEnd() as stop:
            for images, targets in loader:
                images = [image.to(device, non_blocking=True) for image in images]
                targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
                with torch.autocast(device_type=device.type, enabled=use_amp):
                    loss_parts = model(images, targets)
                    loss = sum(loss_parts.values())
                value = float(loss.detach())
                if not math.isfinite(value):
                    parts = {k: round(float(v.detach()), 4) for k, v in loss_parts.items()}
                    raise FloatingPointError(f"iteration {iteration + 1}: loss is {value} ({parts}); try a lower --lr")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                iteration += 1
                losses.append(value)
                smoothed = value if smoothed is None else 0.9 * smoothed + 0.1 * value
                bar.update(1)
                bar.set_postfix(loss=f"{smoothed:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2g}")
                if iteration % config.log_every == 0 or iteration == config.iterations:
                    parts = " ".join(f"{k}={float(v.detach()):.4f}" for k, v in loss_parts.items())
                    logger.info("iteration %d loss %.4f (smoothed %.4f) %s lr %.3g", iteration, value, smoothed, parts, scheduler.get_last_lr()[0])

                last = iteration == config.iterations
                if val_coco is not None and (iteration % val_every == 0 or last):
                    detections = detect_coco_images(model, val_coco, val_images_dir, category_id_of_label_val, device, config.batch_size)
                    model.train()
                    scores = average_precision(val_coco, detections, categories=[c["name"] for c in categories], source=str(config.val))
                    record = {"iteration": iteration, "AP": scores["AP"], "AP50": scores["AP50"], "AP75": scores["AP75"]}
                    validations.append(record)
                    with open(out / "validation.jsonl", "a", encoding="utf-8") as stream:
                        stream.write(json.dumps(record) + "\n")
                    improved = scores["AP"] is not None and (best_ap is None or scores["AP"] > best_ap)
                    logger.info("validation at %d: AP %s AP50 %s AP75 %s%s", iteration, scores["AP"], scores["AP50"], scores["AP75"], " (best)" if improved else "")
                    if improved:
                        best_ap = scores["AP"]
                        _save_atomic(torch, {**_model_payload(model, config, categories, iteration), "best_ap": best_ap}, out / "best.pt")
                if iteration % config.checkpoint_every == 0 or last:
                    save_checkpoint(iteration)
                    saved_at = iteration
                completed = iteration
                if stop.requested and not last:
                    if saved_at != iteration:
                        save_checkpoint(iteration)
                        saved_at = iteration
                    logger.info("interrupted at iteration %d; checkpoint saved, continue with --resume", iteration)
                    stopped = True
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if not stopped:
            # a second Ctrl-C inside an iteration: the state is half-updated, so it is not saved
            held = f"iteration {saved_at}" if saved_at else "nothing yet"
            logger.info("aborted during iteration %d; checkpoint.pt holds %s", completed + 1, held)
        raise
    finally:
        bar.close()

    _save_atomic(torch, _model_payload(model, config, categories, iteration), out / "final.pt")
    seconds = time.perf_counter() - started
    logger.info("done: iteration %d, %.1f s this run (%.3f s/iteration), best validation AP %s", iteration, seconds, seconds / max(1, iteration - start), best_ap)
    best = out / "best.pt"
    return TrainResult(
        out=out,
        iteration=iteration,
        losses=losses,
        validations=validations,
        best_ap=best_ap,
        checkpoint=out / "checkpoint.pt",
        final=out / "final.pt",
        best=best if best.exists() else None,
    )
