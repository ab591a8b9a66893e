// Part of one NCC kernel set (see kernel_set.hpp): the ISA-specific search.
// The search after the correlation, for uint8 and float32 frames, written
// with AVX-512 intrinsics; compiled only in the AVX-512 kernel set
// (FM_AVX512), empty elsewhere. No include guard on purpose.
#ifndef FM_KNS
#error "search_avx512.hpp is private to ncc.cpp (included through kernels/kernel_set.hpp)"
#endif

namespace flickermine {
namespace detail {
namespace FM_KNS {

#ifdef FM_AVX512
// Both pixel types search in two passes over the positions, with a Scan
// (LowerBoundScan for uint8, F32BoundScan for float32) that knows the
// window statistics of its type:
//
// Pass 1, row by row: scan.advance(y) makes the row's window sums, then
// scan.step() on 8 positions at a time stores what pass 2 needs per position
// in `map`, notes the first flat window (exact score 0) and keeps the best
// lower bound of g = s |s| ss_T per lane as a fraction num / den (den > 0;
// g = scale * num / den), division free, compared by cross-multiplication.
// Pass 2: scan.candidates() tests every position's upper bound against the
// best lower bound L, and the few that pass are rescored exactly, in
// row-major order (ties: the first wins, as in the reference). No per-row
// reductions or selects.
template <class Scan, class P>
static void search_two_pass(const TemplateData& t, const P* reg,
                            std::ptrdiff_t stride, int hout, int wout,
                            const float* corr, std::size_t cs,
                            const RowParams& rp, double scale, Scan& scan,
                            double* map, double* best, int* by, int* bx,
                            int* ncand) {
  const __m512d one = _mm512_set1_pd(1.0), ngmax = _mm512_set1_pd(-rp.gmax / scale);
  // Two sets of per-lane fractions to halve the compare-and-blend chains.
  __m512d ln0 = ngmax, ld0 = one, ln1 = ngmax, ld1 = one;
  for (int y = 0; y < hout; ++y) {
    scan.advance(y);
    double* mrow = map + static_cast<std::size_t>(y) * wout;
    const float* crow = corr + y * cs;
    int x = 0;
    for (; x + 16 <= wout; x += 16) {
      scan.step(y, x, mrow, crow, ln0, ld0);
      scan.step(y, x + 8, mrow, crow, ln1, ld1);
    }
    for (; x < wout; x += 8) scan.step(y, x, mrow, crow, ln0, ld0);
  }
  // The best lower bound L of g (a flat window scores exactly 0).
  const int flat_y = scan.flat_y, flat_x = scan.flat_x;
  double lns = flat_y >= 0 ? 0.0 : -rp.gmax / scale, lds = 1.0;
  alignas(64) double a[2][16];
  _mm512_store_pd(a[0], ln0);
  _mm512_store_pd(a[0] + 8, ln1);
  _mm512_store_pd(a[1], ld0);
  _mm512_store_pd(a[1] + 8, ld1);
  for (int j = 0; j < 16; ++j)
    if (a[0][j] * lds > lns * a[1][j]) {
      lns = a[0][j];
      lds = a[1][j];
    }
  double lower = lns * scale / lds;
  lower = lower < rp.gmax ? lower : rp.gmax;
  const __m512d vl = _mm512_set1_pd(lower / scale);
  BestWindow found;
  for (int y = 0; y < hout; ++y) {
    const double* mrow = map + static_cast<std::size_t>(y) * wout;
    const float* crow = corr + y * cs;
    for (int x = 0; x < wout; x += 8)
      for (unsigned cand = scan.candidates(mrow, crow, x, tail_mask8(wout - x), vl);
           cand != 0; cand &= cand - 1)
        found.rescore(t, reg, stride, y, x + __builtin_ctz(cand));
  }
  found.settle_flat(flat_y, flat_x);
  *best = found.score;
  *by = found.y;
  *bx = found.x;
  *ncand = found.rescored;
}

// Whether hn >= lq, with a slack that covers the rounding of both products
// (and of L).
static inline __mmask8 at_least(__mmask8 m, __m512d hn, __m512d lq) {
  const __m512d slack = _mm512_set1_pd(1e-12);
  const __m512d lhs = _mm512_fmadd_pd(slack, _mm512_abs_pd(hn), hn);
  const __m512d rhs = _mm512_fnmadd_pd(slack, _mm512_abs_pd(lq), lq);
  return _mm512_mask_cmp_pd_mask(m, lhs, rhs, _CMP_GE_OQ);
}

// uint8 frames (h * w <= 66051, so every window sum and sum of squares is
// < 2^32 and exact modulo 2^32). The column sums c1/c2 of rows y..y+h-1 are
// turned into prefix sums P[x] = c[0] + ... + c[x - 1] while being moved on
// to the next row (one sweep); window sums are P[x + w] - P[x];
// q = n * (sum of squared deviations) is exact and stored per position;
// g = c |c| n / q.
static inline void prefix_advance_u8(const std::uint8_t* rin,
                                     const std::uint8_t* rout, int W,
                                     std::uint32_t* FM_R c1,
                                     std::uint32_t* FM_R c2,
                                     std::uint32_t* FM_R p1,
                                     std::uint32_t* FM_R p2) {
  const __m512i zero = _mm512_setzero_si512();
  const __m512i last = _mm512_set1_epi32(15);
  __m512i k1 = zero, k2 = zero;  // running totals
  p1[0] = p2[0] = 0;
  for (int x0 = 0; x0 < W; x0 += 16) {
    const __mmask16 m =
        W - x0 >= 16 ? static_cast<__mmask16>(0xFFFF)
                     : static_cast<__mmask16>((1u << (W - x0)) - 1);
    __m512i v1 = _mm512_maskz_loadu_epi32(m, c1 + x0);
    __m512i v2 = _mm512_maskz_loadu_epi32(m, c2 + x0);
    if (rin != nullptr) {
      const __m512i a = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, rin + x0));
      const __m512i b = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, rout + x0));
      _mm512_mask_storeu_epi32(c1 + x0, m, _mm512_add_epi32(v1, _mm512_sub_epi32(a, b)));
      _mm512_mask_storeu_epi32(
          c2 + x0, m,
          _mm512_add_epi32(v2, _mm512_sub_epi32(_mm512_mullo_epi32(a, a),
                                                _mm512_mullo_epi32(b, b))));
    }
    // In-register prefix sum: lane i += lane i - 1, i - 2, i - 4, i - 8.
    v1 = _mm512_add_epi32(v1, _mm512_alignr_epi32(v1, zero, 15));
    v2 = _mm512_add_epi32(v2, _mm512_alignr_epi32(v2, zero, 15));
    v1 = _mm512_add_epi32(v1, _mm512_alignr_epi32(v1, zero, 14));
    v2 = _mm512_add_epi32(v2, _mm512_alignr_epi32(v2, zero, 14));
    v1 = _mm512_add_epi32(v1, _mm512_alignr_epi32(v1, zero, 12));
    v2 = _mm512_add_epi32(v2, _mm512_alignr_epi32(v2, zero, 12));
    v1 = _mm512_add_epi32(v1, _mm512_alignr_epi32(v1, zero, 8));
    v2 = _mm512_add_epi32(v2, _mm512_alignr_epi32(v2, zero, 8));
    _mm512_storeu_si512(p1 + x0 + 1, _mm512_add_epi32(v1, k1));
    _mm512_storeu_si512(p2 + x0 + 1, _mm512_add_epi32(v2, k2));
    // The chunk's total added to the carry (the last lane of what was
    // stored): one addition, not a permute as well, on the chain from chunk
    // to chunk.
    k1 = _mm512_add_epi32(k1, _mm512_permutexvar_epi32(last, v1));
    k2 = _mm512_add_epi32(k2, _mm512_permutexvar_epi32(last, v2));
  }
}

