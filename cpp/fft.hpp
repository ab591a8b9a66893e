// Private to ncc.cpp: the hot kernels of the NCC search (vector FFT,
// spectrum product, window sums, exact refinement). ncc.cpp includes this
// file three times, compiled for baseline x86-64/aarch64 and (x86-64 only)
// under AVX2+FMA and AVX-512 target pragmas, each time inside a different
// namespace FM_KNS, and picks one at run time. No include guard on purpose.
//
// The FFT is a mixed-radix (2, 3, 4, 5) in-place transform (decimation in
// frequency forward, in time inverse) in which every element is a vector of
// kChunkLanes complex values (16 real parts, then 16 imaginary parts): the
// butterflies run over contiguous memory with a scalar twiddle, written with
// generic vectors (one AVX-512 register, two AVX or four SSE/NEON ones).
#ifndef FM_KNS
#error "fft.hpp is private to ncc.cpp"
#endif
#ifndef FM_FFT_COMMON
#define FM_FFT_COMMON
namespace flickermine {
namespace detail {
constexpr int kChunkLanes = 16;  // lanes per chunk (multiple of 8)
}  // namespace detail
}  // namespace flickermine
#endif

namespace flickermine {
namespace detail {
namespace FM_KNS {

#define FM_R __restrict
#ifndef FM_INLINE
#if defined(__GNUC__) || defined(__clang__)
#define FM_INLINE static inline __attribute__((always_inline))
#else
#define FM_INLINE static inline
#endif
#endif
#ifdef FM_NCC_DEBUG
using ::flickermine::detail::g_debug_ratio;
#endif

// Vector of VW floats: GCC/Clang generic vectors of one register, 16 lanes
// (AVX-512), 8 (AVX2) or 4 (SSE, NEON: wider ones are split into register
// pairs, and the butterflies' arrays of them spill), plain float elsewhere.
// vt: 8 lanes, for the 8 x 8 shuffle transposes. Lane counts are multiples
// of VW.
#if defined(__GNUC__) || defined(__clang__)
#if defined(FM_AVX512)
typedef float vf __attribute__((vector_size(64)));
#elif defined(FM_AVX2)
typedef float vf __attribute__((vector_size(32)));
#else
typedef float vf __attribute__((vector_size(16)));
#endif
typedef float vt __attribute__((vector_size(32)));
constexpr std::size_t VW = sizeof(vf) / sizeof(float);
template <class V = vf>
static inline V L(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
static inline void S(float* p, const V& v) {
  std::memcpy(p, &v, sizeof v);
}
#else
typedef float vf;
constexpr std::size_t VW = 1;
static inline vf L(const float* p) { return *p; }
static inline void S(float* p, vf v) { *p = v; }
#endif

// Transpose of a 16 x 16 block of floats with row strides ss (source) and
// ds (destination): dst[c * ds + r] = src[r * ss + c].
#if (defined(__GNUC__) || defined(__clang__)) && defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define FM_SHUF 1
#endif
#endif
#if defined(FM_SHUF) && defined(FM_AVX512)
// Four rounds of "row i and row i + 8 interleaved into rows 2i, 2i + 1":
// each round rotates the 4 + 4 index bits of (row, column) by one, so four
// give the transpose; 64 two-register shuffles.
#define FM_ILO(a, b)                                                      \
  __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, \
                          22, 7, 23)
#define FM_IHI(a, b)                                                       \
  __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, \
                          14, 30, 15, 31)
#define FM_ROUND(f, t)                                              \
  t##0 = FM_ILO(f##0, f##8), t##1 = FM_IHI(f##0, f##8);             \
  t##2 = FM_ILO(f##1, f##9), t##3 = FM_IHI(f##1, f##9);             \
  t##4 = FM_ILO(f##2, f##10), t##5 = FM_IHI(f##2, f##10);           \
  t##6 = FM_ILO(f##3, f##11), t##7 = FM_IHI(f##3, f##11);           \
  t##8 = FM_ILO(f##4, f##12), t##9 = FM_IHI(f##4, f##12);           \
  t##10 = FM_ILO(f##5, f##13), t##11 = FM_IHI(f##5, f##13);         \
  t##12 = FM_ILO(f##6, f##14), t##13 = FM_IHI(f##6, f##14);         \
  t##14 = FM_ILO(f##7, f##15), t##15 = FM_IHI(f##7, f##15)
static inline void tr16(const float* FM_R src, std::size_t ss,
                        float* FM_R dst, std::size_t ds) {
  static_assert(kChunkLanes == 16 && VW == 16, "tr16 assumes 16 lanes");
  vf a0 = L(src), a1 = L(src + ss), a2 = L(src + 2 * ss),
     a3 = L(src + 3 * ss), a4 = L(src + 4 * ss), a5 = L(src + 5 * ss),
     a6 = L(src + 6 * ss), a7 = L(src + 7 * ss), a8 = L(src + 8 * ss),
     a9 = L(src + 9 * ss), a10 = L(src + 10 * ss), a11 = L(src + 11 * ss),
     a12 = L(src + 12 * ss), a13 = L(src + 13 * ss), a14 = L(src + 14 * ss),
     a15 = L(src + 15 * ss);
  vf b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15;
  FM_ROUND(a, b);
  FM_ROUND(b, a);
  FM_ROUND(a, b);
  FM_ROUND(b, a);
  S(dst, a0), S(dst + ds, a1), S(dst + 2 * ds, a2), S(dst + 3 * ds, a3);
  S(dst + 4 * ds, a4), S(dst + 5 * ds, a5), S(dst + 6 * ds, a6);
  S(dst + 7 * ds, a7), S(dst + 8 * ds, a8), S(dst + 9 * ds, a9);
  S(dst + 10 * ds, a10), S(dst + 11 * ds, a11), S(dst + 12 * ds, a12);
  S(dst + 13 * ds, a13), S(dst + 14 * ds, a14), S(dst + 15 * ds, a15);
}
#undef FM_ROUND
#undef FM_IHI
#undef FM_ILO
#else
#ifdef FM_SHUF
static inline void tr8(const float* src, std::size_t ss, float* dst,
                       std::size_t ds) {
  const vt r0 = L<vt>(src), r1 = L<vt>(src + ss), r2 = L<vt>(src + 2 * ss),
           r3 = L<vt>(src + 3 * ss), r4 = L<vt>(src + 4 * ss),
           r5 = L<vt>(src + 5 * ss), r6 = L<vt>(src + 6 * ss),
           r7 = L<vt>(src + 7 * ss);
#define FM_LO(a, b) __builtin_shufflevector(a, b, 0, 8, 1, 9, 4, 12, 5, 13)
#define FM_HI(a, b) __builtin_shufflevector(a, b, 2, 10, 3, 11, 6, 14, 7, 15)
#define FM_S44(a, b) __builtin_shufflevector(a, b, 0, 1, 8, 9, 4, 5, 12, 13)
#define FM_SEE(a, b) __builtin_shufflevector(a, b, 2, 3, 10, 11, 6, 7, 14, 15)
#define FM_P20(a, b) __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11)
#define FM_P31(a, b) __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15)
  const vt t0 = FM_LO(r0, r1), t1 = FM_HI(r0, r1), t2 = FM_LO(r2, r3),
           t3 = FM_HI(r2, r3), t4 = FM_LO(r4, r5), t5 = FM_HI(r4, r5),
           t6 = FM_LO(r6, r7), t7 = FM_HI(r6, r7);
  const vt u0 = FM_S44(t0, t2), u1 = FM_SEE(t0, t2), u2 = FM_S44(t1, t3),
           u3 = FM_SEE(t1, t3), u4 = FM_S44(t4, t6), u5 = FM_SEE(t4, t6),
           u6 = FM_S44(t5, t7), u7 = FM_SEE(t5, t7);
  S(dst, FM_P20(u0, u4));
  S(dst + ds, FM_P20(u1, u5));
  S(dst + 2 * ds, FM_P20(u2, u6));
  S(dst + 3 * ds, FM_P20(u3, u7));
  S(dst + 4 * ds, FM_P31(u0, u4));
  S(dst + 5 * ds, FM_P31(u1, u5));
  S(dst + 6 * ds, FM_P31(u2, u6));
  S(dst + 7 * ds, FM_P31(u3, u7));
#undef FM_LO
#undef FM_HI
#undef FM_S44
#undef FM_SEE
#undef FM_P20
#undef FM_P31
}
#endif
static inline void tr16(const float* FM_R src, std::size_t ss,
                        float* FM_R dst, std::size_t ds) {
#ifdef FM_SHUF
  static_assert(kChunkLanes == 16, "tr16 assumes 16 lanes");
  tr8(src, ss, dst, ds);
  tr8(src + 8, ss, dst + 8 * ds, ds);
  tr8(src + 8 * ss, ss, dst + 8, ds);
  tr8(src + 8 * ss + 8, ss, dst + 8 * ds + 8, ds);
#else
  for (std::size_t c = 0; c < 16; ++c)
    for (std::size_t r = 0; r < 16; ++r) dst[c * ds + r] = src[r * ss + c];
#endif
}
#endif

// ---- FFT ----
// A complex chunk of n elements: element e holds the kChunkLanes real parts
// at floats [kElem e, kElem e + C) and the imaginary parts right after. The
// transforms run in place, so one n-point transform touches n * 128 bytes
// (up to ~360 points stay in L1; a ping-pong Stockham pair of split re / im
// buffers is twice that and ran from L2 at half the speed), and a butterfly
// addresses each input through one pointer.
constexpr std::size_t kElem = 2 * kChunkLanes;

#if defined(__GNUC__) && !defined(__clang__)
#define FM_UNROLL _Pragma("GCC unroll 8")
#else
#define FM_UNROLL
#endif

// Multiplies (r, i) by the twiddle c - i s (forward) or c + i s (inverse),
// (c, s) = cos, sin of a positive angle.
template <bool INV>
static inline void twiddle(vf& r, vf& i, float c, float s) {
  const vf er = r, ei = i;
  if (INV) {
    r = er * c - ei * s;
    i = er * s + ei * c;
  } else {
    r = er * c + ei * s;
    i = ei * c - er * s;
  }
}

// a[k] = re + i im.
FM_INLINE void set(vf* ar, vf* ai, int k, const vf& re, const vf& im) {
  ar[k] = re;
  ai[k] = im;
}

// Radix-P DFT of the vectors a[0..P-1] in place: a[k] = sum_r a[r] w^(r k),
// w = exp(-+2 pi i / P) (INV: +).
template <int P, bool INV>
FM_INLINE void dft(vf* ar, vf* ai) {
  static_assert(P >= 2 && P <= 5, "radices 2, 3, 4, 5");
  const float sg = INV ? 1.0f : -1.0f;  // sign of the exponent
  if constexpr (P == 2) {
    const vf r0 = ar[0], i0 = ai[0];
    set(ar, ai, 0, r0 + ar[1], i0 + ai[1]);
    set(ar, ai, 1, r0 - ar[1], i0 - ai[1]);
  } else if constexpr (P == 3) {
    const float c = -0.5f;
    const float sn = sg * 0.866025403784438646763723170752936183f;
    const vf sr = ar[1] + ar[2], si = ai[1] + ai[2];
    const vf dr = ar[1] - ar[2], di = ai[1] - ai[2];
    const vf mr = ar[0] + c * sr, mi = ai[0] + c * si;
    set(ar, ai, 0, ar[0] + sr, ai[0] + si);
    set(ar, ai, 1, mr - sn * di, mi + sn * dr);
    set(ar, ai, 2, mr + sn * di, mi - sn * dr);
  } else if constexpr (P == 4) {
    const vf t0r = ar[0] + ar[2], t0i = ai[0] + ai[2];
    const vf t1r = ar[0] - ar[2], t1i = ai[0] - ai[2];
    const vf t2r = ar[1] + ar[3], t2i = ai[1] + ai[3];
    // -+i (a1 - a3): forward multiplies by -i.
    const vf t3r = INV ? ai[3] - ai[1] : ai[1] - ai[3];
    const vf t3i = INV ? ar[1] - ar[3] : ar[3] - ar[1];
    set(ar, ai, 0, t0r + t2r, t0i + t2i);
    set(ar, ai, 2, t0r - t2r, t0i - t2i);
    set(ar, ai, 1, t1r + t3r, t1i + t3i);
    set(ar, ai, 3, t1r - t3r, t1i - t3i);
  } else {
    const float c1 = 0.309016994374947424102293417182819059f;
    const float c2 = -0.809016994374947424102293417182819059f;
    const float s1 = sg * 0.951056516295153572116439333379382143f;
    const float s2 = sg * 0.587785252292473129168705954639072769f;
    const vf t1r = ar[1] + ar[4], t1i = ai[1] + ai[4];
    const vf t2r = ar[2] + ar[3], t2i = ai[2] + ai[3];
    const vf d1r = ar[1] - ar[4], d1i = ai[1] - ai[4];
    const vf d2r = ar[2] - ar[3], d2i = ai[2] - ai[3];
    const vf m1r = ar[0] + c1 * t1r + c2 * t2r;
    const vf m1i = ai[0] + c1 * t1i + c2 * t2i;
    const vf m2r = ar[0] + c2 * t1r + c1 * t2r;
    const vf m2i = ai[0] + c2 * t1i + c1 * t2i;
    // n = i * (s * d): real part -s*d.i, imaginary part s*d.r.
    const vf n1r = -(s1 * d1i + s2 * d2i), n1i = s1 * d1r + s2 * d2r;
    const vf n2r = -(s2 * d1i - s1 * d2i), n2i = s2 * d1r - s1 * d2r;
    set(ar, ai, 0, ar[0] + t1r + t2r, ai[0] + t1i + t2i);
    set(ar, ai, 1, m1r + n1r, m1i + n1i);
    set(ar, ai, 4, m1r - n1r, m1i - n1i);
    set(ar, ai, 2, m2r + n2r, m2i + n2i);
    set(ar, ai, 3, m2r - n2r, m2i - n2i);
  }
}

// In-place radix-P butterfly on the elements x + r * is (r < P). DIF: DFT,
// then output k >= 1 times w[k - 1]; DIT: input r >= 1 times w[r - 1], then
// DFT (w null: no twiddles). Outputs k >= kmax are not stored.
template <int P, bool DIT, bool INV>
FM_INLINE void butterfly(float* FM_R x, std::size_t is, const float* w,
                         int kmax) {
  for (std::size_t t = 0; t < kChunkLanes; t += VW) {
    vf ar[P], ai[P];
    FM_UNROLL
    for (int r = 0; r < P; ++r) {
      ar[r] = L(x + r * is + t);
      ai[r] = L(x + r * is + kChunkLanes + t);
    }
    if (DIT && w != nullptr) {
      FM_UNROLL
      for (int r = 1; r < P; ++r)
        twiddle<INV>(ar[r], ai[r], w[2 * r - 2], w[2 * r - 1]);
    }
    dft<P, INV>(ar, ai);
    if (!DIT && w != nullptr) {
      FM_UNROLL
      for (int k = 1; k < P; ++k)
        twiddle<INV>(ar[k], ai[k], w[2 * k - 2], w[2 * k - 1]);
    }
    FM_UNROLL
    for (int k = 0; k < P; ++k)
      if (k < kmax) {
        S(x + k * is + t, ar[k]);
        S(x + k * is + kChunkLanes + t, ai[k]);
      }
  }
}

// One level of radix P and span m over `blocks` consecutive sub-arrays of
// P m elements: element i + m r of each goes through the butterfly with the
// twiddles tw[i] (cos, sin of 2 pi i k / (P m), k = 1..P-1). Only outputs
// i + m k < nout are stored (nout >= 0; one block).
template <int P, bool DIT, bool INV>
static void fft_level(float* x, int m, std::size_t blocks, const float* tw,
                      int nout) {
  const std::size_t is = static_cast<std::size_t>(m) * kElem;
  for (std::size_t b = 0; b < blocks; ++b) {
    float* xb = x + b * is * P;
    butterfly<P, DIT, INV>(xb, is, nullptr, nout < 0 || nout >= P * m ? P
                                                : (nout + m - 1) / m);
    for (int i = 1; i < m; ++i) {
      int kmax = P;
      if (nout >= 0) {
        if (nout <= i) break;
        kmax = (nout - i + m - 1) / m;
        kmax = kmax < P ? kmax : P;
      }
      butterfly<P, DIT, INV>(xb + static_cast<std::size_t>(i) * kElem, is,
                             tw + 2 * (P - 1) * i, kmax);
    }
  }
}

template <bool DIT, bool INV>
static void fft_level_p(int p, float* x, int m, std::size_t blocks,
                        const float* tw, int nout) {
  switch (p) {
    case 2: fft_level<2, DIT, INV>(x, m, blocks, tw, nout); break;
    case 3: fft_level<3, DIT, INV>(x, m, blocks, tw, nout); break;
    case 4: fft_level<4, DIT, INV>(x, m, blocks, tw, nout); break;
    default: fft_level<5, DIT, INV>(x, m, blocks, tw, nout); break;
  }
}

// In-place complex FFT of the chunk x (plan.n elements), unnormalised.
// Forward: decimation in frequency, natural order in, the spectrum out in
// digit-reversed order (frequency j at Geometry::posv[j] for the vertical
// plan, see ncc.cpp). Inverse: decimation in time, the
// exact reverse: digit-reversed in, natural order out, and only outputs
// < nout computed in the last level when nout >= 0. The spectrum product
// is element-wise, so nothing between the two is reordered.
template <bool INV>
static void fft(const FftPlan& plan, float* x, int nout = -1) {
  const int nst = static_cast<int>(plan.radix.size());
  // Sub-array length and count at each level: every radix is >= 2 and n is
  // an int, so there are at most 31 levels.
  int span[32];
  std::size_t blocks[32];
  int nn = plan.n;
  std::size_t nb = 1;
  for (int st = 0; st < nst; ++st) {
    span[st] = nn;
    blocks[st] = nb;
    nn /= plan.radix[st];
    nb *= static_cast<std::size_t>(plan.radix[st]);
  }
  for (int u = 0; u < nst; ++u) {
    const int st = INV ? nst - 1 - u : u;
    const int p = plan.radix[st];
    fft_level_p<INV, INV>(p, x, span[st] / p, blocks[st],
                          plan.tw.data() + plan.tw_off[st],
                          INV && st == 0 ? nout : -1);
  }
}

// C values v = pixel - mu of one image row from s (cw of them; zeros after,
// and all zeros when s is null) into d.
template <class P>
static inline void load_row(const P* FM_R s, int cw, float mu, float* FM_R d) {
  constexpr int C = kChunkLanes;
  if (s != nullptr && cw == C) {
    if constexpr (sizeof(P) == 1) {
      // Bytes widened with intrinsics: compilers extract them one by one
      // from a byte vector.
#if defined(FM_AVX512)
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
      _mm512_storeu_ps(d, _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)),
                                        _mm512_set1_ps(mu)));
      return;
#elif defined(FM_AVX2)
      for (int c = 0; c < C; c += 8) {
        const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + c));
        _mm256_storeu_ps(d + c, _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)),
                                              _mm256_set1_ps(mu)));
      }
      return;
