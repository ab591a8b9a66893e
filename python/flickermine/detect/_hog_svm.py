"""A trainable HOG + linear SVM detector (Dalal & Triggs, 2005) and its model file.

A detection window of ``window_width x window_height`` px holds the object box in its middle:
the box fills ``object_height`` of the window's height (the rest is context, as in Dalal &
Triggs' 64x128 window around a 96 px person) and has the width/height ratio ``object_aspect``
of the training boxes. Training crops a box's window (aspect-normalised: from the box's height
and centre, whatever its width) and detection maps each window back to its box, so boxes go in
and come out tight, in the convention of the ground truth they were trained on.

Detection scans the grayscale frame over an image pyramid (every window, no grouping), then
non-maximum suppression of the boxes (``cv2.dnn.NMSBoxes``). The scan gives what OpenCV's
``HOGDescriptor.detectMultiScale`` gives (the same pyramid, windows and margins, up to float
rounding; a test holds it to that), but describes each pyramid level's blocks once and scores the
windows with a matrix product, so that several models with the same window scan a frame at little
more than one model's cost (:func:`detect_gray_shared`: a benchmark's retrained arms). The SVM's margin becomes a score by the model's Platt calibration
(``1 / (1 + exp(-(slope * margin + intercept)))``, fitted on detections matched to ground truth),
so a score is an estimate of the chance that the detection is right and ``--score-threshold``
means what it means for other detectors. Boxes everywhere are ``x1, y1, x2, y2`` float pixels.

The model file is JSON (``format: "flickermine-hog-svm/1"``): the window and HOG parameters,
the SVM's weights and bias, the calibration, the object sizes seen in training and a record of
the training data (file fingerprints, example counts). It holds no code: loading one is safe.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import cv2
import numpy as np
import threadpoolctl

from .._files import replaced_atomically
from ._detections import Detections, _check_batch_size, _check_category_for, _check_frames, _clip_to_frame
from ..errors import InputError

PathLike = Union[str, "os.PathLike[str]"]

MODEL_FORMAT = "flickermine-hog-svm/1"
DETECTOR_NAME = "hog-svm"


@dataclasses.dataclass(frozen=True)
class HogParams:
    """The detection window and its HOG descriptor (OpenCV's ``HOGDescriptor``).

    ``window_width``, ``window_height``: px, multiples of ``cell``; blocks are ``block_cells x
    block_cells`` cells moved one cell at a time; ``bins`` unsigned orientation bins.
    ``object_height``: share of the window's height the object box fills, in (0, 1];
    ``object_aspect``: width / height of the object box.
    """

    window_width: int = 64
    window_height: int = 128
    cell: int = 8
    block_cells: int = 2
    bins: int = 9
    object_height: float = 0.75
    object_aspect: float = 0.41

    def __post_init__(self) -> None:
        for name in ("window_width", "window_height", "cell", "block_cells", "bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= 4096:
                raise InputError(f"HOG {name} must be an integer in [1, 4096], got {value!r}")
        if self.block_cells * self.cell > min(self.window_width, self.window_height):
            raise InputError(
                f"HOG block of {self.block_cells}x{self.block_cells} cells of {self.cell} px does not fit the "
                f"{self.window_width}x{self.window_height} window"
            )
        for name in ("window_width", "window_height"):
            if getattr(self, name) % self.cell:
                raise InputError(f"HOG {name} {getattr(self, name)} is not a multiple of the cell size {self.cell}")
        if not (isinstance(self.object_height, (int, float)) and 0 < self.object_height <= 1):
            raise InputError(f"object_height must be in (0, 1], got {self.object_height!r}")
        if not (isinstance(self.object_aspect, (int, float)) and math.isfinite(self.object_aspect) and self.object_aspect > 0):
            raise InputError(f"object_aspect must be a positive number, got {self.object_aspect!r}")

    def descriptor(self, window: Optional[tuple[int, int]] = None, block_step: Optional[int] = None) -> "cv2.HOGDescriptor":
        """An OpenCV ``HOGDescriptor`` of these parameters for the detection window, or for a
        window of ``window`` (width, height) px whose blocks step ``block_step`` px (default: a cell)."""
        block = self.block_cells * self.cell
        step = block_step or self.cell
        return cv2.HOGDescriptor(
            window or (self.window_width, self.window_height), (block, block), (step, step),
            (self.cell, self.cell), self.bins, 1, -1.0, cv2.HOGDescriptor_L2Hys, 0.2, False, 64, False,
        )

    @property
    def descriptor_size(self) -> int:
        blocks_x = self.window_width // self.cell - self.block_cells + 1
        blocks_y = self.window_height // self.cell - self.block_cells + 1
        return blocks_x * blocks_y * self.block_cells**2 * self.bins

    @property
    def object_pixels(self) -> float:
        """Height in window pixels of an object box that fits the window exactly."""
        return self.window_height * self.object_height

    def windows_of_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """``(N, 4)`` object boxes → the ``(N, 4)`` windows that hold them (same centre; the
        window's height from the box's height, its width from the window's aspect)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
        centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
        height = (boxes[:, 3] - boxes[:, 1]) / self.object_height
        width = height * self.window_width / self.window_height
        return np.column_stack([centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2])

    def boxes_of_windows(self, windows: np.ndarray) -> np.ndarray:
        """``(N, 4)`` windows → the ``(N, 4)`` object boxes they stand for."""
        windows = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
        centre_x = (windows[:, 0] + windows[:, 2]) / 2
        centre_y = (windows[:, 1] + windows[:, 3]) / 2
        height = (windows[:, 3] - windows[:, 1]) * self.object_height
        width = height * self.object_aspect
        return np.column_stack([centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2])

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def window_descriptors(gray: np.ndarray, windows: np.ndarray, params: HogParams, flip: bool = False) -> np.ndarray:
    """HOG descriptors ``(N, D)`` float32 of ``windows`` ``(N, 4)`` x1, y1, x2, y2 px of the
    ``(H, W)`` uint8 image ``gray``, each resampled to the detection window (mirrored when
    ``flip``). Each window is cut with a border of one cell and described at its inner position,
    so its edge gradients see the pixels around it, as they do when the detector scans a frame;
    parts outside the image repeat its edge pixels."""
    windows = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    hog = params.descriptor()
    cell = params.cell
    size = (params.window_width + 2 * cell, params.window_height + 2 * cell)
    out = np.empty((len(windows), params.descriptor_size), dtype=np.float32)
    for row, (x1, y1, x2, y2) in enumerate(windows):
        scale_x = params.window_width / (x2 - x1)
        scale_y = params.window_height / (y2 - y1)
        transform = np.array([[scale_x, 0.0, cell - x1 * scale_x], [0.0, scale_y, cell - y1 * scale_y]])
        patch = cv2.warpAffine(gray, transform, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if flip:
            patch = cv2.flip(patch, 1)
        # np.asarray: OpenCV's stubs type the result as Sequence[float]; it is an ndarray already.
        out[row] = np.asarray(hog.compute(patch, winStride=(cell, cell), padding=(0, 0), locations=((cell, cell),))).reshape(-1)
    return out


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Platt scaling of SVM margins: ``score = 1 / (1 + exp(-(slope * margin + intercept)))``."""

    slope: float
    intercept: float

    def score(self, margin: Any) -> np.ndarray:
        z = self.slope * np.asarray(margin, dtype=np.float64) + self.intercept
        return np.exp(-np.logaddexp(0.0, -z))

    def margin(self, score: float) -> float:
        """The margin whose score is ``score`` (in (0, 1))."""
        return (math.log(score) - math.log1p(-score) - self.intercept) / self.slope


#: margins as they are, through the logistic function: what an uncalibrated model reports
IDENTITY_CALIBRATION = Calibration(1.0, 0.0)


@dataclasses.dataclass(frozen=True, eq=False)
class HogSvmModel:
    """A trained HOG + linear SVM detector: ``margin = weights · descriptor + bias``.

    ``weights`` ``(D,)`` float32 in OpenCV's descriptor order; ``calibration`` maps margins to
    scores (``None``: not calibrated, scores are ``1 / (1 + exp(-margin))``);
    ``min_object_height``, ``max_object_height``: px, the range of box heights in training, the
    sizes the detector looks for by default; ``training``: JSON-ready record of the data and
    settings it was trained with.
    """

    params: HogParams
    weights: np.ndarray
    bias: float
    category: str = "object"
    calibration: Optional[Calibration] = None
    min_object_height: float = 0.0
    max_object_height: float = 0.0
    training: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        weights = np.asarray(self.weights, dtype=np.float32).reshape(-1)
        if weights.shape != (self.params.descriptor_size,):
            raise InputError(
                f"HOG-SVM weights have {weights.size} values but the {self.params.window_width}x"
                f"{self.params.window_height} window's descriptor has {self.params.descriptor_size}"
            )
        if not np.isfinite(weights).all() or not math.isfinite(self.bias):
            raise InputError("HOG-SVM weights and bias must be finite")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "bias", float(self.bias))
        if self.min_object_height <= 0:
            object.__setattr__(self, "min_object_height", self.params.object_pixels)
        if self.max_object_height < self.min_object_height:
            object.__setattr__(self, "max_object_height", self.min_object_height)

    def margins(self, descriptors: np.ndarray) -> np.ndarray:
        """``(N,)`` SVM margins of ``(N, D)`` descriptors."""
        return np.asarray(descriptors, dtype=np.float32) @ self.weights + self.bias

    def score(self, margin: Any) -> np.ndarray:
        return (self.calibration or IDENTITY_CALIBRATION).score(margin)

    def margin_of_score(self, score: float) -> float:
        return (self.calibration or IDENTITY_CALIBRATION).margin(score)

    def replace(self, **changes: Any) -> "HogSvmModel":
        return dataclasses.replace(self, **changes)

    # ---- file

    def to_json(self) -> dict:
        return {
            "format": MODEL_FORMAT,
            "category": self.category,
            "hog": self.params.as_dict(),
            "svm": {"bias": self.bias, "weights": [float(v) for v in self.weights]},
            "calibration": dataclasses.asdict(self.calibration) if self.calibration else None,
            "object_heights": [self.min_object_height, self.max_object_height],
            "training": self.training,
        }

    def save(self, path: PathLike) -> Path:
        """Write the model as JSON, atomically (the old file, if any, is replaced in one rename)."""
        path = Path(path)
        with replaced_atomically(path) as temporary, open(temporary, "w", encoding="utf-8") as stream:
            json.dump(self.to_json(), stream)
            stream.write("\n")
        return path

    @classmethod
    def load(cls, path: PathLike) -> "HogSvmModel":
        """Read a model written by :meth:`save`; anything else is an :class:`InputError` naming the file."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such HOG-SVM model file")
        with open(path, "rb") as stream:
            head = stream.read(4)
        if head.startswith(b"PK") or head[:1] == b"\x80":
            raise InputError(
                f"{path}: a torch checkpoint, not a HOG-SVM model; run it with --detector set to its torchvision architecture"
            )
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"{path}: not a HOG-SVM model written by `flickermine train --model hog-svm` ({error})") from None
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise InputError(f"{path}: not a HOG-SVM model (format {found!r}, expected {MODEL_FORMAT!r})")
        try:
            calibration = payload.get("calibration")
            low, high = payload.get("object_heights", (0.0, 0.0))
            return cls(
                params=HogParams(**payload["hog"]),
                weights=np.asarray(payload["svm"]["weights"], dtype=np.float32),
                bias=float(payload["svm"]["bias"]),
                category=str(payload.get("category", "object")),
                calibration=Calibration(float(calibration["slope"]), float(calibration["intercept"])) if calibration else None,
                min_object_height=float(low),
                max_object_height=float(high),
                training=dict(payload.get("training") or {}),
            )
        except InputError as error:
            raise InputError(f"{path}: {error}") from None
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"{path}: a damaged HOG-SVM model ({type(error).__name__}: {error})") from None


