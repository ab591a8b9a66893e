// NCC template search with OpenCV TM_CCOEFF_NORMED semantics.
//
// For a template T (h x w) and a search region R of an image, the score at
// top-left position (x, y) of R is
//
//     s(x, y) = sum(T' * I') / sqrt(sum(T'^2) * sum(I'^2))
//
// where T' = T - mean(T) and I' is the h x w window of the image at (x, y)
// minus its own mean. A window (or template) is "flat" when its sum of squared
// deviations is <= n * kFlatVariance (n = h * w pixels, i.e. std <= 1e-4 in
// image units); a flat window or a flat template scores exactly 0. Scores are
// clamped to [-1, 1]. The best match is the maximum score; ties go to the
// first position in row-major order (smallest y, then smallest x), as
// cv::minMaxLoc does. The returned score is accurate to 1e-6 of a float64
// computation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace flickermine {

inline constexpr double kFlatVariance = 1e-8;

enum class PixelType { kUint8, kFloat32 };

// A borrowed, read-only grayscale image. stride is in elements, not bytes.
struct ImageView {
  const void* data = nullptr;
  int height = 0;
  int width = 0;
  std::ptrdiff_t stride = 0;
  PixelType type = PixelType::kUint8;
};

// Half-open integer pixel box [x1, x2) x [y1, y2).
struct PixelBox {
  int x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  int width() const { return x2 - x1; }
  int height() const { return y2 - y1; }
};

// Best match of a search: score and top-left corner in image coordinates.
struct NccMatch {
  double score = 0.0;
  int x = 0;
  int y = 0;
};

// A template cut once from a frame and searched in many frames: whatever can
// be computed once per template (zero-mean copy, norm, spectra per FFT size)
// is cached here. Not thread-safe: one NccTemplate per thread.
class NccTemplate {
 public:
  // Copies the pixels of `box` (must lie inside `image`, non-empty).
  NccTemplate(const ImageView& image, const PixelBox& box);
  ~NccTemplate();
  NccTemplate(NccTemplate&&) noexcept;
  NccTemplate& operator=(NccTemplate&&) noexcept;

  int height() const;
  int width() const;

  // Searches `region` of `image` (same PixelType as the template's image).
  // `region` must lie inside the image and be at least as large as the
  // template in both dimensions. Throws std::invalid_argument otherwise.
  NccMatch search(const ImageView& image, const PixelBox& region);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Vector code path of the NCC kernels, chosen at run time: the best the CPU
// supports (never above the build's target: baseline on non-x86), capped by
// the environment variable FLICKERMINE_NCC_ISA=baseline|avx2. Every path
// gives results within the contract above; which position wins a near-tie
// (scores within 1e-6) may differ between paths.
enum class NccIsa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };
NccIsa ncc_isa();       // in use
NccIsa ncc_best_isa();  // the best this machine runs (environment aside)
// Switches every thread to `isa` (for tests and benchmarks); throws
// std::invalid_argument when the machine does not run it.
void ncc_set_isa(NccIsa isa);
const char* ncc_isa_name(NccIsa isa);

// Plain float64 direct computation of the whole score map, row-major,
// (region.height - h + 1) x (region.width - w + 1). Slow; for tests.
std::vector<double> ncc_score_map_reference(const ImageView& template_image,
                                            const PixelBox& template_box,
                                            const ImageView& image,
                                            const PixelBox& region);

}  // namespace flickermine
