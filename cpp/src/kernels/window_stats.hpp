// Part of one NCC kernel set (see kernel_set.hpp): window statistics. Sums
// and sums of squares of the region and of every h x w window (running column
// sums in float64, or modulo 2^32 for uint8), and the one- and two-pass
// float64 statistics of a single window. No include guard on purpose.
#ifndef FM_KNS
#error "window_stats.hpp is private to ncc.cpp (included through kernels/kernel_set.hpp)"
#endif

namespace flickermine {
namespace detail {
namespace FM_KNS {

// Explicit 4 x float64 vectors (GCC/Clang vector extensions): float64
// reductions are not vectorised by compilers without -ffast-math.
#if defined(__GNUC__) || defined(__clang__)
#define FM_VEC 1
typedef double v4d __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef unsigned char v4b __attribute__((vector_size(4)));
static inline v4d load4(const double* p) {
  v4d v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
static inline v4d load4(const float* p) {
  v4f v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_convertvector(v, v4d);
}
static inline v4d load4(const std::uint8_t* p) {
  v4b v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_convertvector(v, v4d);
}
static inline double hsum(const v4d& v) { return (v[0] + v[2]) + (v[1] + v[3]); }
#endif

// The first pass over a float32 region reads it from memory row by row;
// rows are short and lie pages apart, so the hardware prefetchers start
// afresh on every row: ask for the row kPrefetchRows ahead, one request per
// cache line.
constexpr int kPrefetchRows = 4;
template <class P>
static inline void prefetch_row(const P* row, int W) {
#if defined(__GNUC__) || defined(__clang__)
  const char* p = reinterpret_cast<const char*>(row);
  const std::size_t bytes = static_cast<std::size_t>(W) * sizeof(P);
  for (std::size_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o);
#else
  (void)row;
  (void)W;
#endif
}

// Sum and sum of squares of the H x W region (float64; exact for uint8).
template <class P>
static void region_sums(const P* img, std::ptrdiff_t stride, int H, int W,
                        double* sum, double* sum2) {
  if (sizeof(P) == 1) {
    std::int64_t a = 0, b = 0;
    if (W <= 60000) {
      for (int y = 0; y < H; ++y) {
        const P* FM_R r = img + y * stride;
        std::uint32_t ra = 0, rb = 0;
        for (int x = 0; x < W; ++x) {
          const std::uint32_t v = static_cast<std::uint32_t>(r[x]);
          ra += v;
          rb += v * v;
        }
        a += ra;
        b += rb;
      }
      *sum = static_cast<double>(a);
      *sum2 = static_cast<double>(b);
      return;
    }
    for (int y = 0; y < H; ++y) {
      const P* FM_R r = img + y * stride;
      std::uint32_t ra = 0, rb = 0;  // W * 65025 < 2^32 for W < 66051
      int x0 = 0;
      while (x0 < W) {
        const int x1 = std::min(W, x0 + 60000);
        for (int x = x0; x < x1; ++x) {
          const std::uint32_t v = r[x];
          ra += v;
          rb += v * v;
        }
        a += ra;
        b += rb;
        ra = rb = 0;
        x0 = x1;
      }
    }
    *sum = static_cast<double>(a);
    *sum2 = static_cast<double>(b);
    return;
  }
  double a = 0.0, b = 0.0;
#ifdef FM_AVX512
  // 16 pixels a step in two 8-lane float64 vectors. The portable loop below
  // widens 4 at a time, with 128-bit loads and inserts: this one takes about
  // a quarter less time on a 328x328 region (a 128x128 template's); on
  // smaller regions the first read of the pixels from memory dominates
  // either way. Per row a lane sums W / 16 values, so the rounding is no
  // worse than the portable loop's.
  if constexpr (sizeof(P) == 4) {
    for (int y = 0; y < H; ++y) {
      const float* FM_R r = reinterpret_cast<const float*>(img + y * stride);
      if (y + kPrefetchRows < H) prefetch_row(img + (y + kPrefetchRows) * stride, W);
      __m512d s0 = _mm512_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
      int x = 0;
      for (; x + 16 <= W; x += 16) {
        const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(r + x));
        const __m512d u = _mm512_cvtps_pd(_mm256_loadu_ps(r + x + 8));
        s0 = _mm512_add_pd(s0, v);
        q0 = _mm512_fmadd_pd(v, v, q0);
        s1 = _mm512_add_pd(s1, u);
        q1 = _mm512_fmadd_pd(u, u, q1);
      }
      for (; x < W; x += 8) {
        const __m512d v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(tail_mask8(W - x), r + x));
        s0 = _mm512_add_pd(s0, v);
        q0 = _mm512_fmadd_pd(v, v, q0);
      }
      a += _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
      b += _mm512_reduce_add_pd(_mm512_add_pd(q0, q1));
    }
    *sum = a;
    *sum2 = b;
    return;
  }
#endif
  for (int y = 0; y < H; ++y) {
    const P* FM_R r = img + y * stride;
    int x = 0;
    if (y + kPrefetchRows < H) prefetch_row(r + kPrefetchRows * stride, W);
#ifdef FM_VEC
    v4d va = {0, 0, 0, 0}, vb = va, vc = va, vd = va;
    for (; x + 8 <= W; x += 8) {
      const v4d v = load4(r + x), w = load4(r + x + 4);
      va += v;
      vb += v * v;
      vc += w;
      vd += w * w;
    }
    a += hsum(va + vc);
    b += hsum(vb + vd);
#endif
    for (; x < W; ++x) {
      const double v = static_cast<double>(r[x]);
      a += v;
      b += v * v;
    }
  }
  *sum = a;
  *sum2 = b;
}

// Window sums over h x w windows of v = pixel - off, one output row at a
// time: c1/c2 hold the column sums of rows y..y+h-1. S is std::int64_t for
// uint8 pixels (exact), double for float32.
template <class P, class S>
static void sums_init(const P* img, std::ptrdiff_t stride, int W, int h,
                      double off, S* FM_R c1, S* FM_R c2) {
  for (int x = 0; x < W; ++x) c1[x] = c2[x] = 0;
  for (int i = 0; i < h; ++i) {
    const P* FM_R r = img + i * stride;
    for (int x = 0; x < W; ++x) {
      const S v = static_cast<S>(r[x]) - static_cast<S>(off);
      c1[x] += v;
      c2[x] += v * v;
    }
  }
}

// One pass over an h x w window: sum(t * p), sum(p), sum(p^2) in float64.
template <class P>
static void window_dot(const double* tz, int h, int w, const P* p,
                       std::ptrdiff_t stride, double* dot, double* s1,
                       double* s2) {
  double d = 0.0, a = 0.0, b = 0.0;
#ifdef FM_VEC
  v4d vd0 = {0, 0, 0, 0}, vd1 = vd0, va = vd0, vb = vd0;
#endif
  for (int i = 0; i < h; ++i) {
    const double* FM_R t = tz + static_cast<std::size_t>(i) * w;
    const P* FM_R r = p + i * stride;
    int j = 0;
#ifdef FM_VEC
    for (; j + 8 <= w; j += 8) {
      const v4d x0 = load4(r + j), x1 = load4(r + j + 4);
      vd0 += load4(t + j) * x0;
      vd1 += load4(t + j + 4) * x1;
      va += x0 + x1;
      vb += x0 * x0 + x1 * x1;
    }
#endif
    for (; j < w; ++j) {
      const double v = static_cast<double>(r[j]);
      d += t[j] * v;
      a += v;
      b += v * v;
    }
  }
#ifdef FM_VEC
  d += hsum(vd0 + vd1);
  a += hsum(va);
  b += hsum(vb);
#endif
  *dot = d;
  *s1 = a;
  *s2 = b;
}

// Exact window statistics as the float64 reference computes them (two
// passes): sum of squared deviations and numerator.
template <class P>
static void window_exact(const double* tz, int h, int w, const P* p,
                         std::ptrdiff_t stride, double* ss_out,
                         double* num_out) {
  double sum = 0.0;
#ifdef FM_VEC
  v4d vs = {0, 0, 0, 0};
#endif
  for (int i = 0; i < h; ++i) {
    const P* FM_R r = p + i * stride;
    int j = 0;
#ifdef FM_VEC
    for (; j + 4 <= w; j += 4) vs += load4(r + j);
#endif
    for (; j < w; ++j) sum += static_cast<double>(r[j]);
  }
#ifdef FM_VEC
  sum += hsum(vs);
#endif
  const double mean = sum / (static_cast<double>(h) * w);
  double ss = 0.0, num = 0.0;
#ifdef FM_VEC
  v4d va = {0, 0, 0, 0}, vn = va;
  const v4d vm = {mean, mean, mean, mean};
#endif
  for (int i = 0; i < h; ++i) {
    const double* FM_R t = tz + static_cast<std::size_t>(i) * w;
    const P* FM_R r = p + i * stride;
    int j = 0;
#ifdef FM_VEC
    for (; j + 4 <= w; j += 4) {
      const v4d d = load4(r + j) - vm;
      va += d * d;
      vn += d * load4(t + j);
    }
#endif
    for (; j < w; ++j) {
      const double d = static_cast<double>(r[j]) - mean;
      ss += d * d;
      num += d * t[j];
    }
  }
#ifdef FM_VEC
  ss += hsum(va);
  num += hsum(vn);
#endif
  *ss_out = ss;
  *num_out = num;
}

// Copies an H x W float32 region into `dst` (H x W bytes, row-major) when
// every pixel is an integer in [0, 255], as a uint8 frame converted to
// float32 is: *ok; false at the first row holding any other value (NaN
// included), `dst` then unspecified. A row is checked without branches, so
// that it vectorises, and rows one at a time.
static void as_bytes(const float* img, std::ptrdiff_t stride, int H, int W,
                     std::uint8_t* FM_R dst, bool* ok) {
  *ok = false;
  for (int y = 0; y < H; ++y) {
    const float* FM_R r = img + y * stride;
    std::uint8_t* FM_R d = dst + static_cast<std::size_t>(y) * W;
    if (y + kPrefetchRows < H) prefetch_row(r + kPrefetchRows * stride, W);  // see region_sums
#if defined(FM_AVX512)
    const __m512 zero = _mm512_setzero_ps(), top = _mm512_set1_ps(255.0f);
    __mmask16 bad = 0;
    for (int x0 = 0; x0 < W; x0 += 16) {
      const __mmask16 m =
          W - x0 >= 16 ? static_cast<__mmask16>(0xFFFF)
                       : static_cast<__mmask16>((1u << (W - x0)) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(m, r + x0);
      // Ordered compares: a NaN lane is never good.
      __mmask16 good = _mm512_mask_cmp_ps_mask(m, v, zero, _CMP_GE_OQ);
      good = _mm512_mask_cmp_ps_mask(good, v, top, _CMP_LE_OQ);
      good = _mm512_mask_cmp_ps_mask(
          good, v, _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC), _CMP_EQ_OQ);
      bad = static_cast<__mmask16>(bad | (m & ~good));
      _mm_mask_storeu_epi8(d + x0, m, _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v)));
    }
#else
    int bad = 0;
    int x = 0;
#if defined(FM_AVX2)
    const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(255.0f);
    // Byte 0 of each 32-bit lane, per 128-bit half, then the two halves' low
    // words side by side.
    const __m256i low_bytes = _mm256_setr_epi8(
        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i halves = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
    for (; x + 8 <= W; x += 8) {
      const __m256 v = _mm256_loadu_ps(r + x);
      // max(v, 0) is 0 for a NaN v; the conversion back tells any change.
      const __m256i i = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(v, zero), top));
      bad |= _mm256_movemask_ps(_mm256_cmp_ps(_mm256_cvtepi32_ps(i), v, _CMP_NEQ_UQ));
      const __m256i b = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(i, low_bytes), halves);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(d + x), _mm256_castsi256_si128(b));
    }
