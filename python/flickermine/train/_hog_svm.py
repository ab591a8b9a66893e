"""Train the HOG + linear SVM detector (:mod:`flickermine.detect._hog_svm`).

The classic recipe (Dalal & Triggs; the PyImageSearch lesson), with mined examples added:

- **positives**: the window around each object box of the category (aspect-normalised: from the
  box's height and centre), resampled to the detection window, and its mirror image;
- **negatives**: random windows of the training images whose object box touches no annotated
  box, the same from images with no objects at all (``--negatives DIR``), and the crop of every
  ``hard_negatives`` record of a mined dataset (``--negatives mined/annotations.json``: what
  ``flickermine mine`` records them for);
- **hard positives**, when asked (``--hard-positives mined/annotations.json``): the boxes the
  miner's tracker found where the detector missed an object (annotations with ``source:
  "tracker"``), as extra positives;
- **bootstrapping** (``bootstrap_rounds``): detect on the training images with the model so far,
  add its false positives (detections overlapping every object box at IoU below
  ``false_positive_iou``, at most ``bootstrap_per_image`` an image, the highest-scoring), retrain;
- **calibration**: detect on the calibration images (``--val``, else the training images) and
  fit a logistic regression of "matches an object at IoU ≥ 0.5" on the margin (Platt scaling).

The SVM is scikit-learn's ``LinearSVC`` (liblinear). Boxes are ``x1, y1, x2, y2`` pixels; images
are read as grayscale.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from .._files import file_sha256
from .._boxes import intersection_over_area, iou_matrix
from .._images import read_image
from .._progress import progress_bar
from ..dataset._writer import TRACKER_SOURCE
from ..detect._hog_svm import Calibration, HogParams, HogSvmDetector, HogSvmModel, descriptors_for_boxes, window_descriptors
from ..errors import InputError
from ..evaluate._miss_rate import IGNORED, TRUE_POSITIVE, match_detections
from ..evaluate._scoring import score_labelled
from ..io import _coco as coco_files
from ..io._ground_truth import LabelledImage, coco_labelled_images, only_category, xywh_to_xyxy
from ..video import IMAGE_EXTENSIONS

PathLike = Union[str, "os.PathLike[str]"]

#: a box needing more upsampling than this to fill the window's object region teaches nothing
MAX_UPSAMPLING = 2.0


@dataclasses.dataclass(frozen=True)
class BoxCrops:
    """Boxes ``(N, 4)`` of one image to learn as examples (mined hard negatives or hard positives)."""

    name: str
    load: Callable[[], np.ndarray]
    boxes: np.ndarray


@dataclasses.dataclass(frozen=True)
class HogSvmSettings:
    """How a HOG-SVM is trained. ``window``: ``(width, height)`` px of the detection window;
    ``object_height``: share of the window's height the object fills; ``background_windows``:
    random negative windows per training image; ``c``: the SVM's regularisation constant."""

    window: tuple[int, int] = (64, 128)
    cell: int = 8
    object_height: float = 0.75
    flip: bool = True
    background_windows: int = 10
    bootstrap_rounds: int = 1
    bootstrap_per_image: int = 10
    false_positive_iou: float = 0.3
    c: float = 0.01
    seed: int = 0
    scale_step: float = 1.05  #: of the detection pyramid while bootstrapping and calibrating

    def __post_init__(self) -> None:
        bounded = {"background_windows": (0, 10_000), "bootstrap_rounds": (0, 100), "bootstrap_per_image": (1, 100_000), "seed": (0, 2**32 - 1)}
        for name, (low, high) in bounded.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise InputError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        if not (isinstance(self.c, (int, float)) and math.isfinite(self.c) and self.c > 0):
            raise InputError(f"c must be a positive number, got {self.c!r}")
        if not 0 <= self.false_positive_iou < 1:
            raise InputError(f"false_positive_iou must be in [0, 1), got {self.false_positive_iou!r}")
        if len(self.window) != 2:
            raise InputError(f"window must be (width, height) px, got {self.window!r}")
        HogParams(int(self.window[0]), int(self.window[1]), cell=self.cell, object_height=self.object_height)  # validates

    def hog_params(self, object_aspect: float) -> HogParams:
        return HogParams(int(self.window[0]), int(self.window[1]), cell=self.cell, object_height=self.object_height, object_aspect=object_aspect)

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "window": list(self.window)}


