"""torchvision's Faster R-CNN: building the models, loading weights and checkpoints, inference.

Everything torch-related that detection, evaluation and training share lives here, so that
:mod:`flickermine.evaluate` and :mod:`flickermine.train` both import it from this module:

- :class:`TorchvisionDetector`: a :class:`~flickermine.detect.Detector` over one of
  :data:`TORCHVISION_MODELS`, from a local weights file, from torchvision's named weights
  (read from torch's hub cache, never downloaded), or random (tests);
- :func:`build_model`, :func:`load_detector` (a checkpoint of ``flickermine train`` or a plain
  state dict), :func:`read_image_tensor`, :func:`resolve_device`: the model stack of training and
  evaluation on COCO files;
- ``_infer_batch``: the one torch inference (preprocess a batch, forward pass with autocast on
  CUDA, outputs to numpy, labels filtered) that the detector, the GPU pipeline's pinned batches
  and the COCO evaluation (with training's validation) all run.

torch and torchvision are imported inside the functions, so the rest of flickermine works without
them: :func:`require_torch` (an ImportError) and the detectors' :class:`MissingExtraError` say how
to install them (``pip install 'flickermine[torch]'``).
"""

from __future__ import annotations

import argparse
import difflib
import os
import urllib.parse
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from .._images import read_image
from ..errors import InputError, MissingExtraError
from ._detections import Detections, _check_batch_size, _check_frames, _clip_to_frame

__all__ = [
    "CHECKPOINT_FORMAT",
    "COCO_CATEGORIES",
    "TORCHVISION_MODELS",
    "TorchvisionDetector",
    "build_model",
    "freeze_like_pretrained",
    "load_detector",
    "load_state_dict",
    "read_image_tensor",
    "require_torch",
    "resolve_coco_category",
    "resolve_device",
]

PathLike = Union[str, "os.PathLike[str]"]

#: torchvision's COCO category ids (the 80 used ids of 1..90) and names, as its detection models label them
COCO_CATEGORIES: dict[int, str] = dict(
    enumerate(
        "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant - "
        "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe - "
        "backpack umbrella - - handbag tie suitcase frisbee skis snowboard sports_ball kite "
        "baseball_bat baseball_glove skateboard surfboard tennis_racket bottle - wine_glass cup fork "
        "knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair "
        "couch potted_plant bed - dining_table - - toilet - tv laptop mouse remote keyboard "
        "cell_phone microwave oven toaster sink refrigerator - book clock vase scissors teddy_bear "
        "hair_drier toothbrush".split(),
        start=1,
    )
)
COCO_CATEGORIES = {i: name.replace("_", " ") for i, name in COCO_CATEGORIES.items() if name != "-"}
#: torchvision's COCO detectors: background 0 and the COCO category ids 1..90 (10 of them unused)
_COCO_CLASS_COUNT = max(COCO_CATEGORIES) + 1

#: the 80 used COCO ids, what a COCO model's detections are filtered to
_COCO_IDS = np.array(sorted(COCO_CATEGORIES), dtype=np.int64)

#: the torchvision Faster R-CNN builders this module knows
TORCHVISION_MODELS = ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn")

#: the checkpoints `flickermine train` writes (final.pt, best.pt, checkpoint.pt)
CHECKPOINT_FORMAT = "flickermine-detector/1"
#: the box predictor's class-score weight; its first dimension is the number of classes
_CLASS_SCORE_KEY = "roi_heads.box_predictor.cls_score.weight"


# ----------------------------------------------------------------------------------------------
# importing torch


def _import_torch():
    try:
        import torch
        import torchvision  # noqa: F401
        import torchvision.models.detection  # noqa: F401
    except ImportError as error:
        raise MissingExtraError(
            f"torchvision detectors need torch and torchvision ({error}); install them with "
            "pip install 'flickermine[torch]'"
        ) from None
    return torch


def require_torch():
    """``(torch, torchvision)``, or an ImportError that says how to install them."""
    try:
        import torch
        import torchvision
    except ImportError as error:
        raise ImportError(
            f"training and evaluation need torch and torchvision ({error}); install them with "
            "pip install 'flickermine[torch]'"
        ) from None
    return torch, torchvision


