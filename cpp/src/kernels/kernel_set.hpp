// Private to ncc.cpp: one set of the hot kernels of the NCC search. ncc.cpp
// includes this file three times, compiled for baseline x86-64/aarch64 and
// (x86-64 only) under AVX2+FMA and AVX-512 target pragmas, each time inside a
// different namespace FM_KNS (k_base, k_avx2, k_avx512), and picks one set at
// run time. The parts, in dependency order:
//
//   simd.hpp              vector types and loads/stores (vf, L, S, FM_R)
//   fft.hpp               the FFT cross-correlation (passes A, B, C) and the
//                         template spectrum
//   window_stats.hpp      window sums and sums of squares, one-window stats
//   rescoring.hpp         exact float64 score of a window; direct search
//   score_bounds.hpp      error bounds of the float32 FFT scores, per row
//                         (uint8 window sums modulo 2^32)
//   search_generic.hpp    the search with float64 window sums (float32
//                         frames, large uint8 templates), portable vectors
//   search_avx512.hpp     the AVX-512 uint8 and float32 searches (AVX-512 set
//                         only)
//   fft_search.hpp        the FFT search: correlation, bounds, rescoring
//
// They use the shared data types of search_data.hpp. No include guard on
// purpose (in this file or its parts).
#ifndef FM_KNS
#error "kernel_set.hpp is private to ncc.cpp"
#endif

#include "simd.hpp"
#include "fft.hpp"
#include "window_stats.hpp"
#include "rescoring.hpp"
#include "score_bounds.hpp"
#include "search_generic.hpp"
#include "search_avx512.hpp"
#include "fft_search.hpp"

#undef FM_R
