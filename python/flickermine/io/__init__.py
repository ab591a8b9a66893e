"""Reading and writing files: detections (MOTChallenge in :mod:`.mot`; the authors' text format
and JSON Lines in :mod:`.formats`), COCO files (:mod:`.coco`) and ground truth (:mod:`.ground_truth`)."""
