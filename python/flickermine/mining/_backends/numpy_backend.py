"""The NumPy backend: float64, plain and readable. The oracle the other backends must match."""

from __future__ import annotations


import numpy as np

from .. import _rules as rules
from ..._boxes import iou_matrix

NAME = "numpy"

#: A window or template whose sum of squared deviations is <= n * FLAT_VARIANCE is flat and
#: scores 0 (std <= 1e-4 in image units). The C++ kernel uses the same constant.
FLAT_VARIANCE = 1e-8


def _box_sums(values: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sum of every h x w window of ``values`` (an integral-image lookup)."""
    integral = np.zeros((values.shape[0] + 1, values.shape[1] + 1), dtype=values.dtype)
    np.cumsum(np.cumsum(values, axis=0), axis=1, out=integral[1:, 1:])
    return integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]


def ncc_score_map(template: np.ndarray, region: np.ndarray) -> np.ndarray:
    """TM_CCOEFF_NORMED score of every placement of ``template`` (h, w) in ``region`` (H, W).

    Returns ``(H - h + 1, W - w + 1)`` float64; flat windows or a flat template score 0;
    scores are clamped to [-1, 1].
    """
    h, w = template.shape
    n = h * w
    t = template.astype(np.float64)
    t_zero_mean = t - t.mean()
    t_ss = float((t_zero_mean**2).sum())

    # Window statistics: exact in int64 for uint8 pixels, float64 otherwise.
    exact = region.dtype == np.uint8
    raw = region.astype(np.int64 if exact else np.float64)
    win_sum = _box_sums(raw, h, w)
    win_ss = ((n * _box_sums(raw * raw, h, w) - win_sum * win_sum) / n).astype(np.float64)

    # Numerator sum(T' * I) = sum(T' * I') because T' has zero mean; subtracting the region's
    # mean first keeps the FFT's rounding small.
    image = region.astype(np.float64)
    image -= image.mean()
    shape = image.shape
    spectrum = np.fft.rfft2(image) * np.conj(np.fft.rfft2(t_zero_mean, s=shape))
    numerator = np.fft.irfft2(spectrum, s=shape)[: shape[0] - h + 1, : shape[1] - w + 1]

    flat = win_ss <= n * FLAT_VARIANCE
    if t_ss <= n * FLAT_VARIANCE:
        return np.zeros(numerator.shape)
    scores = numerator / np.sqrt(t_ss * np.where(flat, 1.0, win_ss))
    scores[flat] = 0.0
    return np.clip(scores, -1.0, 1.0)


def ncc_search_one(template: np.ndarray, region: np.ndarray) -> tuple[float, int, int]:
    """Best score of ``template`` in ``region`` and its top-left (x, y) in region pixels (first max, row-major)."""
    score_map = ncc_score_map(template, region)
    y, x = np.unravel_index(int(np.argmax(score_map)), score_map.shape)
    return float(score_map[y, x]), int(x), int(y)


ncc_search_batch = rules.search_each(ncc_search_one)


def iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    return iou_matrix(boxes_a, boxes_b)


frame_verdicts, frame_hard_positives = rules.rule_kernels(ncc_search_batch)
