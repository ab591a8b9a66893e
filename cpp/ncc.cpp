// NCC template search (OpenCV TM_CCOEFF_NORMED semantics). See ncc.hpp.
//
// First version: exact float64 direct computation. A faster FFT path follows.
#include "ncc.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace flickermine {
namespace {

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

}  // namespace

struct NccTemplate::Impl {
  int h = 0, w = 0;
  PixelType type = PixelType::kUint8;
  std::vector<double> tz;  // zero-mean template, row-major h x w
  double ss = 0.0;         // sum of squared deviations
  bool flat = false;
};

NccTemplate::NccTemplate(const ImageView& image, const PixelBox& box)
    : impl_(new Impl) {
  check_view(image, "template image");
  check_box(image, box, "template");
  Impl& t = *impl_;
  t.h = box.height();
  t.w = box.width();
  t.type = image.type;
  const std::size_t n = static_cast<std::size_t>(t.h) * t.w;
  t.tz.resize(n);
  double sum = 0.0;
  for (int i = 0; i < t.h; ++i)
    for (int j = 0; j < t.w; ++j) {
      const double v = pixel_at(image, box.y1 + i, box.x1 + j);
      t.tz[static_cast<std::size_t>(i) * t.w + j] = v;
      sum += v;
    }
  const double mean = sum / static_cast<double>(n);
  double ss = 0.0;
  for (double& v : t.tz) {
    v -= mean;
    ss += v * v;
  }
  t.ss = ss;
  t.flat = ss <= static_cast<double>(n) * kFlatVariance;
}

NccTemplate::~NccTemplate() = default;
NccTemplate::NccTemplate(NccTemplate&&) noexcept = default;
NccTemplate& NccTemplate::operator=(NccTemplate&&) noexcept = default;

int NccTemplate::height() const { return impl_->h; }
int NccTemplate::width() const { return impl_->w; }

NccMatch NccTemplate::search(const ImageView& image, const PixelBox& region) {
  const Impl& t = *impl_;
  check_view(image, "image");
  check_box(image, region, "search region");
  if (image.type != t.type)
    throw std::invalid_argument("image pixel type differs from the template's");
  if (region.height() < t.h || region.width() < t.w)
    throw std::invalid_argument("search region smaller than the template");
  const int ho = region.height() - t.h + 1, wo = region.width() - t.w + 1;
  NccMatch best{0.0, region.x1, region.y1};
  if (t.flat) return best;
  const double n = static_cast<double>(t.h) * t.w;
  bool first = true;
  for (int y = 0; y < ho; ++y)
    for (int x = 0; x < wo; ++x) {
      double s = 0.0;
      for (int i = 0; i < t.h; ++i)
        for (int j = 0; j < t.w; ++j)
          s += pixel_at(image, region.y1 + y + i, region.x1 + x + j);
      const double mean = s / n;
      double ss = 0.0, num = 0.0;
      for (int i = 0; i < t.h; ++i)
        for (int j = 0; j < t.w; ++j) {
          const double d =
              pixel_at(image, region.y1 + y + i, region.x1 + x + j) - mean;
          ss += d * d;
          num += d * t.tz[static_cast<std::size_t>(i) * t.w + j];
        }
      double score = 0.0;
      if (ss > n * kFlatVariance)
        score = std::min(1.0, std::max(-1.0, num / std::sqrt(t.ss * ss)));
      if (first || score > best.score) {
        best = {score, region.x1 + x, region.y1 + y};
        first = false;
      }
    }
  return best;
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
