// Part of one NCC kernel set (see kernel_set.hpp): error bounds of the FFT
// scores. The parameters of the bounds every search uses, the lane helpers
// (splat, sel, lnot) of the portable vector code, and the uint8 bounds from
// window sums modulo 2^32, row by row (score_row_u8), so that only positions
// that could be the best are rescored exactly. No include guard on purpose.
#ifndef FM_KNS
#error "score_bounds.hpp is private to ncc.cpp (included through kernels/kernel_set.hpp)"
#endif

namespace flickermine {
namespace detail {
namespace FM_KNS {

struct RowParams {
  double n, inv_n, err, thrq, thr, gmax, gsum, e1tot, energy, u64;
};

template <class V>
static inline V splat(double v);
template <>
inline double splat<double>(double v) {
  return v;
}
static inline double sel(bool m, double a, double b) { return m ? a : b; }
static inline bool lnot(bool m) { return !m; }
#ifdef FM_VEC
typedef long long v4i __attribute__((vector_size(32)));
template <>
inline v4d splat<v4d>(double v) {
  return v4d{v, v, v, v};
}
template <class M>
static inline v4d sel(const M& m, const v4d& a, const v4d& b) {
  const v4i mi = (v4i)m;
  return (v4d)(((v4i)a & mi) | ((v4i)b & ~mi));
}
template <class M>
static inline M lnot(const M& m) {
  return ~m;
}
#endif

#ifdef FM_VEC
typedef unsigned int v4u __attribute__((vector_size(16)));
typedef int v4s __attribute__((vector_size(16)));
static inline v4u loadu4(const std::uint32_t* p) {
  v4u v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
#endif

// Scores one output row from the column sums c1/c2 (mod 2^32) of its h
// rows (window sums by a running prefix of c[x + w] - c[x]), without
// divisions: per lane, the best lower and upper bounds g = num / q are kept
// as fractions (q > 0) and compared by cross-multiplication. Stores
// q = n * (sum of squared deviations) per position in qrow; returns the
// row's best lower bound and stores its best upper bound (flat windows
// excluded) in *row_hi.
static double score_row_u8(const RowParams& rp, const float* c,
                           const std::uint32_t* FM_R c1,
                           const std::uint32_t* FM_R c2, int w, int wout,
                           double* FM_R qrow, bool* any_flat, double* row_hi) {
  std::uint32_t a = 0, b = 0;
  for (int x = 0; x < w; ++x) {
    a += c1[x];
    b += c2[x];
  }
  int x = 0;
  double ln = -rp.gmax, ld = 1.0, hn = -rp.gmax, hd = 1.0;
#if defined(FM_VEC) && defined(FM_SHUF)
  const v4d one = splat<v4d>(1.0), zero = splat<v4d>(0.0);
  const v4d ngmax = splat<v4d>(-rp.gmax);
  // Two sets of per-lane fractions (even / odd groups) to break the
  // compare-and-select dependency chains.
  v4d vln0 = ngmax, vld0 = one, vhn0 = ngmax, vhd0 = one;
  v4d vln1 = ngmax, vld1 = one, vhn1 = ngmax, vhd1 = one;
  v4i vfl = {0, 0, 0, 0};
  const v4u sgnbit = {0x80000000u, 0x80000000u, 0x80000000u, 0x80000000u};
  const v4u z = {0, 0, 0, 0};
  const v4d two31 = splat<v4d>(2147483648.0);
  // Running sums s(x) = s(x - 1) + c[x + w - 1] - c[x - 1]: lane j of the
  // group starting at x takes d = c[x + w - 1 + j] - c[x - 1 + j], with
  // d = s(0) for x + j = 0.
  v4u car1 = {0, 0, 0, 0}, car2 = car1;
  auto group = [&](int xg, v4u d1, v4u d2, v4d& vln, v4d& vld, v4d& vhn,
                   v4d& vhd) {
    d1 += __builtin_shufflevector(d1, z, 4, 0, 1, 2);
    d2 += __builtin_shufflevector(d2, z, 4, 0, 1, 2);
    d1 += __builtin_shufflevector(d1, z, 4, 5, 0, 1);
    d2 += __builtin_shufflevector(d2, z, 4, 5, 0, 1);
    const v4u u1 = d1 + car1, u2 = d2 + car2;
    car1 = __builtin_shufflevector(u1, u1, 3, 3, 3, 3);
    car2 = __builtin_shufflevector(u2, u2, 3, 3, 3, 3);
    const v4d a1 = __builtin_convertvector((v4s)u1, v4d);
    const v4d a2 = __builtin_convertvector((v4s)(u2 ^ sgnbit), v4d) + two31;
    const v4d q = rp.n * a2 - a1 * a1;  // exact (integers < 2^53)
    std::memcpy(qrow + xg, &q, sizeof q);
    const auto fl = lnot(q > rp.thrq);
    vfl |= (v4i)fl;
    const v4d cc = load4(c + xg);
    const v4d lo_num = cc - rp.err, hi_num = cc + rp.err;
    v4d lo_sq = lo_num * sel(lo_num < zero, -lo_num, lo_num);
    v4d hi_sq = hi_num * sel(hi_num < zero, -hi_num, hi_num);
    lo_sq = sel(fl, zero, lo_sq);  // a flat window scores exactly 0
    hi_sq = sel(fl, ngmax, hi_sq);
    const v4d qq = sel(fl, one, q);
    const auto bl = lo_sq * vld > vln * qq;
    vln = sel(bl, lo_sq, vln);
    vld = sel(bl, qq, vld);
    const auto bh = hi_sq * vhd > vhn * qq;
    vhn = sel(bh, hi_sq, vhn);
    vhd = sel(bh, qq, vhd);
  };
  if (wout >= 4) {
    group(0, v4u{a, c1[w] - c1[0], c1[w + 1] - c1[1], c1[w + 2] - c1[2]},
          v4u{b, c2[w] - c2[0], c2[w + 1] - c2[1], c2[w + 2] - c2[2]}, vln0, vld0, vhn0, vhd0);
    x = 4;
    for (; x + 8 <= wout; x += 8) {
      group(x, loadu4(c1 + x + w - 1) - loadu4(c1 + x - 1),
            loadu4(c2 + x + w - 1) - loadu4(c2 + x - 1), vln1, vld1, vhn1,
            vhd1);
      group(x + 4, loadu4(c1 + x + w + 3) - loadu4(c1 + x + 3),
            loadu4(c2 + x + w + 3) - loadu4(c2 + x + 3), vln0, vld0, vhn0,
            vhd0);
    }
    if (x + 4 <= wout) {
      group(x, loadu4(c1 + x + w - 1) - loadu4(c1 + x - 1),
            loadu4(c2 + x + w - 1) - loadu4(c2 + x - 1), vln1, vld1, vhn1,
            vhd1);
      x += 4;
    }
  }
  if (vfl[0] | vfl[1] | vfl[2] | vfl[3]) *any_flat = true;
  const v4d rln[2] = {vln0, vln1}, rld[2] = {vld0, vld1};
  const v4d rhn[2] = {vhn0, vhn1}, rhd[2] = {vhd0, vhd1};
  for (int k = 0; k < 2; ++k)
    for (int j = 0; j < 4; ++j) {
      if (rln[k][j] * ld > ln * rld[k][j]) {
        ln = rln[k][j];
        ld = rld[k][j];
      }
      if (rhn[k][j] * hd > hn * rhd[k][j]) {
        hn = rhn[k][j];
        hd = rhd[k][j];
      }
    }
  if (x > 0) {
    a = car1[0];
    b = car2[0];
  }
#endif
  for (; x < wout; ++x) {
    if (x > 0) {
      a += c1[x + w - 1] - c1[x - 1];
      b += c2[x + w - 1] - c2[x - 1];
    }
    const double a1 = static_cast<double>(a), a2 = static_cast<double>(b);
    const double q = rp.n * a2 - a1 * a1;
    qrow[x] = q;
    const double cc = static_cast<double>(c[x]);
    const double lo_num = cc - rp.err, hi_num = cc + rp.err;
    double lo_sq = lo_num * std::fabs(lo_num), hi_sq = hi_num * std::fabs(hi_num);
    double qq = q;
    if (!(q > rp.thrq)) {
      *any_flat = true;
      lo_sq = 0.0;
      hi_sq = -rp.gmax;
      qq = 1.0;
    }
    if (lo_sq * ld > ln * qq) {
      ln = lo_sq;
      ld = qq;
    }
    if (hi_sq * hd > hn * qq) {
      hn = hi_sq;
      hd = qq;
    }
  }
  // ln / ld etc. are g / n; the slack covers the rounding of the products.
  const double hi = hn * rp.n / hd;
  *row_hi = hi + 1e-12 * std::fabs(hi);
  return ln * rp.n / ld;
}

}  // namespace FM_KNS
}  // namespace detail
}  // namespace flickermine
