"""Training detectors on labelled images and on the examples mined from video: torchvision's
Faster R-CNN (:mod:`.torch`, needs ``flickermine[torch]``) and the HOG + linear SVM (:mod:`.hog_svm`)."""
