// Part of one NCC kernel set (see kernel_set.hpp): the ISA-specific search.
// The uint8 search after the correlation written with AVX-512 intrinsics;
// compiled only in the AVX-512 kernel set (FM_AVX512), empty elsewhere. No
// include guard on purpose.
#ifndef FM_KNS
#error "search_u8_avx512.hpp is private to ncc.cpp (included through kernels/kernel_set.hpp)"
#endif

namespace flickermine {
namespace detail {
namespace FM_KNS {

#ifdef FM_AVX512
// The uint8 search after the correlation, AVX-512 (h * w <= 66051, so every
// window sum and sum of squares is < 2^32 and exact modulo 2^32).
//
// Pass 1, per row: the column sums c1/c2 of rows y..y+h-1 are turned into
// prefix sums P[x] = c[0] + ... + c[x - 1] while being moved on to the next
// row (one sweep), window sums are P[x + w] - P[x], and q = n * (sum of
// squared deviations) is stored per position. The best lower bound of
// g = c |c| n / q is kept per lane as a fraction (division free) across
// the whole map, flat windows left out by mask; the first flat window is
// noted. Pass 2 tests every non-flat position's upper bound against the
// best lower bound L by cross-multiplication (hi |hi| n >= L q) and
// rescores the few that pass exactly, in row-major order. No per-row
// reductions, selects or upper-bound map.
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
    v1 = _mm512_add_epi32(v1, k1);
    v2 = _mm512_add_epi32(v2, k2);
    _mm512_storeu_si512(p1 + x0 + 1, v1);
    _mm512_storeu_si512(p2 + x0 + 1, v2);
    k1 = _mm512_permutexvar_epi32(last, v1);
    k2 = _mm512_permutexvar_epi32(last, v2);
  }
}

static inline __mmask8 tail_mask8(int left) {
  return left >= 8 ? static_cast<__mmask8>(0xFF)
                   : static_cast<__mmask8>((1u << left) - 1);
}

// Pass 1 of search_u8_avx512 on 8 positions (x .. x + 7 of row y, masked at
// the row's end): stores q, notes the first flat window, and keeps the per-
// lane best lower bound ln / ld. A struct, not a lambda: the target pragma
// reaches member functions on every compiler.
struct LowerBoundScan {
  const std::uint32_t* p1;
  const std::uint32_t* p2;
  int w, wout;
  __m512d n, thrq, err;
  int flat_y, flat_x;

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

static void search_u8_avx512(const TemplateData& t, const std::uint8_t* reg,
                             std::ptrdiff_t stride, int W, int hout, int wout,
                             const float* corr, std::size_t cs,
                             const RowParams& rp, Workspace& ws, double* best,
                             int* by, int* bx, int* ncand) {
  const int h = t.h, w = t.w;
  std::uint32_t* c1 = ws.ucol1.data();
  std::uint32_t* c2 = ws.ucol2.data();
  std::uint32_t* p1 = ws.upre1.data();
  std::uint32_t* p2 = ws.upre2.data();
  double* qmap = ws.hi.data();  // hout x wout
  usums_init(reg, stride, W, h, c1, c2);
  const __m512d n = _mm512_set1_pd(rp.n), thrq = _mm512_set1_pd(rp.thrq);
  const __m512d err = _mm512_set1_pd(rp.err);
  const __m512d one = _mm512_set1_pd(1.0), ngmax = _mm512_set1_pd(-rp.gmax);
  // Per lane the best lower bound as a fraction ln / ld (ld > 0); two sets
  // to halve the compare-and-blend dependency chains.
  __m512d ln0 = ngmax, ld0 = one, ln1 = ngmax, ld1 = one;
  LowerBoundScan scan{p1, p2, w, wout, n, thrq, err, -1, 0};
  for (int y = 0; y < hout; ++y) {
    prefix_advance_u8(y + 1 < hout ? reg + (y + h) * stride : nullptr,
                      reg + y * stride, W, c1, c2, p1, p2);
    double* qrow = qmap + static_cast<std::size_t>(y) * wout;
    const float* crow = corr + y * cs;
    int x = 0;
    for (; x + 16 <= wout; x += 16) {
      scan.step(y, x, qrow, crow, ln0, ld0);
      scan.step(y, x + 8, qrow, crow, ln1, ld1);
    }
    for (; x < wout; x += 8) scan.step(y, x, qrow, crow, ln0, ld0);
  }
  // The best lower bound L of g (a flat window scores exactly 0).
  const int flat_y = scan.flat_y, flat_x = scan.flat_x;
  double lns = flat_y >= 0 ? 0.0 : -rp.gmax, lds = 1.0;
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
  double lower = lns * rp.n / lds;
  lower = lower < rp.gmax ? lower : rp.gmax;
  // Pass 2. Candidates: hi |hi| n >= L q; the slack covers the rounding of
  // both products (and of L).
  const __m512d vl = _mm512_set1_pd(lower);
  const __m512d slack = _mm512_set1_pd(1e-12);
  *best = -2.0;
  int count = 0;
  for (int y = 0; y < hout; ++y) {
    const double* qrow = qmap + static_cast<std::size_t>(y) * wout;
    const float* crow = corr + y * cs;
    for (int x = 0; x < wout; x += 8) {
      const __mmask8 m = tail_mask8(wout - x);
      const __m512d q = _mm512_maskz_loadu_pd(m, qrow + x);
      const __m512d hi =
          _mm512_add_pd(_mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, crow + x)), err);
      const __m512d hn = _mm512_mul_pd(_mm512_mul_pd(hi, _mm512_abs_pd(hi)), n);
      const __m512d lq = _mm512_mul_pd(vl, q);
      const __m512d lhs = _mm512_fmadd_pd(slack, _mm512_abs_pd(hn), hn);
      const __m512d rhs = _mm512_fnmadd_pd(slack, _mm512_abs_pd(lq), lq);
      unsigned cand = _mm512_mask_cmp_pd_mask(
          _mm512_mask_cmp_pd_mask(m, q, thrq, _CMP_GT_OQ), lhs, rhs,
          _CMP_GE_OQ);
      while (cand != 0) {
        const int xx = x + __builtin_ctz(cand);
        cand &= cand - 1;
        ++count;
        const double s = exact_score(t, reg, stride, y, xx);
        if (s > *best) {
          *best = s;
          *by = y;
          *bx = xx;
        }
      }
    }
  }
  // Flat windows score exactly 0: the first one wins if nothing beats 0
  // (or something ties with it later in row-major order).
  if (flat_y >= 0 && *best <= 0.0 &&
      (*best < 0.0 || flat_y < *by || (flat_y == *by && flat_x < *bx))) {
    *best = 0.0;
    *by = flat_y;
    *bx = flat_x;
  }
  *ncand = count;
}
#endif

}  // namespace FM_KNS
}  // namespace detail
}  // namespace flickermine
