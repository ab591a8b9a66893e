"""Training detectors on labelled images and on the examples mined from video: torchvision's
Faster R-CNN (:mod:`._torch`, needs ``flickermine[torch]``) and the HOG + linear SVM (:mod:`._hog_svm`)."""

from __future__ import annotations

from ._hog_svm import HogSvmSettings, train_hog_svm, train_hog_svm_files
from ._torch import TrainConfig, TrainResult, train

__all__ = ["HogSvmSettings", "TrainConfig", "TrainResult", "train", "train_hog_svm", "train_hog_svm_files"]