#endif
    for (; x < W; ++x) {
      const float v = r[x];
      // Clamped first (a NaN to 0: max and min in this order), so that the
      // conversion is defined; any change marks the row.
      const int i = static_cast<int>(std::min(255.0f, std::max(0.0f, v)));
      bad |= static_cast<float>(i) != v;
      d[x] = static_cast<std::uint8_t>(i);
    }
#endif
    if (bad) return;
  }
  *ok = true;
}

// uint8 pixels with h * w <= 66051: every window sum and sum of squares is
// < 2^32, so column sums and row prefix sums kept modulo 2^32 give them
// exactly (integer adds: no float64 latency chains).
static void usums_init(const std::uint8_t* img, std::ptrdiff_t stride, int W,
                       int h, std::uint32_t* FM_R c1, std::uint32_t* FM_R c2) {
  for (int x = 0; x < W; ++x) c1[x] = c2[x] = 0;
  for (int i = 0; i < h; ++i) {
    const std::uint8_t* FM_R r = img + i * stride;
    for (int x = 0; x < W; ++x) {
      const std::uint32_t v = r[x];
      c1[x] += v;
      c2[x] += v * v;
    }
  }
}

static void usums_advance(const std::uint8_t* img, std::ptrdiff_t stride,
                          int W, int h, int y, std::uint32_t* FM_R c1,
                          std::uint32_t* FM_R c2) {
  const std::uint8_t* FM_R rin = img + (y + h) * stride;
  const std::uint8_t* FM_R rout = img + y * stride;
  for (int x = 0; x < W; ++x) {
    const std::uint32_t vi = rin[x], vo = rout[x];
    c1[x] += vi - vo;
    c2[x] += vi * vi - vo * vo;
  }
}

}  // namespace FM_KNS
}  // namespace detail
}  // namespace flickermine
