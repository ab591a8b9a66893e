"""The Numba backend: FFT cross-correlation written in Numba, exact rescoring of the best match,
and every rule decided in jitted code.

Same contract and conventions as :mod:`flickermine.mining._backends.numpy_backend` (the oracle).

**Rules.** ``frame_verdicts`` (seed, tracklet, support) and ``frame_hard_positives`` run the
logic of ``cpp/src/verdicts.cpp`` in nopython code (``_kernel``), with its early exits (same
verdicts as the oracle, ``_rules.py``, which this backend never runs): exemptions, window bounds,
``pixel_boxes`` / ``grow_boxes`` rounding and IoU with the operations of ``_boxes`` in their order
(ties at a threshold agree). A thin Python wrapper per entry point passes the window as frame
addresses (no copy), the boxes as one (N, 4) array with per-frame offsets and the parameters as
scalars; then one jitted call per frame does every search: a template's statistics are computed
once per detection, its spectrum once per FFT size it needs, and the FFT plans and scratch space
per size are kept per thread (``_setups``).

One search (template ``T`` h x w, region ``R`` H x W):

1. **Numerator** ``sum(T' * R_window)`` of every placement by FFT: a real 2-D transform of the
   mean-subtracted region zero-padded to ``Ny x Nx`` (the smallest 2,3,5-smooth sizes >= H, W:
   circular correlation does not wrap into the valid placements), times the conjugate spectrum
   of the zero-mean template, transformed back, in float32 (as the C++ core: twice the lanes of
   float64 per vector instruction). Region and template enter scaled by powers of 2 to a unit
   magnitude (exact, undone on the way out), so float32 neither overflows nor underflows at
   any accepted intensity. The transforms are mixed-radix
   (2, 3, 4, 5, 6, 9) Stockham FFTs run on blocks of columns, so every butterfly is a loop along
   contiguous memory that LLVM vectorises; the real transform along y packs row pairs into one
   complex row. In ``ncc_search_batch`` template spectra are cached (keyed on frame buffer and
   box, verified on the template pixels at every hit), so a template searched in successive
   frames is transformed once; each search is one call of the same jitted search as the rules'.
2. **Window statistics** from sliding column sums and running sums along x: exact when the
   pixels are integers (uint8, or float32 holding integers), otherwise with a proven error
   bound, and exactly constant windows found by counting neighbour changes.
3. **Exact rescoring.** Each approximate score carries a bound on its error (float32 FFT
   rounding at one placement, ``3 c u32 log2(N) ||R'||_2 ||T'||_2`` by Cauchy-Schwarz per
   placement (see ``_search_fft``); divided by the window norm; plus the statistics' error).
   The best approximate placement is recomputed directly in float64, then every placement whose
   approximate score plus its bound reaches the best exact score so far. (With integer pixels
   the comparison runs in the domain ``s |s|``, monotone in the score, which needs no square
   root per placement.) The returned score is a direct float64 computation and the argmax is
   the first maximum in row-major order.

Small searches (few placements, or a template as large as the region) skip the FFT and score
every placement directly. Everything is compiled on first use and cached on disk where the
install is writable (numba's cache: ``__pycache__`` next to this file, or ``NUMBA_CACHE_DIR``).

Compiling takes about 100 s on a 2-core machine (the search alone took 40 s there before the
rules moved into jitted code), once: the first search or verdict of a process whose cache is cold
compiles every specialisation the backend uses (uint8 and float32 frames, direct and FFT
searches, every rule; :func:`warm_up`) and says so on stderr, so no mining run stalls silently; a
marker file next to numba's cache records it (:func:`cache_is_cold`). ``flickermine --warmup``
does it ahead of time, and ``flickermine --version`` does it when the cache is cold. Every task
goes through one entry point per frame dtype (``_kernel``): numba optimises a compiled function
together with everything it calls, so each extra entry above the search would compile it again.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

try:
    import numba
except ImportError as error:  # the registry marks the backend unavailable
    raise ImportError(f"the numba backend needs the 'numba' package ({error})") from error

from llvmlite import ir as llvm_ir
from numba.core import cgutils
from numba.extending import intrinsic

from .. import _rules as rules
from .._params import PYTHON_ONLY_FIELDS, MiningParams, Reason, Rule
from ..._boxes import iou_matrix
from ...errors import InputError

NAME = "numba"

#: Same flat-window constant as the NumPy and C++ backends.
FLAT_VARIANCE = 1e-8

#: Columns per block in the FFT passes. Every butterfly loop runs over a block's columns and
#: pays its setup (index arithmetic, LLVM's runtime aliasing checks) once per block row: 128
#: columns amortise it (measured 4-7% faster a search than 64, 64 10-15% faster than 32, 16 much
#: slower); the blocks live in L2 either way.
_BLOCK = 128

#: Cached template spectra: at most this many entries and this many bytes.
_CACHE_ENTRIES = 256
_CACHE_BYTES = 96 << 20

_U64 = 2.0**-53
_U32 = 2.0**-24

# The FFT runs in float32 (twice the lanes of float64 per vector instruction; the error bound in
# _search_fft covers it and the exact float64 rescoring keeps the scores exact). Its constants
# are float32 globals, which numba freezes as float32: a Python float literal is float64 and
# would promote every butterfly it touches to float64.
_FFT_DTYPE = np.float32
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
_HALF = np.float32(0.5)
_MINUS_HALF = np.float32(-0.5)
_FORWARD = np.float32(-1.0)  # sign of the exponent
_INVERSE = np.float32(1.0)
_SIN_60 = np.float32(0.86602540378443864676)
_COS_72 = np.float32(0.30901699437494742410)
_COS_144 = np.float32(-0.80901699437494742410)
_SIN_72 = np.float32(0.95105651629515357212)
_SIN_144 = np.float32(0.58778525229247312917)
_COS_40 = np.float32(math.cos(2 * math.pi / 9))
_SIN_40 = np.float32(math.sin(2 * math.pi / 9))
_COS_80 = np.float32(math.cos(4 * math.pi / 9))
_SIN_80 = np.float32(math.sin(4 * math.pi / 9))
_COS_160 = np.float32(math.cos(8 * math.pi / 9))
_SIN_160 = np.float32(math.sin(8 * math.pi / 9))


def _jit(fastmath: bool = False):
    """``numba.njit`` with on-disk caching where the install allows it, in-memory otherwise."""

    def decorate(function):
        options = dict(nogil=True, fastmath=fastmath, error_model="numpy")
        try:
            return numba.njit(cache=True, **options)(function)
        except Exception:  # no writable cache location (read-only install, odd loader)
            return numba.njit(cache=False, **options)(function)

    return decorate


# --------------------------------------------------------------------------------------------
# FFT along axis 0 of (n, nc) blocks: Stockham autosort, decimation in frequency.
# A stage of radix p with current length L = p * m and stride s reads rows q + s*(j + m*a)
# and writes rows q + s*(p*j + k), multiplied by w_L^(j*k); after all stages the spectrum is in
# natural order. Every row operation is a loop over nc contiguous columns.
# --------------------------------------------------------------------------------------------


def _inline_jit(function):
    """``_jit`` for small helpers of the butterfly loops, inlined by numba itself (before LLVM
    sees the loop) so that the loops still vectorise."""
    options = dict(nogil=True, fastmath=True, error_model="numpy", inline="always")
    try:
        return numba.njit(cache=True, **options)(function)
    except Exception:
        return numba.njit(cache=False, **options)(function)


def _inline_exact(function):
    """``_jit`` (no fastmath) for small helpers inlined by numba itself: no specialisation of
    their own per literal argument (a call with a constant specialises on it), no call."""
    options = dict(nogil=True, error_model="numpy", inline="always")
    try:
        return numba.njit(cache=True, **options)(function)
    except Exception:
        return numba.njit(cache=False, **options)(function)


@_inline_jit
def _put(yr, yi, row, c, ar, ai, wr, wi):
    """y[row, c] = a * w (complex)."""
    yr[row, c] = ar * wr - ai * wi
    yi[row, c] = ar * wi + ai * wr


@_inline_jit
def _dft3_term(ar, ai, br, bi, cr, ci, h, e):
    """Output k of a radix-3 DFT of (a, b, c): a + h (b + c) + i e (b - c), with (h, e) =
    (1, 0), (-1/2, sn), (-1/2, -sn) for k = 0, 1, 2 (sn = sign * sin(2 pi / 3))."""
    return ar + h * (br + cr) - e * (bi - ci), ai + h * (bi + ci) + e * (br - cr)


@_inline_jit
def _put_sum_diff(yr, yi, row_a, row_b, c, ar, ai, vr, vi, war, wai, wbr, wbi):
    """y[row_a, c] = (a + v) * wa, y[row_b, c] = (a - v) * wb (complex): a radix-2 step."""
    _put(yr, yi, row_a, c, ar + vr, ai + vi, war, wai)
    _put(yr, yi, row_b, c, ar - vr, ai - vi, wbr, wbi)


@_jit(fastmath=True)
def _radix2(xr, xi, yr, yi, m, s, twr, twi, off, nc):
    for j in range(m):
        w1r = twr[off + j]
        w1i = twi[off + j]
        for q in range(s):
            i0 = q + s * j
            i1 = i0 + s * m
            o0 = q + 2 * s * j
            o1 = o0 + s
            for c in range(nc):
                a0r = xr[i0, c]
                a0i = xi[i0, c]
                a1r = xr[i1, c]
                a1i = xi[i1, c]
                yr[o0, c] = a0r + a1r
                yi[o0, c] = a0i + a1i
                br = a0r - a1r
                bi = a0i - a1i
                _put(yr, yi, o1, c, br, bi, w1r, w1i)


@_jit(fastmath=True)
def _radix3(xr, xi, yr, yi, m, s, twr, twi, off, nc, sg):
    sn = sg * _SIN_60
    for j in range(m):
        w1r = twr[off + 2 * j]
        w1i = twi[off + 2 * j]
        w2r = twr[off + 2 * j + 1]
        w2i = twi[off + 2 * j + 1]
        for q in range(s):
            i0 = q + s * j
            i1 = i0 + s * m
            i2 = i1 + s * m
            o0 = q + 3 * s * j
            o1 = o0 + s
            o2 = o1 + s
            for c in range(nc):
                a0r = xr[i0, c]
                a0i = xi[i0, c]
                a1r = xr[i1, c]
                a1i = xi[i1, c]
                a2r = xr[i2, c]
                a2i = xi[i2, c]
                t1r = a1r + a2r
                t1i = a1i + a2i
                t2r = a0r - _HALF * t1r
                t2i = a0i - _HALF * t1i
                ur = sn * (a1r - a2r)
                ui = sn * (a1i - a2i)
                yr[o0, c] = a0r + t1r
                yi[o0, c] = a0i + t1i
                b1r = t2r - ui
                b1i = t2i + ur
                b2r = t2r + ui
                b2i = t2i - ur
                _put(yr, yi, o1, c, b1r, b1i, w1r, w1i)
                _put(yr, yi, o2, c, b2r, b2i, w2r, w2i)


@_jit(fastmath=True)
def _radix4(xr, xi, yr, yi, m, s, twr, twi, off, nc, sg):
    for j in range(m):
        w1r = twr[off + 3 * j]
        w1i = twi[off + 3 * j]
        w2r = twr[off + 3 * j + 1]
        w2i = twi[off + 3 * j + 1]
        w3r = twr[off + 3 * j + 2]
        w3i = twi[off + 3 * j + 2]
        for q in range(s):
            i0 = q + s * j
            i1 = i0 + s * m
            i2 = i1 + s * m
            i3 = i2 + s * m
            o0 = q + 4 * s * j
            o1 = o0 + s
            o2 = o1 + s
            o3 = o2 + s
            for c in range(nc):
                a0r = xr[i0, c]
                a0i = xi[i0, c]
                a1r = xr[i1, c]
                a1i = xi[i1, c]
                a2r = xr[i2, c]
                a2i = xi[i2, c]
                a3r = xr[i3, c]
                a3i = xi[i3, c]
                t0r = a0r + a2r
                t0i = a0i + a2i
                t1r = a0r - a2r
                t1i = a0i - a2i
                t2r = a1r + a3r
                t2i = a1i + a3i
                t3r = sg * (a1r - a3r)
                t3i = sg * (a1i - a3i)
                yr[o0, c] = t0r + t2r
                yi[o0, c] = t0i + t2i
                b2r = t0r - t2r
                b2i = t0i - t2i
                b1r = t1r - t3i
                b1i = t1i + t3r
                b3r = t1r + t3i
                b3i = t1i - t3r
                _put(yr, yi, o1, c, b1r, b1i, w1r, w1i)
                _put(yr, yi, o2, c, b2r, b2i, w2r, w2i)
                _put(yr, yi, o3, c, b3r, b3i, w3r, w3i)


@_jit(fastmath=True)
def _radix5(xr, xi, yr, yi, m, s, twr, twi, off, nc, sg):
    # Two passes over the columns (outputs 0, 1, 4 then 2, 3): with all ten output rows in
    # one loop LLVM gives up vectorising ("too many memory checks"); rereading is cheap.
    c1 = _COS_72  # cos(2 pi / 5)
    c2 = _COS_144  # cos(4 pi / 5)
    s1 = sg * _SIN_72  # sin(2 pi / 5)
    s2 = sg * _SIN_144  # sin(4 pi / 5)
    for j in range(m):
        w1r = twr[off + 4 * j]
        w1i = twi[off + 4 * j]
        w2r = twr[off + 4 * j + 1]
        w2i = twi[off + 4 * j + 1]
        w3r = twr[off + 4 * j + 2]
        w3i = twi[off + 4 * j + 2]
        w4r = twr[off + 4 * j + 3]
        w4i = twi[off + 4 * j + 3]
        for q in range(s):
            i0 = q + s * j
            i1 = i0 + s * m
            i2 = i1 + s * m
            i3 = i2 + s * m
            i4 = i3 + s * m
            o0 = q + 5 * s * j
            o1 = o0 + s
            o2 = o1 + s
            o3 = o2 + s
            o4 = o3 + s
            for c in range(nc):
                a0r = xr[i0, c]
                a0i = xi[i0, c]
                t1r = xr[i1, c] + xr[i4, c]
                t1i = xi[i1, c] + xi[i4, c]
                t2r = xr[i2, c] + xr[i3, c]
                t2i = xi[i2, c] + xi[i3, c]
                t3r = xr[i1, c] - xr[i4, c]
                t3i = xi[i1, c] - xi[i4, c]
                t4r = xr[i2, c] - xr[i3, c]
                t4i = xi[i2, c] - xi[i3, c]
                yr[o0, c] = a0r + t1r + t2r
                yi[o0, c] = a0i + t1i + t2i
                m1r = a0r + c1 * t1r + c2 * t2r
                m1i = a0i + c1 * t1i + c2 * t2i
                n1r = s1 * t3r + s2 * t4r
                n1i = s1 * t3i + s2 * t4i
                b1r = m1r - n1i
                b1i = m1i + n1r
                b4r = m1r + n1i
                b4i = m1i - n1r
                _put(yr, yi, o1, c, b1r, b1i, w1r, w1i)
                _put(yr, yi, o4, c, b4r, b4i, w4r, w4i)
            for c in range(nc):
                a0r = xr[i0, c]
                a0i = xi[i0, c]
                t1r = xr[i1, c] + xr[i4, c]
                t1i = xi[i1, c] + xi[i4, c]
                t2r = xr[i2, c] + xr[i3, c]
                t2i = xi[i2, c] + xi[i3, c]
                t3r = xr[i1, c] - xr[i4, c]
                t3i = xi[i1, c] - xi[i4, c]
                t4r = xr[i2, c] - xr[i3, c]
                t4i = xi[i2, c] - xi[i3, c]
                m2r = a0r + c2 * t1r + c1 * t2r
                m2i = a0i + c2 * t1i + c1 * t2i
                n2r = s2 * t3r - s1 * t4r
                n2i = s2 * t3i - s1 * t4i
                b2r = m2r - n2i
                b2i = m2i + n2r
                b3r = m2r + n2i
                b3i = m2i - n2r
                _put(yr, yi, o2, c, b2r, b2i, w2r, w2i)
                _put(yr, yi, o3, c, b3r, b3i, w3r, w3i)


@_jit(fastmath=True)
def _radix6(xr, xi, yr, yi, m, s, twr, twi, off, nc, sg):
    # Radix 6 replaces a radix-2 and a radix-3 stage (270 = 6 3 3 5, 360 = 4 6 3 5): a stage
    # costs about the same per element whatever its radix here, so one fewer is a fifth to a
    # quarter of a transform. Three passes of two outputs: more output rows in one loop and
    # LLVM stops vectorising (see _radix5).
    sn = sg * _SIN_60
    for j in range(m):
        tw = off + 5 * j  # twiddle of output k at tw + k - 1, loaded by the pass that needs it
        for q in range(s):
            i0 = q + s * j
            sm = s * m
            i1 = i0 + sm
            i2 = i1 + sm
            i3 = i2 + sm
            i4 = i3 + sm
            i5 = i4 + sm
            o0 = q + 6 * s * j
            o1 = o0 + s
            o2 = o1 + s
            o3 = o2 + s
            o4 = o3 + s
            o5 = o4 + s
            # X_k = A_(k mod 3) + w6^k B_(k mod 3), A = DFT3(a0, a2, a4), B = DFT3(a1, a3, a5);
            # three passes of two outputs (k, k + 3) each; w6 = 1/2 + sn i, w6^2 = -1/2 + sn i.
            w3r, w3i = twr[tw + 2], twi[tw + 2]
            for c in range(nc):
                ar = xr[i0, c] + xr[i2, c] + xr[i4, c]
                ai = xi[i0, c] + xi[i2, c] + xi[i4, c]
                br = xr[i1, c] + xr[i3, c] + xr[i5, c]
                bi = xi[i1, c] + xi[i3, c] + xi[i5, c]
                _put_sum_diff(yr, yi, o0, o3, c, ar, ai, br, bi, _ONE, _ZERO, w3r, w3i)
            w1r, w1i, w4r, w4i = twr[tw], twi[tw], twr[tw + 3], twi[tw + 3]
            for c in range(nc):
                ar, ai = _dft3_term(xr[i0, c], xi[i0, c], xr[i2, c], xi[i2, c], xr[i4, c], xi[i4, c], _MINUS_HALF, sn)
                br, bi = _dft3_term(xr[i1, c], xi[i1, c], xr[i3, c], xi[i3, c], xr[i5, c], xi[i5, c], _MINUS_HALF, sn)
                _put_sum_diff(yr, yi, o1, o4, c, ar, ai, _HALF * br - sn * bi, _HALF * bi + sn * br, w1r, w1i, w4r, w4i)
            w2r, w2i, w5r, w5i = twr[tw + 1], twi[tw + 1], twr[tw + 4], twi[tw + 4]
            for c in range(nc):
                ar, ai = _dft3_term(xr[i0, c], xi[i0, c], xr[i2, c], xi[i2, c], xr[i4, c], xi[i4, c], _MINUS_HALF, -sn)
                br, bi = _dft3_term(xr[i1, c], xi[i1, c], xr[i3, c], xi[i3, c], xr[i5, c], xi[i5, c], _MINUS_HALF, -sn)
                _put_sum_diff(yr, yi, o2, o5, c, ar, ai, _MINUS_HALF * br - sn * bi, _MINUS_HALF * bi + sn * br,
                              w2r, w2i, w5r, w5i)


@_jit(fastmath=True)
def _radix9(xr, xi, yr, yi, m, s, twr, twi, off, nc, sg):
    # Radix 9 for two radix-3 stages (135 = 9 3 5, 270 = 6 9 5; see _radix6).
    # X[k1 + 3 k2] = sum_r2 W9^(r2 k1) W3^(r2 k2) U[r2, k1], U[r2, k1] = DFT3(a[r2], a[r2+3],
    # a[r2+6])[k1]: one pass per k1 (three outputs), so that each loop stores six rows.
    sn = sg * _SIN_60
    c1 = _COS_40
    s1 = sg * _SIN_40
    c2 = _COS_80
    s2 = sg * _SIN_80
    c4 = _COS_160
    s4 = sg * _SIN_160
    for j in range(m):
        for q in range(s):
            i0 = q + s * j
            sm = s * m
            o0 = q + 9 * s * j
            for k1 in range(3):
                # stage twiddles for outputs k1, k1 + 3, k1 + 6
                wa_r = _ONE if k1 == 0 else twr[off + 8 * j + k1 - 1]
                wa_i = _ZERO if k1 == 0 else twi[off + 8 * j + k1 - 1]
                wb_r = twr[off + 8 * j + k1 + 2]
                wb_i = twi[off + 8 * j + k1 + 2]
                wc_r = twr[off + 8 * j + k1 + 5]
                wc_i = twi[off + 8 * j + k1 + 5]
                # internal twiddles W9^(r2 k1), r2 = 1, 2
                if k1 == 0:
                    t1r, t1i, t2r, t2i = _ONE, _ZERO, _ONE, _ZERO
                elif k1 == 1:
                    t1r, t1i, t2r, t2i = c1, s1, c2, s2
                else:
                    t1r, t1i, t2r, t2i = c2, s2, c4, s4
                # DFT3 of (a, b, c) at k1: a + hk (b + c) + i ek (b - c).
                ek = _ZERO if k1 == 0 else (sn if k1 == 1 else -sn)
                hk = _ONE if k1 == 0 else _MINUS_HALF
                for c in range(nc):
                    u0r, u0i = _dft3_term(xr[i0, c], xi[i0, c], xr[i0 + 3 * sm, c], xi[i0 + 3 * sm, c],
                                          xr[i0 + 6 * sm, c], xi[i0 + 6 * sm, c], hk, ek)
                    v_r, v_i = _dft3_term(xr[i0 + sm, c], xi[i0 + sm, c], xr[i0 + 4 * sm, c], xi[i0 + 4 * sm, c],
                                          xr[i0 + 7 * sm, c], xi[i0 + 7 * sm, c], hk, ek)
                    u1r = v_r * t1r - v_i * t1i
                    u1i = v_r * t1i + v_i * t1r
                    v_r, v_i = _dft3_term(xr[i0 + 2 * sm, c], xi[i0 + 2 * sm, c], xr[i0 + 5 * sm, c],
                                          xi[i0 + 5 * sm, c], xr[i0 + 8 * sm, c], xi[i0 + 8 * sm, c], hk, ek)
                    u2r = v_r * t2r - v_i * t2i
                    u2i = v_r * t2i + v_i * t2r
                    # DFT3 over r2 -> outputs k1, k1 + 3, k1 + 6
                    x0r, x0i = _dft3_term(u0r, u0i, u1r, u1i, u2r, u2i, _ONE, _ZERO)
                    x1r, x1i = _dft3_term(u0r, u0i, u1r, u1i, u2r, u2i, _MINUS_HALF, sn)
                    x2r, x2i = _dft3_term(u0r, u0i, u1r, u1i, u2r, u2i, _MINUS_HALF, -sn)
                    _put(yr, yi, o0 + k1 * s, c, x0r, x0i, wa_r, wa_i)
                    _put(yr, yi, o0 + (k1 + 3) * s, c, x1r, x1i, wb_r, wb_i)
                    _put(yr, yi, o0 + (k1 + 6) * s, c, x2r, x2i, wc_r, wc_i)


@_jit()
def _fft(ar, ai, br, bi, n, nc, factors, twr, twi, sg):
    """Unnormalised DFT along axis 0 of ``a[:n, :nc]`` (sign ``sg`` in the exponent).

    ``b`` is scratch. Returns True when the result is in ``a``, False when in ``b``.
    """
    # Ping-pong a -> b -> a ...: _fft_routed with the scratch roles swapped, ending where the
    # alternation ends.
    if factors.shape[0] % 2 == 0:
        _fft_routed(ar, ai, br, bi, ar, ai, ar, ai, n, nc, factors, twr, twi, sg)
        return True
    _fft_routed(ar, ai, br, bi, ar, ai, br, bi, n, nc, factors, twr, twi, sg)
    return False


@_jit()
def _fft_routed(sr, si, ar, ai, br, bi, dr, di, n, nc, factors, twr, twi, sg):
    """``_fft`` reading its input from ``s`` and writing its result to ``d``; the stages in
    between alternate ``a`` and ``b``. Saves the copies into and out of the block arrays when
    the data lives elsewhere. ``s`` is only read by the first stage, so ``d`` may be ``s``
    unless the transform has a single stage."""
    length = n
    s = 1
    off = 0
    last = factors.shape[0] - 1
    for f in range(last + 1):
        p = factors[f]
        m = length // p
        if f == 0:
            xr, xi = sr, si
        elif f % 2 == 1:
            xr, xi = ar, ai
        else:
            xr, xi = br, bi
        if f == last:
            yr, yi = dr, di
        elif f % 2 == 0:
            yr, yi = ar, ai
        else:
            yr, yi = br, bi
        if p == 4:
            _radix4(xr, xi, yr, yi, m, s, twr, twi, off, nc, sg)
        elif p == 6:
            _radix6(xr, xi, yr, yi, m, s, twr, twi, off, nc, sg)
        elif p == 9:
            _radix9(xr, xi, yr, yi, m, s, twr, twi, off, nc, sg)
        elif p == 2:
            _radix2(xr, xi, yr, yi, m, s, twr, twi, off, nc)
        elif p == 3:
            _radix3(xr, xi, yr, yi, m, s, twr, twi, off, nc, sg)
        else:
            _radix5(xr, xi, yr, yi, m, s, twr, twi, off, nc, sg)
        off += m * (p - 1)
        s *= p
        length = m


# --------------------------------------------------------------------------------------------
# The transposes between the y and x passes, 8 x 8 float32 values at a time in vector registers.
# numba has no shuffles of its own, so the tile is written in LLVM IR: 8 row loads, three rounds
# of shuffles, 8 row stores. Element by element (a strided load or store per value) the two
# transposes took a fifth of the transforms' time (74 of 357 us, 64x64 template, 264x264
# region); this way 38 us: 7% off a whole search.
# --------------------------------------------------------------------------------------------

_I32_IR = llvm_ir.IntType(32)
_F32X8_IR = llvm_ir.VectorType(llvm_ir.FloatType(), 8)


def _shuffle_ir(builder, a, b, lanes):
    return builder.shuffle_vector(a, b, llvm_ir.Constant(llvm_ir.VectorType(_I32_IR, len(lanes)), lanes))


@intrinsic
def _transpose8(typingctx, src, sy, sx, dst, dy, dx):
    """``dst[dy + j, dx + i] = src[sy + i, sx + j]`` for i, j < 8: two C-contiguous 2-D float32
    arrays, indices unchecked (the callers keep the tile inside both)."""
    for array in (src, dst):
        if not (isinstance(array, numba.types.Array) and array.ndim == 2 and array.layout == "C"
                and array.dtype == numba.types.float32):
            return None
    if not all(isinstance(index, numba.types.Integer) for index in (sy, sx, dy, dx)):
        return None

    def codegen(context, builder, signature, args):
        types = signature.args
        sy_, sx_, dy_, dx_ = (context.cast(builder, args[i], types[i], numba.types.intp) for i in (1, 2, 4, 5))

        def row_pointer(array_type, value, y, x):
            array = context.make_array(array_type)(context, builder, value)
            address = cgutils.get_item_pointer2(context, builder, data=array.data,
                                                shape=cgutils.unpack_tuple(builder, array.shape, 2),
                                                strides=cgutils.unpack_tuple(builder, array.strides, 2),
                                                layout="C", inds=[y, x])
            return builder.bitcast(address, _F32X8_IR.as_pointer())

        def plus(index, k):
            return builder.add(index, llvm_ir.Constant(index.type, k))

        rows = [builder.load(row_pointer(types[0], args[0], plus(sy_, i), sx_), align=4) for i in range(8)]
        # Round 1 interleaves row pairs 32 bits at a time, round 2 pairs of those 64 bits at a
        # time (both within 128-bit halves), round 3 joins the halves: column j of the tile.
        low, high = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
        pairs = []
        for i in range(0, 8, 2):
            pairs += [_shuffle_ir(builder, rows[i], rows[i + 1], low), _shuffle_ir(builder, rows[i], rows[i + 1], high)]
        even, odd = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
        quads = []
        for b in (0, 4):
            quads += [_shuffle_ir(builder, pairs[b], pairs[b + 2], even), _shuffle_ir(builder, pairs[b], pairs[b + 2], odd),
                      _shuffle_ir(builder, pairs[b + 1], pairs[b + 3], even),
                      _shuffle_ir(builder, pairs[b + 1], pairs[b + 3], odd)]
        first, second = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
        for j in range(4):
            builder.store(_shuffle_ir(builder, quads[j], quads[j + 4], first),
                          row_pointer(types[3], args[3], plus(dy_, j), dx_), align=4)
            builder.store(_shuffle_ir(builder, quads[j], quads[j + 4], second),
                          row_pointer(types[3], args[3], plus(dy_, j + 4), dx_), align=4)
        return context.get_dummy_value()

    return numba.types.void(src, sy, sx, dst, dy, dx), codegen


# --------------------------------------------------------------------------------------------
# The 2-D real transform. Forward: y (rows, real, packed in pairs) then x (complex); the
# spectrum is stored transposed, (Nx, Ny/2 + 1), and never transposed back: the inverse undoes
# x first, then y.
# --------------------------------------------------------------------------------------------


@_jit(fastmath=True)
def _forward_y(src, y0, x0, hh, ww, mean, scale, half, fac, twr, twi, post, t2r, t2i, blk):
    """Real DFT along y of ``(src[y0:y0+hh, x0:x0+ww] - mean) * scale`` zero-padded to 2*half
    rows (``scale`` a power of 2: see ``_unit_scale``).

    Writes bin k of column x to ``t2[k // B, x, k % B]`` (B = block width) for x < ww, and
    zeros to rows ww.. of every block: the x transforms read the blocks in place.
    """
    ar, ai, br, bi = blk[0], blk[1], blk[2], blk[3]
    bw = t2r.shape[2]
    for kb in range(t2r.shape[0]):
        for x in range(ww, t2r.shape[1]):
            for c in range(bw):
                t2r[kb, x, c] = 0.0
                t2i[kb, x, c] = 0.0
    block = ar.shape[1]
    for xb in range(0, ww, block):
        nc = min(block, ww - xb)
        for r in range(half):
            ya = 2 * r
            yb = ya + 1
            if ya < hh:
                row = src[y0 + ya, x0 + xb : x0 + xb + nc]
                for c in range(nc):
                    ar[r, c] = (row[c] - mean) * scale
            else:
                for c in range(nc):
                    ar[r, c] = 0.0
            if yb < hh:
                row = src[y0 + yb, x0 + xb : x0 + xb + nc]
                for c in range(nc):
                    ai[r, c] = (row[c] - mean) * scale
            else:
                for c in range(nc):
                    ai[r, c] = 0.0
        if _fft(ar, ai, br, bi, half, nc, fac, twr, twi, _FORWARD):
            zr, zi, pr, pi = ar, ai, br, bi
        else:
            zr, zi, pr, pi = br, bi, ar, ai
        # Split the packed spectrum: X[k] = E[k] + w^k O[k] (E, O: spectra of even, odd rows).
        for k in range(half + 1):
            k1 = k % half
            k2 = (half - k) % half
            wr = post[0, k]
            wi = post[1, k]
            for c in range(nc):
                er = _HALF * (zr[k1, c] + zr[k2, c])
                ei = _HALF * (zi[k1, c] - zi[k2, c])
                o_r = _HALF * (zi[k1, c] + zi[k2, c])
                o_i = _MINUS_HALF * (zr[k1, c] - zr[k2, c])
                pr[k, c] = er + wr * o_r - wi * o_i
                pi[k, c] = ei + wr * o_i + wi * o_r
        # Transposed store: whole 8 x 8 tiles in registers (_transpose8), the rest (columns past
        # the last multiple of 8) value by value. Tiles never straddle blocks: bw is a multiple of 8.
        cut = nc // 8 * 8
        for k0 in range(0, (half + 1) // 8 * 8, 8):
            kb = k0 // bw
            for c0 in range(0, cut, 8):
                _transpose8(pr, k0, c0, t2r[kb], xb + c0, k0 - kb * bw)
                _transpose8(pi, k0, c0, t2i[kb], xb + c0, k0 - kb * bw)
        for k in range(half + 1):
            kb = k // bw
            dr = t2r[kb]
            di = t2i[kb]
            for c in range(cut if k < (half + 1) // 8 * 8 else 0, nc):
                dr[xb + c, k - kb * bw] = pr[k, c]
                di[xb + c, k - kb * bw] = pi[k, c]


@_jit(fastmath=True)
def _forward_x(tr, ti, ar, ai, br, bi, nx, nc, fac, twr, twi):
    """Forward DFT along x of one block (nx, B) of ``t2``, in place (via the block arrays)."""
    if fac.shape[0] == 1:  # one stage: its input and output must differ
        _fft_routed(tr, ti, ar, ai, br, bi, br, bi, nx, nc, fac, twr, twi, _FORWARD)
        for x in range(nx):
            for c in range(nc):
                tr[x, c] = br[x, c]
                ti[x, c] = bi[x, c]
    else:
        _fft_routed(tr, ti, ar, ai, br, bi, tr, ti, nx, nc, fac, twr, twi, _FORWARD)


@_jit(fastmath=True)
def _transform_x(t2r, t2i, nx, half, fac, tw, specr, speci, u2r, u2i, blk, template):
    """Forward DFT along x of each block of ``t2`` (in place). A template's (``template``):
    stores the conjugate spectrum in ``spec`` (nx, half+1). A region's: times ``spec``, then
    the inverse DFT along x into the same block of ``u2``."""
    ar, ai, br, bi = blk[0], blk[1], blk[2], blk[3]
    bw = t2r.shape[2]
    for b in range(t2r.shape[0]):
        kb = b * bw
        nc = min(bw, half + 1 - kb)
        tr = t2r[b]
        ti = t2i[b]
        _forward_x(tr, ti, ar, ai, br, bi, nx, nc, fac, tw[0], tw[1])
        for x in range(nx):
            spr = specr[x, kb : kb + nc]
            spi = speci[x, kb : kb + nc]
            if template:
                for c in range(nc):
                    spr[c] = tr[x, c]
                    spi[c] = -ti[x, c]
                continue
            for c in range(nc):
                sr = spr[c]
                si = spi[c]
                vr = tr[x, c]
                vi = ti[x, c]
                tr[x, c] = vr * sr - vi * si
                ti[x, c] = vr * si + vi * sr
        if not template:
            _fft_routed(tr, ti, ar, ai, br, bi, u2r[b], u2i[b], nx, nc, fac, tw[2], tw[3], _INVERSE)


@_jit(fastmath=True)
def _inverse_y(u2r, u2i, wout, hout, half, fac, twr, twi, post, scale, num, blk):
    """Inverse real DFT along y of the half spectrum in the blocks of ``u2`` (see
    ``_forward_y``); rows < hout into ``num``."""
    ar, ai, br, bi = blk[0], blk[1], blk[2], blk[3]
    block = ar.shape[1]
    for xb in range(0, wout, block):
        nc = min(block, wout - xb)
        bw = u2r.shape[2]
        cut = nc // 8 * 8  # transposed load (see _forward_y)
        for k0 in range(0, (half + 1) // 8 * 8, 8):
            kb = k0 // bw
            for c0 in range(0, cut, 8):
                _transpose8(u2r[kb], xb + c0, k0 - kb * bw, br, k0, c0)
                _transpose8(u2i[kb], xb + c0, k0 - kb * bw, bi, k0, c0)
        for k in range(half + 1):
            kb = k // bw
            sr = u2r[kb]
            si = u2i[kb]
            for c in range(cut if k < (half + 1) // 8 * 8 else 0, nc):
                br[k, c] = sr[xb + c, k - kb * bw]
                bi[k, c] = si[xb + c, k - kb * bw]
        for k in range(half):
            km = half - k
            wr = post[0, k]
            wi = -post[1, k]
            for c in range(nc):
                p_r = br[k, c]
                p_i = bi[k, c]
                q_r = br[km, c]
                q_i = bi[km, c]
                dr = p_r - q_r
                di = p_i + q_i
                o_r = dr * wr - di * wi
                o_i = dr * wi + di * wr
                ar[k, c] = p_r + q_r - o_i
                ai[k, c] = p_i - q_i + o_r
        if _fft(ar, ai, br, bi, half, nc, fac, twr, twi, _INVERSE):
            zr, zi = ar, ai
        else:
            zr, zi = br, bi
        for r in range(half):
            y = 2 * r
            if y >= hout:
                break
            out = num[y, xb : xb + nc]
            for c in range(nc):
                out[c] = zr[r, c] * scale
            if y + 1 < hout:
                out = num[y + 1, xb : xb + nc]
                for c in range(nc):
                    out[c] = zi[r, c] * scale


# --------------------------------------------------------------------------------------------
# Window statistics, exact scores, the search. (Hot loops index views, ``row = a[y, x0:x1]``
# then ``row[x]``: an index computed in the loop, ``a[y, x0 + x]``, gets numba's
# negative-index wraparound, which keeps LLVM from vectorising; 2.5-5x slower.)
# Mode 0: pixels are small integers (uint8, or float32 holding integers |v| <= 4095): window
# sums are exact, in int64. Mode 1: any float32; sums of (pixel - region mean), with error
# bounds, and exactly constant windows found from counts of neighbour changes.
# --------------------------------------------------------------------------------------------


@_jit()
def _template_stats(frame, ty, tx, h, w):
    """Zero-mean float64 template, its sum of squares and its L1 norm."""
    n = h * w
    total = 0.0
    for i in range(h):
        for j in range(w):
            total += frame[ty + i, tx + j]
    mean = total / n
    tz = np.empty((h, w), np.float64)
    ss = 0.0
    l1 = 0.0
    for i in range(h):
        for j in range(w):
            v = frame[ty + i, tx + j] - mean
            tz[i, j] = v
            ss += v * v
            l1 += abs(v)
    return tz, ss, l1


@_jit(fastmath=True)
def _window_sum(frame, y0, x0, h, w):
    acc = 0.0
    for i in range(h):
        row = frame[y0 + i, x0 : x0 + w]
        for j in range(w):
            acc += row[j]
    return acc


@_jit(fastmath=True)
def _window_ss_dot(tz, frame, y0, x0, mean):
    """Sum of squares of ``window - mean`` and its dot product with ``tz``, in one pass (float
    frames: the window read twice, not three times)."""
    h, w = tz.shape
    ss = 0.0
    dot = 0.0
    for i in range(h):
        row = frame[y0 + i, x0 : x0 + w]
        trow = tz[i]
        for j in range(w):
            d = row[j] - mean
            ss += d * d
            dot += trow[j] * d
    return ss, dot


@_jit(fastmath=True)
def _window_dot(tz, frame, y0, x0, mean):
    h, w = tz.shape
    acc = 0.0
    for i in range(h):
        row = frame[y0 + i, x0 : x0 + w]
        for j in range(w):
            acc += tz[i, j] * (row[j] - mean)
    return acc


@_jit()
def _window_int_sums(frame, y0, x0, h, w):
    s1 = 0
    s2 = 0
    for i in range(h):
        row = frame[y0 + i, x0 : x0 + w]
        for j in range(w):
            v = np.int64(row[j])
            s1 += v
            s2 += v * v
    return s1, s2


@_jit()
def _exact_score(tz, t_ss, frame, y0, x0, mode):
    """TM_CCOEFF_NORMED of the zero-mean template ``tz`` at ``frame[y0:, x0:]``, direct float64."""
    h, w = tz.shape
    n = h * w
    if mode == 0:
        s1, s2 = _window_int_sums(frame, y0, x0, h, w)
        ss = (n * s2 - s1 * s1) / n
        if ss <= n * FLAT_VARIANCE:
            return 0.0
        dot = _window_dot(tz, frame, y0, x0, s1 / n)
    else:
        ss, dot = _window_ss_dot(tz, frame, y0, x0, _window_sum(frame, y0, x0, h, w) / n)
        if ss <= n * FLAT_VARIANCE:
            return 0.0
    score = dot / np.sqrt(t_ss * ss)
    return min(max(score, -1.0), 1.0)


@_jit()
def _pixel_mode(frame, ry, rx, hh, ww, is_uint8):
    """0 when every region pixel is an integer with |v| <= 4095 (uint8 always), else 1."""
    if is_uint8:
        return 0
    # Per row a count with no branch (an exit per pixel keeps LLVM from vectorising the scan:
    # 6x slower, 70-250 us a search), then an exit per row.
    for y in range(hh):
        row = frame[ry + y, rx : rx + ww]
        odd = 0
        for x in range(ww):
            v = row[x]
            odd += (v != np.floor(v)) | (abs(v) > 4095.0)
        if odd:
            return 1
    return 0


@_jit()
def _search_direct(tz, t_ss, frame, ry, rx, hh, ww, is_uint8):
    """Score every placement directly; first maximum in row-major order."""
    h, w = tz.shape
    mode = _pixel_mode(frame, ry, rx, hh, ww, is_uint8)
    best = -np.inf
    by = 0
    bx = 0
    for y in range(hh - h + 1):
        for x in range(ww - w + 1):
            s = _exact_score(tz, t_ss, frame, ry + y, rx + x, mode)
            if s > best:
                best = s
                by = y
                bx = x
    return best, by, bx


@_jit(fastmath=True)
def _region_totals(frame, ry, rx, hh, ww, mode):
    """(mean, sum of squared deviations from it, sum of absolute deviations: mode 1 only)."""
    npx = hh * ww
    s1 = 0.0
    s2 = 0.0
    for y in range(hh):
        row = frame[ry + y, rx : rx + ww]
        for x in range(ww):
            v = np.float64(row[x])
            s1 += v
            s2 += v * v
    mean = s1 / npx
    if mode == 0:  # integer sums: exact in any order
        return mean, max((npx * s2 - s1 * s1) / npx, 0.0), 0.0
    ss = 0.0
    sa = 0.0
    for y in range(hh):
        row = frame[ry + y, rx : rx + ww]
        for x in range(ww):
            d = row[x] - mean
            ss += d * d
            sa += abs(d)
    return mean, ss, sa


@_jit(fastmath=True)
def _slide_rows(frame, y_in, y_out, rx, ww, offset, acc, counts):
    """Mode 1 column sums of the window rows: add frame row ``y_in``, remove row ``y_out`` (if >= 0).

    ``acc`` rows: 0 sum of pixel - offset, 1 of its square, 2 count of "differs from the left
    neighbour", 3 count of "differs from the pixel above" (rows below the window's first; kept by
    ``_slide_vertical_changes``). Rows 2 and 3 only with ``counts``.
    """
    row = frame[y_in, rx : rx + ww]
    a0 = acc[0]
    a1 = acc[1]
    if y_out >= 0:
        old = frame[y_out, rx : rx + ww]
        for x in range(ww):
            d = row[x] - offset
            e = old[x] - offset
            a0[x] += d - e
            a1[x] += d * d - e * e
    else:
        for x in range(ww):
            d = row[x] - offset
            a0[x] += d
            a1[x] += d * d
    if not counts:
        return
    changes = acc[2, 1:ww]  # column x counts pixel x against pixel x - 1: from x = 1
    cur = frame[y_in, rx + 1 : rx + ww]
    left = frame[y_in, rx : rx + ww - 1]
    for x in range(ww - 1):
        changes[x] += 1.0 if cur[x] != left[x] else 0.0
    if y_out >= 0:
        cur = frame[y_out, rx + 1 : rx + ww]
        left = frame[y_out, rx : rx + ww - 1]
        for x in range(ww - 1):
            changes[x] -= 1.0 if cur[x] != left[x] else 0.0


@_jit(fastmath=True)
def _slide_vertical_changes(frame, y_in, y_out, rx, ww, acc):
    """Row 3 of ``acc``: add "row y_in differs from the row above", remove it for ``y_out``."""
    changes = acc[3]
    row = frame[y_in, rx : rx + ww]
    above = frame[y_in - 1, rx : rx + ww]
    for x in range(ww):
        changes[x] += 1.0 if row[x] != above[x] else 0.0
    if y_out >= 0:
        row = frame[y_out, rx : rx + ww]
        above = frame[y_out - 1, rx : rx + ww]
        for x in range(ww):
            changes[x] -= 1.0 if row[x] != above[x] else 0.0


@_jit()
def _prefix_rows(acc, ww, pre):
    """Running sums along x of the column sums: ``pre[r, x] = sum(acc[r, :x])``."""
    p0 = 0.0
    p1 = 0.0
    p2 = 0.0
    pre[0, 0] = 0.0
    pre[1, 0] = 0.0
    pre[2, 0] = 0.0
    for x in range(ww):
        p0 += acc[0, x]
        p1 += acc[1, x]
        p2 += acc[2, x]
        pre[0, x + 1] = p0
        pre[1, x + 1] = p1
        pre[2, x + 1] = p2


@_jit(fastmath=True)
def _slide_int(frame, y_in, y_out, rx, ww, c1, c2):
    """``_slide_rows`` for integer pixels (mode 0) in int64 (exact): integer vectors are twice as wide
    as float64 ones and the running sums along x (``_prefix_int``) add in one cycle, not four."""
    row = frame[y_in, rx : rx + ww]
    if y_out >= 0:
        old = frame[y_out, rx : rx + ww]
        for x in range(ww):
            a = np.int64(row[x])
            b = np.int64(old[x])
            c1[x] += a - b
            c2[x] += a * a - b * b
    else:
        for x in range(ww):
            a = np.int64(row[x])
            c1[x] += a
            c2[x] += a * a


@_jit()
def _prefix_int(c1, c2, ww, p1, p2):
    s1 = 0
    s2 = 0
    p1[0] = 0
    p2[0] = 0
    for x in range(ww):
        s1 += c1[x]
        s2 += c2[x]
        p1[x + 1] = s1
        p2[x + 1] = s2


@_jit(fastmath=True)
def _score_row_int(num_row, p0, p0w, p1, p1w, wout, n, q_flat, err_num, srow, brow):
    """One row of mode 0 scores and bounds, in the domain G = c |c| / q (c the numerator,
    q = n * sum of squared deviations): G = s |s| t_ss / n is monotone in the score s and
    needs no square root. srow = G (0 for a flat window), brow = G's upper bound minus srow
    (0 for a flat window: its score is exactly 0).

    ``q = n * a2 - a1^2`` is exact (integers), so "flat" is ``q <= q_flat``, the same test as
    ``q / n <= n * FLAT_VARIANCE`` without the division. The upper bound uses c + err_num
    (err_num bounds |c - exact c|); 1e-12 relative covers the roundings of G. Selects, not
    ``min`` / ``max``, and no running maximum: either keeps LLVM from vectorising the loop.
    """
    for x in range(wout):
        a1 = float(p0w[x] - p0[x])
        a2 = float(p1w[x] - p1[x])
        q = n * a2 - a1 * a1
        flat = q <= q_flat
        r = 1.0 / (1.0 if flat else q)
        r = 0.0 if flat else r
        c = num_row[x]
        g = c * abs(c) * r
        h = c + err_num
        gh = h * abs(h) * r
        srow[x] = g
        b = (gh - g) + 1e-12 * abs(gh) + 1e-300
        brow[x] = 0.0 if flat else b


@_jit()
def _score_row_float(num_row, p0, p0w, p1, p1w, p2, p2w, a3, wout, n, t_ss, flat_limit, d1, d2, err_num, srow, brow):
    """One row of mode 1 scores and bounds: srow = the score (0 for a flat window or one that
    might be flat), brow = a bound on its error (0: flat, exactly 0; inf: might be flat, rescored
    when it matters). Window sums within ``d1`` (sums) and ``d2`` (sums of squares); a window
    without neighbour changes (``p2w - p2 + a3``) is exactly constant. Views, not computed
    indices, and selects, not branches: LLVM vectorises it (no fastmath: the bounds must hold).
    Returns how many windows might be flat (neither surely flat nor surely not).
    """
    # 1 / n once: a product's extra rounding (<= 2^-53 a1^2 / n, and a1^2 / n <= a2) is well
    # inside e_ss's 1e-15 |a2| for the roundings of ss, and the bound's own product within the
    # 1% that d1 and d2 carry; two divisions fewer a placement (they and the square root are
    # most of its cost).
    inv_n = 1.0 / n
    unsure = 0
    for x in range(wout):
        changes = p2w[x] - p2[x] + a3[x]
        a1 = p0w[x] - p0[x]
        a2 = p1w[x] - p1[x]
        ss = a2 - a1 * a1 * inv_n
        # |a1 - true| <= d1, |a2 - true| <= d2, so |ss - true ss| <= e_ss.
        e_ss = d2 + d1 * (2.0 * abs(a1) + d1) * inv_n + 1e-15 * abs(a2)
        low = ss - e_ss
        # An exactly constant window (no neighbour changes) is flat: score exactly 0.
        certain_flat = (changes == 0.0) | (ss + e_ss <= flat_limit)
        undecided = low <= flat_limit  # might be flat or not: rescore when it matters
        inv = 1.0 / np.sqrt(t_ss * max(ss, flat_limit))
        raw = num_row[x] * inv
        r = e_ss / max(low, flat_limit)
        # 1/sqrt(t_ss*true) <= inv*(1 + r) and |raw| * (sqrt(ss/true) - 1) <= |raw| * r.
        b = err_num * inv * (1.0 + r) + abs(raw) * r + 1e-12
        s = min(max(raw, -1.0), 1.0)
        srow[x] = 0.0 if certain_flat | undecided else s
        brow[x] = 0.0 if certain_flat else (np.inf if undecided else b)
        unsure += undecided > certain_flat  # might be flat, not surely flat
    return unsure


@_jit(fastmath=True)
def _row_maxima(srow, brow, count):
    """(max of srow, max of srow + brow) over the first count values. numba does not
    vectorise a running maximum: four independent ones instead of one 4-cycle chain."""
    s0 = s1 = s2 = s3 = -np.inf
    t0 = t1 = t2 = t3 = -np.inf
    x = 0
    while x + 4 <= count:
        s0 = max(s0, srow[x])
        s1 = max(s1, srow[x + 1])
        s2 = max(s2, srow[x + 2])
        s3 = max(s3, srow[x + 3])
        t0 = max(t0, srow[x] + brow[x])
        t1 = max(t1, srow[x + 1] + brow[x + 1])
        t2 = max(t2, srow[x + 2] + brow[x + 2])
        t3 = max(t3, srow[x + 3] + brow[x + 3])
        x += 4
    while x < count:
        s0 = max(s0, srow[x])
        t0 = max(t0, srow[x] + brow[x])
        x += 1
    return max(max(s0, s1), max(s2, s3)), max(max(t0, t1), max(t2, t3))


@_jit()
def _flat_threshold(n, flat_limit):
    """The largest integer q with ``q / n <= flat_limit`` in float64 (monotone in q)."""
    q = np.floor(n * flat_limit)
    while (q + 1.0) / n <= flat_limit:
        q += 1.0
    while q >= 0.0 and q / n > flat_limit:
        q -= 1.0
    return q


@_jit()
def _score_map(frame, ry, rx, mode, offset, num, hout, wout, h, w, t_ss, d1, d2, err_num, scores, bnd,
               rows, acc, pre, iacc, ipre):
    """Approximate scores (flat windows exactly 0) and a bound on each one's error; per row,
    the best score and the best score + bound in ``rows[0, y]``, ``rows[1, y]``.

    Window sums come from sliding column sums and running sums along x: exact in mode 0
    (integers), within ``d1`` (sums) and ``d2`` (sums of squares) in mode 1.
    """
    n = h * w
    ww = wout + w - 1
    flat_limit = n * FLAT_VARIANCE
    q_flat = _flat_threshold(float(n), flat_limit)
    if mode == 0:  # integers (uint8, or whole-number floats): int64 sums, exact, and faster than float64 ones
        for x in range(ww):
            iacc[0, x] = 0
            iacc[1, x] = 0
        for y in range(hout):
            if y == 0:
                for i in range(h):
                    _slide_int(frame, ry + i, -1, rx, ww, iacc[0], iacc[1])
            else:
                _slide_int(frame, ry + y + h - 1, ry + y - 1, rx, ww, iacc[0], iacc[1])
            _prefix_int(iacc[0], iacc[1], ww, ipre[0], ipre[1])
            _score_row_int(num[y], ipre[0], ipre[0, w:], ipre[1], ipre[1, w:], wout, float(n), q_flat, err_num,
                           scores[y], bnd[y])
            rows[0, y], rows[1, y] = _row_maxima(scores[y], bnd[y], wout)
        return
    # Mode 1. The neighbour-change counts only tell an exactly constant window (score 0) from
    # one that merely might be flat, and the sums alone settle that wherever e_ss is far below
    # flat_limit (frames in 0..1 or 0..255): the map is made without them first (30-40 us less
    # a 32x32 search, about 12% of the map) and made again with them only when some window was
    # left undecided.
    for counts in (False, True):
        for r in range(4):
            for x in range(ww):
                acc[r, x] = 0.0 if counts or r < 2 else 1.0  # without counts: "not constant"
        unsure = 0
        for y in range(hout):
            if y == 0:
                for i in range(h):
                    _slide_rows(frame, ry + i, -1, rx, ww, offset, acc, counts)
                    if counts and i > 0:
                        _slide_vertical_changes(frame, ry + i, -1, rx, ww, acc)
            else:
                _slide_rows(frame, ry + y + h - 1, ry + y - 1, rx, ww, offset, acc, counts)
                if counts and h > 1:
                    _slide_vertical_changes(frame, ry + y + h - 1, ry + y, rx, ww, acc)
            _prefix_rows(acc, ww, pre)
            unsure += _score_row_float(num[y], pre[0], pre[0, w:], pre[1], pre[1, w:], pre[2, 1:], pre[2, w:],
                                       acc[3], wout, float(n), t_ss, flat_limit, d1, d2, err_num, scores[y], bnd[y])
            rows[0, y], rows[1, y] = _row_maxima(scores[y], bnd[y], wout)
        if unsure == 0:
            return


@_jit()
def _pick(tz, t_ss, frame, ry, rx, hout, wout, mode, scores, bnd, rows):
    """First maximum: the best approximate placement, rescored exactly, then every placement
    whose approximate score plus its error bound reaches the best exact score. Mode 0 maps
    are in the domain G = s |s| t_ss / n (see ``_score_row_int``), mode 1 maps are scores."""
    g_scale = t_ss / tz.size if mode == 0 else 0.0
    best = -np.inf
    by = 0
    for y in range(hout):
        if rows[0, y] > best:
            best = rows[0, y]
            by = y
    bx = 0
    while scores[by, bx] != best:
        bx += 1
    bidx = by * wout + bx
    best = _exact_score(tz, t_ss, frame, ry + by, rx + bx, mode)
    bar = _bar(best, g_scale)
    rescored = 1
    for y in range(hout):
        if rows[1, y] < bar:
            continue
        for x in range(wout):
            idx = y * wout + x
            if idx == bidx or scores[y, x] + bnd[y, x] < bar:
                continue
            if bnd[y, x] == 0.0:
                e = scores[y, x]  # exactly known (a flat window: 0 in either domain)
            else:
                e = _exact_score(tz, t_ss, frame, ry + y, rx + x, mode)
                rescored += 1
            if e > best or (e == best and idx < bidx):
                best = e
                bidx = idx
                bar = _bar(best, g_scale)
    by = bidx // wout
    bx = bidx - by * wout
    return best, by, bx, rescored


@_jit()
def _bar(score, g_scale):
    """What an upper bound must reach to beat ``score``: the score itself, or (g_scale > 0)
    its G = s |s| g_scale less the rounding of that product."""
    if g_scale == 0.0:
        return score
    g = score * abs(score) * g_scale
    return g - 1e-12 * abs(g) - 1e-300


@_inline_exact
def _unit_scale(magnitude):
    """The power of 2 that brings ``magnitude`` into [0.5, 1) (1 for 0): multiplying by it is
    exact, so scaled data keep every bit."""
    if not magnitude > 0.0:
        return 1.0
    return math.ldexp(1.0, -math.frexp(magnitude)[1])


@_inline_exact
def _template_scale(l1, n):
    """The power of 2 a template of ``n`` pixels and L1 norm ``l1`` is transformed at: its spectrum
    and every search with that spectrum use this one value."""
    return _unit_scale(l1 / n)


@_jit()
def _search_fft(frame, is_uint8, ry, rx, hh, ww, tz, t_ss, t_l1, specr, speci, fac_y, twy, fac_x, twx, post,
                log2n, blk, t2r, t2i, u2r, u2i, maps, rows, acc, pre, iacc, ipre):
    h, w = tz.shape
    hout = hh - h + 1
    wout = ww - w + 1
    half = post.shape[1] - 1
    nx = specr.shape[0]
    mode = _pixel_mode(frame, ry, rx, hh, ww, is_uint8)
    mean, region_ss, abs_total = _region_totals(frame, ry, rx, hh, ww, mode)
    num = maps[0]
    # Both transforms see values of magnitude about 1 (exact power-of-2 scalings, undone on
    # the way out): float32 neither overflows nor underflows at any accepted intensity.
    r_scale = _unit_scale(np.sqrt(region_ss / (hh * ww)))
    t_scale = _template_scale(t_l1, h * w)
    _forward_y(frame, ry, rx, hh, ww, mean, r_scale, half, fac_y, twy[0], twy[1], post, t2r, t2i, blk)
    _transform_x(t2r, t2i, nx, half, fac_x, twx, specr, speci, u2r, u2i, blk, False)
    _inverse_y(u2r, u2i, wout, hout, half, fac_y, twy[2], twy[3], post, 1.0 / (2 * half * nx) / (r_scale * t_scale),
               num, blk)
    # Rounding error of the float32 FFT numerator at any one placement i, with r the region less
    # its mean, T' the zero-mean template, R, S their spectra (N = ny nx points, Parseval:
    # ||R||_2 = sqrt(N) ||r||_2, ||S||_2 = sqrt(N) ||T'||_2) and a = c u32 log2(N) the relative
    # 2-norm error of one transform:
    # * the errors dR, dS of the two forward transforms reach placement i as
    #   |sum_k (dR_k S_k + R_k dS_k) w^(ik)| / N <= (||dR||_2 ||S||_2 + ||R||_2 ||dS||_2) / N
    #   <= 2 a ||r||_2 ||T'||_2 (Cauchy-Schwarz, per placement: no max |S| of the spectrum);
    # * the product's rounding, 3 u32 |R_k S_k| a term: <= 3 u32 ||r||_2 ||T'||_2 the same way;
    # * the inverse transform: its graph has one path from each input to each output, so the
    #   values feeding output i at any one stage are sums over disjoint sets of the inputs z_k,
    #   of total magnitude <= ||z||_1 <= ||R||_2 ||S||_2 = N ||r||_2 ||T'||_2; each stage's
    #   roundings add <= c u32 ||r||_2 ||T'||_2 to output i (the real unpacking at most twice).
    # So |error| <= 3 c u32 log2(N) ||r||_2 ||T'||_2; c = 16 with log2(N) + 2 is generous
    # (float32 inputs, twiddles and butterflies of up to 9 terms).
    t_gain = 3.0 * np.sqrt(t_ss)
    err_num = 16.0 * _U32 * (log2n + 2.0) * np.sqrt(region_ss) * t_gain + 1e-300
    # Mode 1 window sums: every one passes through <= 2 (H + W) roundings of partial sums no
    # larger than the region's total; mode 0 sums are exact.
    grow = 4.0 * (hh + ww + 8) * _U64 * 1.01
    offset = 0.0 if mode == 0 else mean
    _score_map(frame, ry, rx, mode, offset, num, hout, wout, h, w, t_ss, grow * abs_total, grow * region_ss,
               err_num, maps[1], maps[2], rows, acc, pre, iacc, ipre)
    return _pick(tz, t_ss, frame, ry, rx, hout, wout, mode, maps[1], maps[2], rows)


# --------------------------------------------------------------------------------------------
# Plans and scratch space per FFT size, built in jitted code (the Python search and the rule
# kernels share them), and the search of one template in one region.
# --------------------------------------------------------------------------------------------


@_inline_exact
def _smooth(n, even):
    """Smallest 2,3,5-smooth integer >= n (even when asked)."""
    m = max(1, n)
    while True:
        if not (even and m % 2):
            k = m
            for p in (2, 3, 5):
                while k % p == 0:
                    k //= p
            if k == 1:
                return m
        m += 1


@_jit()
def _factors(n):
    """Radices: 4s, then a 6 for a lone 2 when there is a 3, then 2, 9s, 3, 5s: the fewest
    stages that the kernels cover."""
    out = np.empty(64, np.int64)
    count = 0
    # (radix, at most how many; -1: any): a 6 takes a lone 2 with a 3, a 9 two 3s.
    for p, most in ((4, -1), (6, 1), (2, 1), (9, -1), (3, -1), (5, -1)):
        taken = 0
        while n % p == 0 and (most < 0 or taken < most):
            out[count] = p
            count += 1
            taken += 1
            n //= p
    assert n == 1
    return out[:count].copy()


@_jit()
def _twiddles(n, factors):
    """(4, T): forward real, forward imaginary, inverse real, inverse imaginary, every stage."""
    total = 0
    length = n
    for p in factors:
        m = length // p
        total += m * (p - 1)
        length = m
    table = np.empty((4, max(total, 1)), _FFT_DTYPE)
    if total == 0:
        table[0, 0], table[1, 0], table[2, 0], table[3, 0] = 1.0, 0.0, 1.0, -0.0
        return table
    at = 0
    length = n
    for p in factors:
        m = length // p
        for j in range(m):
            for k in range(1, p):
                angle = -2.0 * np.pi * ((j * k) % length) / length
                table[0, at] = math.cos(angle)
                table[1, at] = math.sin(angle)
                table[2, at] = table[0, at]
                table[3, at] = -table[1, at]
                at += 1
        length = m
    return table


@_jit()
def _new_plan(ny, nx):
    """Everything per FFT size (ny, nx) that does not depend on the data: (radices along y of
    the packed half-length transform, their twiddles, radices and twiddles along x, the
    real-transform post-twiddles (2, ny/2 + 1), log2(ny nx))."""
    half = ny // 2
    fac_y = _factors(half)
    fac_x = _factors(nx)
    post = np.empty((2, half + 1), _FFT_DTYPE)
    for k in range(half + 1):
        angle = 2.0 * np.pi * k / ny
        post[0, k] = math.cos(angle)
        post[1, k] = -math.sin(angle)
    return fac_y, _twiddles(half, fac_y), fac_x, _twiddles(nx, fac_x), post, math.log2(ny * nx)


@_inline_exact
def _placed(count, phase, zero):
    """A float64 array of ``count`` elements starting ``phase`` x 256 bytes past a 4 KiB boundary
    (:func:`_placed32`: float32).

    The kernels stream several arrays in step (a butterfly reads one block array and writes
    another; the score loop reads the numerator map and writes two more). Where two of them
    start at the same offset modulo 4 KiB, their elements share L1 sets and a load waits on
    an unrelated store to the same low address bits ("4K aliasing"): with plain allocations
    that happens or not by chance, and a search ran 20-40% slower in some processes. Each
    array gets its own phase instead.
    """
    raw = np.zeros(count + 1024) if zero else np.empty(count + 1024)
    start = ((4096 - raw.ctypes.data % 4096) % 4096 + 256 * (phase % 16)) // 8
    return raw[start : start + count]


@_inline_exact
def _placed32(count, phase, zero):
    """:func:`_placed` for float32: the same placement, viewed as float32."""
    return _placed((count + 1) // 2, phase, zero).view(_FFT_DTYPE)[:count]


@_inline_exact
def _planes(count, rows, cols, phase, step, pad_cols, itemsize):
    """A (count, rows', cols') float64 (``itemsize`` 8) or float32 (4) array, rows' >= rows and
    cols' >= cols as small as possible such that consecutive planes start ``step`` x 256 bytes
    apart modulo 4 KiB, the first at ``phase`` (see ``_placed``): one array per set of planes
    keeps the kernels' arguments plain arrays."""
    best_r = -1
    best_c = -1
    for r in range(rows, rows + 65):
        for c in range(cols, cols + (65 if pad_cols else 1)):
            if (r * c * itemsize) % 4096 == (256 * step) % 4096 and (best_r < 0 or r * c < best_r * best_c):
                best_r = r
                best_c = c
                break
    assert best_r >= 0
    size = count * best_r * best_c
    if itemsize == 4:
        return _placed32(size, phase, False).reshape((count, best_r, best_c))
    return _placed(size, phase, False).reshape((count, best_r, best_c))


