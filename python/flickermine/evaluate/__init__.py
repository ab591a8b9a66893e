"""Scoring detectors against ground truth: matching, COCO AP, miss rate against false positives
per image, and their curves."""
