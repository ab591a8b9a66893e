// Part of one NCC kernel set (see kernel_set.hpp): the search after the
// correlation with float64 window sums, in portable vector code: float32
// frames (in every set but AVX-512's, which has search_avx512.hpp) and uint8
// frames whose window sums of squares may pass 2^32 (h * w > 66051, every
// set). No include guard on purpose.
#ifndef FM_KNS
#error "search_generic.hpp is private to ncc.cpp (included through kernels/kernel_set.hpp)"
#endif

namespace flickermine {
namespace detail {
namespace FM_KNS {

// Window sums. c1/c2 hold the float64 column sums of v = pixel - off over
// rows y..y+h-1, moved on one row at a time; each row turns them into prefix
// sums P[x] = c[0] + ... + c[x - 1] and a window's sums are P[x + w] - P[x].
// Rounding: a column sum passes through at most h + 2 (H - h) <= 2H
// additions, each off by at most u (2^-53) times the column's sum of |v|; a
// prefix is a sum tree of depth <= W + 3 (lanes, then the carry); so a
// window sum is off by at most (2H + 2W + 7) u e1 (e1 = the region's sum of
// |v|, bounded by e1tot), and the sums of squares likewise with v^2 and the
// region's energy: inside d below, whose gsum is 4 (H + W + 4) u. uint8
// sums are integers below 2^53, exact.
//
// Per position: ss = a2 - a1^2 / n (n = h w), its error bound
// d = gsum (2 e1tot |a1| / n + energy) + 4 u (a2 + a1^2 / n), flat
// (ss + d <= n kFlatVariance: exact score 0) or surely not flat
// (ss - d > that) or ambiguous (rescored), and the bounds of
// g = s |s| ss_T = c |c| / ss_W (c = the numerator, within err of the FFT's)
// as fractions: lower lo |lo| / (lo < 0 ? ss - d : ss + d), lo = c - err;
// upper hi |hi| / (hi < 0 ? ss + d : ss - d), hi = c + err.
//
// Two passes, as in search_avx512.hpp: pass 1 keeps the best lower bound per
// lane (fractions compared by cross-multiplication, no division) and stores
// the upper bound's denominator per position (NaN: flat; 0: ambiguous);
// pass 2 rescores, in row-major order, every position with
// hi |hi| >= L * denominator, L the best lower bound.

// Lane-generic loads and helpers: V = double (one position) or, with GCC /
// Clang vectors, v4d (four).
template <class V>
static inline V vload(const double* p);
template <class V>
static inline V vload_corr(const float* p);  // the float32 correlation, widened
template <>
inline double vload<double>(const double* p) {
  return *p;
}
template <>
inline double vload_corr<double>(const float* p) {
  return static_cast<double>(*p);
}
static inline void vstore(double* p, double v) { *p = v; }
static inline unsigned lane_bits(bool m) { return m ? 1u : 0u; }
template <class V>
static inline V vabs(const V& v) {
  return sel(v < splat<V>(0.0), -v, v);
}
#if defined(FM_VEC) && defined(FM_SHUF)
#define FM_SEARCH_V4 1
template <>
inline v4d vload<v4d>(const double* p) {
  return load4(p);
}
template <>
inline v4d vload_corr<v4d>(const float* p) {
  return load4(p);
}
static inline void vstore(double* p, const v4d& v) { std::memcpy(p, &v, sizeof v); }
template <class M>  // a comparison's result: a vector of 4 integer lanes
static inline unsigned lane_bits(const M& m) {
#if defined(FM_AVX2) || defined(FM_AVX512)
  __m256d v;
  std::memcpy(&v, &m, sizeof v);
  return static_cast<unsigned>(_mm256_movemask_pd(v));  // the lanes' sign bits
#else
  return (m[0] != 0 ? 1u : 0u) | (m[1] != 0 ? 2u : 0u) | (m[2] != 0 ? 4u : 0u) |
         (m[3] != 0 ? 8u : 0u);
#endif
}
#endif

static inline int lowest_bit(unsigned m) {
  int i = 0;
  while (!(m & 1u)) {
    m >>= 1;
    ++i;
  }
  return i;
}

// Prefix sums of the column sums c1/c2 (p[0] = 0, p[x + 1] = c[0] + ... +
// c[x]), moving the column sums on to the next row when rin is given (row
// rin comes in, row rout goes out).
template <class P>
static void prefix_advance(const P* rin, const P* rout, int W, double off,
                           double* FM_R c1, double* FM_R c2, double* FM_R p1,
                           double* FM_R p2) {
  double k1 = 0.0, k2 = 0.0;  // running totals
  p1[0] = p2[0] = 0.0;
  int x = 0;
#ifdef FM_SEARCH_V4
  const v4d z = {0, 0, 0, 0};
  for (; x + 4 <= W; x += 4) {
    v4d v1 = load4(c1 + x), v2 = load4(c2 + x);
    if (rin != nullptr) {
      const v4d a = load4(rin + x) - off, b = load4(rout + x) - off;
      vstore(c1 + x, v1 + (a - b));
      vstore(c2 + x, v2 + (a * a - b * b));
    }
    // In-register prefix sum: lane i += lane i - 1, then i - 2.
    v1 += __builtin_shufflevector(v1, z, 4, 0, 1, 2);
    v2 += __builtin_shufflevector(v2, z, 4, 0, 1, 2);
    v1 += __builtin_shufflevector(v1, z, 4, 5, 0, 1);
    v2 += __builtin_shufflevector(v2, z, 4, 5, 0, 1);
    vstore(p1 + x + 1, v1 + k1);
    vstore(p2 + x + 1, v2 + k2);
    k1 += v1[3];
    k2 += v2[3];
  }
#endif
  for (; x < W; ++x) {
    const double v1 = c1[x], v2 = c2[x];
    if (rin != nullptr) {
      const double a = static_cast<double>(rin[x]) - off;
      const double b = static_cast<double>(rout[x]) - off;
      c1[x] = v1 + (a - b);
      c2[x] = v2 + (a * a - b * b);
    }
    k1 += v1;
    k2 += v2;
    p1[x + 1] = k1;
    p2[x + 1] = k2;
  }
}

struct GenericBounds {
  const double* p1;
  const double* p2;
  int w;
  double inv_n, d_a1, d_0, d_sq, thr, err;
  int flat_y = -1, flat_x = 0;