@_jit()
def _new_workspace(ny, nx):
    """Scratch arrays for one FFT size: FFT blocks (4, rows, _BLOCK), the half spectra after
    the y transform (t2 real, imaginary) and after the x correlation (u2), score maps
    (3, ny, nx), per-row maxima (2, ny) and a region's pixels as bytes (ny * nx, ``_region_bytes``)."""
    half = ny // 2
    rows = max(nx, half + 1)
    # Half-spectrum blocks (k // _BLOCK, x, k % _BLOCK), rows padded to a multiple of 8 so
    # that every block starts at its array's phase; zeros: rows x >= ww stay zero.
    blocks = (half + 1 + _BLOCK - 1) // _BLOCK
    padded = (nx + 7) // 8 * 8
    size = blocks * padded * _BLOCK
    shape = (blocks, padded, _BLOCK)
    return (
        _planes(4, rows, _BLOCK, 0, 4, False, 4),
        _placed32(size, 2, True).reshape(shape),
        _placed32(size, 10, True).reshape(shape),
        _placed32(size, 6, False).reshape(shape),
        _placed32(size, 14, False).reshape(shape),
        _planes(3, ny, nx, 1, 4, True, 8),
        _placed(2 * ny, 15, False).reshape((2, ny)),
        _placed((ny * nx + 7) // 8, 9, False).view(np.uint8),
    )


@_inline_exact
def _template_spectrum(tz, l1, nx, fac_y, twy, fac_x, twx, post, blk, t2r, t2i):
    """The conjugate spectrum (nx, ny/2 + 1) of the zero-mean template ``tz`` (L1 norm ``l1``)
    times ``_template_scale``, real and imaginary."""
    h, w = tz.shape
    half = post.shape[1] - 1
    scale = _template_scale(l1, h * w)
    # np.int64(0), not 0: a constant argument would compile a specialisation of its own.
    _forward_y(tz, np.int64(0), np.int64(0), h, w, 0.0, scale, half, fac_y, twy[0], twy[1], post, t2r, t2i, blk)
    specr = _placed32(nx * (half + 1), 3, False).reshape((nx, half + 1))
    speci = _placed32(nx * (half + 1), 7, False).reshape((nx, half + 1))
    _transform_x(t2r, t2i, nx, half, fac_x, twx, specr, speci, t2r, t2i, blk, True)
    return specr, speci


#: How a template is searched: its score is 0 everywhere (flat), directly, or by FFT.
_FLAT, _DIRECT, _FFT = 0, 1, 2


@_jit()
def _route(h, w, t_ss, hh, ww):
    """``_FLAT`` for a flat template (every score 0), ``_DIRECT`` when scoring every placement
    costs less than the FFT route (small regions, big templates), else ``_FFT``."""
    if t_ss <= h * w * FLAT_VARIANCE:
        return _FLAT
    placements = (hh - h + 1) * (ww - w + 1)
    if 2.0 * placements * h * w <= 12.0 * hh * ww * max(1.0, math.log2(hh * ww)) + 20000.0:
        return _DIRECT
    return _FFT


#: The range of a byte, as float32 (compared with float32 pixels in _region_bytes).
_BYTE_MIN = np.float32(0.0)
_BYTE_MAX = np.float32(255.0)


@_jit()
def _region_bytes(frame, ry, rx, hh, ww, out):
    """Copy ``frame[ry:ry+hh, rx:rx+ww]`` into the uint8 ``out`` (hh, ww) when every pixel is a
    whole number 0..255 (a uint8 frame converted to float32): True; else False (``out`` partly
    written). The search then runs on the bytes, as the C++ core's does: the same values, so the
    same mode 0 arithmetic and results, from a quarter of the memory (the float32 region was
    read from memory at every pass: 8-11% of a search). A row of fractions stops it."""
    for y in range(hh):
        row = frame[ry + y, rx : rx + ww]
        dst = out[y]
        odd = 0
        for x in range(ww):
            # Through int32 (a vector conversion; float to uint8 is not one), then "converts back
            # to itself". A pixel outside 0..255 (NaN too) converts 0.5 instead (no undefined
            # conversion): 0, which it is not.
            v = row[x]
            whole = np.int32(v if (v >= _BYTE_MIN) & (v <= _BYTE_MAX) else _HALF)
            odd += np.float32(whole) != v
            dst[x] = np.uint8(whole)
        if odd:
            return False
    return True


# The rule kernels keep their plans and scratch space, per FFT size, in a typed dict per thread
# (_setups); a template's spectra, per FFT size, in a typed dict per template.
_SIZE = numba.types.UniTuple(numba.types.int64, 2)
_F2_FFT = numba.types.float32[:, ::1]
_SPECTRUM = numba.types.Tuple((_F2_FFT, _F2_FFT))
_F3_FFT = numba.types.float32[:, :, ::1]
_SETUP = numba.types.Tuple(
    (numba.types.int64[::1], _F2_FFT, numba.types.int64[::1], _F2_FFT, _F2_FFT, numba.types.float64, _F3_FFT,
     _F3_FFT, _F3_FFT, _F3_FFT, _F3_FFT, numba.types.float64[:, :, ::1], numba.types.float64[:, ::1],
     numba.types.uint8[::1])
)


@_inline_exact
def _setup(setups, ny, nx):
    """Plan and scratch space for FFT size (ny, nx), from ``setups`` or made (at most 8 kept)."""
    key = (ny, nx)
    if key not in setups:
        if len(setups) >= 8:
            setups.clear()
        fac_y, twy, fac_x, twx, post, log2n = _new_plan(ny, nx)
        blk, t2r, t2i, u2r, u2i, maps, rows, region_bytes = _new_workspace(ny, nx)
        setups[key] = (fac_y, twy, fac_x, twx, post, log2n, blk, t2r, t2i, u2r, u2i, maps, rows, region_bytes)
    return setups[key]


@_jit()
def _search_region(frame, is_uint8, tz, t_ss, l1, spectra, rx1, ry1, rx2, ry2, setups, acc, pre, iacc, ipre):
    """The search of one template (statistics ``tz``, ``t_ss``, ``l1``; its spectra per FFT
    size in ``spectra``, added as needed) in ``frame[ry1:ry2, rx1:rx2]``: (best score, x, y in
    image pixels, exact rescorings). ``acc``, ``pre``, ``iacc``, ``ipre``: the row buffers of
    ``_row_buffers``, wide enough.

    One function from the rules down to the search kernels: numba optimises each compiled
    function together with everything it calls, so every wrapper above the search costs a few
    seconds of compiling."""
    h, w = tz.shape
    hh = ry2 - ry1
    ww = rx2 - rx1
    route = _route(h, w, t_ss, hh, ww)
    if route == _FLAT:
        return 0.0, rx1, ry1, 0
    if route == _DIRECT:
        best, y, x = _search_direct(tz, t_ss, frame, ry1, rx1, hh, ww, is_uint8)
        return best, rx1 + x, ry1 + y, (hh - h + 1) * (ww - w + 1)
    key = (_smooth(hh, True), _smooth(ww, False))
    fac_y, twy, fac_x, twx, post, log2n, blk, t2r, t2i, u2r, u2i, maps, rows, region_bytes = _setup(setups, key[0],
                                                                                                     key[1])
    if key not in spectra:
        spectra[key] = _template_spectrum(tz, l1, key[1], fac_y, twy, fac_x, twx, post, blk, t2r, t2i)
    specr, speci = spectra[key]
    # Two calls, not one on a chosen array: one numba variable cannot hold both array types.
    if not is_uint8:
        pixels = region_bytes[: hh * ww].reshape((hh, ww))
        if _region_bytes(frame, ry1, rx1, hh, ww, pixels):
            best, y, x, rescored = _search_fft(pixels, True, np.int64(0), np.int64(0), hh, ww, tz, t_ss, l1, specr,
                                               speci, fac_y, twy, fac_x, twx, post, log2n, blk, t2r, t2i, u2r, u2i,
                                               maps, rows, acc, pre, iacc, ipre)
            return best, rx1 + x, ry1 + y, rescored
    best, y, x, rescored = _search_fft(frame, is_uint8, ry1, rx1, hh, ww, tz, t_ss, l1, specr, speci, fac_y,
                                       twy, fac_x, twx, post, log2n, blk, t2r, t2i, u2r, u2i, maps, rows, acc, pre, iacc,
                                       ipre)
    return best, rx1 + x, ry1 + y, rescored


# --------------------------------------------------------------------------------------------
# The rules in jitted code (the model: cpp/src/verdicts.cpp, the same early exits; the oracle:
# rules.py). The window's frames reach a kernel as their addresses (the frames stay alive in the
# caller) and one frame as the model of their dtype and shape: no copy of the window per call.
# --------------------------------------------------------------------------------------------

_UNDECIDED = rules.UNDECIDED
_ISOLATED = int(Reason.ISOLATED)
_SURE_SCORE = int(Reason.SURE_SCORE)
_SMALL = int(Reason.SMALL)
_BORDER = int(Reason.BORDER)
_PARTNER = int(Reason.PARTNER)
_APPEARANCE_CHANGED = int(Reason.APPEARANCE_CHANGED)
_NO_NEIGHBOURS = int(Reason.NO_NEIGHBOURS)
_HP_MATCH_IOU = rules.HP_MATCH_IOU
_RULE_CODES = {Rule.SEED: 0, Rule.TRACKLET: 1, Rule.SUPPORT: 2}


@intrinsic
def _pointer(typingctx, address, model):
    """The int64 ``address`` as a pointer to elements of the array ``model``'s dtype."""
    pointer = numba.types.CPointer(model.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(address, model), codegen


@_jit()
def _frame_at(addresses, g, model):
    """Frame ``g`` of the window: a C-contiguous array like ``model`` at ``addresses[g]``."""
    return numba.carray(_pointer(addresses[g], model), model.shape)


@_inline_exact
def _iou(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2):
    """IoU of two boxes: the operations of ``_boxes.iou_matrix`` (and verdicts.cpp) in its
    order, so that ties at a threshold agree."""
    inter_w = min(ax2, bx2) - max(ax1, bx1)
    inter_h = min(ay2, by2) - max(ay1, by1)
    inter = max(inter_w, 0.0) * max(inter_h, 0.0)
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    if not (np.isfinite(union) and np.isfinite(inter)):
        # Finite coordinates near the double limit (a width, an area or the union overflowed):
        # IoU is scale-free, so take it of the boxes scaled by 2^-600 (exact for such values).
        s = 2.0**-600
        ax1, ay1, ax2, ay2 = ax1 * s, ay1 * s, ax2 * s, ay2 * s
        bx1, by1, bx2, by2 = bx1 * s, by1 * s, bx2 * s, by2 * s
        inter_w = min(ax2, bx2) - max(ax1, bx1)
        inter_h = min(ay2, by2) - max(ay1, by1)
        inter = max(inter_w, 0.0) * max(inter_h, 0.0)
        union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
        return inter / union if np.isfinite(union) and union > 0 else 0.0
    return inter / union if union > 0 else 0.0


@_jit()
def _best_iou(x1, y1, x2, y2, boxes, start, stop):
    """Largest IoU of the box with ``boxes[start:stop]`` (0 for none)."""
    best = 0.0
    for k in range(start, stop):
        best = max(best, _iou(x1, y1, x2, y2, boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3]))
    return best


@_inline_exact
def _overlaps_any(x1, y1, x2, y2, boxes, start, stop, threshold, inclusive):
    for k in range(start, stop):
        overlap = _iou(x1, y1, x2, y2, boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3])
        if overlap >= threshold if inclusive else overlap > threshold:
            return True
    return False