class ExampleSet:
    """HOG descriptors of the positive and negative examples, and how many came from where.

    Descriptors are float32 ``(N, D)``; :meth:`with_examples` returns a new set, so one base set
    can be extended in several ways (the benchmark's arms) without computing it again.
    """

    def __init__(self, params: HogParams) -> None:
        self.params = params
        self._parts: dict[str, list[np.ndarray]] = {"positive": [], "negative": []}
        self.counts: dict[str, int] = {}

    def add(self, kind: str, descriptors: np.ndarray, source: str) -> None:
        descriptors = np.asarray(descriptors, dtype=np.float32).reshape(-1, self.params.descriptor_size)
        self._parts[kind].append(descriptors)
        self.counts[source] = self.counts.get(source, 0) + len(descriptors)

    def with_examples(self, kind: str, descriptors: np.ndarray, source: str) -> "ExampleSet":
        extended = ExampleSet(self.params)
        extended._parts = {key: list(parts) for key, parts in self._parts.items()}
        extended.counts = dict(self.counts)
        extended.add(kind, descriptors, source)
        return extended

    def stacked(self, kind: str) -> np.ndarray:
        parts = self._parts[kind]
        return np.concatenate(parts) if parts else np.zeros((0, self.params.descriptor_size), np.float32)

    def fit(self, c: float, seed: int) -> tuple[np.ndarray, float, bool]:
        """A linear SVM on the examples: ``(weights (D,), bias, converged)``."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.svm import LinearSVC

        positives, negatives = self.stacked("positive"), self.stacked("negative")
        if not len(positives) or not len(negatives):
            raise InputError(f"cannot train on {len(positives)} positive and {len(negatives)} negative examples: need both")
        features = np.concatenate([positives, negatives])
        labels = np.concatenate([np.ones(len(positives), np.int8), np.zeros(len(negatives), np.int8)])
        svm = LinearSVC(C=c, loss="hinge", dual=True, max_iter=20_000, tol=1e-4, random_state=seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            svm.fit(features, labels)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        return svm.coef_.reshape(-1).astype(np.float32), float(svm.intercept_[0]), converged


def _positive_descriptors(image: np.ndarray, boxes: np.ndarray, params: HogParams, flip: bool) -> np.ndarray:
    """Descriptors of the windows around ``boxes``, then of their mirror images when ``flip``."""
    parts = [descriptors_for_boxes(image, boxes, params)]
    if flip:
        parts.append(descriptors_for_boxes(image, boxes, params, flip=True))
    return np.concatenate(parts)


def background_windows(
    rng: np.random.Generator, shape: tuple[int, int], avoid: np.ndarray, count: int, params: HogParams, heights: tuple[float, float]
) -> np.ndarray:
    """Up to ``count`` random windows ``(K, 4)`` inside an image of ``shape`` (H, W) whose object
    box touches none of ``avoid`` ``(M, 4)``; object heights log-uniform in ``heights`` px."""
    image_height, image_width = shape
    windows: list[np.ndarray] = []
    for _ in range(50 * count):
        if len(windows) == count:
            break
        object_height = math.exp(rng.uniform(math.log(heights[0]), math.log(heights[1])))
        window_height = object_height / params.object_height
        window_width = window_height * params.window_width / params.window_height
        if window_height > image_height or window_width > image_width:
            continue
        x1 = rng.uniform(0, image_width - window_width)
        y1 = rng.uniform(0, image_height - window_height)
        window = np.array([[x1, y1, x1 + window_width, y1 + window_height]])
        if len(avoid) and intersection_over_area(params.boxes_of_windows(window), avoid).max() > 0:
            continue
        windows.append(window[0])
    return np.asarray(windows, dtype=np.float64).reshape(-1, 4)


def false_positives(detector: HogSvmDetector, image: np.ndarray, labelled: LabelledImage, iou_limit: float, limit: int) -> np.ndarray:
    """Detections ``(K, 4)`` in ``image`` that overlap every object box at IoU below ``iou_limit``
    and lie in no ignore region, the ``limit`` highest-scoring."""
    found = detector.detect_gray(image)
    false = iou_matrix(found.boxes, labelled.boxes).max(axis=1, initial=0.0) < iou_limit
    false &= intersection_over_area(found.boxes, labelled.ignore).max(axis=1, initial=0.0) < 0.5
    order = np.argsort(-found.scores[false], kind="stable")[:limit]
    return found.boxes[false][order]


def _progress(items: Sequence, description: str, enabled: bool) -> Iterable:
    return progress_bar(len(items), description, "image", enabled, iterable=items)


def _object_sizes(images: Sequence[LabelledImage]) -> tuple[float, float, float]:
    """``(median width/height, smallest height, largest height)`` of the object boxes."""
    boxes = np.concatenate([image.boxes for image in images]) if images else np.zeros((0, 4))
    if not len(boxes):
        raise InputError("the training set has no object boxes to learn from")
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return float(np.median(widths / heights)), float(heights.min()), float(heights.max())


def _build_examples(
    images: Sequence[LabelledImage],
    settings: HogSvmSettings,
    negatives: Sequence[BoxCrops] = (),
    positives: Sequence[BoxCrops] = (),
    negative_images: Sequence[LabelledImage] = (),
    progress: bool = False,
) -> tuple[ExampleSet, tuple[float, float]]:
    """The examples before bootstrapping, and the ``(smallest, largest)`` object height."""
    aspect, smallest, largest = _object_sizes(images)
    params = settings.hog_params(aspect)
    examples = ExampleSet(params)
    rng = np.random.default_rng(settings.seed)
    for labelled in _progress([*images, *negative_images], "examples", progress):
        image = labelled.load()
        if len(labelled.boxes):
            examples.add("positive", _positive_descriptors(image, labelled.boxes, params, settings.flip), "object boxes" + (" and mirrors" if settings.flip else ""))
        avoid = np.concatenate([labelled.boxes, labelled.ignore])
        windows = background_windows(rng, image.shape[:2], avoid, settings.background_windows, params, (smallest, largest))
        examples.add("negative", window_descriptors(image, windows, params), "random background windows")
    for crops, kind, source in ((negatives, "negative", "mined hard negatives"), (positives, "positive", "mined hard positives")):
        for item in crops:
            if len(item.boxes):
                image = item.load()
                described = _positive_descriptors(image, item.boxes, params, settings.flip) if kind == "positive" else descriptors_for_boxes(image, item.boxes, params)
                examples.add(kind, described, source)
    return examples, (smallest, largest)


def fit_model(examples: ExampleSet, settings: HogSvmSettings, heights: tuple[float, float], category: str, training: dict) -> HogSvmModel:
    weights, bias, converged = examples.fit(settings.c, settings.seed)
    record = {**training, "examples": dict(examples.counts), "converged": converged}
    return HogSvmModel(examples.params, weights, bias, category, None, heights[0], heights[1], record)


def _without_small_boxes(images: Sequence[LabelledImage], params: HogParams) -> tuple[list[LabelledImage], int]:
    """``images`` with the boxes too small to learn from (needing more than
    :data:`MAX_UPSAMPLING` x upsampling to fill the window's object region) moved to their
    ignore regions, and how many were moved. An :class:`InputError` when no box is left."""
    smallest = params.object_pixels / MAX_UPSAMPLING
    kept, moved, total = [], 0, 0
    for image in images:
        heights = image.boxes[:, 3] - image.boxes[:, 1]
        small = heights < smallest
        total += len(heights)
        moved += int(small.sum())
        kept.append(dataclasses.replace(image, boxes=image.boxes[~small], ignore=np.concatenate([image.ignore, image.boxes[small]])))
    if total and moved == total:
        raise InputError(
            f"all {total} object boxes are smaller than {smallest:g} px high, the least the {params.window_width}x"
            f"{params.window_height} window learns from (its object region is {params.object_pixels:g} px high, upsampled "
            f"at most {MAX_UPSAMPLING:g}x): choose a smaller window"
        )
    return kept, moved


def train_hog_svm(
    images: Sequence[LabelledImage],
    settings: HogSvmSettings = HogSvmSettings(),
    category: str = "object",
    negatives: Sequence[BoxCrops] = (),
    positives: Sequence[BoxCrops] = (),
    negative_images: Sequence[LabelledImage] = (),
    calibration_images: Optional[Sequence[LabelledImage]] = None,
    training: Optional[dict] = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[HogSvmModel, ExampleSet]:
    """Train on ``images`` (see the module's description): returns the model, calibrated on
    ``calibration_images`` (default ``images``; an empty sequence leaves it uncalibrated), and the
    final examples (to extend and refit without recomputing them)."""
    if not images:
        raise InputError("the training set is empty: no images of the category")
    started = time.perf_counter()
    images, small = _without_small_boxes(images, settings.hog_params(1.0))
    if small:
        log(f"hog-svm: {small} boxes too small for the {settings.window[0]}x{settings.window[1]} window are left out (not taken as background either)")
    examples, heights = _build_examples(images, settings, negatives, positives, negative_images, progress)
    record = {"settings": settings.as_dict(), "small_boxes_left_out": small, **(training or {})}
    model = fit_model(examples, settings, heights, category, record)
    log(f"hog-svm: {len(examples.stacked('positive'))} positive, {len(examples.stacked('negative'))} negative examples")
    record["bootstrap_added"] = []
    for round_number in range(1, settings.bootstrap_rounds + 1):
        detector = HogSvmDetector(model, min_score=0.5, scale_step=settings.scale_step)  # uncalibrated: margin >= 0
        found = [
            false_positives(detector, labelled.load(), labelled, settings.false_positive_iou, settings.bootstrap_per_image)
            for labelled in _progress([*images, *negative_images], f"bootstrap round {round_number}", progress)
        ]
        added = 0
        for labelled, boxes in zip([*images, *negative_images], found):
            if len(boxes):
                examples.add("negative", descriptors_for_boxes(labelled.load(), boxes, model.params), f"bootstrap round {round_number}")
                added += len(boxes)
        log(f"hog-svm: bootstrap round {round_number}: {added} false positives added")
        record["bootstrap_added"].append(added)
        model = fit_model(examples, settings, heights, category, record)
    if calibration_images is None:
        calibration_images = images
    if calibration_images:
        model = _calibrate(model, calibration_images, settings.scale_step, progress)
    model = model.replace(training={**model.training, "seconds": round(time.perf_counter() - started, 1)})
    return model, examples


def _calibrate(model: HogSvmModel, images: Sequence[LabelledImage], scale_step: float = 1.05, progress: bool = False) -> HogSvmModel:
    """``model`` with a Platt calibration fitted on its detections in ``images`` (margin ≥ −2):
    the chance that a detection matches an object at IoU ≥ 0.5. Left uncalibrated (with a note
    in its training record) when the detections are all right or all wrong."""
    from sklearn.linear_model import LogisticRegression

    uncalibrated = model.replace(calibration=None)
    detector = HogSvmDetector(uncalibrated, min_score=1 / (1 + math.exp(2.0)), scale_step=scale_step)
    margins, labels = [], []
    for labelled in _progress(images, "calibrate", progress):
        found, found_margins = detector.detect_with_margins(labelled.load())
        outcomes = match_detections(found.boxes, found.scores, labelled.boxes, labelled.ignore)
        counted = outcomes != IGNORED
        margins.append(found_margins[counted])
        labels.append(outcomes[counted] == TRUE_POSITIVE)
    margin = np.concatenate(margins) if margins else np.zeros(0)
    label = np.concatenate(labels) if labels else np.zeros(0, bool)
    note = {"detections": int(len(label)), "true": int(label.sum()), "images": len(images)}
    if label.all() or not label.any():
        return uncalibrated.replace(training={**model.training, "calibration": {**note, "fitted": False}})
    regression = LogisticRegression(C=100.0).fit(margin.reshape(-1, 1), label)
    calibration = Calibration(float(regression.coef_[0, 0]), float(regression.intercept_[0]))
    if calibration.slope <= 0:  # higher margins less often right: a score would rank backwards
        return uncalibrated.replace(training={**model.training, "calibration": {**note, "fitted": False}})
    return uncalibrated.replace(calibration=calibration, training={**model.training, "calibration": {**note, "fitted": True}})


# --------------------------------------------------------------------------------------------------
# from files (the command line's `flickermine train --model hog-svm`)


@dataclasses.dataclass(frozen=True)
class HogSvmFiles:
    """Where a HOG-SVM's training data is. ``train``: COCO file (its images under ``images``,
    default its folder); ``val``: COCO file to calibrate the scores on and report AP and miss
    rate (its images under ``val_images``, default ``images``, else its folder); ``negatives``: mined datasets
    (their ``hard_negatives`` records) or folders of images holding no object; ``hard_positives``:
    mined datasets whose tracker-found boxes (``source: "tracker"``) are learned as positives."""

    train: Path
    out: Path
    images: Optional[Path] = None
    val: Optional[Path] = None
    val_images: Optional[Path] = None
    negatives: Sequence[Path] = ()
    hard_positives: Sequence[Path] = ()
    category: Optional[str] = None


def _folder_images(folder: Path, option: str) -> list[Path]:
    """The image files directly in ``folder``, sorted by name; an :class:`InputError` if none."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not paths:
        raise InputError(f"{option} {folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder")
    return paths


def _folder_fingerprint(folder: Path, paths: Sequence[Path]) -> dict:
    """Names, sizes and modification times of a folder's images, hashed: a cheap content check."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return {"path": str(folder.resolve()), "images": len(paths), "sha256": digest.hexdigest()}


def _mined_boxes(path: Path, option: str, category: str, hard_positives: bool) -> list[BoxCrops]:
    """From a mined dataset (images relative to its folder): per image, its ``hard_negatives``
    records, or with ``hard_positives`` its annotations of ``category`` found by the tracker
    (the file's one category when it has only one, whatever its name)."""
    coco = coco_files.load(path)
    if hard_positives:
        names = [c["name"] for c in coco["categories"]]
        wanted = {c["id"] for c in coco["categories"] if len(names) == 1 or c["name"] == category}
        boxes: dict = {}
        for annotation in coco["annotations"]:
            if annotation.get("source") == TRACKER_SOURCE and annotation["category_id"] in wanted:
                boxes.setdefault(annotation["image_id"], []).append(annotation["bbox"])
        if not boxes:
            raise InputError(f"{option} {path}: no hard positives (annotations with source \"{TRACKER_SOURCE}\"); mine with --mode hp or hn+hp")
    else:
        boxes = {image["id"]: image.get("hard_negatives", []) for image in coco["images"]}
        boxes = {key: [record["bbox"] for record in records] for key, records in boxes.items() if records}
        if not any("hard_negatives" in image for image in coco["images"]):
            raise InputError(
                f"{option} {path}: no image has a 'hard_negatives' record, so it is not a mined dataset "
                "(give a folder to take negative-only images)"
            )
    root = path.parent
    coco_files.require_images({"images": [i for i in coco["images"] if i["id"] in boxes]}, root, path, option)
    return [
        BoxCrops(image["file_name"], functools.partial(read_image, root / image["file_name"], gray=True), xywh_to_xyxy(boxes[image["id"]]))
        for image in coco["images"]
        if image["id"] in boxes
    ]


def train_hog_svm_files(files: HogSvmFiles, settings: HogSvmSettings = HogSvmSettings(), progress: bool = True, log: Callable[[str], None] = print) -> HogSvmModel:
    """Read the data ``files`` name, train (:func:`train_hog_svm`), score the model on ``val``
    when given, and write it to ``files.out`` (atomically). Every input is checked before any
    training starts."""
    train_path = Path(files.train)
    train_coco = coco_files.load(train_path)
    category = only_category(train_coco, files.category, str(train_path))
    images_dir = Path(files.images) if files.images is not None else train_path.parent
    coco_files.require_images(train_coco, images_dir, train_path, "--images")
    images = coco_labelled_images(train_coco, images_dir, category, str(train_path))
    data: dict[str, Any] = {"--train": {"path": str(train_path.resolve()), "sha256": file_sha256(train_path)}}

    negative_images: list[LabelledImage] = []
    negatives: list[BoxCrops] = []
    data["--negatives"] = []
    for source in map(Path, files.negatives):
        if source.is_dir():
            paths = _folder_images(source, "--negatives")
            negative_images += [LabelledImage(str(p), functools.partial(read_image, p, gray=True), np.zeros((0, 4))) for p in paths]
            data["--negatives"].append(_folder_fingerprint(source, paths))
        elif source.is_file():
            negatives += _mined_boxes(source, "--negatives", category, hard_positives=False)
            data["--negatives"].append({"path": str(source.resolve()), "sha256": file_sha256(source)})
        else:
            raise InputError(f"--negatives {source}: no such file or folder")
    positives: list[BoxCrops] = []
    data["--hard-positives"] = []
    for source in map(Path, files.hard_positives):
        positives += _mined_boxes(source, "--hard-positives", category, hard_positives=True)
        data["--hard-positives"].append({"path": str(source.resolve()), "sha256": file_sha256(source)})

    val_images = None
    if files.val is not None:
        val_path = Path(files.val)
        val_coco = coco_files.load(val_path)
        val_dir = Path(files.val_images or files.images or val_path.parent)
        coco_files.require_images(val_coco, val_dir, val_path, "--val-images")
        val_images = coco_labelled_images(val_coco, val_dir, category, str(val_path))
        data["--val"] = {"path": str(val_path.resolve()), "sha256": file_sha256(val_path)}

    model, _ = train_hog_svm(
        images, settings, category, negatives, positives, negative_images, val_images,
        training={"data": data}, progress=progress, log=log,
    )
    if val_images:
        detector = HogSvmDetector(model, scale_step=settings.scale_step)
        found = [detector.detect_gray(image.load()) for image in _progress(val_images, "validate", progress)]
        summary, _ = score_labelled(val_images, found, category)
        figures = {key: summary[key] for key in ("AP", "AP50", "AP75", "lamr")}
        model = model.replace(training={**model.training, "validation": figures})
        log("hog-svm: validation " + ", ".join(f"{key} {value:.3f}" for key, value in figures.items() if value is not None))
    model.save(files.out)
    return model
