// A small pool of worker threads for the rules: the detections of one frame are decided
// independently of each other, so they are spread over the cores (verdicts.cpp). Each item runs
// whole on one thread, whose NCC caches (plans, work buffers) are its own (ncc.cpp).
#pragma once

#include <cstddef>
#include <functional>

namespace flickermine {

// Most threads set_num_threads takes (the bindings refuse more).
inline constexpr int kMaxThreads = 1024;

// Threads parallel_for may use, the caller's included. n <= 0: the default, one less than the
// cores this process may run on (its CPU affinity), at least one. Process-wide, like
// cv2.setNumThreads.
void set_num_threads(int n);
int num_threads();

// Calls body(i) once for every i in [0, n), on up to num_threads() threads (the caller is one of
// them), and returns when all calls have returned. Items are handed out one at a time, in order,
// as threads come free (their costs differ widely). Serial when n < 2, with one thread, or while
// another caller's parallel_for runs. If a call throws, items not yet started are skipped and
// the first exception is rethrown here.
void parallel_for(std::size_t n, const std::function<void(std::size_t)>& body);

}  // namespace flickermine