def resolve_device(device: str | None):
    """A torch.device: ``None`` means cuda when available, else cpu; cuda asked for but absent is an error."""
    torch, _ = require_torch()
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
    return resolved


# ----------------------------------------------------------------------------------------------
# detection


def resolve_coco_category(category: Any) -> int:
    """A COCO category name (``"person"``, ``"dog"``, ``"traffic light"`` …, any case) or id
    (``1``, ``"18"``) -> torchvision's COCO id; ValueError listing close names when unknown."""
    if isinstance(category, (bool, np.bool_)):
        raise InputError(f"category must be a COCO name or id, got {category!r}")
    if isinstance(category, (int, np.integer)) or (isinstance(category, str) and category.strip().isdigit()):
        number = int(category)
        if number not in COCO_CATEGORIES:
            raise InputError(f"{number} is not a COCO category id (ids 1..90 of which 80 are used, e.g. 1 person, 18 dog, 7 train)")
        return number
    if not isinstance(category, str):
        raise InputError(f"category must be a COCO name or id, got {category!r}")
    text = " ".join(category.strip().lower().replace("_", " ").replace("-", " ").split())
    by_name = {name: i for i, name in COCO_CATEGORIES.items()}
    if text in by_name:
        return by_name[text]
    close = difflib.get_close_matches(text, list(by_name), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise InputError(
        f"unknown COCO category {category!r}{hint} (the 80 COCO names, e.g. 'person', 'dog', 'train', 'car'; or an id)"
    )


def _guess_architecture(state: dict) -> Optional[str]:
    """Which of :data:`TORCHVISION_MODELS` a state dict's keys belong to (None: cannot tell)."""
    keys = set(state)
    if "backbone.body.0.0.weight" in keys:  # MobileNetV3 features, numbered
        return "fasterrcnn_mobilenet_v3_large_fpn"
    if "backbone.body.conv1.weight" in keys:  # ResNet-50
        if "roi_heads.box_head.fc6.weight" in keys:  # v1: two-layer MLP head
            return "fasterrcnn_resnet50_fpn"
        if "roi_heads.box_head.0.0.weight" in keys:  # v2: conv head
            return "fasterrcnn_resnet50_fpn_v2"
    return None


def _box_predictor_classes(state: dict, path: str) -> int:
    cls = state.get("roi_heads.box_predictor.cls_score.weight")
    bbox = state.get("roi_heads.box_predictor.bbox_pred.weight")
    if cls is None or bbox is None:
        raise InputError(
            f"{path}: not a torchvision Faster R-CNN state dict (no roi_heads.box_predictor.cls_score / bbox_pred weights)"
        )
    classes = int(cls.shape[0])
    if int(bbox.shape[0]) != 4 * classes:
        raise InputError(f"{path}: box predictor has {classes} class scores but {bbox.shape[0]} box outputs (expected {4 * classes})")
    return classes


def load_state_dict(path: PathLike) -> dict:
    """Read a Faster R-CNN state dict from ``path``: a plain state dict, or a checkpoint dict with
    ``"model"`` or ``"state_dict"`` (torchvision's ``references/detection`` writes ``"model"``).
    Loaded with ``weights_only=True`` (no arbitrary code runs); a ``module.`` prefix (DDP) is removed."""
    torch = _import_torch()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # references/detection saves its args
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors come in many types
        raise InputError(
            f"{path}: cannot be read as a weights file with torch.load(weights_only=True) ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); save model.state_dict(), not the model"
        ) from None
    if isinstance(loaded, dict):
        for key in ("model", "state_dict"):
            if key in loaded and isinstance(loaded[key], dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise InputError(f"{path}: expected a state dict (or a dict with 'model' / 'state_dict'), got {type(loaded).__name__}")
    if loaded and all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module.") :]: v for k, v in loaded.items()}
    return loaded


def _infer_batch(
    net: Any,
    images: Any,
    device: Any,
    *,
    amp: bool = False,
    keep_labels: Optional[np.ndarray] = None,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """THE torch inference of flickermine: one batched forward pass of a torchvision detector.

    Every place that runs a detection model for its boxes goes through here:
    :class:`TorchvisionDetector` (and with it ``flickermine detect`` / ``mine``),
    :mod:`flickermine.runner._gpu_pipeline`'s pinned batches, and the COCO evaluation of
    :mod:`flickermine.evaluate._on_coco` (also run by training's validation).

    ``images``: ``(H, W, 3)`` uint8 BGR frames (numpy arrays or tensors, sizes may differ) or a
    ``(B, H, W, 3)`` uint8 BGR tensor. Each goes to ``device`` (asynchronously from pinned memory),
    BGR -> RGB, uint8 -> float ``[0, 1]``; one forward pass under ``torch.inference_mode()``, under
    float16 autocast when ``amp`` (the caller decides; only CUDA callers set it). Returns per image
    ``(boxes, scores, labels)`` as numpy on the CPU: boxes ``(N, 4)`` float32 ``x1, y1, x2, y2``
    pixels, scores float32, labels int64, keeping only the labels in ``keep_labels`` (None: all).
    Scores are filtered by the model itself (its ``box_score_thresh``); boxes are not clipped.
    """
    import torch

    with torch.inference_mode():
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            on_device = images.to(device, non_blocking=True)
            tensors = list(on_device.permute(0, 3, 1, 2).flip(1).float().div_(255.0).unbind(0))  # BHWC BGR -> BCHW RGB
        else:
            tensors = []
            for image in images:
                tensor = image if isinstance(image, torch.Tensor) else torch.from_numpy(image)
                tensors.append(_rgb_tensor(tensor.to(device, non_blocking=True)))
        if amp:
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.float16):
                outputs = net(tensors)
        else:
            outputs = net(tensors)
        results = []
        for output in outputs:
            boxes = output["boxes"].float().cpu().numpy()
            scores = output["scores"].float().cpu().numpy()
            labels = output["labels"].cpu().numpy().astype(np.int64)
            if keep_labels is not None:
                keep = np.isin(labels, keep_labels)
                boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            results.append((boxes, scores, labels))
    return results


class TorchvisionDetector:
    """A torchvision Faster R-CNN (``model``: one of :data:`TORCHVISION_MODELS`).

    Weights, one of:

    - ``weights=PATH``: a local file, a state dict or a checkpoint with ``"model"`` /
      ``"state_dict"``. Its class count comes from the box predictor's weight shapes: 91 is
      torchvision's COCO labelling (labels are COCO ids); 2 is one category + background
      (labels 1, named ``category``); any other count only with ``category=None``. Boxes a COCO
      model gives one of the 10 unused COCO ids (12, 26, 29, …; untrained) are dropped.
    - ``named_weights=True`` (or a weights name such as ``"COCO_V1"``): torchvision's named COCO
      weights, ``DEFAULT`` for True, read from torch's hub cache (:func:`require_cached_weights`:
      nothing is downloaded).
    - neither: random weights (91 COCO classes), useful only to test plumbing.

    ``weights_backbone`` (a name, from the same cache) goes to the torchvision builder. ``category`` (a
    COCO name or id) keeps only that class. ``device`` ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …;
    None picks CUDA when available. ``score_threshold`` is the model's ``box_score_thresh``;
    ``min_size``/``max_size`` override its input resize (800/1333 by default); ``amp`` runs
    float16 autocast on CUDA (ignored elsewhere). ``gpu_decode``: where the detector runs on CUDA and
    torchcodec is installed, :class:`~flickermine.runner.DetectorPipeline` decodes video files
    on the GPU (NVDEC; pixels differ slightly from OpenCV's CPU decoding), else it says why not
    and decodes on the CPU. ``model_options`` go to the torchvision builder
    as they are (e.g. ``{"detections_per_img": 50, "rpn_post_nms_top_n_test": 300}``). Every check (category, class count, weights
    fitting the model) happens here, before any frame is read. Frames go through BGR -> RGB,
    uint8 -> float ``[0, 1]``, one batched forward pass per call under ``torch.inference_mode()``;
    outputs come back on the CPU as numpy.
    """

    def __init__(
        self,
        model: str = "fasterrcnn_resnet50_fpn",
        weights: Optional[PathLike] = None,
        named_weights: Union[bool, str] = False,
        weights_backbone: Optional[str] = None,
        category: Any = None,
        device: Optional[str] = None,
        batch_size: int = 4,
        score_threshold: float = 0.05,
        min_size: Optional[int] = None,
        max_size: Optional[int] = None,
        amp: bool = True,
        model_options: Optional[dict[str, Any]] = None,
        gpu_decode: bool = False,
    ) -> None:
        if model not in TORCHVISION_MODELS:
            close = difflib.get_close_matches(str(model), TORCHVISION_MODELS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown torchvision model {model!r}{hint}; choose one of {', '.join(TORCHVISION_MODELS)}")
        if weights is not None and named_weights:
            raise InputError("give either weights=PATH or named_weights=True, not both")
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise InputError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
        self.name = model
        self.model_name = model
        self.batch_size = _check_batch_size(batch_size)
        self.score_threshold = float(score_threshold)
        self.weights = str(weights) if weights is not None else None
        if named_weights is True:
            named_weights = "DEFAULT"
        if named_weights is not False and (not isinstance(named_weights, str) or not named_weights.strip()):
            raise InputError(f"named_weights must be True or a torchvision weights name such as 'DEFAULT', got {named_weights!r}")
        self.named_weights = named_weights or None  #: torchvision weights name, or None
        coco_id = resolve_coco_category(category) if category is not None else None  # before importing torch

        torch = _import_torch()
        from torchvision.models import detection

        state = load_state_dict(weights) if weights is not None else None
        classes = _box_predictor_classes(state, str(weights)) if state is not None else _COCO_CLASS_COUNT
        guess = _guess_architecture(state) if state is not None else None
        if guess is not None and guess != model:
            raise InputError(f"{weights}: these weights are for {guess}, not {model}; pick --detector {guess}")
        if classes == _COCO_CLASS_COUNT:
            self.category_names = dict(COCO_CATEGORIES)
            keep_label = coco_id
            self.category = COCO_CATEGORIES[coco_id] if coco_id is not None else None
        elif classes == 2:
            name = COCO_CATEGORIES[coco_id] if coco_id is not None else "object"
            self.category_names = {1: name}
            keep_label = None  # one class: nothing to filter
            self.category = COCO_CATEGORIES[coco_id] if coco_id is not None else None
        elif coco_id is None:
            self.category_names = {i: f"class {i}" for i in range(1, classes)}
            keep_label = None
            self.category = None
        else:
            raise InputError(
                f"{weights}: the weights have {classes} classes (box predictor), but category {category!r} needs "
                f"{_COCO_CLASS_COUNT} (torchvision's COCO labels) or 2 (the category + background)"
            )
        self.num_classes = classes

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.device = torch.device(device)
        except RuntimeError as error:
            raise InputError(f"unknown torch device {device!r}: {error}") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but torch sees no CUDA device")
        self.amp = bool(amp) and self.device.type == "cuda"
        self.gpu_decode = bool(gpu_decode)

        options: dict[str, Any] = {"box_score_thresh": self.score_threshold, **(model_options or {})}
        if min_size is not None:
            options["min_size"] = int(min_size)
        if max_size is not None:
            options["max_size"] = int(max_size)
        self.min_size, self.max_size = min_size, max_size
        builder = getattr(detection, model)
        if self.named_weights:
            require_cached_weights(model, self.named_weights)
            # Named detector weights hold the backbone's too: none is built separately.
            net = builder(weights=self.named_weights, weights_backbone=None, **options)
        else:
            if weights_backbone is not None:
                require_cached_weights(model, weights_backbone, backbone=True)
            net = builder(weights=None, weights_backbone=weights_backbone, num_classes=classes, **options)
        if state is not None:
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as error:
                detail = " ".join(line.strip() for line in str(error).splitlines()[:2])
                raise InputError(f"{weights}: the weights do not fit {model} ({detail[:300]})") from None
        self._net = net.eval().to(self.device)
        #: labels kept (None: all): the category asked for, else a COCO model's 80 used ids (the 10
        #: unused ones are never trained)
        self._keep_labels: Optional[np.ndarray] = (
            np.array([keep_label], dtype=np.int64)
            if keep_label is not None
            else _COCO_IDS if classes == _COCO_CLASS_COUNT else None
        )
        self._torch = torch

    def __repr__(self) -> str:
        return (
            f"TorchvisionDetector({self.model_name!r}, weights={self.weights!r}, named_weights={self.named_weights}, "
            f"category={self.category!r}, device={str(self.device)!r}, batch_size={self.batch_size})"
        )

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        frames = _check_frames(frames, self.name)
        if not frames:
            return []
        return self._detect(frames)

    def _detect(self, images: Any) -> list[Detections]:
        """:class:`Detections` of a batch: a list of ``(H, W, 3)`` uint8 BGR arrays (checked by the
        caller), or a ``(B, H, W, 3)`` uint8 BGR tensor (:mod:`flickermine.runner._gpu_pipeline`'s
        pinned batches); boxes clipped to each frame."""
        shapes = [tuple(image.shape) for image in images]
        found = _infer_batch(self._net, images, self.device, amp=self.amp, keep_labels=self._keep_labels)
        return [_clip_to_frame(boxes, scores, labels, shape) for (boxes, scores, labels), shape in zip(found, shapes)]

    def info(self) -> dict:
        weights = self.weights if self.weights is not None else (f"torchvision {self.named_weights}" if self.named_weights else None)
        return {
            "name": self.name,
            "model": f"torchvision.models.detection.{self.model_name}",
            "weights": weights,
            "category": self.category,
            "num_classes": self.num_classes,
            "score": "softmax class probability",
            "options": {
                "score_threshold": self.score_threshold,
                "min_size": self.min_size,
                "max_size": self.max_size,
                "device": str(self.device),
                "amp": self.amp,
                "gpu_decode": self.gpu_decode,
            },
        }


# ----------------------------------------------------------------------------------------------
# models for training and evaluation: building, checkpoints, images


#: The classification network each detector's ``weights_backbone`` belongs to.
_BACKBONES = {
    "fasterrcnn_resnet50_fpn": "resnet50",
    "fasterrcnn_resnet50_fpn_v2": "resnet50",
    "fasterrcnn_mobilenet_v3_large_fpn": "mobilenet_v3_large",
}


def require_cached_weights(model: str, name: str, backbone: bool = False) -> Path:
    """The file of torchvision's named weights ``name`` (``"DEFAULT"``, ``"COCO_V1"``…) of
    ``model`` (of its backbone when ``backbone``) in torch's hub cache, where torchvision's
    builder reads it without a network. flickermine downloads nothing: a file not there is an
    InputError saying where to put it (or to pass a local file with ``--weights PATH``)."""
    torch, _ = require_torch()
    from torchvision.models import get_model_weights

    network = _BACKBONES[model] if backbone else model
    what = f"torchvision weights {name!r} of {model}" + (" (its backbone)" if backbone else "")
    try:
        url = str(get_model_weights(network).verify(name).url)
    except (KeyError, ValueError):
        known = ", ".join(["DEFAULT", *get_model_weights(network).__members__])
        raise InputError(f"{model}: no torchvision weights named {name!r}{' for its backbone' if backbone else ''}; "
                         f"known: {known}") from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urllib.parse.urlparse(url).path)
    if not cached.is_file():
        raise InputError(f"{what} are not in torch's cache ({cached}) and flickermine downloads nothing: "
                         f"fetch {url} into that folder, or pass a local file with --weights PATH")
    return cached


def build_model(
    model_name: str,
    num_classes: int,
    min_size: int = 800,
    max_size: int = 1333,
    torchvision_weights: str | None = None,
    backbone_weights: str | None = None,
    model_options: dict | None = None,
    frozen_batchnorm: bool = False,
    trainable_backbone_layers: int = 3,
):
    """A torchvision Faster R-CNN with ``num_classes`` outputs (categories + background).

    ``torchvision_weights`` or ``backbone_weights`` name torchvision weights (e.g. ``"DEFAULT"``),
    read from torch's hub cache, never downloaded (:func:`require_cached_weights`). Named detector weights are for COCO's 91 classes: for another count the
    box predictor is replaced by a fresh one. Named weights, or ``frozen_batchnorm``, give the
    layout torchvision uses for fine-tuning: backbone batch norm frozen, only the last
    ``trainable_backbone_layers`` backbone stages trained.
    """
    torch, torchvision = require_torch()
    from torchvision.models import detection
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    if model_name not in TORCHVISION_MODELS:
        raise InputError(f"model must be one of {', '.join(TORCHVISION_MODELS)}, got {model_name!r}")
    builder = getattr(detection, model_name)
    size = {"min_size": min_size, "max_size": max_size, **(model_options or {})}
    named = {"trainable_backbone_layers": trainable_backbone_layers}
    if torchvision_weights is not None:
        require_cached_weights(model_name, torchvision_weights)
        model = builder(weights=torchvision_weights, weights_backbone=None, **named, **size)
        if model.roi_heads.box_predictor.cls_score.out_features != num_classes:
            in_features = model.roi_heads.box_predictor.cls_score.in_features
            model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
        return model
    if backbone_weights is not None:
        require_cached_weights(model_name, backbone_weights, backbone=True)
        return builder(weights=None, weights_backbone=backbone_weights, num_classes=num_classes, **named, **size)
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes, **size)
    if frozen_batchnorm:
        freeze_like_pretrained(model, model_name, trainable_backbone_layers)
    return model


def freeze_like_pretrained(model, model_name: str, trainable_backbone_layers: int = 3) -> None:
    """Give a detector built without weights the layout torchvision gives a pretrained one.

    Fine-tuning with one or two images a batch must not re-estimate batch-norm statistics, so the
    backbone's BatchNorm2d become FrozenBatchNorm2d, and the early backbone stages stay fixed (their
    parameters get ``requires_grad=False``). Loading a pretrained state dict afterwards fills them.
    """
    import torch.nn as nn
    from torchvision.ops.misc import FrozenBatchNorm2d

    body = model.backbone.body

    def replace(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm2d):
                frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                for buffer in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, buffer).copy_(getattr(child, buffer).detach())
                setattr(module, name, frozen)
            else:
                replace(child)

    replace(body)
    if model_name.startswith("fasterrcnn_resnet50"):
        if not 0 <= trainable_backbone_layers <= 5:
            raise InputError(f"trainable_backbone_layers must be 0..5 for {model_name}, got {trainable_backbone_layers}")
        trained = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_backbone_layers]
        for name, parameter in body.named_parameters():
            if not any(name.startswith(prefix) for prefix in trained):
                parameter.requires_grad_(False)
    else:  # MobileNetV3: stages end at the blocks marked _is_cn, as in torchvision's extractor
        blocks = list(body.children())
        stages = [0] + [i for i, block in enumerate(blocks) if getattr(block, "_is_cn", False)] + [len(blocks) - 1]
        if not 0 <= trainable_backbone_layers <= len(stages):
            raise InputError(f"trainable_backbone_layers must be 0..{len(stages)} for {model_name}, got {trainable_backbone_layers}")
        freeze_before = len(blocks) if trainable_backbone_layers == 0 else stages[len(stages) - trainable_backbone_layers]
        for block in blocks[:freeze_before]:
            block.requires_grad_(False)


