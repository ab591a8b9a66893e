"""Training detectors on labelled images and on the examples mined from video: torchvision's
Faster R-CNN (:mod:`.torch`, needs ``flickermine[torch]``) and the HOG + linear SVM (:mod:`.hog_svm`)."""

from __future__ import annotations

from .hog_svm import HogSvmSettings, train_hog_svm, train_hog_svm_files
from .torch import TrainConfig, TrainResult, train

__all__ = ["HogSvmSettings", "TrainConfig", "TrainResult", "train", "train_hog_svm", "train_hog_svm_files"]