@_inline_exact
def _clamp(v, lo, hi):
    return lo if v < lo else (hi if hi < v else v)


@_jit()
def _pixel_box(boxes, k, width, height):
    """``_boxes.pixel_boxes`` of ``boxes[k]``: floor(v + 0.5), x1 into [0, W-1], x2 into
    [x1+1, W] (clamped as floats, then converted); same for y."""
    x1 = int(_clamp(np.floor(boxes[k, 0] + 0.5), 0.0, width - 1.0))
    y1 = int(_clamp(np.floor(boxes[k, 1] + 0.5), 0.0, height - 1.0))
    x2 = int(_clamp(np.floor(boxes[k, 2] + 0.5), x1 + 1.0, float(width)))
    y2 = int(_clamp(np.floor(boxes[k, 3] + 0.5), y1 + 1.0, float(height)))
    return x1, y1, x2, y2


@_inline_exact
def _grow(x1, y1, x2, y2, margin, width, height):
    """``_boxes.grow_boxes``: ``margin`` on every side, clipped to the image."""
    m = min(max(margin, 0), width + height)
    return max(x1 - m, 0), max(y1 - m, 0), min(x2 + m, width), min(y2 + m, height)


@_jit()
def _new_spectra():
    return numba.typed.Dict.empty(key_type=_SIZE, value_type=_SPECTRUM)