#endif
    } else {
      for (std::size_t c = 0; c < C; c += VW)
        S(d + c, L(reinterpret_cast<const float*>(s) + c) - mu);
      return;
    }
  }
  int c = 0;
  if (s != nullptr)
    for (; c < cw; ++c) d[c] = static_cast<float>(s[c]) - mu;
  for (; c < C; ++c) d[c] = 0.0f;
}

// Pass A: vertical real FFT of an N x M image (H x W values at the top left,
// v = pixel - mu, zero elsewhere), in chunks of C columns: rows 2j and
// 2j + 1 are the real and imaginary parts of element j of an N/2-point
// complex transform. The K = N/2 + 1 rows of the half spectrum are written
// transposed into T: Kp / C blocks of M elements, element x of block kb
// holding rows k = kb C .. kb C + C - 1 of column x.
template <class P>
static void pass_a(const P* img, std::ptrdiff_t stride, int H, int W,
                   float mu, const Geometry& g, Workspace& ws) {
  constexpr int C = kChunkLanes;
  const int Nh = g.Nh, K = g.K, M = g.M;
  float* T = ws.t.data();
  // Columns W..M-1 of the image are zero: so are their elements of T.
  for (int kb = 0; kb < g.Kp / C; ++kb)
    std::fill_n(T + (static_cast<std::size_t>(kb) * M + W) * kElem,
                static_cast<std::size_t>(M - W) * kElem, 0.0f);
  const float* untw = g.untw.data();
  const int* pos = g.posv.data();
  float* z = ws.a.data();
  float* FM_R xr = ws.b_re.data();
  float* FM_R xi = ws.b_im.data();
  for (int x0 = 0; x0 < W; x0 += C) {
    const int cw = std::min(C, W - x0);
    for (int j = 0; j < Nh; ++j) {
      const int y0 = 2 * j, y1 = 2 * j + 1;
      float* e = z + static_cast<std::size_t>(j) * kElem;
      load_row(y0 < H ? img + y0 * stride + x0 : nullptr, cw, mu, e);
      load_row(y1 < H ? img + y1 * stride + x0 : nullptr, cw, mu, e + C);
    }
    fft<false>(g.pv, z);
    // Untangle Z = FFT(v[2j] + i v[2j+1]) (digit-reversed) into X = FFT(v),
    // k = 0..Nh, in the scratch (K x C real, K x C imaginary).
    for (int k = 0; k < K; ++k) {
      const float* zk = z + static_cast<std::size_t>(pos[k % Nh]) * kElem;
      const float* zc = z + static_cast<std::size_t>(pos[(Nh - k) % Nh]) * kElem;
      const float wr = untw[2 * k], wi = -untw[2 * k + 1];
      for (std::size_t c = 0; c < C; c += VW) {
        const vf a = L(zk + c), b = L(zk + C + c), d = L(zc + c),
                 e = L(zc + C + c);
        const vf er = 0.5f * (a + d), ei = 0.5f * (b - e);
        const vf odr = 0.5f * (b + e), odi = -0.5f * (a - d);
        S(xr + static_cast<std::size_t>(k) * C + c, er + (odr * wr - odi * wi));
        S(xi + static_cast<std::size_t>(k) * C + c, ei + (odr * wi + odi * wr));
      }
    }
    if (cw == C) {
      // Rows K..Kp-1 of the scratch are zero in T.
      std::fill(xr + static_cast<std::size_t>(K) * C,
                xr + static_cast<std::size_t>(g.Kp) * C, 0.0f);
      std::fill(xi + static_cast<std::size_t>(K) * C,
                xi + static_cast<std::size_t>(g.Kp) * C, 0.0f);
      for (int kb = 0; kb < g.Kp / C; ++kb) {
        const std::size_t so = static_cast<std::size_t>(kb) * C * C;
        float* d = T + (static_cast<std::size_t>(kb) * M + x0) * kElem;
        tr16(xr + so, C, d, kElem);
        tr16(xi + so, C, d + C, kElem);
      }
      continue;
    }
    for (int kb = 0; kb * C < K; ++kb) {
      const int kn = std::min(C, K - kb * C);
      float* FM_R d = T + (static_cast<std::size_t>(kb) * M + x0) * kElem;
      const float* FM_R sr = xr + static_cast<std::size_t>(kb) * C * C;
      const float* FM_R si = xi + static_cast<std::size_t>(kb) * C * C;
      for (int c = 0; c < cw; ++c)
        for (int kk = 0; kk < C; ++kk) {
          d[c * kElem + kk] = kk < kn ? sr[kk * C + c] : 0.0f;
          d[c * kElem + C + kk] = kk < kn ? si[kk * C + c] : 0.0f;
        }
    }
  }
}