// The uint8 Scan of search_two_pass. step() on 8 positions (x .. x + 7 of
// row y, masked at the row's end). A struct, not a lambda: the target pragma
// reaches member functions on every compiler.
struct LowerBoundScan {
  const std::uint8_t* reg;
  std::ptrdiff_t stride;
  int W, h, hout;
  std::uint32_t *c1, *c2, *p1, *p2;
  int w, wout;
  __m512d n, thrq, err;
  int flat_y, flat_x;

  inline void advance(int y) {
    prefix_advance_u8(y + 1 < hout ? reg + (y + h) * stride : nullptr,
                      reg + y * stride, W, c1, c2, p1, p2);
  }

  // Upper bound of the non-flat positions >= L: hi |hi| n >= L q.
  inline unsigned candidates(const double* qrow, const float* crow, int x,
                             __mmask8 m, __m512d vl) const {
    const __m512d q = _mm512_maskz_loadu_pd(m, qrow + x);
    const __m512d hi =
        _mm512_add_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, crow + x)), err);
    const __m512d hn = _mm512_mul_pd(hi, _mm512_abs_pd(hi));
    return at_least(_mm512_mask_cmp_pd_mask(m, q, thrq, _CMP_GT_OQ), hn,
                    _mm512_mul_pd(vl, q));
  }

  inline void step(int y, int x, double* qrow, const float* crow, __m512d& ln,
                   __m512d& ld) {
    const __mmask8 m = tail_mask8(wout - x);
    const __m256i s1 =
        _mm256_sub_epi32(_mm256_maskz_loadu_epi32(m, p1 + x + w),
                         _mm256_maskz_loadu_epi32(m, p1 + x));
    const __m256i s2 =
        _mm256_sub_epi32(_mm256_maskz_loadu_epi32(m, p2 + x + w),
                         _mm256_maskz_loadu_epi32(m, p2 + x));
    const __m512d a1 = _mm512_cvtepu32_pd(s1), a2 = _mm512_cvtepu32_pd(s2);
    // Exact: integers below 2^53.
    const __m512d q =
        _mm512_sub_pd(_mm512_mul_pd(n, a2), _mm512_mul_pd(a1, a1));
    _mm512_mask_storeu_pd(qrow + x, m, q);
    const __mmask8 fl = _mm512_mask_cmp_pd_mask(m, q, thrq, _CMP_NGT_UQ);
    if (fl != 0 && flat_y < 0) {
      flat_y = y;
      flat_x = x + __builtin_ctz(fl);
    }
    const __m512d lo =
        _mm512_sub_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, crow + x)), err);
    const __m512d lo_sq = _mm512_mul_pd(lo, _mm512_abs_pd(lo));
    const __mmask8 bl = _mm512_mask_cmp_pd_mask(
        m & static_cast<__mmask8>(~fl), _mm512_mul_pd(lo_sq, ld),
        _mm512_mul_pd(ln, q), _CMP_GT_OQ);
    ln = _mm512_mask_mov_pd(ln, bl, lo_sq);
    ld = _mm512_mask_mov_pd(ld, bl, q);
  }
};