@_jit()
def _isolated_whatever(tracked, supporting, left, min_tracked, max_support):
    """Support rule: whether ISOLATED holds whatever the ``left`` frames give. Each adds nothing,
    one tracked frame, or one tracked and supporting frame, and the decision compares supporting
    with max_support * tracked (rounding is monotone), so for 0 <= max_support < 1 the worst
    case for each k is k of them tracked and supporting, checked with the decision's own
    expression (verdicts.cpp's ``isolated_whatever``)."""
    if not (max_support >= 0.0 and max_support < 1.0) or tracked < min_tracked:
        return False
    # k = left first: when any k fails, that one almost always does, so the loop rarely runs.
    if not (float(supporting + left) <= max_support * float(tracked + left)):
        return False
    for k in range(left):
        if not (float(supporting + k) <= max_support * float(tracked + k)):
            return False
    return True


@_jit()
def _exemptions(boxes, start, scores, count, width, height, sure_score, min_area, border):
    """``rules.exemption_reasons``: sure score, then small, then border; undecided elsewhere."""
    reasons = np.full(count, _UNDECIDED, np.int8)
    edge = float(border)
    for i in range(count):
        x1, y1, x2, y2 = boxes[start + i, 0], boxes[start + i, 1], boxes[start + i, 2], boxes[start + i, 3]
        if scores[i] >= sure_score:
            reasons[i] = _SURE_SCORE
        elif (x2 - x1) * (y2 - y1) < min_area:
            reasons[i] = _SMALL
        elif x1 < edge or y1 < edge or x2 > width - edge or y2 > height - edge:
            reasons[i] = _BORDER
    return reasons