class HogSvmDetector:
    """Run a :class:`HogSvmModel` on BGR frames (the :class:`~flickermine.detect.Detector` protocol).

    ``model``: a model or the path of its file. ``min_score``: detections scoring lower are
    dropped before NMS (in the model's calibrated scale). ``nms_iou``: boxes overlapping a
    better one at more than this IoU are dropped. ``scale_step``: ratio between pyramid levels.
    ``stride``: px between windows (default: one cell). ``min_height``, ``max_height``: px, the
    range of object heights searched (default: the training boxes' range, widened by 20%).
    Label 1, named by the model's category.
    """

    name = DETECTOR_NAME

    def __init__(
        self,
        model: HogSvmModel | PathLike,
        min_score: float = 0.05,
        nms_iou: float = 0.4,
        scale_step: float = 1.05,
        stride: Optional[int] = None,
        min_height: Optional[float] = None,
        max_height: Optional[float] = None,
        batch_size: int = 1,
        category: Any = None,
    ) -> None:
        self.weights_path = None if isinstance(model, HogSvmModel) else str(model)
        self.model = model if isinstance(model, HogSvmModel) else HogSvmModel.load(model)
        self.category_names = {1: self.model.category}
        _check_category_for(self.name, category, self.category_names)
        if not (isinstance(min_score, (int, float)) and 0.0 < min_score < 1.0):
            raise InputError(f"min_score must be in (0, 1), got {min_score!r}")
        if not (isinstance(nms_iou, (int, float)) and 0.0 < nms_iou <= 1.0):
            raise InputError(f"nms_iou must be in (0, 1], got {nms_iou!r}")
        if not (isinstance(scale_step, (int, float)) and 1.0 < scale_step <= 2.0):
            raise InputError(f"scale_step must be in (1, 2], got {scale_step!r}")
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.scale_step = float(scale_step)
        stride = self.model.params.cell if stride is None else stride
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or not 1 <= stride <= 256:
            raise InputError(f"stride must be an integer in [1, 256] px, got {stride!r}")
        self.stride = int(stride)
        self.min_height = float(min_height) if min_height is not None else self.model.min_object_height / 1.2
        self.max_height = float(max_height) if max_height is not None else self.model.max_object_height * 1.2
        if not (0 < self.min_height <= self.max_height and math.isfinite(self.max_height)):
            raise InputError(f"need 0 < min_height <= max_height, got {self.min_height!r} and {self.max_height!r}")
        self.batch_size = _check_batch_size(batch_size)
        self._build()

    def _build(self) -> None:
        params = self.model.params
        # The first pyramid level shows the smallest object at the window's object size; the
        # last one the largest (the scan stops earlier when the image gets smaller than a window).
        self._first_scale = params.object_pixels / self.min_height
        self._levels = max(1, 1 + math.ceil(math.log(self.max_height / self.min_height) / math.log(self.scale_step)))
        self._hit_margin = self.model.margin_of_score(self.min_score)

    def __repr__(self) -> str:
        return f"HogSvmDetector({self.weights_path or 'model'}, min_score={self.min_score}, nms_iou={self.nms_iou})"

    def __call__(self, frames: list[np.ndarray]) -> list[Detections]:
        frames = _check_frames(frames, self.name)
        return [self.detect_gray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)) for frame in frames]

    def window_margins(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every window of the pyramid scoring at least ``min_score``, before NMS: windows
        ``(N, 4)`` x1, y1, x2, y2 px of ``gray`` and their ``(N,)`` SVM margins."""
        return _scan([self], gray)[0]

    def detect_gray(self, gray: np.ndarray) -> Detections:
        """Detections in one ``(H, W)`` uint8 grayscale frame: boxes x1, y1, x2, y2 px, scores calibrated."""
        return self.detect_with_margins(gray)[0]

    def detect_with_margins(self, gray: np.ndarray) -> tuple[Detections, np.ndarray]:
        """:meth:`detect_gray`, and the ``(N,)`` SVM margin of each detection."""
        return self._detections(gray, *self.window_margins(gray))

    def _detections(self, gray: np.ndarray, windows: np.ndarray, margins: np.ndarray) -> tuple[Detections, np.ndarray]:
        """Windows and margins of :meth:`window_margins` → detections after NMS, and their margins."""
        boxes = self.model.params.boxes_of_windows(windows)
        scores = self.model.score(margins)  # in (0, 1), ordered as the margins: NMSBoxes takes no negative score
        if len(boxes):
            xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
            keep = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, self.nms_iou), dtype=np.int64).reshape(-1)
            boxes, scores, margins = boxes[keep], scores[keep], margins[keep]
        # Boxes wholly outside the frame go; the margins follow the same mask.
        height, width = gray.shape[:2]
        inside = (np.minimum(boxes[:, 2], width) > np.maximum(boxes[:, 0], 0)) & (np.minimum(boxes[:, 3], height) > np.maximum(boxes[:, 1], 0))
        clipped = _clip_to_frame(boxes[inside], scores[inside], np.ones(int(inside.sum()), np.int64), gray.shape)
        return clipped, margins[inside]

    def info(self) -> dict:
        calibration = self.model.calibration
        return {
            "name": self.name,
            "model": "HOG + linear SVM (flickermine)",
            "weights": self.weights_path,
            "category": self.model.category,
            "score": (
                f"Platt-calibrated SVM margin: 1 / (1 + exp(-({calibration.slope:.4g} * margin + {calibration.intercept:.4g})))"
                if calibration else "1 / (1 + exp(-margin)), uncalibrated"
            ),
            "options": {
                "min_score": self.min_score,
                "nms_iou": self.nms_iou,
                "scale_step": self.scale_step,
                "stride": self.stride,
                "min_height": self.min_height,
                "max_height": self.max_height,
            },
        }




def detect_gray_shared(detectors: Sequence[HogSvmDetector], gray: np.ndarray) -> list[Detections]:
    """What each detector's :meth:`HogSvmDetector.detect_gray` gives on one ``(H, W)`` uint8
    grayscale frame, with the frame's HOG blocks computed once for all of them. The detectors
    must scan the same pyramid: the same HOG parameters, stride, scale step and object height
    range (models refitted from one training run with one settings do)."""
    return [detector._detections(gray, windows, margins)[0] for detector, (windows, margins) in zip(detectors, _scan(detectors, gray))]


def _scan(detectors: Sequence[HogSvmDetector], gray: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each detector, the windows ``(N, 4)`` x1, y1, x2, y2 px of ``gray`` whose margin
    reaches its ``min_score`` and their ``(N,)`` margins, best first.

    It reproduces ``HOGDescriptor.detectMultiScale(image, hitThreshold, winStride=(stride,
    stride), padding=(cell, cell), scale=scale_step, groupThreshold=0)`` on the frame resized by
    the first scale: the same levels (each ``cvRound(side / scale)`` px, linear-exact resampling,
    until a window no longer fits), the same windows (from ``-cell`` px, every ``stride`` px), the
    same rectangles (rounded to whole pixels at the level's scale and cut to the image, so a model's
    calibration, fitted on such windows, still holds) and margins equal up to float rounding.
    """
    first = detectors[0]
    params = first.model.params
    pyramid = (params, first._first_scale, first._levels, first.scale_step, first.stride)
    for detector in detectors[1:]:
        if (detector.model.params, detector._first_scale, detector._levels, detector.scale_step, detector.stride) != pyramid:
            raise InputError(f"{detector!r} scans another pyramid than {first!r}: their windows cannot be shared")
    scale = first._first_scale
    interpolation = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
    image = gray if scale == 1 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=interpolation)
    height, width = image.shape[:2]
    level_scales = []
    level_scale = 1.0
    for _ in range(first._levels):
        # Python's round() rounds half to even, as OpenCV's cvRound does.
        if round(width / level_scale) < params.window_width or round(height / level_scale) < params.window_height:
            break
        level_scales.append(level_scale)
        level_scale *= first.scale_step
    weights = np.stack([detector.model.weights for detector in detectors], axis=1)  # (D, K)
    biases = np.array([detector.model.bias for detector in detectors])
    hit_margins = np.array([detector._hit_margin for detector in detectors])

    def scan_level(level_scale: float) -> list[tuple[np.ndarray, np.ndarray]]:
        size = (round(width / level_scale), round(height / level_scale))
        level = image if size == (width, height) else cv2.resize(image, size, interpolation=cv2.INTER_LINEAR_EXACT)
        margins = _window_margins(level, params, first.stride, weights) + biases  # (columns, rows, K)
        found = []
        for k in range(len(detectors)):
            column, row = np.nonzero(margins[:, :, k] >= hit_margins[k])
            x1 = np.rint((column * first.stride - params.cell) * level_scale)
            y1 = np.rint((row * first.stride - params.cell) * level_scale)
            left, top = np.maximum(x1, 0), np.maximum(y1, 0)
            rects = np.column_stack([  # x, y, width, height px, as OpenCV's cv::Rect
                left, top,
                np.minimum(x1 + round(params.window_width * level_scale), width) - left,
                np.minimum(y1 + round(params.window_height * level_scale), height) - top,
            ])
            kept = (rects[:, 2] > 0) & (rects[:, 3] > 0)
            found.append((rects[kept], margins[column, row, k][kept]))
        return found

    # The levels run in parallel on OpenCV's thread count, as OpenCV's own scan runs them (HOG and
    # BLAS release the GIL); BLAS's own threads would only contend with them, or with the other
    # processes of a pool that set OpenCV to one thread each.
    threads = min(cv2.getNumThreads(), len(level_scales))
    with _blas_threads().limit(limits=1, user_api="blas"):
        if threads > 1:
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                per_level = list(pool.map(scan_level, level_scales))
        else:
            per_level = [scan_level(level_scale) for level_scale in level_scales]
    results = []
    for k in range(len(detectors)):
        parts = [level[k] for level in per_level]
        rects = np.concatenate([np.zeros((0, 4))] + [rects for rects, _ in parts]) / scale
        margins = np.concatenate([np.zeros(0)] + [margins for _, margins in parts])
        # Sorted, so that ties in NMS (and everything trained on the detections) come out the
        # same whatever order the levels finish in.
        order = np.lexsort((rects[:, 3], rects[:, 2], rects[:, 1], rects[:, 0], -margins))
        rects, margins = rects[order], margins[order]
        results.append((np.column_stack([rects[:, :2], rects[:, :2] + rects[:, 2:]]), margins))
    return results