// float32 frames: search_generic.hpp's float64 window sums and bounds (see
// there for why they hold), 8 positions at a time; a prefix is a sum tree
// of depth <= 4 + W / 8 here.

// In-register prefix sum of 8 lanes: lane i += lane i - 1, i - 2, i - 4.
static inline __m512d prefix8(__m512d v) {
  const __m512i z = _mm512_setzero_si512();
  v = _mm512_add_pd(v, _mm512_castsi512_pd(_mm512_alignr_epi64(_mm512_castpd_si512(v), z, 7)));
  v = _mm512_add_pd(v, _mm512_castsi512_pd(_mm512_alignr_epi64(_mm512_castpd_si512(v), z, 6)));
  return _mm512_add_pd(v, _mm512_castsi512_pd(_mm512_alignr_epi64(_mm512_castpd_si512(v), z, 4)));
}

static inline void prefix_advance_f64(const float* rin, const float* rout,
                                      int W, double off, double* FM_R c1,
                                      double* FM_R c2, double* FM_R p1,
                                      double* FM_R p2) {
  const __m512i last = _mm512_set1_epi64(7);
  const __m512d voff = _mm512_set1_pd(off);
  __m512d k1 = _mm512_setzero_pd(), k2 = k1;  // running totals
  p1[0] = p2[0] = 0.0;
  for (int x0 = 0; x0 < W; x0 += 8) {
    const __mmask8 m = tail_mask8(W - x0);
    __m512d v1 = _mm512_maskz_loadu_pd(m, c1 + x0);
    __m512d v2 = _mm512_maskz_loadu_pd(m, c2 + x0);
    if (rin != nullptr) {
      const __m512d a =
          _mm512_sub_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, rin + x0)), voff);
      const __m512d b =
          _mm512_sub_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, rout + x0)), voff);
      _mm512_mask_storeu_pd(c1 + x0, m, _mm512_add_pd(v1, _mm512_sub_pd(a, b)));
      _mm512_mask_storeu_pd(
          c2 + x0, m,
          _mm512_add_pd(v2, _mm512_sub_pd(_mm512_mul_pd(a, a), _mm512_mul_pd(b, b))));
    }
    v1 = prefix8(v1);
    v2 = prefix8(v2);
    _mm512_storeu_pd(p1 + x0 + 1, _mm512_add_pd(v1, k1));
    _mm512_storeu_pd(p2 + x0 + 1, _mm512_add_pd(v2, k2));
    // As in prefix_advance_u8 (the same sums as the stored last lane).
    k1 = _mm512_add_pd(k1, _mm512_permutexvar_pd(last, v1));
    k2 = _mm512_add_pd(k2, _mm512_permutexvar_pd(last, v2));
  }
}