@_inline_exact
def _verdicts_body(addresses, model, is_uint8, boxes, offsets, scores, center, rule, iou_first, window, margin,
                   ncc_threshold, iou_threshold, sure_score, min_area, border, min_tracked, max_support, support_iou,
                   setups, acc, pre, iacc, ipre):
    """Reasons of the center frame's detections under ``rule`` (0 seed, 1 tracklet, 2 support):
    verdicts.cpp's ``seed``, ``tracklet`` and ``support``. ``boxes[offsets[g]:offsets[g + 1]]``
    are frame g's."""
    height, width = model.shape
    last = addresses.shape[0] - 1
    lo = center - window if center >= window else 0
    hi = last if last - center <= window else center + window
    start = offsets[center]
    count = offsets[center + 1] - start
    reasons = _exemptions(boxes, start, scores, count, width, height, sure_score, min_area, border)
    frame = _frame_at(addresses, center, model)
    # Neighbour frames: seed, those with detections, in frame order; support, all of them,
    # nearest first (center -+ 1, -+ 2, ...: a consistent object is tracked and supported there
    # first, so its searches end sooner; see the support branch).
    neighbours = np.empty(hi - lo + 1, np.int64)
    num = 0
    if rule == 2:
        d = 1
        while center - d >= lo or center + d <= hi:
            if center - d >= lo:
                neighbours[num] = center - d
                num += 1
            if center + d <= hi:
                neighbours[num] = center + d
                num += 1
            d += 1
    else:
        for g in range(lo, hi + 1):
            if g != center and offsets[g + 1] > offsets[g]:
                neighbours[num] = g
                num += 1
    for i in range(count):
        if reasons[i] != _UNDECIDED:
            continue
        d = start + i
        dx1, dy1, dx2, dy2 = boxes[d, 0], boxes[d, 1], boxes[d, 2], boxes[d, 3]
        if rule == 0 and iou_first:
            for j in range(num):
                g = neighbours[j]
                if _overlaps_any(dx1, dy1, dx2, dy2, boxes, offsets[g], offsets[g + 1], iou_threshold, False):
                    reasons[i] = _PARTNER
                    break
            if reasons[i] != _UNDECIDED:
                continue
        if rule == 0 and num == 0:
            reasons[i] = _ISOLATED
            continue
        if rule == 1 and hi == lo:
            reasons[i] = _NO_NEIGHBOURS
            continue
        if rule == 2 and num < min_tracked:
            # Never enough frames to track into: no search can change the verdict.
            reasons[i] = _APPEARANCE_CHANGED if num > 0 else _NO_NEIGHBOURS
            continue
        # Only the detections that the cheap tests left undecided pay for a template.
        tx1, ty1, tx2, ty2 = _pixel_box(boxes, d, width, height)
        th = ty2 - ty1
        tw = tx2 - tx1
        tz, t_ss, l1 = _template_stats(frame, ty1, tx1, th, tw)
        spectra = _new_spectra()
        rx1, ry1, rx2, ry2 = _grow(tx1, ty1, tx2, ty2, margin, width, height)
        if rule == 0:
            for j in range(num):
                g = neighbours[j]
                score, x, y, _ = _search_region(_frame_at(addresses, g, model), is_uint8, tz, t_ss, l1, spectra, rx1, ry1,
                                             rx2, ry2, setups, acc, pre, iacc, ipre)
                if score < ncc_threshold:
                    reasons[i] = _APPEARANCE_CHANGED
                    break
                if _overlaps_any(float(x), float(y), float(x + tw), float(y + th), boxes, offsets[g], offsets[g + 1],
                                 iou_threshold, False) or (
                        not iou_first
                        and _overlaps_any(dx1, dy1, dx2, dy2, boxes, offsets[g], offsets[g + 1], iou_threshold, False)):
                    reasons[i] = _PARTNER
                    break
            if reasons[i] == _UNDECIDED:
                reasons[i] = _ISOLATED
        elif rule == 1:
            reached = 0
            for step in (1, -1):
                px1, py1, px2, py2 = tx1, ty1, tx2, ty2
                g = center + step
                while lo <= g <= hi and reasons[i] == _UNDECIDED:
                    rx1, ry1, rx2, ry2 = _grow(px1, py1, px2, py2, margin, width, height)
                    score, x, y, _ = _search_region(_frame_at(addresses, g, model), is_uint8, tz, t_ss, l1, spectra, rx1,
                                                 ry1, rx2, ry2, setups, acc, pre, iacc, ipre)
                    if score < ncc_threshold:
                        break
                    reached += 1
                    if _overlaps_any(float(x), float(y), float(x + tw), float(y + th), boxes, offsets[g],
                                     offsets[g + 1], iou_threshold, True):
                        reasons[i] = _PARTNER
                    px1, py1, px2, py2 = x, y, x + tw, y + th
                    g += step
                if reasons[i] != _UNDECIDED:
                    break
            if reasons[i] == _UNDECIDED:
                reasons[i] = _ISOLATED if reached > 0 else _APPEARANCE_CHANGED
        else:
            tracked = 0
            supporting = 0
            searched = 0
            for j in range(num):
                # Stop once no outcome of the frames left can change the verdict (verdicts.cpp):
                # PARTNER whatever comes (enough frames tracked, more support than max_support of
                # every frame that can still be tracked), APPEARANCE_CHANGED whatever comes (too
                # few frames left for min_tracked), ISOLATED whatever comes.
                left = num - searched
                if max_support >= 0 and tracked >= min_tracked and float(supporting) > max_support * float(tracked + left):
                    break
                if tracked + left < min_tracked:
                    break
                if _isolated_whatever(tracked, supporting, left, min_tracked, max_support):
                    break
                searched += 1
                g = neighbours[j]
                score, x, y, _ = _search_region(_frame_at(addresses, g, model), is_uint8, tz, t_ss, l1, spectra, rx1, ry1,
                                             rx2, ry2, setups, acc, pre, iacc, ipre)
                if not score >= ncc_threshold:
                    continue
                tracked += 1
                overlap = _best_iou(float(x), float(y), float(x + tw), float(y + th), boxes, offsets[g], offsets[g + 1])
                if overlap >= support_iou:
                    supporting += 1
            if tracked < min_tracked:
                reasons[i] = _APPEARANCE_CHANGED  # tracked < min_tracked <= num: there are neighbours
            elif float(supporting) <= max_support * float(tracked):
                reasons[i] = _ISOLATED
            else:
                reasons[i] = _PARTNER
    return reasons


