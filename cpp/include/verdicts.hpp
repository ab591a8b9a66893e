// The flicker rules of docs/rules.md in C++: the same logic as python/flickermine/rules.py (the
// oracle), which the parity tests hold this file to.
#pragma once

#include <cstdint>
#include <vector>

#include "ncc.hpp"

namespace flickermine {

// Continuous pixel box x1, y1, x2, y2 (no +1 convention).
struct Box {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  double area() const { return (x2 - x1) * (y2 - y1); }
};

// Same codes as flickermine.params.Reason.
enum Reason : std::int8_t {
  kUndecided = -1,
  kIsolated = 0,
  kSureScore = 1,
  kSmall = 2,
  kBorder = 3,
  kPartner = 4,
  kAppearanceChanged = 5,
  kNoNeighbours = 6,
};

enum class Rule { kSeed, kTracklet, kSupport };

// The fields of flickermine.mining.params.MiningParams that the C++ rules use, same names and
// defaults. From Python they are filled by name (bindings.cpp, params_from_python), which fails
// on a MiningParams field not here unless params.PYTHON_ONLY_FIELDS lists it. Integers are 64-bit
// so that index and pixel sums (center + window, x2 + margin) cannot overflow.
struct Params {
  double score_threshold = 0.8;
  std::int64_t window = 5;
  std::int64_t margin = 100;
  double ncc_threshold = 0.5;
  double iou_threshold = 0.2;
  double sure_score = 0.98;
  double min_area = 1600.0;
  std::int64_t border = 50;
  std::int64_t max_gap = 1;
  // Support rule (rules.support_verdicts).
  std::int64_t min_tracked = 3;
  double max_support = 0.2;
  double support_iou = 0.5;
};

double iou(const Box& a, const Box& b);

// floor(v + 0.5), x1 into [0, W-1], x2 into [x1+1, W]; same for y. Matches boxes.pixel_boxes.
PixelBox pixel_box(const Box& box, int width, int height);
PixelBox grow(const PixelBox& box, std::int64_t margin, int width, int height);

// The window of one frame: consecutive frames (all the same size and pixel type), the
// candidate boxes of each (clipped to the image, score >= score_threshold), the scores of the
// center frame's boxes, and the position of the center frame.
struct Window {
  std::vector<ImageView> frames;
  std::vector<std::vector<Box>> boxes;
  std::vector<double> scores;
  int center = 0;
};

// One Reason per box of the center frame. Throws std::invalid_argument on inconsistent input.
std::vector<std::int8_t> frame_verdicts(const Window& window, const Params& params, Rule rule, bool iou_first);

// IoU at which a tracked box matches a detection at the ends of a hard-positive gap.
inline constexpr double kHardPositiveMatchIou = 0.5;

// Hard positives of the center frame (objects detected around it, missed in it); the same
// definition, search order and de-duplication as rules.hard_positives.
std::vector<Box> hard_positives(const Window& window, const Params& params);

}  // namespace flickermine