// Pass B for a template: horizontal FFT of each block of T, stored
// conjugated and scaled by 1 / (N M) in spec (same layout, digit-reversed
// like the region's spectra). Returns max |spectrum| (unscaled).
static double pass_b_template(const Geometry& g, Workspace& ws, float* spec) {
  constexpr int C = kChunkLanes;
  const int M = g.M;
  const float scale = static_cast<float>(1.0 / (static_cast<double>(g.N) * M));
  double mx = 0.0;
  for (int kb = 0; kb < g.Kp / C; ++kb) {
    const std::size_t off = static_cast<std::size_t>(kb) * M * kElem;
    float* x = ws.t.data() + off;
    fft<false>(g.ph, x);
    for (std::size_t e = 0; e < static_cast<std::size_t>(M) * kElem; e += kElem)
      for (std::size_t l = 0; l < C; ++l) {
        const float re = x[e + l], im = x[e + C + l];
        // max |z|^2 here, one square root at the end (sqrt is monotone).
        const double a = static_cast<double>(re) * re + static_cast<double>(im) * im;
        mx = a > mx ? a : mx;
        spec[off + e + l] = re * scale;
        spec[off + e + C + l] = -im * scale;
      }
  }
  return std::sqrt(mx);
}

// Pass B for a region: horizontal FFT, product with the template spectrum,
// inverse horizontal FFT; elements x < Wout written transposed into V:
// ceil(Wout / C) blocks of Kp elements, element k of block xb holding
// columns x = xb C .. xb C + C - 1 of row k.
static void pass_b_region(const Geometry& g, Workspace& ws, const float* spec,
                          int wout) {
  constexpr int C = kChunkLanes;
  const int M = g.M, Kp = g.Kp;
  float* V = ws.v.data();
  for (int kb = 0; kb < Kp / C; ++kb) {
    const std::size_t off = static_cast<std::size_t>(kb) * M * kElem;
    float* FM_R x = ws.t.data() + off;
    const float* FM_R sp = spec + off;
    fft<false>(g.ph, x);
    for (std::size_t e = 0; e < static_cast<std::size_t>(M) * kElem; e += kElem)
      for (std::size_t t = 0; t < C; t += VW) {
        const vf xr = L(x + e + t), xi = L(x + e + C + t);
        const vf sr = L(sp + e + t), si = L(sp + e + C + t);
        S(x + e + t, xr * sr - xi * si);
        S(x + e + C + t, xr * si + xi * sr);
      }
    // Only columns x < wout (rounded up to whole tiles) are used.
    fft<true>(g.ph, x, std::min(M, (wout + C - 1) / C * C));
    int xv = 0;
    for (; xv + C <= wout || (xv < wout && xv + C <= M); xv += C) {
      float* d = V + (static_cast<std::size_t>(xv / C) * Kp + kb * C) * kElem;
      const float* s = x + static_cast<std::size_t>(xv) * kElem;
      tr16(s, kElem, d, kElem);
      tr16(s + C, kElem, d + C, kElem);
    }
    for (int xx = xv; xx < wout; ++xx) {
      float* FM_R d = V + (static_cast<std::size_t>(xx / C) * Kp + kb * C) * kElem +
                      xx % C;
      const float* FM_R s = x + static_cast<std::size_t>(xx) * kElem;
      for (int kk = 0; kk < C; ++kk) {
        d[kk * kElem] = s[kk];
        d[kk * kElem + C] = s[C + kk];
      }
    }
  }
}