@_inline_exact
def _hard_positives_body(addresses, model, is_uint8, boxes, offsets, center, margin, ncc_threshold, iou_threshold,
                         max_gap, setups, acc, pre, iacc, ipre):
    """verdicts.cpp's ``hard_positives``: (M, 4) float64 boxes, in the oracle's order."""
    height, width = model.shape
    n = addresses.shape[0]
    gap_limit = min(max(max_gap, 0), n)  # beyond n frames every source and target is outside
    found = np.empty((offsets[n] + 1, 4))
    num = 0
    for direction in (1, -1):  # 1: sources before the center, tracked forward
        for distance in range(1, gap_limit + 1):
            source = center - direction * distance
            if source < 0 or source >= n or offsets[source + 1] == offsets[source]:
                continue
            source_frame = _frame_at(addresses, source, model)
            for d in range(offsets[source], offsets[source + 1]):
                tx1, ty1, tx2, ty2 = _pixel_box(boxes, d, width, height)
                th = ty2 - ty1
                tw = tx2 - tx1
                tz, t_ss, l1 = _template_stats(source_frame, ty1, tx1, th, tw)
                spectra = _new_spectra()
                px1, py1, px2, py2 = tx1, ty1, tx2, ty2
                cx1 = cy1 = cx2 = cy2 = 0.0
                for step in range(1, gap_limit + 2):
                    g = source + direction * step
                    if g < 0 or g >= n:
                        break
                    rx1, ry1, rx2, ry2 = _grow(px1, py1, px2, py2, margin, width, height)
                    score, x, y, _ = _search_region(_frame_at(addresses, g, model), is_uint8, tz, t_ss, l1, spectra, rx1,
                                                 ry1, rx2, ry2, setups, acc, pre, iacc, ipre)
                    if score < ncc_threshold:
                        break
                    overlap = _best_iou(float(x), float(y), float(x + tw), float(y + th), boxes, offsets[g],
                                        offsets[g + 1])
                    if overlap >= _HP_MATCH_IOU:
                        if step > distance:
                            found[num, 0], found[num, 1], found[num, 2], found[num, 3] = cx1, cy1, cx2, cy2
                            num += 1
                        break
                    if overlap >= iou_threshold or step > gap_limit:
                        break  # partial overlap, or too many gaps
                    if step == distance:
                        cx1, cy1, cx2, cy2 = float(x), float(y), float(x + tw), float(y + th)
                    px1, py1, px2, py2 = x, y, x + tw, y + th
    kept = np.empty((num, 4))
    count = 0
    for k in range(num):
        duplicate = False
        for m in range(count):
            if _iou(found[k, 0], found[k, 1], found[k, 2], found[k, 3], kept[m, 0], kept[m, 1], kept[m, 2],
                    kept[m, 3]) >= _HP_MATCH_IOU:
                duplicate = True
                break
        if not duplicate:
            kept[count] = found[k]
            count += 1
    return kept[:count].copy()