  // Pass 1 on the positions x .. x + lanes - 1 of row y.
  template <class V>
  inline void step(int y, int x, double* drow, const float* crow, V& ln, V& ld) {
    const V zero = splat<V>(0.0);
    const V a1 = vload<V>(p1 + x + w) - vload<V>(p1 + x);
    const V a2 = vload<V>(p2 + x + w) - vload<V>(p2 + x);
    const V sq = a1 * a1 * inv_n;
    const V ss = a2 - sq;
    const V d = d_sq * (a2 + sq) + (d_a1 * vabs(a1) + d_0);
    const V sl = ss - d, sh = ss + d;
    const auto flat = sh <= thr;
    const auto sure = sl > thr;
    const unsigned fb = lane_bits(flat);
    if (fb != 0 && flat_y < 0) {
      flat_y = y;
      flat_x = x + lowest_bit(fb);
    }
    const V c = vload_corr<V>(crow + x);
    const V lo = c - err, hi = c + err;
    const V dl = sel(lo < zero, sl, sh);
    V dh = sel(hi < zero, sh, sl);
    dh = sel(sure, dh, zero);  // ambiguous: 0, always rescored
    dh = sel(flat, splat<V>(std::numeric_limits<double>::quiet_NaN()), dh);
    vstore(drow + x, dh);
    const V lo_sq = lo * vabs(lo);
    const auto better = sure & (lo_sq * ld > ln * dl);
    ln = sel(better, lo_sq, ln);
    ld = sel(better, dl, ld);
  }

