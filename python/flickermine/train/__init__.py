"""Training detectors on labelled images and on the examples mined from video."""