#: ``_kernel``'s tasks besides the rule codes of ``_RULE_CODES``.
_HARD_POSITIVES = 3
_SEARCH = 4


@_jit()
def _kernel(task, addresses, model, is_uint8, boxes, offsets, scores, center, iou_first, window, margin, ncc_threshold,
            iou_threshold, sure_score, min_area, border, min_tracked, max_support, support_iou, max_gap, setups, acc,
            pre, iacc, ipre, tz, t_ss, l1, specr, speci):
    """The backend's one compiled entry point per frame dtype: numba optimises an entry point
    together with everything it calls, so each entry that reaches the search pays for compiling
    all of it again (about 25 s); one entry for every task pays once.

    Returns (reasons, boxes, spectrum real, imaginary). ``task`` a rule code: the reasons of the
    center frame's detections. ``_HARD_POSITIVES``: the (M, 4) hard positives. ``_SEARCH``: the
    search (the Python batch API) of the template ``tz``, ``t_ss``, ``l1`` in the region
    ``boxes[0]`` of the frame ``model``, or of each frame at ``addresses`` when there are any
    (``ncc_search_frames``), given its spectrum (``specr``, ``speci``) or (0, 0)
    arrays: boxes = one [score, x, y, rescorings] per frame and the spectrum for the region's
    FFT size (computed if the search needed it and was not given it; else as given).
    """
    if task == _SEARCH:
        rx1, ry1, rx2, ry2 = int(boxes[0, 0]), int(boxes[0, 1]), int(boxes[0, 2]), int(boxes[0, 3])
        spectra = _new_spectra()
        key = (_smooth(ry2 - ry1, True), _smooth(rx2 - rx1, False))
        if specr.shape[0] > 0:
            spectra[key] = (specr, speci)
        count = max(addresses.shape[0], 1)
        out = np.empty((count, 4))
        for g in range(count):
            frame = model if addresses.shape[0] == 0 else _frame_at(addresses, g, model)
            best, x, y, rescored = _search_region(frame, is_uint8, tz, t_ss, l1, spectra, rx1, ry1, rx2, ry2, setups,
                                                  acc, pre, iacc, ipre)
            out[g, 0], out[g, 1], out[g, 2], out[g, 3] = best, x, y, rescored
        if key in spectra:
            specr, speci = spectra[key]
        return np.zeros(0, np.int8), out, specr, speci
    if task == _HARD_POSITIVES:
        found = _hard_positives_body(addresses, model, is_uint8, boxes, offsets, center, margin, ncc_threshold,
                                     iou_threshold, max_gap, setups, acc, pre, iacc, ipre)
        return np.zeros(0, np.int8), found, specr, speci
    reasons = _verdicts_body(addresses, model, is_uint8, boxes, offsets, scores, center, task, iou_first, window,
                             margin, ncc_threshold, iou_threshold, sure_score, min_area, border, min_tracked,
                             max_support, support_iou, setups, acc, pre, iacc, ipre)
    return reasons, np.zeros((0, 4)), specr, speci


# --------------------------------------------------------------------------------------------
# Python side: per-thread scratch space, the template cache, the batch API.
# --------------------------------------------------------------------------------------------


_local = threading.local()
_cache_lock = threading.Lock()
_template_cache: OrderedDict = OrderedDict()
_cache_bytes = 0


@functools.lru_cache(maxsize=1024)
def _fft_size(hh: int, ww: int) -> tuple[int, int]:
    """The FFT size (ny, nx) of an hh x ww region: the key of a template's spectra."""
    return int(_smooth(hh, True)), int(_smooth(ww, False))


@_jit()
def _new_setups():
    return numba.typed.Dict.empty(key_type=_SIZE, value_type=_SETUP)


def _setups() -> "numba.typed.Dict":
    """The rule kernels' per-thread plans and scratch space (see ``_setup``). Made in jitted code:
    ``numba.typed.Dict.empty`` called from Python compiles its helpers again in every process."""
    setups = getattr(_local, "setups", None)
    if setups is None:
        setups = _local.setups = _new_setups()
    return setups


def _row_buffers(width: int) -> tuple:
    """Per-thread (column sums, running sums) rows for the window statistics, float64 and
    (uint8 frames) int64."""
    buffers = getattr(_local, "rows", None)
    if buffers is None or buffers[0].shape[1] < width + 1:
        n = width + 64
        buffers = _local.rows = (
            _placed(4 * n, 11, False).reshape(4, n),
            _placed(3 * n, 13, False).reshape(3, n),
            _placed(2 * n, 3, False).view(np.int64).reshape(2, n),
            _placed(2 * n, 7, False).view(np.int64).reshape(2, n),
        )
    return buffers


class _Template:
    __slots__ = ("key", "pixels", "tz", "t_ss", "l1", "spectra", "nbytes")

    def __init__(self, key: tuple, pixels: np.ndarray):
        self.key = key
        self.pixels = pixels
        self.tz, self.t_ss, self.l1 = _template_stats(pixels, 0, 0, pixels.shape[0], pixels.shape[1])
        self.spectra: dict = {}
        self.nbytes = pixels.nbytes + self.tz.nbytes


@_jit()
def _same_pixels(a, b):
    """``np.array_equal`` for two arrays of one shape, without its per-call overhead."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            if a[i, j] != b[i, j]:
                return False
    return True


def _template(frame: np.ndarray, box: tuple) -> _Template:
    """The cached template for ``frame[box]``; a cache hit is verified on the pixels."""
    global _cache_bytes
    tx1, ty1, tx2, ty2 = box
    crop = frame[ty1:ty2, tx1:tx2]
    key = (frame.__array_interface__["data"][0], frame.dtype.char, frame.strides[0], tx1, ty1, tx2, ty2)
    with _cache_lock:
        entry = _template_cache.get(key)
        if entry is not None:
            _template_cache.move_to_end(key)
    if entry is not None and entry.pixels.shape == crop.shape and _same_pixels(entry.pixels, crop):
        return entry
    entry = _Template(key, np.ascontiguousarray(crop).copy())
    with _cache_lock:
        old = _template_cache.pop(key, None)
        if old is not None:
            _cache_bytes -= old.nbytes
        _template_cache[key] = entry
        _cache_bytes += entry.nbytes
        while len(_template_cache) > 1 and (len(_template_cache) > _CACHE_ENTRIES or _cache_bytes > _CACHE_BYTES):
            _, evicted = _template_cache.popitem(last=False)
            _cache_bytes -= evicted.nbytes
    return entry


def clear_cache() -> None:
    """Forget every cached template spectrum (they are also evicted automatically, LRU)."""
    global _cache_bytes
    with _cache_lock:
        _template_cache.clear()
        _cache_bytes = 0


_NO_ADDRESSES = np.zeros(0, np.int64)
_NO_SCORES = np.zeros(0)
_NO_SPECTRUM = (np.zeros((0, 0), _FFT_DTYPE), np.zeros((0, 0), _FFT_DTYPE))


def _search_one(template_frame: np.ndarray, tbox, search_frame: np.ndarray, rbox) -> tuple:
    """(best score, x, y in image pixels, number of exact rescorings); boxes are sequences of four
    Python ints. ``_kernel``'s search (``_search_region``) with the template cache of this module."""
    tx1, ty1, tx2, ty2 = tbox
    _check_region((ty2 - ty1, tx2 - tx1), rbox)
    entry = _template(template_frame, (tx1, ty1, tx2, ty2))
    best, x, y, rescored = _search_in(entry, search_frame, _NO_ADDRESSES, rbox)[0].tolist()
    return best, int(x), int(y), int(rescored)


def _check_region(template_shape: tuple, rbox) -> None:
    h, w = template_shape
    hh, ww = rbox[3] - rbox[1], rbox[2] - rbox[0]
    if h < 1 or w < 1 or hh < h or ww < w:
        raise InputError(f"search region {hh}x{ww} cannot hold the template {h}x{w}")


def _search_in(entry: _Template, model: np.ndarray, addresses: np.ndarray, rbox) -> np.ndarray:
    """One row [best score, x, y, exact rescorings] per search of the template ``entry`` in the
    region ``rbox`` (four Python ints, checked) of ``model``, or of each frame at ``addresses``
    (frames like ``model``, kept alive by the caller) when there are any. A spectrum computed on
    the way is added to the entry (and counted in the cache's bytes if the entry is cached)."""
    global _cache_bytes
    hh, ww = rbox[3] - rbox[1], rbox[2] - rbox[0]
    size = _fft_size(hh, ww)
    specr, speci = entry.spectra.get(size, _NO_SPECTRUM)
    acc, pre, iacc, ipre = _row_buffers(ww)
    _, out, specr, speci = _kernel(_SEARCH, addresses, model, model.dtype == np.uint8,
                                   np.array([rbox], dtype=np.float64), _NO_ADDRESSES, _NO_SCORES, 0, False,
                                   *_DEFAULT_KERNEL_PARAMS, _setups(), acc, pre, iacc, ipre, entry.tz, entry.t_ss,
                                   entry.l1, specr, speci)
    if specr.shape[0] and size not in entry.spectra:
        entry.spectra[size] = (specr, speci)
        added = specr.nbytes + speci.nbytes
        with _cache_lock:
            entry.nbytes += added
            if _template_cache.get(entry.key) is entry:
                _cache_bytes += added
    return out