def _window_margins(level: np.ndarray, params: HogParams, stride: int, weights: np.ndarray) -> np.ndarray:
    """``(columns, rows, K)`` float64 margins less bias of the ``K`` models ``weights`` ``(D, K)``
    at every window of one pyramid level, windows from ``-cell`` px every ``stride`` px.

    A window's descriptor is its blocks' normalised histograms side by side, and a block's
    histogram depends only on the pixels under it; so the level's blocks are computed once, on
    the grid the windows' blocks fall on, and each window's margin is the sum over its blocks of
    that block's histogram times the models' weights for the block's place in the window."""
    pad = params.cell
    columns = (level.shape[1] + 2 * pad - params.window_width) // stride + 1
    rows = (level.shape[0] + 2 * pad - params.window_height) // stride + 1
    grid = math.gcd(stride, params.cell)
    block = params.block_cells * params.cell
    span = ((columns - 1) * stride + params.window_width, (rows - 1) * stride + params.window_height)
    histograms = np.asarray(_block_describer(params, span, grid).compute(level, winStride=(grid, grid), padding=(pad, pad), locations=((-pad, -pad),)))
    block_length = params.block_cells**2 * params.bins
    # OpenCV lays blocks out column by column: x outer, y inner.
    grid_columns, grid_rows = (span[0] - block) // grid + 1, (span[1] - block) // grid + 1
    window_columns = params.window_width // params.cell - params.block_cells + 1
    window_rows = params.window_height // params.cell - params.block_cells + 1
    models = weights.shape[1]
    # (block length, window blocks x K): every model's weights for every place in the window
    placed = weights.reshape(window_columns * window_rows, block_length, models).transpose(1, 0, 2).reshape(block_length, -1)
    products = (histograms.reshape(-1, block_length) @ placed).reshape(grid_columns, grid_rows, window_columns * window_rows, models)
    step, hop = params.cell // grid, stride // grid
    margins = np.zeros((columns, rows, models))
    for i in range(window_columns):
        for j in range(window_rows):
            margins += products[i * step: i * step + (columns - 1) * hop + 1: hop, j * step: j * step + (rows - 1) * hop + 1: hop, i * window_rows + j]
    return margins


@functools.lru_cache(maxsize=1)
def _blas_threads() -> threadpoolctl.ThreadpoolController:
    return threadpoolctl.ThreadpoolController()


@functools.lru_cache(maxsize=256)
def _block_describer(params: HogParams, span: tuple[int, int], grid: int) -> "cv2.HOGDescriptor":
    """A ``HOGDescriptor`` whose one window spans ``span`` px and whose blocks step ``grid`` px."""
    return params.descriptor(span, grid)


def descriptors_for_boxes(gray: np.ndarray, boxes: Sequence[Sequence[float]] | np.ndarray, params: HogParams, flip: bool = False) -> np.ndarray:
    """Descriptors ``(N, D)`` of the windows around object ``boxes`` ``(N, 4)`` x1, y1, x2, y2 px."""
    return window_descriptors(gray, params.windows_of_boxes(np.asarray(boxes, dtype=np.float64)), params, flip)
