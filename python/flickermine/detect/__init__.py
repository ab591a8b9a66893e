"""Detectors: what runs on frames and returns boxes.

- :mod:`._detections`: the :class:`~._detections.Detections` of a frame, the
  :class:`~._detections.Detector` protocol, :class:`~._detections.CallableDetector` (any function);
- :mod:`._opencv`: OpenCV's built-in HOG people detector and Haar cascades;
- :mod:`._torchvision`: torchvision's Faster R-CNN: building, loading weights and checkpoints,
  inference (torch is imported only when used);
- :mod:`._hog_svm`: the trainable HOG + linear SVM detector (the classic recipe whose training set
  hard-negative mining was invented for);
- :mod:`._registry`: detectors by their command-line names (``make_detector``);
- :mod:`._adapters`: torchvision's, Ultralytics' and supervision's results as ``Detections``
  (also ``Detections.from_torchvision`` and the others).
"""

from __future__ import annotations

from ._adapters import from_supervision, from_torchvision, from_ultralytics
from ._detections import CallableDetector, Detections, Detector, as_detector
from ._hog_svm import HogSvmDetector, detect_gray_shared
from ._opencv import HAAR_CASCADES, OpenCVHaarDetector, OpenCVHOGPeopleDetector
from ._registry import DETECTOR_NAMES, detector_info, make_detector
from ._torchvision import COCO_CATEGORIES, TORCHVISION_MODELS, TorchvisionDetector

__all__ = [
    "COCO_CATEGORIES",
    "DETECTOR_NAMES",
    "HAAR_CASCADES",
    "TORCHVISION_MODELS",
    "CallableDetector",
    "Detections",
    "Detector",
    "HogSvmDetector",
    "OpenCVHOGPeopleDetector",
    "OpenCVHaarDetector",
    "TorchvisionDetector",
    "as_detector",
    "detect_gray_shared",
    "detector_info",
    "from_supervision",
    "from_torchvision",
    "from_ultralytics",
    "make_detector",
]
