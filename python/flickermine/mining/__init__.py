"""The mining itself: the flicker rules and their parameters, the kernels that run them on a
backend, and the streaming miner.

- :mod:`.params`: :class:`~.params.MiningParams`, the rules and the reason codes;
- :mod:`.rules`: the rules, in NumPy (docs/rules.md);
- :mod:`.backends`: the kernels (C++, CUDA, Numba, OpenCV, NumPy) behind one interface;
- :mod:`.kernels`: the typed public kernels (``frame_verdicts``, ``iou``, ``ncc_search`` ...),
  validating their inputs before a backend sees them;
- :mod:`.miner`: :class:`~.miner.Miner`, frames and detections in, verdicts out.

The package root (``import flickermine``) re-exports their public names.
"""
