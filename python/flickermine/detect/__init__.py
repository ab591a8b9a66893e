"""Detectors: what runs on frames and returns boxes.

- :mod:`.detections`: the :class:`~.detections.Detections` of a frame, the
  :class:`~.detections.Detector` protocol, :class:`~.detections.CallableDetector` (any function);
- :mod:`.opencv`: OpenCV's built-in HOG people detector and Haar cascades;
- :mod:`.torchvision`: torchvision's Faster R-CNN: building, loading weights and checkpoints,
  inference (torch is imported only when used);
- :mod:`.hog_svm`: the trainable HOG + linear SVM detector (the classic recipe whose training set
  hard-negative mining was invented for);
- :mod:`.registry`: detectors by their command-line names (``make_detector``).
"""
