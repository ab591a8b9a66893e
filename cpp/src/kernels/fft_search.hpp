// Part of one NCC kernel set (see kernel_set.hpp): the FFT search driver.
// Region statistics, the correlation (fft.hpp), score bounds
// (score_bounds.hpp, search_generic.hpp, or search_avx512.hpp in the AVX-512
// set) and exact rescoring (rescoring.hpp) of the candidates. No include guard on
// purpose.
#ifndef FM_KNS
#error "fft_search.hpp is private to ncc.cpp (included through kernels/kernel_set.hpp)"
#endif

namespace flickermine {
namespace detail {
namespace FM_KNS {

#ifdef FM_NCC_DEBUG
using ::flickermine::detail::g_debug_ratio;
#endif

// FFT search: approximate float32 scores with a per-position error bound,
// then float64 rescoring of every position that could be the best.
template <class P>
static void search_fft(const TemplateData& t, const SpecEntry& e,
                       const P* reg, std::ptrdiff_t stride, int H, int W,
                       Workspace& ws, double* best, int* by, int* bx,
                       int* ncand) {
  const Geometry& g = e.g();
  const int hout = H - t.h + 1, wout = W - t.w + 1;
  const bool is_u8 = sizeof(P) == 1;
  const double n = static_cast<double>(t.h) * t.w;
  ws.reserve(g, hout, wout);
  // Region mean (subtracted before the FFT) and energy.
  double sum, sum2;
  region_sums(reg, stride, H, W, &sum, &sum2);
  const double npix = static_cast<double>(H) * W;
  const double mean = sum / npix;
  const float muf = static_cast<float>(mean);
  const double off = is_u8 ? 0.0 : static_cast<double>(muf);
  // Energy of v = pixel - muf (an upper bound robust to cancellation).
  const double dm = mean - static_cast<double>(muf);
  double energy = sum2 - sum * mean;
  energy = (energy > 0.0 ? energy : 0.0) + npix * dm * dm + 1e-14 * sum2;
  const double u32 = 5.9604644775390625e-08;  // 2^-24
  const double u64 = 1.1102230246251565e-16;  // 2^-53
  const double rn = std::sqrt(energy * (1.0 + 1e-6));
  // Bound on |FFT numerator - exact numerator|. By Cauchy-Schwarz the
  // forward-transform and product errors are <= c u32 |T'| |R - mu| with c
  // growing like log2(N M); the observed maximum over adversarial tests
  // (ramps, sinusoids, checkerboards, impulses, near-flat windows) is
  // 1.5 u32 |T'| |R - mu|, and 2.9 over the same kinds of image on regions
  // of 98x105 to 336x336 with and without radix-7 levels (a FM_NCC_DEBUG
  // build), so the margin used here, 3 log2(N M) + 16 (>= 55 there), is
  // >= 18x the largest seen.
  const double lg = std::log2(static_cast<double>(g.N) * g.M);
  const double err_num = (3.0 * lg + 16.0) * u32 * t.norm_f * rn;

  pass_a(reg, stride, H, W, muf, g, ws);
  pass_b_region(g, ws, e.spec.data(), wout);
  float* corr = ws.corr.data();
  const std::size_t cs = static_cast<std::size_t>(ws.corr_stride);
  pass_c(g, ws, hout, wout, corr, cs);
#ifdef FM_NCC_DEBUG
  if (hout * wout * (double)t.h * t.w < 3e8) {
    const double a_unit = u32 * t.norm_f * rn;
    for (int y = 0; y < hout; ++y)
      for (int x = 0; x < wout; ++x) {
        double ss, num;
        window_exact(t.tz.data(), t.h, t.w, reg + y * stride + x, stride, &ss, &num);
        const double r = std::fabs(num - corr[y * cs + x]) / a_unit;
        if (r > g_debug_ratio) g_debug_ratio = r;
      }
  }
#endif

  // Scores are compared in the monotone domain g = s |s| * ss_T = c |c| / ss_W
  // (c = numerator), which needs no square roots.
  const double thr = n * kFlatVariance;
  RowParams rp;
  rp.n = n;
  rp.inv_n = 1.0 / n;
  rp.err = err_num * (1.0 + 1e-9);
  rp.thrq = n * n * kFlatVariance;
  rp.thr = thr;
  rp.gmax = t.ss;
  rp.gsum = 4.0 * (H + W + 4) * u64 * 1.01;
  rp.e1tot = std::sqrt(npix * energy) * (1.0 + 1e-9);
  rp.energy = energy;
  rp.u64 = u64;
  const bool u32_sums = is_u8 && static_cast<double>(t.h) * t.w <= 66051.0;
#ifdef FM_AVX512
  if (u32_sums) {
    search_u8_avx512(t, reinterpret_cast<const std::uint8_t*>(reg), stride, W,
                     hout, wout, corr, cs, rp, ws, best, by, bx, ncand);
    return;
  }
  if constexpr (sizeof(P) == 4) {
    search_f32_avx512(t, reg, stride, W, hout, wout, off, corr, cs, rp, ws,
                      best, by, bx, ncand);
    return;
  }
#endif
  if (!u32_sums) {
    search_generic(t, reg, stride, W, hout, wout, off, corr, cs, rp, ws, best,
                   by, bx, ncand);
    return;
  }
  // uint8, window sums modulo 2^32: row by row (score_row_u8), the rows
  // whose best upper bound reaches the best lower bound rescored.
  double* hg = ws.hi.data();  // q = n * (sum of squared deviations)
  double lower = -t.ss;
  bool any_flat = false;
  double* row_hi = ws.row_hi.data();
  const auto* r8 = reinterpret_cast<const std::uint8_t*>(reg);
  std::uint32_t* u1 = ws.ucol1.data();
  std::uint32_t* u2 = ws.ucol2.data();
  usums_init(r8, stride, W, t.h, u1, u2);
  for (int y = 0; y < hout; ++y) {
    const double lo = score_row_u8(rp, corr + y * cs, u1, u2, t.w, wout,
                                   hg + static_cast<std::size_t>(y) * wout,
                                   &any_flat, &row_hi[y]);
    lower = lo > lower ? lo : lower;
    if (y + 1 < hout) usums_advance(r8, stride, W, t.h, y, u1, u2);
  }
  lower = lower < t.ss ? lower : t.ss;
  // hg holds q per position: rescore, in row-major order, the non-flat
  // positions of those rows whose upper bound reaches `lower`; note the
  // first flat window.
  BestWindow found;
  int flat_y = -1, flat_x = 0;
  for (int y = 0; y < hout; ++y) {
    const double* FM_R hr = hg + static_cast<std::size_t>(y) * wout;
    const float* FM_R cr = corr + y * cs;
    const bool reachable = row_hi[y] >= lower;
    if (!reachable && (!any_flat || flat_y >= 0)) continue;
    for (int x = 0; x < wout; ++x) {
      const double q = hr[x];
      if (!(q > rp.thrq)) {
        if (flat_y < 0) {
          flat_y = y;
          flat_x = x;
        }
        continue;
      }
      if (!reachable) continue;
      const double hi_num = static_cast<double>(cr[x]) + rp.err;
      const double h = hi_num * std::fabs(hi_num) * rp.n / q;
      if (h + 1e-12 * std::fabs(h) >= lower) found.rescore(t, r8, stride, y, x);
    }
  }
  found.settle_flat(flat_y, flat_x);
  *best = found.score;
  *by = found.y;
  *bx = found.x;
  *ncand = found.rescored;
}

}  // namespace FM_KNS
}  // namespace detail
}  // namespace flickermine