// Pass C: inverse vertical real FFT of each block of V; rows y < Hout of the
// correlation written to corr (Hout x Wout, row stride cs).
static void pass_c(const Geometry& g, Workspace& ws, int hout, int wout,
                   float* corr, std::size_t cs) {
  constexpr int C = kChunkLanes;
  const int Nh = g.Nh, Kp = g.Kp;
  const float* untw = g.untw.data();
  const int* pos = g.posv.data();
  float* z = ws.a.data();
  for (int x0 = 0; x0 < wout; x0 += C) {
    const int cw = std::min(C, wout - x0);
    const float* vc = ws.v.data() + static_cast<std::size_t>(x0 / C) * Kp * kElem;
    // Z[k] = X[k] + X*[Nh - k] + i w^k (X[k] - X*[Nh - k]), stored
    // digit-reversed for the inverse transform.
    for (int k = 0; k < Nh; ++k) {
      const float* FM_R xk = vc + static_cast<std::size_t>(k) * kElem;
      const float* FM_R xc = vc + static_cast<std::size_t>(Nh - k) * kElem;
      float* FM_R zk = z + static_cast<std::size_t>(pos[k]) * kElem;
      const float wr = untw[2 * k], wi = untw[2 * k + 1];
      for (std::size_t t = 0; t < C; t += VW) {
        const vf ar = L(xk + t), ai = L(xk + C + t), br = L(xc + t),
                 bi = L(xc + C + t);
        const vf er = ar + br, ei = ai - bi, dr = ar - br, di = ai + bi;
        const vf orr = dr * wr - di * wi, oi = dr * wi + di * wr;
        S(zk + t, er - oi);
        S(zk + C + t, ei + orr);
      }
    }
    fft<true>(g.pv, z, (hout + 1) / 2);
    for (int j = 0; 2 * j < hout; ++j) {
      const float* FM_R e = z + static_cast<std::size_t>(j) * kElem;
      for (int half = 0; half < 2 && 2 * j + half < hout; ++half) {
        const float* FM_R s = e + half * C;
        float* FM_R d = corr + (2 * j + half) * cs + x0;
        if (cw == C)
          for (std::size_t t = 0; t < C; t += VW) S(d + t, L(s + t));
        else
          for (int c = 0; c < cw; ++c) d[c] = s[c];
      }
    }
  }
}

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
  for (int y = 0; y < H; ++y) {
    const P* FM_R r = img + y * stride;
    int x = 0;
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

// Moves the column sums from rows y..y+h-1 to rows y+1..y+h.
template <class P, class S>
static void sums_advance(const P* img, std::ptrdiff_t stride, int W, int h,
                         int y, double off, S* FM_R c1, S* FM_R c2) {
  const P* FM_R rin = img + (y + h) * stride;
  const P* FM_R rout = img + y * stride;
  for (int x = 0; x < W; ++x) {
    const S vi = static_cast<S>(rin[x]) - static_cast<S>(off);
    const S vo = static_cast<S>(rout[x]) - static_cast<S>(off);
    c1[x] += vi - vo;
    c2[x] += vi * vi - vo * vo;
  }
}

template <class S>
static void sums_row(const S* FM_R c1, const S* FM_R c2, int w, int wout,
                     S* FM_R s1, S* FM_R s2) {
  S a1 = 0, a2 = 0;
  for (int x = 0; x < w; ++x) {
    a1 += c1[x];
    a2 += c2[x];
  }
  s1[0] = a1;
  s2[0] = a2;
  for (int x = 1; x < wout; ++x) {
    a1 += c1[x + w - 1] - c1[x - 1];
    a2 += c2[x + w - 1] - c2[x - 1];
    s1[x] = a1;
    s2[x] = a2;
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
static inline bool any(bool m) { return m; }
static inline bool lnot(bool m) { return !m; }
static inline double vmax(double a, double b) { return a > b ? a : b; }
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
template <class M>
static inline bool any(const M& m) {
  return (m[0] | m[1] | m[2] | m[3]) != 0;
}
static inline v4d vmax(const v4d& a, const v4d& b) { return sel(a > b, a, b); }
#endif

// Bounds of g = s |s| ss_T for a group of positions (V = double or v4d).
// Returns the lower bound; stores the upper bound (NaN when flat).
template <class V>
static inline V score_group(bool is_u8, const RowParams& rp, const V& c,
                            const V& a1, const V& a2, V* hi, bool* flat) {
  const V zero = splat<V>(0.0);
  const V nan = splat<V>(std::numeric_limits<double>::quiet_NaN());
  const V lo_num = c - rp.err, hi_num = c + rp.err;
  const V lo_sq = lo_num * sel(lo_num < zero, -lo_num, lo_num);
  const V hi_sq = hi_num * sel(hi_num < zero, -hi_num, hi_num);
  if (is_u8) {
    // Exact integer sums: q = n * sum of squared deviations.
    const V q = rp.n * a2 - a1 * a1;
    const auto fl = lnot(q > rp.thrq);
    const V r = rp.n / sel(fl, splat<V>(1.0), q);  // 1 / ss_W
    V lo = lo_sq * r;
    lo = sel(lo > rp.gmax, splat<V>(rp.gmax), lo);
    *hi = sel(fl, nan, hi_sq * r);
    if (any(fl)) *flat = true;
    return sel(fl, zero, lo);
  }
  // float32 pixels: window sums within d of the exact ones.
  const V ss = a2 - a1 * a1 * rp.inv_n;
  const V aa1 = sel(a1 < zero, -a1, a1);
  const V d = rp.gsum * (rp.e1tot * 2.0 * aa1 * rp.inv_n + rp.energy) +
              4.0 * rp.u64 * (a2 + a1 * a1 * rp.inv_n);
  const auto fl = (ss + d) <= rp.thr;
  const auto amb = lnot((ss - d) > rp.thr) & lnot(fl);
  const V sl = sel(amb | fl, splat<V>(1.0), ss - d);
  const V sh = ss + d;
  // 1 / sl and 1 / sh with one division.
  const V rr = splat<V>(1.0) / (sl * sh);
  const V rl = sh * rr, rh = sl * rr;
  V lo = lo_sq * sel(lo_num < zero, rl, rh);
  lo = sel(lo > rp.gmax, splat<V>(rp.gmax), lo);
  const V h = hi_sq * sel(hi_num < zero, rh, rl);
  *hi = sel(fl, nan, sel(amb, splat<V>(std::numeric_limits<double>::infinity()), h));
  if (any(fl)) *flat = true;
  return sel(fl, zero, sel(amb, splat<V>(-rp.gmax), lo));
}

static double score_row(bool is_u8, const RowParams& rp, const float* c,
                        const double* s1, const double* s2, int wout,
                        double* hg, bool* any_flat, double* row_hi) {
  int x = 0;
  double lower = -rp.gmax, upper = -rp.gmax;
#ifdef FM_VEC
  v4d vl = splat<v4d>(-rp.gmax), vu = vl;
  for (; x + 4 <= wout; x += 4) {
    v4d h;
    const v4d lo = score_group(is_u8, rp, load4(c + x), load4(s1 + x),
                               load4(s2 + x), &h, any_flat);
    std::memcpy(hg + x, &h, sizeof h);
    vl = vmax(vl, lo);
    vu = vmax(h, vu);  // NaN (flat) lanes keep the old maximum
  }
  lower = vmax(vmax(vl[0], vl[1]), vmax(vl[2], vl[3]));
  upper = vmax(vmax(vu[0], vu[1]), vmax(vu[2], vu[3]));
#endif
  for (; x < wout; ++x) {
    double h;
    const double lo = score_group(is_u8, rp, static_cast<double>(c[x]),
                                  s1[x], s2[x], &h, any_flat);
    hg[x] = h;
    lower = vmax(lower, lo);
    upper = vmax(h, upper);
  }
  *row_hi = upper;
  return lower;
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

// Direct float64 search over every position (small problems).
template <class P>
static void search_direct(const TemplateData& t, const P* reg,
                          std::ptrdiff_t stride, int H, int W,
                          double* best, int* by, int* bx) {
  const int hout = H - t.h + 1, wout = W - t.w + 1;
  *best = -2.0;
  for (int y = 0; y < hout; ++y)
    for (int x = 0; x < wout; ++x) {
      const double s = exact_score(t, reg, stride, y, x);
      if (s > *best) {
        *best = s;
        *by = y;
        *bx = x;
      }
    }
}

// Template spectrum for geometry g.
static void make_spectrum(const TemplateData& t, const Geometry& g,
                          Workspace& ws, SpecEntry& e) {
  ws.reserve(g, 1, 1);
  // Every element is written by pass_b_template: no need to clear.
  e.spec.resize(2 * static_cast<std::size_t>(g.Kp) * g.M);
  pass_a(t.tzf.data(), t.w, t.h, t.w, 0.0f, g, ws);
  e.max_abs = pass_b_template(g, ws, e.spec.data());
}

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
  // 1.5 u32 |T'| |R - mu|, so the margin used here, 3 log2(N M) + 16, is >= 30x that.
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
  // (c = numerator), which needs no square roots. hg[] holds the upper
  // bound of g per position, NaN for a flat window (exact score 0).
  double* hg = ws.hi.data();
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
#ifdef FM_AVX512
  if (is_u8 && static_cast<double>(t.h) * t.w <= 66051.0) {
    search_u8_avx512(t, reinterpret_cast<const std::uint8_t*>(reg), stride, W,
                     hout, wout, corr, cs, rp, ws, best, by, bx, ncand);
    return;
  }
#endif
  double lower = -t.ss;
  double* c1 = ws.col1.data();
  double* c2 = ws.col2.data();
  double* s1 = ws.row1.data();
  double* s2 = ws.row2.data();
  bool any_flat = false;
  double* row_hi = ws.row_hi.data();
  if (is_u8 && static_cast<double>(t.h) * t.w <= 66051.0) {
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
    // hg holds q: turn it into the upper bound (NaN when flat) on the rows
    // that can hold the best.
    for (int y = 0; y < hout; ++y) {
      double* FM_R hr = hg + static_cast<std::size_t>(y) * wout;
      const float* FM_R cr = corr + y * cs;
      if (!(row_hi[y] >= lower)) {
        if (any_flat)  // keep "flat" visible to the search for a flat window
          for (int x = 0; x < wout; ++x)
            hr[x] = hr[x] > rp.thrq ? -std::numeric_limits<double>::infinity()
                                    : std::numeric_limits<double>::quiet_NaN();
        continue;
      }
      for (int x = 0; x < wout; ++x) {
        const double q = hr[x];
        if (!(q > rp.thrq)) {
          hr[x] = std::numeric_limits<double>::quiet_NaN();
          continue;
        }
        const double hi_num = static_cast<double>(cr[x]) + rp.err;
        const double h = hi_num * std::fabs(hi_num) * rp.n / q;
        hr[x] = h + 1e-12 * std::fabs(h);
      }
    }
  } else {
  sums_init(reg, stride, W, t.h, off, c1, c2);
  for (int y = 0; y < hout; ++y) {
    sums_row(c1, c2, t.w, wout, s1, s2);
    const double lo = score_row(is_u8, rp, corr + y * cs, s1, s2, wout,
                                hg + static_cast<std::size_t>(y) * wout,
                                &any_flat, &row_hi[y]);
    lower = lo > lower ? lo : lower;
    if (y + 1 < hout) sums_advance(reg, stride, W, t.h, y, off, c1, c2);
  }
  }
  // Rescore the candidates exactly, in row-major order.
  *best = -2.0;
  int count = 0;
  for (int y = 0; y < hout; ++y) {
    if (!(row_hi[y] >= lower)) continue;
    const double* FM_R hr = hg + static_cast<std::size_t>(y) * wout;
    for (int x = 0; x < wout; ++x) {
      if (!(hr[x] >= lower)) continue;
      ++count;
      const double s = exact_score(t, reg, stride, y, x);
      if (s > *best) {
        *best = s;
        *by = y;
        *bx = x;
      }
    }
  }
  // Flat windows score exactly 0: the first one wins if nothing beats 0
  // (or something ties with it later in row-major order).
  if (any_flat && *best <= 0.0) {
    for (int y = 0; y < hout; ++y) {
      const double* FM_R hr = hg + static_cast<std::size_t>(y) * wout;
      int x = 0;
      while (x < wout && hr[x] == hr[x]) ++x;
      if (x < wout) {
        if (*best < 0.0 || y < *by || (y == *by && x < *bx)) {
          *best = 0.0;
          *by = y;
          *bx = x;
        }
        break;
      }
    }
  }
  *ncand = count;
}

#undef FM_R

}  // namespace FM_KNS
}  // namespace detail
}  // namespace flickermine
