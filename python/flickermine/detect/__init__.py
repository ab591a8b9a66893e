"""Detectors: what runs on frames and returns boxes.

:mod:`flickermine.detect.hog_svm` holds the trainable HOG + linear SVM detector (the classic
recipe whose training set hard-negative mining was invented for).
"""
