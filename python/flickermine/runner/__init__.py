"""Jobs that decode videos or images once, in order, run a detector and write what it found."""
