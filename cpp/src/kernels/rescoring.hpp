// Part of one NCC kernel set (see kernel_set.hpp): exact float64 rescoring.
// The score of one window with the reference's semantics, and the direct
// search that rescores every position (small problems). No include guard on
// purpose.
#ifndef FM_KNS
#error "rescoring.hpp is private to ncc.cpp (included through kernels/kernel_set.hpp)"
#endif

namespace flickermine {
namespace detail {
namespace FM_KNS {

static inline double clamp1(double s) {
  return s > 1.0 ? 1.0 : (s < -1.0 ? -1.0 : s);
}

// Exact score of the window at (y, x) of the region (float64, reference
// semantics).
template <class P>
static double exact_score(const TemplateData& t, const P* reg,
                          std::ptrdiff_t stride, int y, int x) {
  const double n = static_cast<double>(t.h) * t.w;
  const P* p = reg + y * stride + x;
  if (sizeof(P) == 1) {
    // Integer pixels: the window sums are exact, one pass suffices.
    double dot, s1, s2;
    window_dot(t.tz.data(), t.h, t.w, p, stride, &dot, &s1, &s2);
    const double q = n * s2 - s1 * s1;  // n * sum of squared deviations
    if (!(q > n * n * kFlatVariance)) return 0.0;
    const double num = dot - (s1 / n) * t.tz_sum;
    return clamp1(num / std::sqrt(t.ss * (q / n)));
  }
  double ss, num;
  window_exact(t.tz.data(), t.h, t.w, p, stride, &ss, &num);
  if (!(ss > n * kFlatVariance)) return 0.0;
  return clamp1(num / std::sqrt(t.ss * ss));
}

// The best window of a search among exactly rescored candidates, taken in
// row-major order (so of tied windows the first stays, as in the reference).
// A struct, not a lambda: the target pragma reaches member functions on
// every compiler.
struct BestWindow {
  double score = -2.0;
  int y = 0, x = 0, rescored = 0;

  template <class P>
  inline void rescore(const TemplateData& t, const P* reg,
                      std::ptrdiff_t stride, int wy, int wx) {
    ++rescored;
    const double s = exact_score(t, reg, stride, wy, wx);
    if (s > score) {
      score = s;
      y = wy;
      x = wx;
    }
  }

  // Flat windows score exactly 0: the first one (fy, fx; fy < 0: none)
  // wins if nothing beats 0, or if what ties with it comes later in
  // row-major order.
  inline void settle_flat(int fy, int fx) {
    if (fy >= 0 && score <= 0.0 &&
        (score < 0.0 || fy < y || (fy == y && fx < x))) {
      score = 0.0;
      y = fy;
      x = fx;
    }
  }
};

// Direct float64 search over every position (small problems).
template <class P>
static void search_direct(const TemplateData& t, const P* reg,
                          std::ptrdiff_t stride, int H, int W,
                          double* best, int* by, int* bx) {
  const int hout = H - t.h + 1, wout = W - t.w + 1;
  BestWindow found;
  for (int y = 0; y < hout; ++y)
    for (int x = 0; x < wout; ++x) found.rescore(t, reg, stride, y, x);
  *best = found.score;
  *by = found.y;
  *bx = found.x;
}

}  // namespace FM_KNS
}  // namespace detail
}  // namespace flickermine
