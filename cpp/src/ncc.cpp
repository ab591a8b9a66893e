// NCC template search (OpenCV TM_CCOEFF_NORMED semantics). See ncc.hpp.
//
// Algorithm. The numerator sum(T' * I') equals the cross-correlation of the
// zero-mean template T' with the region (any constant offset of the region
// cancels because T' sums to zero), so it is computed for every position at
// once by a float32 FFT of size N x M >= region (products of 2, 3, 5 and 7),
// with the template spectrum cached per size in the NccTemplate. Window sums
// and sums of squares come from running column sums in float64 (exact for
// uint8 pixels). float32 FFT error is amplified on low-variance windows, so
// every position carries a bound on its error; all positions whose upper
// bound reaches the best lower bound are rescored exactly in float64, and the
// best exact score wins (ties: first in row-major order). Small problems are
// searched directly in float64. A float32 region of whole numbers 0..255 (a
// uint8 frame converted) is copied to bytes and searched as uint8.
//
// The hot kernels live in kernels/ (kernel_set.hpp: the FFT, window
// statistics, error bounds, exact rescoring and the searches), compiled for
// the baseline and, on x86-64 with GCC/Clang, also for AVX2+FMA and for
// AVX-512, chosen at run time (target pragmas, no -march flags: the module
// runs on any x86-64). Their shared data types are in search_data.hpp.
#include "ncc.hpp"
#include "search_data.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace flickermine {
namespace detail {
#ifdef FM_NCC_DEBUG
double g_debug_ratio = 0.0;
#endif
}  // namespace detail
}  // namespace flickermine

#if (defined(__x86_64__) || defined(_M_X64)) && \
    (defined(__GNUC__) || defined(__clang__))
#define FM_X86_DISPATCH 1
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
// GCC 12 warns inside its own AVX-512 headers once their intrinsics are
// inlined (the self-initialised _mm512_undefined_* values, GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#if defined(__GNUC__) && !defined(__clang__)
// The kernels pass vectors only between static inline functions.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define FM_AVX2 1
#define FM_KNS k_avx2
#include "kernels/kernel_set.hpp"
#undef FM_KNS
#undef FM_AVX2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
// AVX-512 (F, DQ, BW, VL: every AVX-512 CPU since Skylake-SP): 16-lane
// float vectors, 32 registers and mask registers for the FFT and scoring.
#if defined(__clang__)
#pragma clang attribute push( \
    __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#endif
#define FM_AVX512 1
#define FM_KNS k_avx512
#include "kernels/kernel_set.hpp"
#undef FM_KNS
#undef FM_AVX512
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#define FM_KNS k_base
#include "kernels/kernel_set.hpp"
#undef FM_KNS

