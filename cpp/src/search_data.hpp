// Private to ncc.cpp and its kernels (kernels/kernel_set.hpp): the data the
// NCC search works on, shared by every kernel set. FFT plans and geometry,
// the per-thread work buffers, a template's data and its cached spectra.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "ncc.hpp"

namespace flickermine {
namespace detail {

constexpr int kChunkLanes = 16;  // lanes per FFT chunk (multiple of 8)

// Complex FFT plan of length n: radices, outermost level first, and per-level
// twiddles (cos, sin of 2 pi i k / nn for i < m, k = 1..p-1; nn = p m is the
// sub-transform length at that level).
struct FftPlan {
  int n = 0;
  std::vector<int> radix;
  std::vector<std::size_t> tw_off;
  std::vector<float> tw;

  explicit FftPlan(int len = 1) : n(len) {
    int r = len;
    while (r % 4 == 0) { radix.push_back(4); r /= 4; }
    while (r % 2 == 0) { radix.push_back(2); r /= 2; }
    while (r % 3 == 0) { radix.push_back(3); r /= 3; }
    while (r % 5 == 0) { radix.push_back(5); r /= 5; }
    while (r % 7 == 0) { radix.push_back(7); r /= 7; }
    if (r != 1) throw std::logic_error("FFT length must be 2^a 3^b 5^c 7^d");
    const double two_pi = 6.283185307179586476925286766559;
    int nn = len;
    for (int p : radix) {
      const int m = nn / p;
      tw_off.push_back(tw.size());
      for (int i = 0; i < m; ++i)
        for (int k = 1; k < p; ++k) {
          const double th = two_pi * static_cast<double>(i) * k / nn;
          tw.push_back(static_cast<float>(std::cos(th)));
          tw.push_back(static_cast<float>(std::sin(th)));
        }
      nn = m;
    }
    if (tw.empty()) tw.push_back(0.0f);
  }
};

// FFT size N x M (N even) and the derived sizes of the three passes.
struct Geometry {
  int N = 0, M = 0;   // transform size (rows, columns)
  int Nh = 0, K = 0;  // N / 2, N / 2 + 1 (rows of the half spectrum)
  int C = 0;          // lanes per chunk
  int Kp = 0;         // K rounded up to a multiple of C
  FftPlan pv, ph;     // length Nh (vertical), M (horizontal)
  std::vector<float> untw;  // cos, sin of 2 pi k / N, k = 0..Nh
  std::vector<int> posv;    // where pv's forward transform puts frequency j

  Geometry(int n, int m, int c)
      : N(n), M(m), Nh(n / 2), K(n / 2 + 1), C(c),
        Kp((n / 2 + 1 + c - 1) / c * c), pv(n / 2), ph(m) {
    const double two_pi = 6.283185307179586476925286766559;
    for (int k = 0; k <= Nh; ++k) {
      untw.push_back(static_cast<float>(std::cos(two_pi * k / N)));
      untw.push_back(static_cast<float>(std::sin(two_pi * k / N)));
    }
    // The in-place forward transform (decimation in frequency) leaves
    // frequency j = d0 + p0 (d1 + p1 (d2 + ...)) at d0 n/p0 + d1 n/(p0 p1)
    // + ...: its mixed-radix digits reversed.
    posv.resize(static_cast<std::size_t>(pv.n));
    for (int j = 0; j < pv.n; ++j) {
      int rest = j, span = pv.n, at = 0;
      for (int p : pv.radix) {
        span /= p;
        at += (rest % p) * span;
        rest /= p;
      }
      posv[static_cast<std::size_t>(j)] = at;
    }
  }
};

struct Workspace {
  std::vector<float> a;           // one complex chunk (passes A and C)
  std::vector<float> b_re, b_im;  // untangled half spectrum (pass A)
  std::vector<float> t;           // pass A -> B
  std::vector<float> v;           // pass B -> C
  std::vector<float> corr;        // hout x corr_stride
  int corr_stride = 0;
  std::vector<double> col1, col2, hi, row_hi;
  std::vector<std::uint32_t> ucol1, ucol2;  // uint8 column sums
  std::vector<std::uint32_t> upre1, upre2;  // their prefix sums (AVX-512)
  std::vector<double> dpre1, dpre2;  // prefix sums of col1 / col2

  static void grow(std::vector<float>& v, std::size_t n) {
    if (v.size() < n) v.resize(n);
  }
  static void grow(std::vector<double>& v, std::size_t n) {
    if (v.size() < n) v.resize(n);
  }
  static void grow(std::vector<std::uint32_t>& v, std::size_t n) {
    if (v.size() < n) v.resize(n);
  }
  void reserve(const Geometry& g, int hout, int wout) {
    const std::size_t C = static_cast<std::size_t>(g.C);
    grow(a, static_cast<std::size_t>(g.Nh) * 2 * C);
    grow(b_re, static_cast<std::size_t>(g.Kp) * C);
    grow(b_im, static_cast<std::size_t>(g.Kp) * C);
    grow(t, 2 * static_cast<std::size_t>(g.Kp) * g.M);
    const std::size_t xb = (static_cast<std::size_t>(wout) + C - 1) / C;
    grow(v, xb * g.Kp * 2 * C);
    corr_stride = wout;
    grow(corr, static_cast<std::size_t>(hout) * wout);
    grow(col1, static_cast<std::size_t>(g.M) + 1);
    grow(col2, static_cast<std::size_t>(g.M) + 1);
    grow(ucol1, static_cast<std::size_t>(g.M) + 8);
    grow(ucol2, static_cast<std::size_t>(g.M) + 8);
    grow(upre1, static_cast<std::size_t>(g.M) + 17);
    grow(upre2, static_cast<std::size_t>(g.M) + 17);
    grow(dpre1, static_cast<std::size_t>(g.M) + 17);
    grow(dpre2, static_cast<std::size_t>(g.M) + 17);

    grow(hi, static_cast<std::size_t>(hout) * wout);
    grow(row_hi, static_cast<std::size_t>(hout));
  }
};

struct TemplateData {
  int h = 0, w = 0;
  PixelType type = PixelType::kUint8;
  std::vector<double> tz;  // zero-mean template (float64), h x w
  std::vector<float> tzf;  // the same in float32 (FFT input)
  double tz_sum = 0.0;     // sum of tz (~0, not exactly)
  double ss = 0.0;         // sum of squared deviations
  double norm = 0.0;       // sqrt(ss)
  double norm_f = 0.0;     // L2 norm of tzf
  bool flat = false;
};

struct SpecEntry {
  std::shared_ptr<const Geometry> gp;  // shared per thread and FFT size
  // conj(FFT(T')) / (N M), Kp / C blocks of M elements (pass_b_template).
  std::vector<float> spec;
  explicit SpecEntry(std::shared_ptr<const Geometry> geo)
      : gp(std::move(geo)) {}
  const Geometry& g() const { return *gp; }
};

}  // namespace detail
}  // namespace flickermine
