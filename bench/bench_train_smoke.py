"""CPU smoke run of the training loop: does fine-tuning learn, and how long does it take on CPU.

Data: the synthetic COCO sets of the training tests (``tests.test_training.make_squares``): 16
noisy 64x64 images for training (4 of them negatives, no annotations), 8 for testing (2
negatives), one bright square per positive image. Model: fasterrcnn_mobilenet_v3_large_fpn with
``weights=None, weights_backbone=None`` (nothing downloaded), the tests' tiny settings
(64 px input, batch 2, lr 0.01), one torch thread. It reports the loss (mean of the first and last
10 iterations), the wall time, and COCO AP/AP50 on the test set after 1 iteration and after all.
Trained from scratch for minutes, the AP says little: this checks plumbing and that the loss
falls, not detection quality (a GPU fine-tune from real weights is what measures that).

    python bench/bench_train_smoke.py [--iterations 150] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, print_table, write_json

sys.path.insert(0, str(ROOT))  # the synthetic data of the training tests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--json", default=None, help="output JSON (default: bench/results/train_smoke.json)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from flickermine.evaluate._on_coco import evaluate
    from flickermine.train._torch import train
    from tests.test_training import make_squares, tiny_config

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="flickermine-train-smoke-") as tmp:
        root = Path(tmp)
        train_json = make_squares(root / "train", count=16, negatives=4)
        test_json = make_squares(root / "test", count=8, negatives=2, seed=1)
        one = train(tiny_config(train_json, root / "one", iterations=1))
        before = evaluate(test_json, None, one.final, progress=False)
        start = time.perf_counter()
        run = train(tiny_config(train_json, root / "run", iterations=args.iterations,
                                checkpoint_every=max(1, args.iterations // 2)))
        seconds = time.perf_counter() - start
        after = evaluate(test_json, None, run.final, progress=False)
    losses = np.array(run.losses)
    first, last = float(losses[:10].mean()), float(losses[-10:].mean())
    print(f"CPU, 1 torch thread: fasterrcnn_mobilenet_v3_large_fpn from scratch, 64x64 images, batch 2, "
          f"{args.iterations} iterations in {seconds:.0f} s\n")
    print_table(
        ["", "loss", "test AP", "test AP50"],
        [["iteration 1", f"{float(losses[0]):.3f}", f"{before['AP']:.3f}", f"{before['AP50']:.3f}"],
         ["first 10 iterations (mean)", f"{first:.3f}", "", ""],
         [f"last 10 of {args.iterations} (mean)", f"{last:.3f}", f"{after['AP']:.3f}", f"{after['AP50']:.3f}"]],
    )
    write_json("train_smoke", {
        "model": "fasterrcnn_mobilenet_v3_large_fpn", "weights": None, "image_size": 64, "batch_size": 2,
        "torch_threads": 1, "iterations": args.iterations, "seconds": round(seconds, 1),
        "loss_first_10": round(first, 4), "loss_last_10": round(last, 4),
        "test_before": {k: before[k] for k in ("AP", "AP50", "AP75")},
        "test_after": {k: after[k] for k in ("AP", "AP50", "AP75")},
    }, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
