"""Scoring detectors against ground truth: matching, COCO AP, miss rate against false positives
per image, and their curves (:mod:`.coco_ap`, :mod:`.miss_rate`, :mod:`.scoring`, :mod:`.curves`,
run on a COCO file by :mod:`.on_coco`); and mined examples against MOT ground truth (:mod:`.audit`)."""