// The float32 Scan of search_two_pass (as LowerBoundScan).
struct F32BoundScan {
  const float* reg;
  std::ptrdiff_t stride;
  int W, h, hout;
  double off;
  double *c1, *c2, *p1, *p2;
  int w, wout;
  __m512d inv_n, d_a1, d_0, d_sq, thr, err;
  int flat_y, flat_x;

  inline void advance(int y) {
    prefix_advance_f64(y + 1 < hout ? reg + (y + h) * stride : nullptr,
                       reg + y * stride, W, off, c1, c2, p1, p2);
  }

  // Ambiguous, or upper bound >= L: hi |hi| >= L * denominator.
  inline unsigned candidates(const double* drow, const float* crow, int x,
                             __mmask8 m, __m512d vl) const {
    const __m512d dh = _mm512_maskz_loadu_pd(m, drow + x);
    const __m512d hi =
        _mm512_add_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, crow + x)), err);
    return at_least(m, _mm512_mul_pd(hi, _mm512_abs_pd(hi)), _mm512_mul_pd(vl, dh)) |
           _mm512_mask_cmp_pd_mask(m, dh, _mm512_setzero_pd(), _CMP_EQ_OQ);
  }

  inline void step(int y, int x, double* drow, const float* crow, __m512d& ln,
                   __m512d& ld) {
    const __mmask8 m = tail_mask8(wout - x);
    const __m512d a1 = _mm512_sub_pd(_mm512_maskz_loadu_pd(m, p1 + x + w),
                                     _mm512_maskz_loadu_pd(m, p1 + x));
    const __m512d a2 = _mm512_sub_pd(_mm512_maskz_loadu_pd(m, p2 + x + w),
                                     _mm512_maskz_loadu_pd(m, p2 + x));
    const __m512d sq = _mm512_mul_pd(_mm512_mul_pd(a1, a1), inv_n);
    const __m512d ss = _mm512_sub_pd(a2, sq);
    // d = gsum (2 e1tot |a1| / n + energy) + 4 u (a2 + a1^2 / n)
    const __m512d d =
        _mm512_fmadd_pd(d_sq, _mm512_add_pd(a2, sq),
                        _mm512_fmadd_pd(d_a1, _mm512_abs_pd(a1), d_0));
    const __m512d sl = _mm512_sub_pd(ss, d), sh = _mm512_add_pd(ss, d);
    const __mmask8 fl = _mm512_mask_cmp_pd_mask(m, sh, thr, _CMP_LE_OQ);
    const __mmask8 sure = _mm512_mask_cmp_pd_mask(m, sl, thr, _CMP_GT_OQ);
    if (fl != 0 && flat_y < 0) {
      flat_y = y;
      flat_x = x + __builtin_ctz(fl);
    }
    const __m512d c = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, crow + x));
    const __m512d lo = _mm512_sub_pd(c, err), hi = _mm512_add_pd(c, err);
    const __m512d zero = _mm512_setzero_pd();
    const __mmask8 lo_neg = _mm512_cmp_pd_mask(lo, zero, _CMP_LT_OQ);
    const __mmask8 hi_neg = _mm512_cmp_pd_mask(hi, zero, _CMP_LT_OQ);
    const __m512d dl = _mm512_mask_blend_pd(lo_neg, sh, sl);
    __m512d dh = _mm512_mask_blend_pd(hi_neg, sl, sh);
    // Ambiguous (neither surely flat nor surely not): 0, rescored; flat: NaN.
    dh = _mm512_maskz_mov_pd(sure, dh);
    dh = _mm512_mask_mov_pd(dh, fl, _mm512_set1_pd(std::numeric_limits<double>::quiet_NaN()));
    _mm512_mask_storeu_pd(drow + x, m, dh);
    const __m512d lo_sq = _mm512_mul_pd(lo, _mm512_abs_pd(lo));
    const __mmask8 bl = _mm512_mask_cmp_pd_mask(
        sure, _mm512_mul_pd(lo_sq, ld), _mm512_mul_pd(ln, dl), _CMP_GT_OQ);
    ln = _mm512_mask_mov_pd(ln, bl, lo_sq);
    ld = _mm512_mask_mov_pd(ld, bl, dl);
  }
};

