"""Draw detection curves as a PNG: precision against recall, and miss rate against false
positives per image (log-log, the pedestrian benchmarks' plot), one line per detector."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Union

import numpy as np

from .._files import replaced_atomically
from ..errors import MissingExtraError
from ._miss_rate import LAMR_FPPI_RANGE, DetectionCurve

PathLike = Union[str, "os.PathLike[str]"]


def plot_curves(curves: Mapping[str, DetectionCurve], path: PathLike, title: str = "") -> Path:
    """Write ``path`` (PNG): both plots side by side, each curve labelled with its name and its
    log-average miss rate. Written atomically."""
    try:
        import matplotlib
    except ImportError as error:
        raise MissingExtraError(f"drawing {Path(path).name} needs matplotlib: pip install matplotlib (or the [plot] extra)") from error

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    figure, (pr_axes, mr_axes) = plt.subplots(1, 2, figsize=(11, 4.6))
    for name, curve in curves.items():
        recall = np.concatenate([[0.0], curve.recall])
        precision = np.concatenate([[1.0], curve.precision])
        pr_axes.plot(recall, precision, label=name, linewidth=1.4)
        fppi = np.maximum(curve.fppi, 1e-4)  # a log axis has no 0
        mr_axes.plot(fppi, curve.miss_rate, label=f"{name} ({100 * curve.log_average_miss_rate():.1f}%)", linewidth=1.4)
    pr_axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall, IoU 0.5")
    mr_axes.set(
        xscale="log", yscale="log", xlabel="false positives per image", ylabel="miss rate",
        xlim=(1e-3, 10), ylim=(0.05, 1.0), title="miss rate vs FPPI (log-average miss rate)",
    )
    mr_axes.axvspan(*LAMR_FPPI_RANGE, color="0.93", zorder=0)
    for axes in (pr_axes, mr_axes):
        axes.grid(True, which="both", linewidth=0.3)
        axes.legend(fontsize=7, loc="lower left")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    with replaced_atomically(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)
    return path