  // Pass 2: which of the positions x .. x + lanes - 1 are ambiguous or have
  // an upper bound >= L (vl = L), as bits; the slack covers the rounding of
  // both products (and of L).
  template <class V>
  inline unsigned candidates(const double* drow, const float* crow, int x,
                             double vl) const {
    const V dh = vload<V>(drow + x);
    const V hi = vload_corr<V>(crow + x) + err;
    const V hn = hi * vabs(hi);
    const V lq = vl * dh;
    return lane_bits(hn + 1e-12 * vabs(hn) >= lq - 1e-12 * vabs(lq)) |
           lane_bits(dh == splat<V>(0.0));
  }
};

template <class P>
static void search_generic(const TemplateData& t, const P* reg,
                           std::ptrdiff_t stride, int W, int hout, int wout,
                           double off, const float* corr, std::size_t cs,
                           const RowParams& rp, Workspace& ws, double* best,
                           int* by, int* bx, int* ncand) {
  const int h = t.h;
  double* c1 = ws.col1.data();
  double* c2 = ws.col2.data();
  double* p1 = ws.dpre1.data();
  double* p2 = ws.dpre2.data();
  double* dmap = ws.hi.data();  // hout x wout denominators
  sums_init(reg, stride, W, h, off, c1, c2);
  GenericBounds b{p1, p2, t.w, rp.inv_n, rp.gsum * rp.e1tot * 2.0 * rp.inv_n,
                  rp.gsum * rp.energy, 4.0 * rp.u64, rp.thr, rp.err};
  double ln = -rp.gmax, ld = 1.0;  // the best lower bound as ln / ld
#ifdef FM_SEARCH_V4
  v4d vln = splat<v4d>(-rp.gmax), vld = splat<v4d>(1.0);
#endif
  for (int y = 0; y < hout; ++y) {
    prefix_advance(y + 1 < hout ? reg + (y + h) * stride : nullptr,
                   reg + y * stride, W, off, c1, c2, p1, p2);
    double* drow = dmap + static_cast<std::size_t>(y) * wout;
    const float* crow = corr + y * cs;
    int x = 0;
#ifdef FM_SEARCH_V4
    for (; x + 4 <= wout; x += 4) b.step(y, x, drow, crow, vln, vld);
#endif
    for (; x < wout; ++x) b.step(y, x, drow, crow, ln, ld);
  }
#ifdef FM_SEARCH_V4
  for (int j = 0; j < 4; ++j)
    if (vln[j] * ld > ln * vld[j]) {
      ln = vln[j];
      ld = vld[j];
    }
#endif
  // A flat window scores exactly 0.
  if (b.flat_y >= 0 && !(ln > 0.0)) {
    ln = 0.0;
    ld = 1.0;
  }
  double lower = ln / ld;
  lower = lower < rp.gmax ? lower : rp.gmax;
  BestWindow found;
  for (int y = 0; y < hout; ++y) {
    const double* drow = dmap + static_cast<std::size_t>(y) * wout;
    const float* crow = corr + y * cs;
    int x = 0;
#ifdef FM_SEARCH_V4
    for (; x + 4 <= wout; x += 4)
      for (unsigned cand = b.candidates<v4d>(drow, crow, x, lower); cand != 0; cand &= cand - 1)
        found.rescore(t, reg, stride, y, x + lowest_bit(cand));
#endif
    for (; x < wout; ++x)
      if (b.candidates<double>(drow, crow, x, lower) != 0) found.rescore(t, reg, stride, y, x);
  }
  found.settle_flat(b.flat_y, b.flat_x);
  *best = found.score;
  *by = found.y;
  *bx = found.x;
  *ncand = found.rescored;
}

#ifdef FM_SEARCH_V4
#undef FM_SEARCH_V4
#endif

}  // namespace FM_KNS
}  // namespace detail
}  // namespace flickermine