namespace flickermine {
namespace {

using detail::SpecEntry;
using detail::TemplateData;
using detail::Workspace;

// The best kernel set this CPU (and OS: __builtin_cpu_supports checks that
// the OS saves the vector registers) runs.
NccIsa cpu_isa() {
  NccIsa best = NccIsa::kBaseline;
#ifdef FM_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    best = NccIsa::kAvx2;
    if (__builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
      best = NccIsa::kAvx512;
  }
#endif
  return best;
}

// cpu_isa() capped by the environment: FLICKERMINE_NCC_ISA=baseline|avx2
// (FLICKERMINE_NO_AVX2=1 means baseline).
NccIsa default_isa() {
  NccIsa cap = NccIsa::kAvx512;
  if (const char* e = std::getenv("FLICKERMINE_NO_AVX2"))
    if (e[0] != '\0' && e[0] != '0') cap = NccIsa::kBaseline;
  if (const char* e = std::getenv("FLICKERMINE_NCC_ISA")) {
    const std::string v(e);
    if (v == "baseline") cap = NccIsa::kBaseline;
    if (v == "avx2" && cap > NccIsa::kAvx2) cap = NccIsa::kAvx2;
  }
  const NccIsa best = cpu_isa();
  return best < cap ? best : cap;
}

std::atomic<int>& isa_setting() {
  static std::atomic<int> isa{static_cast<int>(default_isa())};
  return isa;
}

NccIsa current_isa() {
  return static_cast<NccIsa>(isa_setting().load(std::memory_order_relaxed));
}

// Calls detail::<kernel set of `isa`>::call.
#ifdef FM_X86_DISPATCH
#define FM_KERNEL(isa, call)                               \
  do {                                                     \
    if ((isa) == NccIsa::kAvx512)                          \
      detail::k_avx512::call;                              \
    else if ((isa) == NccIsa::kAvx2)                       \
      detail::k_avx2::call;                                \
    else                                                   \
      detail::k_base::call;                                \
  } while (0)
#else
#define FM_KERNEL(isa, call) detail::k_base::call
#endif

inline double pixel_at(const ImageView& im, int y, int x) {
  if (im.type == PixelType::kUint8) {
    return static_cast<const std::uint8_t*>(im.data)[y * im.stride + x];
  }
  return static_cast<const float*>(im.data)[y * im.stride + x];
}

void check_view(const ImageView& im, const char* what) {
  if (im.data == nullptr || im.height <= 0 || im.width <= 0 ||
      im.stride < im.width) {
    throw std::invalid_argument(std::string(what) +
                                ": empty image or stride < width");
  }
}

void check_box(const ImageView& im, const PixelBox& b, const char* what) {
  if (b.x1 < 0 || b.y1 < 0 || b.x2 > im.width || b.y2 > im.height ||
      b.x1 >= b.x2 || b.y1 >= b.y2) {
    throw std::invalid_argument(
        std::string(what) + " box [" + std::to_string(b.x1) + ", " +
        std::to_string(b.y1) + ", " + std::to_string(b.x2) + ", " +
        std::to_string(b.y2) + ") is empty or not inside the " +
        std::to_string(im.width) + "x" + std::to_string(im.height) +
        " image");
  }
}

bool is_smooth(int n) {
  for (int p : {2, 3, 5, 7})
    while (n % p == 0) n /= p;
  return n == 1;
}

// Smallest 2^a 3^b 5^c 7^d >= n (even if `even`). The factor 7 lets more
// region sizes find a transform close above them (328 -> 336, not 360).
int fft_size(int n, bool even) {
  int m = std::max(n, even ? 2 : 1);
  while (!is_smooth(m) || (even && (m & 1))) ++m;
  return m;
}

constexpr int kChunk = detail::kChunkLanes;

// Per-thread pool of spectrum buffers: a template's spectra (hundreds of KB
// each) go back here when it is destroyed, so that the next template of the
// thread reuses them instead of faulting in fresh pages.
constexpr std::size_t kMaxPooledBuffers = 8;
constexpr std::size_t kMaxPooledBytes = std::size_t{16} << 20;

template <class T>
struct BufferPool {
  std::vector<std::vector<T>> free;
  static thread_local bool alive;  // false once this thread's pool is gone
  BufferPool() { alive = true; }
  ~BufferPool() { alive = false; }
};
template <class T>
thread_local bool BufferPool<T>::alive = false;

template <class T>
BufferPool<T>& buffer_pool() {
  thread_local BufferPool<T> pool;
  return pool;
}

// A buffer of n elements (contents unspecified).
template <class T>
std::vector<T> take_buffer(std::size_t n) {
  BufferPool<T>& pool = buffer_pool<T>();
  for (std::size_t i = pool.free.size(); i-- > 0;)
    if (pool.free[i].capacity() >= n) {
      std::vector<T> v = std::move(pool.free[i]);
      pool.free.erase(pool.free.begin() + static_cast<std::ptrdiff_t>(i));
      v.resize(n);
      return v;
    }
  return std::vector<T>(n);
}

template <class T>
void give_buffer(std::vector<T>&& v) {
  if (!BufferPool<T>::alive || v.capacity() == 0 ||
      v.capacity() * sizeof(T) > kMaxPooledBytes)
    return;
  BufferPool<T>& pool = buffer_pool<T>();
  if (pool.free.size() >= kMaxPooledBuffers) pool.free.erase(pool.free.begin());
  pool.free.push_back(std::move(v));
}

struct SearchState {
  TemplateData t;
  std::vector<SpecEntry> spectra;  // one per FFT size used
  int last_candidates = 0;  // positions rescored in float64 by the last search
  SearchState() = default;
  SearchState(const SearchState&) = delete;
  SearchState& operator=(const SearchState&) = delete;
  ~SearchState() {
    give_buffer(std::move(t.tz));
    give_buffer(std::move(t.tzf));
    for (SpecEntry& e : spectra) {
      give_buffer(std::move(e.spec));
    }
  }
};

// Per-thread caches shared by all NccTemplate objects of a thread: FFT plans
// and twiddles per FFT size (a few most recent sizes), and the work buffers
// (released when a search leaves them larger than kMaxWorkspaceBytes).
constexpr std::size_t kMaxGeometries = 16;
constexpr std::size_t kMaxWorkspaceBytes = std::size_t{64} << 20;

std::shared_ptr<const detail::Geometry> cached_geometry(int N, int M) {
  thread_local std::vector<std::shared_ptr<const detail::Geometry>> cache;
  for (std::size_t i = 0; i < cache.size(); ++i)
    if (cache[i]->N == N && cache[i]->M == M) {
      if (i + 1 != cache.size()) {  // most recently used last
        auto p = cache[i];
        cache.erase(cache.begin() + static_cast<std::ptrdiff_t>(i));
        cache.push_back(std::move(p));
      }
      return cache.back();
    }
  auto p = std::make_shared<const detail::Geometry>(N, M, kChunk);
  if (cache.size() >= kMaxGeometries) cache.erase(cache.begin());
  cache.push_back(p);
  return p;
}

Workspace& thread_workspace() {
  thread_local Workspace ws;
  return ws;
}

// The bytes of an integer-valued float32 region (NccTemplate::search);
// released when a search leaves them larger than kMaxWorkspaceBytes.
std::vector<std::uint8_t>& thread_bytes() {
  thread_local std::vector<std::uint8_t> bytes;
  if (bytes.capacity() > kMaxWorkspaceBytes) bytes = std::vector<std::uint8_t>();
  return bytes;
}

void trim_workspace(Workspace& ws) {
  const std::size_t bytes =
      sizeof(float) * (ws.a.capacity() + ws.b_re.capacity() +
                       ws.b_im.capacity() + ws.t.capacity() + ws.v.capacity() +
                       ws.corr.capacity()) +
      sizeof(double) * (ws.col1.capacity() + ws.col2.capacity() +
                        ws.hi.capacity() + ws.row_hi.capacity() +
                        ws.dpre1.capacity() + ws.dpre2.capacity()) +
      sizeof(std::uint32_t) * (ws.ucol1.capacity() + ws.ucol2.capacity() +
                               ws.upre1.capacity() + ws.upre2.capacity());
  if (bytes > kMaxWorkspaceBytes) ws = Workspace();
}

}  // namespace

struct NccTemplate::Impl : SearchState {};

#ifdef FM_NCC_DEBUG
int ncc_debug_last_candidates = 0;
#endif

NccTemplate::NccTemplate(const ImageView& image, const PixelBox& box)
    : impl_(new Impl) {
  check_view(image, "template image");
  check_box(image, box, "template");
  TemplateData& t = impl_->t;
  t.h = box.height();
  t.w = box.width();
  t.type = image.type;
  const std::size_t n = static_cast<std::size_t>(t.h) * t.w;
  t.tz = take_buffer<double>(n);  // every element is written below
  double sum = 0.0;
  for (int i = 0; i < t.h; ++i)
    for (int j = 0; j < t.w; ++j) {
      const double v = pixel_at(image, box.y1 + i, box.x1 + j);
      t.tz[static_cast<std::size_t>(i) * t.w + j] = v;
      sum += v;
    }
  const double mean = sum / static_cast<double>(n);
  double ss = 0.0, tsum = 0.0, nf = 0.0;
  t.tzf = take_buffer<float>(n);
  for (std::size_t k = 0; k < n; ++k) {
    const double v = t.tz[k] - mean;
    t.tz[k] = v;
    ss += v * v;
    tsum += v;
    t.tzf[k] = static_cast<float>(v);
    nf += static_cast<double>(t.tzf[k]) * t.tzf[k];
  }
  t.ss = ss;
  t.norm = std::sqrt(ss);
  t.norm_f = std::sqrt(nf);
  t.tz_sum = tsum;
  t.flat = ss <= static_cast<double>(n) * kFlatVariance;
}

NccTemplate::~NccTemplate() = default;
NccTemplate::NccTemplate(NccTemplate&&) noexcept = default;
NccTemplate& NccTemplate::operator=(NccTemplate&&) noexcept = default;

int NccTemplate::height() const { return impl_->t.h; }
int NccTemplate::width() const { return impl_->t.w; }

namespace {

template <class P>
NccMatch search_typed(SearchState& im, const P* reg,
                      std::ptrdiff_t stride, const PixelBox& region) {
  const TemplateData& t = im.t;
  const int H = region.height(), W = region.width();
  const int hout = H - t.h + 1, wout = W - t.w + 1;
  const int N = fft_size(H, true), M = fft_size(W, false);
  // Cost model (arbitrary units): direct float64 vs FFT + bookkeeping.
  const double direct = static_cast<double>(hout) * wout * t.h * t.w;
  const double fft = 6.0 * N * M * std::log2(static_cast<double>(N) * M) +
                     40.0 * hout * wout;
  double best = 0.0;
  int by = 0, bx = 0;
  const NccIsa isa = current_isa();
  if (direct <= fft) {
    im.last_candidates = hout * wout;
    FM_KERNEL(isa, search_direct(t, reg, stride, H, W, &best, &by, &bx));
  } else {
    Workspace& ws = thread_workspace();
    SpecEntry* e = nullptr;
    for (SpecEntry& s : im.spectra)
      if (s.g().N == N && s.g().M == M) e = &s;
    if (e == nullptr) {
      SpecEntry fresh(cached_geometry(N, M));
      const std::size_t ns = static_cast<std::size_t>(fresh.g().Kp) * M;
      fresh.spec = take_buffer<float>(2 * ns);
      FM_KERNEL(isa, make_spectrum(t, fresh.g(), ws, fresh));
      im.spectra.push_back(std::move(fresh));
      e = &im.spectra.back();
    }
    FM_KERNEL(isa, search_fft(t, *e, reg, stride, H, W, ws, &best, &by, &bx,
                              &im.last_candidates));
    trim_workspace(ws);
  }
#ifdef FM_NCC_DEBUG
  ncc_debug_last_candidates = im.last_candidates;
#endif
  return NccMatch{best, region.x1 + bx, region.y1 + by};
}

}  // namespace

NccMatch NccTemplate::search(const ImageView& image, const PixelBox& region) {
  Impl& im = *impl_;
  check_view(image, "image");
  check_box(image, region, "search region");
  if (image.type != im.t.type)
    throw std::invalid_argument("image pixel type differs from the template's");
  if (region.height() < im.t.h || region.width() < im.t.w)
    throw std::invalid_argument(
        "search region " + std::to_string(region.width()) + "x" +
        std::to_string(region.height()) + " is smaller than the " +
        std::to_string(im.t.w) + "x" + std::to_string(im.t.h) + " template");
  if (im.t.flat) return NccMatch{0.0, region.x1, region.y1};
  if (image.type == PixelType::kUint8) {
    const auto* base = static_cast<const std::uint8_t*>(image.data);
    return search_typed(im, base + region.y1 * image.stride + region.x1,
                        image.stride, region);
  }
  const auto* base = static_cast<const float*>(image.data);
  const float* reg = base + region.y1 * image.stride + region.x1;
  // Whole numbers in 0..255 (a uint8 frame converted to float32) are searched
  // as bytes: the uint8 path's exact integer window sums are cheaper than the
  // float64 sums and error bounds any float needs, and the exact rescoring
  // sees the same values, so the result is the same.
  std::vector<std::uint8_t>& bytes = thread_bytes();
  bytes.resize(static_cast<std::size_t>(region.height()) * region.width());
  bool integral = false;
  FM_KERNEL(current_isa(), as_bytes(reg, image.stride, region.height(),
                                     region.width(), bytes.data(), &integral));
  if (integral)
    return search_typed(im, bytes.data(), region.width(), region);
  return search_typed(im, reg, image.stride, region);
}

NccIsa ncc_isa() { return current_isa(); }

NccIsa ncc_best_isa() {
  static const NccIsa best = cpu_isa();
  return best;
}

void ncc_set_isa(NccIsa isa) {
  if (static_cast<int>(isa) < 0 || isa > ncc_best_isa())
    throw std::invalid_argument(std::string("NCC kernel set ") +
                                ncc_isa_name(isa) +
                                " is not available on this machine");
  isa_setting().store(static_cast<int>(isa), std::memory_order_relaxed);
}

const char* ncc_isa_name(NccIsa isa) {
  switch (isa) {
    case NccIsa::kBaseline: return "baseline";
    case NccIsa::kAvx2: return "avx2";
    case NccIsa::kAvx512: return "avx512";
  }
  return "unknown";
}

std::vector<double> ncc_score_map_reference(const ImageView& template_image,
                                            const PixelBox& template_box,
                                            const ImageView& image,
                                            const PixelBox& region) {
  check_view(template_image, "template image");
  check_box(template_image, template_box, "template");
  check_view(image, "image");
  check_box(image, region, "search region");
  const int h = template_box.height(), w = template_box.width();
  if (region.height() < h || region.width() < w)
    throw std::invalid_argument("search region smaller than the template");
  const double n = static_cast<double>(h) * w;
  std::vector<double> tz(static_cast<std::size_t>(h) * w);
  double tsum = 0.0;
  for (int i = 0; i < h; ++i)
    for (int j = 0; j < w; ++j) {
      const double v =
          pixel_at(template_image, template_box.y1 + i, template_box.x1 + j);
      tz[static_cast<std::size_t>(i) * w + j] = v;
      tsum += v;
    }
  const double tmean = tsum / n;
  double tss = 0.0;
  for (double& v : tz) {
    v -= tmean;
    tss += v * v;
  }
  const bool tflat = tss <= n * kFlatVariance;
  const int ho = region.height() - h + 1, wo = region.width() - w + 1;
  std::vector<double> out(static_cast<std::size_t>(ho) * wo, 0.0);
  if (tflat) return out;
  for (int y = 0; y < ho; ++y)
    for (int x = 0; x < wo; ++x) {
      double s = 0.0;
      for (int i = 0; i < h; ++i)
        for (int j = 0; j < w; ++j)
          s += pixel_at(image, region.y1 + y + i, region.x1 + x + j);
      const double mean = s / n;
      double ss = 0.0, num = 0.0;
      for (int i = 0; i < h; ++i)
        for (int j = 0; j < w; ++j) {
          const double d =
              pixel_at(image, region.y1 + y + i, region.x1 + x + j) - mean;
          ss += d * d;
          num += d * tz[static_cast<std::size_t>(i) * w + j];
        }
      double score = 0.0;
      if (ss > n * kFlatVariance)
        score = std::min(1.0, std::max(-1.0, num / std::sqrt(tss * ss)));
      out[static_cast<std::size_t>(y) * wo + x] = score;
    }
  return out;
}

}  // namespace flickermine