static void search_u8_avx512(const TemplateData& t, const std::uint8_t* reg,
                             std::ptrdiff_t stride, int W, int hout, int wout,
                             const float* corr, std::size_t cs,
                             const RowParams& rp, Workspace& ws, double* best,
                             int* by, int* bx, int* ncand) {
  usums_init(reg, stride, W, t.h, ws.ucol1.data(), ws.ucol2.data());
  LowerBoundScan scan{reg, stride, W, t.h, hout,
                      ws.ucol1.data(), ws.ucol2.data(), ws.upre1.data(), ws.upre2.data(),
                      t.w, wout,
                      _mm512_set1_pd(rp.n), _mm512_set1_pd(rp.thrq), _mm512_set1_pd(rp.err),
                      -1, 0};
  // ws.hi holds q per position (hout x wout).
  search_two_pass(t, reg, stride, hout, wout, corr, cs, rp, rp.n, scan,
                  ws.hi.data(), best, by, bx, ncand);
}

static void search_f32_avx512(const TemplateData& t, const float* reg,
                              std::ptrdiff_t stride, int W, int hout,
                              int wout, double off, const float* corr,
                              std::size_t cs, const RowParams& rp,
                              Workspace& ws, double* best, int* by, int* bx,
                              int* ncand) {
  sums_init(reg, stride, W, t.h, off, ws.col1.data(), ws.col2.data());
  F32BoundScan scan{reg, stride, W, t.h, hout, off,
                    ws.col1.data(), ws.col2.data(), ws.dpre1.data(), ws.dpre2.data(),
                    t.w, wout,
                    _mm512_set1_pd(rp.inv_n),
                    _mm512_set1_pd(rp.gsum * rp.e1tot * 2.0 * rp.inv_n),
                    _mm512_set1_pd(rp.gsum * rp.energy),
                    _mm512_set1_pd(4.0 * rp.u64),
                    _mm512_set1_pd(rp.thr),
                    _mm512_set1_pd(rp.err),
                    -1, 0};
  // ws.hi holds the upper bound's denominator per position (hout x wout).
  search_two_pass(t, reg, stride, hout, wout, corr, cs, rp, 1.0, scan,
                  ws.hi.data(), best, by, bx, ncand);
}
#endif

}  // namespace FM_KNS
}  // namespace detail
}  // namespace flickermine
