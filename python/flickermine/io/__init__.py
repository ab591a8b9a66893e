"""Reading and writing files: ground truth, detections, datasets."""