def _state_dict_of(loaded: Any, path: PathLike) -> dict:
    """The model state dict inside a torch.load result: ours, torchvision's reference scripts', or bare."""
    if isinstance(loaded, dict):
        for key in ("model", "state_dict"):
            if key in loaded and isinstance(loaded[key], dict):
                return loaded[key]
        if loaded and all(hasattr(value, "shape") for value in loaded.values()):
            return loaded
    raise InputError(f"{path}: not a model checkpoint or state dict (expected tensors, or a 'model' entry)")


def _read_torch_file(path: PathLike) -> Any:
    torch, _ = require_torch()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        # weights_only: a weights file from elsewhere must not be able to run code
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file it cannot read
        raise InputError(f"{path}: cannot be read as torch weights ({type(error).__name__}: {error})") from None


def _load_state(model, state: dict):
    """``load_state_dict(strict=False)`` that ignores batch-norm ``num_batches_tracked`` counters
    on either side: frozen batch norm has none, and they play no part in the computation."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.endswith("num_batches_tracked")}
    result = model.load_state_dict(state, strict=False)
    result.missing_keys[:] = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    return result


def load_detector(
    weights: PathLike,
    device: Any,
    model_name: str | None = None,
    coco_categories: Sequence[dict] | None = None,
):
    """A model ready for inference and its categories (label ``i`` is ``categories[i - 1]``).

    ``weights``: a flickermine checkpoint (``final.pt``, ``best.pt``, ``checkpoint.pt``), which
    names its architecture, size and categories; or a plain state dict of ``model_name`` (default
    ``fasterrcnn_resnet50_fpn``), whose labels are read against ``coco_categories``: labels 1..K are
    the K categories in id order when the predictor has K + 1 classes, else labels are COCO
    category ids (torchvision's COCO detectors).
    """
    loaded = _read_torch_file(weights)
    state = _state_dict_of(loaded, weights)
    if _CLASS_SCORE_KEY not in state:
        raise InputError(f"{weights}: no {_CLASS_SCORE_KEY!r}; not a Faster R-CNN state dict")
    num_classes = int(state[_CLASS_SCORE_KEY].shape[0])
    if isinstance(loaded, dict) and loaded.get("format") == CHECKPOINT_FORMAT:
        categories = list(loaded["categories"])
        name = loaded["model_name"]
        size = {
            "min_size": loaded["min_size"],
            "max_size": loaded["max_size"],
            "model_options": loaded.get("model_options") or None,
            # frozen or not, batch norm computes the same at inference; the layout must match the keys
            "frozen_batchnorm": bool(loaded.get("frozen_batchnorm")),
        }
        if model_name is not None and model_name != name:
            raise InputError(f"{weights}: a {name} checkpoint, not {model_name}")
    else:
        name = model_name or "fasterrcnn_resnet50_fpn"
        # torchvision's pretrained detectors have frozen backbone batch norm: no counters there
        size = {"frozen_batchnorm": not any(k.startswith("backbone.body.") and k.endswith("num_batches_tracked") for k in state)}
        known = sorted(coco_categories or [], key=lambda c: c["id"])
        if len(known) == num_classes - 1:
            categories = [{"id": c["id"], "name": c["name"]} for c in known]
        elif known and max(c["id"] for c in known) < num_classes:
            by_id = {c["id"]: c["name"] for c in known}
            categories = [{"id": i, "name": by_id.get(i, f"label {i}")} for i in range(1, num_classes)]
        else:
            raise InputError(
                f"{weights}: {num_classes} classes, which fits neither the {len(known)} categories of the "
                "COCO file (categories + background) nor its category ids; evaluate a flickermine checkpoint instead"
            )
    model = build_model(name, num_classes, **size)
    result = _load_state(model, state)
    if result.missing_keys or result.unexpected_keys:
        raise InputError(
            f"{weights}: does not fit {name} ({len(result.missing_keys)} missing keys, e.g. {result.missing_keys[:3]}; "
            f"{len(result.unexpected_keys)} unexpected, e.g. {result.unexpected_keys[:3]}); pass the right --model"
        )
    model.to(device).eval()
    return model, categories


def _rgb_tensor(bgr: Any) -> Any:
    """``(H, W, 3)`` uint8 BGR tensor -> ``(3, H, W)`` float RGB in ``[0, 1]``, on its device."""
    return bgr.permute(2, 0, 1).flip(0).float().div_(255.0)


def read_image_tensor(path: PathLike) -> Any:
    """An image file as a float tensor of shape ``(3, H, W)``, RGB, values in ``[0, 1]``
    (:func:`flickermine._images.read_image`'s errors)."""
    import torch

    return _rgb_tensor(torch.from_numpy(read_image(path)))
