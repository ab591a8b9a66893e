// Part of one NCC kernel set (see kernel_set.hpp): the vector types and
// helpers every other part uses (generic float vectors vf of one register,
// their loads and stores, FM_R / FM_INLINE). No include guard on purpose.
#ifndef FM_KNS
#error "simd.hpp is private to ncc.cpp (included through kernels/kernel_set.hpp)"
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

// GCC/Clang two-vector shuffles (the 8 x 8 and 16 x 16 transposes).
#if (defined(__GNUC__) || defined(__clang__)) && defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define FM_SHUF 1
#endif
#endif

#ifdef FM_AVX512
// The first `left` of 8 lanes (all 8 when left >= 8).
static inline __mmask8 tail_mask8(int left) {
  return left >= 8 ? static_cast<__mmask8>(0xFF)
                   : static_cast<__mmask8>((1u << left) - 1);
}
#endif

}  // namespace FM_KNS
}  // namespace detail
}  // namespace flickermine
