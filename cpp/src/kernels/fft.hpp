// Part of one NCC kernel set (see kernel_set.hpp): the FFT cross-correlation.
//
// The FFT is a mixed-radix (2, 3, 4, 5) in-place transform (decimation in
// frequency forward, in time inverse) in which every element is a vector of
// kChunkLanes complex values (16 real parts, then 16 imaginary parts): the
// butterflies run over contiguous memory with a scalar twiddle, written with
// generic vectors (one AVX-512 register, two AVX or four SSE/NEON ones).
// Passes A, B and C give the correlation of the zero-mean template with a
// region; make_spectrum caches the template's half of it. No include guard
// on purpose.
#ifndef FM_KNS
#error "fft.hpp is private to ncc.cpp (included through kernels/kernel_set.hpp)"
#endif

namespace flickermine {
namespace detail {
namespace FM_KNS {

// Transpose of a 16 x 16 block of floats with row strides ss (source) and
// ds (destination): dst[c * ds + r] = src[r * ss + c].
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
  static_assert(P >= 2 && P <= 7 && P != 6, "radices 2, 3, 4, 5, 7");
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
  } else if constexpr (P == 5) {
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
  } else {
    // Outputs m and 7 - m share M_m = a0 + sum_k cos(2 pi k m / 7) t_k and
    // N_m = i sum_k (+-sin(2 pi k m / 7)) d_k (t_k, d_k = a_k +- a_{7-k}):
    // X_m = M_m + N_m, X_{7-m} = M_m - N_m, as in radix 5.
    const float c1 = 0.623489801858733530525004884004239810f;
    const float c2 = -0.222520933956314404288902564496794759f;
    const float c3 = -0.900968867902419126236102319507445051f;
    const float s1 = sg * 0.781831482468029808708444526674057750f;
    const float s2 = sg * 0.974927912181823607018131682993931217f;
    const float s3 = sg * 0.433883739117558120475768332848358754f;
    const vf t1r = ar[1] + ar[6], t1i = ai[1] + ai[6];
    const vf t2r = ar[2] + ar[5], t2i = ai[2] + ai[5];
    const vf t3r = ar[3] + ar[4], t3i = ai[3] + ai[4];
    const vf d1r = ar[1] - ar[6], d1i = ai[1] - ai[6];
    const vf d2r = ar[2] - ar[5], d2i = ai[2] - ai[5];
    const vf d3r = ar[3] - ar[4], d3i = ai[3] - ai[4];
    // k m mod 7 for m = 1, 2, 3 and k = 1, 2, 3: (1, 2, 3), (2, 4, 6),
    // (3, 6, 2); cos(4) = cos(3), cos(6) = cos(1); sin(4) = -sin(3),
    // sin(6) = -sin(1).
    const vf m1r = ar[0] + c1 * t1r + c2 * t2r + c3 * t3r;
    const vf m1i = ai[0] + c1 * t1i + c2 * t2i + c3 * t3i;
    const vf m2r = ar[0] + c2 * t1r + c3 * t2r + c1 * t3r;
    const vf m2i = ai[0] + c2 * t1i + c3 * t2i + c1 * t3i;
    const vf m3r = ar[0] + c3 * t1r + c1 * t2r + c2 * t3r;
    const vf m3i = ai[0] + c3 * t1i + c1 * t2i + c2 * t3i;
    // n = i * (s . d): real part -(s . d.i), imaginary part s . d.r.
    const vf n1r = -(s1 * d1i + s2 * d2i + s3 * d3i);
    const vf n1i = s1 * d1r + s2 * d2r + s3 * d3r;
    const vf n2r = -(s2 * d1i - s3 * d2i - s1 * d3i);
    const vf n2i = s2 * d1r - s3 * d2r - s1 * d3r;
    const vf n3r = -(s3 * d1i - s1 * d2i + s2 * d3i);
    const vf n3i = s3 * d1r - s1 * d2r + s2 * d3r;
    set(ar, ai, 0, ar[0] + t1r + t2r + t3r, ai[0] + t1i + t2i + t3i);
    set(ar, ai, 1, m1r + n1r, m1i + n1i);
    set(ar, ai, 6, m1r - n1r, m1i - n1i);
    set(ar, ai, 2, m2r + n2r, m2i + n2i);
    set(ar, ai, 5, m2r - n2r, m2i - n2i);
    set(ar, ai, 3, m3r + n3r, m3i + n3i);
    set(ar, ai, 4, m3r - n3r, m3i - n3i);
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
    case 5: fft_level<5, DIT, INV>(x, m, blocks, tw, nout); break;
    default: fft_level<7, DIT, INV>(x, m, blocks, tw, nout); break;
  }
}

// In-place complex FFT of the chunk x (plan.n elements), unnormalised.
// Forward: decimation in frequency, natural order in, the spectrum out in
// digit-reversed order (frequency j at Geometry::posv[j] for the vertical
// plan, see search_data.hpp). Inverse: decimation in time, the
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
// like the region's spectra).
static void pass_b_template(const Geometry& g, Workspace& ws, float* spec) {
  constexpr int C = kChunkLanes;
  const int M = g.M;
  const float scale = static_cast<float>(1.0 / (static_cast<double>(g.N) * M));
  for (int kb = 0; kb < g.Kp / C; ++kb) {
    const std::size_t off = static_cast<std::size_t>(kb) * M * kElem;
    float* FM_R x = ws.t.data() + off;
    fft<false>(g.ph, x);
    float* FM_R d = spec + off;
    for (std::size_t e = 0; e < static_cast<std::size_t>(M) * kElem; e += kElem)
      for (std::size_t t = 0; t < C; t += VW) {
        S(d + e + t, L(x + e + t) * scale);
        S(d + e + C + t, L(x + e + C + t) * -scale);
      }
  }
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

// Template spectrum for geometry g.
static void make_spectrum(const TemplateData& t, const Geometry& g,
                          Workspace& ws, SpecEntry& e) {
  ws.reserve(g, 1, 1);
  // Every element is written by pass_b_template: no need to clear.
  e.spec.resize(2 * static_cast<std::size_t>(g.Kp) * g.M);
  pass_a(t.tzf.data(), t.w, t.h, t.w, 0.0f, g, ws);
  pass_b_template(g, ws, e.spec.data());
}

}  // namespace FM_KNS
}  // namespace detail
}  // namespace flickermine