def _compiled_form(frame: np.ndarray) -> np.ndarray:
    """``frame`` itself when it is C-contiguous and writable (the arrays :func:`warm_up` compiles
    for), else a copy that is: another layout or a read-only array would make numba compile a
    new specialisation (tens of seconds) in the middle of a run."""
    if frame.flags.c_contiguous and frame.flags.writeable:
        return frame
    return np.array(frame, order="C")


def ncc_search_batch(template_frame: np.ndarray, template_boxes: np.ndarray, search_frame: np.ndarray,
                     regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best TM_CCOEFF_NORMED score and top-left corner (x, y, image pixels) per template box."""
    if not _compiled:
        ensure_compiled()
    return _search(_compiled_form(template_frame), template_boxes, _compiled_form(search_frame), regions)


def _search(template_frame: np.ndarray, template_boxes: np.ndarray, search_frame: np.ndarray,
            regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    count = len(template_boxes)
    scores = np.empty(count, dtype=np.float64)
    top_left = np.empty((count, 2), dtype=np.int64)
    # Python ints once per batch: indexing and converting numpy scalars box by box costs more
    # than a small search's arithmetic.
    tboxes = np.asarray(template_boxes).astype(np.int64).tolist()
    rboxes = np.asarray(regions).astype(np.int64).tolist()
    for k in range(count):
        best, x, y, _ = _search_one(template_frame, tboxes[k], search_frame, rboxes[k])
        scores[k] = best
        top_left[k, 0] = x
        top_left[k, 1] = y
    return scores, top_left


def ncc_search_frames(template_frame: np.ndarray, template_box: np.ndarray, search_frames: Sequence[np.ndarray],
                      region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (1, 4) template box of ``template_frame`` searched inside the same (1, 4) region of each
    of the G ``search_frames`` (the frames' shape and dtype): ``(scores (G,) float64, top_left
    (G, 2) int64 x, y in image pixels)``, as ``_core.ncc_search_frames``. All G searches run in
    one jitted call, as the rules run theirs (the benchmark's like-with-like row). The boxes are
    integer pixel boxes, as the facade passes them; both must lie inside the frames (checked:
    the kernel reads the frames' memory unchecked)."""
    if not _compiled:
        ensure_compiled()
    frames = [template_frame, *search_frames]
    no_boxes = [np.zeros((0, 4))] * len(frames)
    window, addresses, model, _, _, _ = _window(
        frames, no_boxes, 0, lambda g: f"search_frames[{g - 1}]" if g else "template_frame")
    height, width = model.shape
    rbox = [int(v) for v in np.asarray(region).reshape(-1)[:4]]
    tbox = [int(v) for v in np.asarray(template_box).reshape(-1)[:4]]
    for name, (x1, y1, x2, y2) in (("template_box", tbox), ("region", rbox)):
        if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
            raise InputError(f"{name} {[x1, y1, x2, y2]} is not inside the {width}x{height} frames")
    count = len(search_frames)
    tx1, ty1, tx2, ty2 = tbox
    _check_region((ty2 - ty1, tx2 - tx1), rbox)
    if count == 0:
        return np.zeros(0), np.zeros((0, 2), np.int64)
    # The template is cut and transformed afresh, outside the cache: once per call, as the rules
    # do once per detection (and as the C++ call does).
    entry = _Template(("uncached",), np.ascontiguousarray(model[ty1:ty2, tx1:tx2]).copy())
    out = _search_in(entry, window[1], addresses[1:], rbox)
    return out[:, 0].copy(), out[:, 1:3].astype(np.int64)


def iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    return iou_matrix(boxes_a, boxes_b)


# --------------------------------------------------------------------------------------------
# The rule entry points: convert the window once, then one jitted call per frame.
# --------------------------------------------------------------------------------------------

#: The MiningParams fields the kernels take (in this order after the rule's own arguments);
#: every other field must be one of params.PYTHON_ONLY_FIELDS (applied around every backend).
_KERNEL_FIELDS = ("window", "margin", "ncc_threshold", "iou_threshold", "sure_score", "min_area", "border",
                  "min_tracked", "max_support", "support_iou", "max_gap")
#: Fields the kernel does not use at all (the caller applies score_threshold before the backend).
_UNUSED_FIELDS = ("score_threshold",)


@functools.lru_cache(maxsize=8)
def _kernel_params(params: MiningParams) -> tuple:
    """``_kernel``'s arguments of ``params``: Python ints and floats of one type each (an
    int where a float is expected would compile a new specialisation). Raises RuntimeError
    naming a field of ``params`` the kernel does not know unless params.PYTHON_ONLY_FIELDS
    names it, as the C++ backend's conversion does."""
    known = set(_KERNEL_FIELDS) | set(_UNUSED_FIELDS) | set(PYTHON_ONLY_FIELDS)
    unknown = [f.name for f in dataclasses.fields(params) if f.name not in known]
    if unknown:
        raise RuntimeError(f"the numba backend does not take MiningParams field(s) {unknown}; add them to its kernels "
                           "or to params.PYTHON_ONLY_FIELDS with the reason")

    def value(name: str):
        v = getattr(params, name)
        return int(v) if isinstance(MiningParams.__dataclass_fields__[name].default, int) else float(v)

    return tuple(value(n) for n in _KERNEL_FIELDS)


_DEFAULT_KERNEL_PARAMS = _kernel_params(MiningParams())
#: The template arguments of ``_kernel`` for the rule tasks (unused there).
_NO_TEMPLATE = (np.zeros((0, 0)), 0.0, 0.0) + _NO_SPECTRUM


def _frame_name(g: int) -> str:
    return f"frames[{g}]"


def _window(frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray], center: int,
            name: Callable[[int], str] = _frame_name) -> tuple:
    """(the frames as the kernel reads them: keep this list alive during the call, their
    addresses, the center frame as the model of every frame, uint8?, boxes (N, 4) float64,
    offsets (F + 1,) int64) of a window, after the checks verdicts.cpp makes; ``name(g)`` is
    frame g in messages."""
    count = len(frames)
    if count == 0:
        raise InputError("frames must not be empty")
    if len(boxes) != count:
        raise InputError(f"boxes has {len(boxes)} entries but frames has {count}; give one (N_i, 4) array per frame")
    if not 0 <= center < count:
        raise InputError(f"center {center} is outside the window of {count} frames")
    window = [_compiled_form(f) for f in frames]
    model = window[center]
    for g, f in enumerate(window):
        if f.shape != model.shape or f.dtype != model.dtype or f.ndim != 2:
            raise InputError(f"{name(g)} has shape {f.shape} and dtype {f.dtype}, but {name(center)} has "
                             f"{model.shape} {model.dtype}")
    addresses = np.array([f.__array_interface__["data"][0] for f in window], dtype=np.int64)
    sizes = [len(b) for b in boxes]
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    flat = np.ascontiguousarray(np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes]))
    # ``window`` keeps any copies alive while the kernel reads them through ``addresses``.
    return window, addresses, model, model.dtype == np.uint8, flat, offsets


def frame_verdicts(frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray], scores: np.ndarray, center: int,
                   params: MiningParams, rule: Rule, iou_first: bool = True) -> np.ndarray:
    """``(N,)`` int8 reasons of ``boxes[center]``, decided in jitted code (``_kernel``)."""
    if not _compiled:
        ensure_compiled()
    return _verdicts(frames, boxes, scores, center, params, rule, iou_first)


def _verdicts(frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray], scores: np.ndarray, center: int,
              params: MiningParams, rule: Rule, iou_first: bool) -> np.ndarray:
    window, addresses, model, is_uint8, flat, offsets = _window(frames, boxes, center)
    scores = np.ascontiguousarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != offsets[center + 1] - offsets[center]:
        raise InputError(f"scores has {len(scores)} entries but the center frame has "
                         f"{offsets[center + 1] - offsets[center]} boxes")
    acc, pre, iacc, ipre = _row_buffers(model.shape[1])
    reasons, _, _, _ = _kernel(_RULE_CODES[Rule(rule)], addresses, model, is_uint8, flat, offsets, scores, int(center),
                               bool(iou_first), *_kernel_params(params), _setups(), acc, pre, iacc, ipre,
                               *_NO_TEMPLATE)
    del window
    return reasons


def frame_hard_positives(frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray], center: int,
                         params: MiningParams) -> np.ndarray:
    """``(M, 4)`` float64 hard positives of the center frame, found in jitted code
    (``_kernel``)."""
    if not _compiled:
        ensure_compiled()
    return _hard_positives(frames, boxes, center, params)


def _hard_positives(frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray], center: int,
                    params: MiningParams) -> np.ndarray:
    window, addresses, model, is_uint8, flat, offsets = _window(frames, boxes, center)
    acc, pre, iacc, ipre = _row_buffers(model.shape[1])
    _, found, _, _ = _kernel(_HARD_POSITIVES, addresses, model, is_uint8, flat, offsets, _NO_SCORES, int(center), False,
                             *_kernel_params(params), _setups(), acc, pre, iacc, ipre, *_NO_TEMPLATE)
    del window
    return found


# --------------------------------------------------------------------------------------------
# Compiling the cache once, visibly.
# --------------------------------------------------------------------------------------------

#: What the first search of a process with a cold cache prints on stderr before compiling.
COMPILE_MESSAGE = "flickermine: compiling the numba backend once (1-2 min); cached afterwards"

#: Jitted functions called from Python: every specialisation of the backend is one of theirs
#: (the rest are compiled into them).
_ENTRY_POINTS = ("_template_stats", "_same_pixels", "_smooth", "_placed", "_new_setups", "_kernel")

_MARKER = "numba_backend.flickermine-warm"
_compiled = False
_compile_lock = threading.Lock()


def cache_dir() -> Path | None:
    """The folder numba caches this module's compiled code in; None when it has none (no
    writable location: then every process compiles again)."""
    cache = getattr(_kernel, "_cache", None)
    path = getattr(cache, "cache_path", None)
    return Path(path) if path else None


def _stamp() -> str:
    """What a warm cache was compiled for: numba's cache is invalidated by another numba or Python
    and by any change to this file (its modification time and size, as numba checks them)."""
    source = os.stat(__file__)
    return f"numba {numba.__version__}; python {sys.version_info[0]}.{sys.version_info[1]}; {source.st_mtime!r} {source.st_size}\n"


def cache_is_cold() -> bool:
    """True when the next search will compile (about a minute): no on-disk cache, no marker written
    by :func:`warm_up` for this numba, Python and source file, or an index file of numba's
    missing. Cheap: a few ``stat`` calls and one small read."""
    folder = cache_dir()
    if folder is None:
        return True
    try:
        if (folder / _MARKER).read_text() != _stamp():
            return True
    except OSError:
        return True
    for name in _ENTRY_POINTS:
        cache = getattr(globals()[name], "_cache", None)
        index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
        if index is None or not os.path.exists(index):
            return True
    return False


def _compile_everything() -> None:
    """Run every specialisation once on tiny inputs: uint8 and float32 frames (C-contiguous,
    writable: :func:`_compiled_form`), a direct and an FFT search, and a template cache hit; the
    rule kernels (every rule, hard positives) on the same frames."""
    rng = np.random.default_rng(0)
    texture = (rng.random((96, 96)) * 255).astype(np.uint8)
    direct = (np.array([[40, 40, 48, 48]]), np.array([[36, 36, 52, 52]]))
    fft = (np.array([[32, 32, 56, 56]]), np.array([[8, 8, 88, 88]]))
    for dtype in (np.uint8, np.float32):
        frame = texture.astype(dtype)
        shifted = np.roll(frame, 1, axis=1)
        for boxes, regions in (direct, fft, fft):  # fft twice: the second is a cache hit
            _search(frame, boxes, shifted, regions)
        # The rule kernels: a direct (8 x 8) and an FFT (24 x 24) search per detection.
        window = [frame, shifted, frame]
        detections = [np.array([[32.0, 32.0, 56.0, 56.0], [40.0, 40.0, 48.0, 48.0]])] * 3
        params = MiningParams(score_threshold=0.0, window=1, margin=24, sure_score=2.0, min_area=0.0, border=0,
                              min_tracked=1)
        for rule in Rule:
            _verdicts(window, detections, np.full(2, 0.5), 1, params, rule, False)
        _hard_positives(window, [detections[0], detections[0][:0], detections[0]], 1, params)
    clear_cache()


def warm_up(force: bool = False, quiet: bool = False) -> float | None:
    """Compile the backend now (every specialisation it uses) when the cache is cold, or always
    with ``force`` (from the cache when it is warm: about a second), printing
    :data:`COMPILE_MESSAGE` and the time taken on stderr unless ``quiet``. Writes the marker
    :func:`cache_is_cold` looks for. Returns the seconds spent, or None when the cache was
    already warm (nothing printed)."""
    global _compiled
    stream = None if quiet else sys.stderr
    with _compile_lock:
        if not force and not cache_is_cold():
            _compiled = True
            return None
        if stream:
            print(COMPILE_MESSAGE, file=stream, flush=True)
        start = time.perf_counter()
        _compile_everything()
        seconds = time.perf_counter() - start
        folder = cache_dir()
        if folder is not None:
            try:  # atomic: processes warming up side by side each write a whole marker
                temporary = folder / f"{_MARKER}.{os.getpid()}.{threading.get_ident()}"
                temporary.write_text(_stamp())
                os.replace(temporary, folder / _MARKER)
            except OSError:
                pass  # a read-only cache folder: numba then compiles in memory only, every process
        if stream:
            where = f"cached in {folder}" if folder is not None else "no writable cache: every process compiles again"
            print(f"flickermine: numba backend compiled in {seconds:.1f} s ({where})", file=stream, flush=True)
        _compiled = True
        return seconds


def ensure_compiled() -> None:
    """Called by the first search of a process: compiles (visibly) when the cache is cold."""
    global _compiled
    if not _compiled:
        warm_up()
        _compiled = True
