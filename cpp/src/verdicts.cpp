#include "verdicts.hpp"

#include "parallel.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace flickermine {

double iou(const Box& a, const Box& b) {
  // Same operations in the same order as boxes.iou_matrix, so ties at a threshold agree.
  const double inter_w = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  const double inter_h = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  const double inter = std::max(inter_w, 0.0) * std::max(inter_h, 0.0);
  const double uni = a.area() + b.area() - inter;
  if (!std::isfinite(uni) || !std::isfinite(inter)) {
    // Finite coordinates near the double limit (a width, an area or the union overflowed):
    // IoU is scale-free, so take it of the boxes scaled by 2^-600 (exact for such values).
    const auto s = [](const Box& x) {
      return Box{std::ldexp(x.x1, -600), std::ldexp(x.y1, -600), std::ldexp(x.x2, -600), std::ldexp(x.y2, -600)};
    };
    const Box sa = s(a), sb = s(b);
    const double w = std::min(sa.x2, sb.x2) - std::max(sa.x1, sb.x1);
    const double h = std::min(sa.y2, sb.y2) - std::max(sa.y1, sb.y1);
    const double i = std::max(w, 0.0) * std::max(h, 0.0);
    const double u = sa.area() + sb.area() - i;
    return std::isfinite(u) && u > 0 ? i / u : 0.0;
  }
  return uni > 0 ? inter / uni : 0.0;
}

namespace {

double round_half_up(double v) { return std::floor(v + 0.5); }


bool overlaps_any(const Box& box, const std::vector<Box>& others, double threshold, bool inclusive) {
  for (const Box& other : others) {
    const double overlap = iou(box, other);
    if (inclusive ? overlap >= threshold : overlap > threshold) return true;
  }
  return false;
}

std::vector<std::int8_t> exemption_reasons(const Window& w, const Params& p) {
  const ImageView& frame = w.frames[w.center];
  const std::vector<Box>& boxes = w.boxes[w.center];
  std::vector<std::int8_t> reasons(boxes.size(), kUndecided);
  for (size_t i = 0; i < boxes.size(); ++i) {
    const Box& b = boxes[i];
    if (w.scores[i] >= p.sure_score) {
      reasons[i] = kSureScore;
    } else if (b.area() < p.min_area) {
      reasons[i] = kSmall;
    } else if (b.x1 < double(p.border) || b.y1 < double(p.border) || b.x2 > double(frame.width) - double(p.border) ||
               b.y2 > double(frame.height) - double(p.border)) {
      reasons[i] = kBorder;
    }
  }
  return reasons;
}

// Indices of the detections no exemption decided: the ones a rule searches for, each on its own.
std::vector<size_t> undecided(const std::vector<std::int8_t>& reasons) {
  std::vector<size_t> todo;
  for (size_t i = 0; i < reasons.size(); ++i)
    if (reasons[i] == kUndecided) todo.push_back(i);
  return todo;
}

// First and last frame of the window around the center, summed in 64 bits (window may be huge).
std::pair<int, int> window_bounds(const Window& w, const Params& p) {
  const std::int64_t center = w.center;
  const std::int64_t last = static_cast<std::int64_t>(w.frames.size()) - 1;
  const std::int64_t window = std::max<std::int64_t>(p.window, 0);
  const std::int64_t lo = center >= window ? center - window : 0;
  const std::int64_t hi = last - center <= window ? last : center + window;
  return {static_cast<int>(lo), static_cast<int>(hi)};
}

Box tracked_box(const NccMatch& m, const PixelBox& templ) {
  return Box{double(m.x), double(m.y), double(m.x + templ.width()), double(m.y + templ.height())};
}

std::vector<std::int8_t> seed(const Window& w, const Params& p, bool iou_first) {
  const ImageView& frame = w.frames[w.center];
  const std::vector<Box>& detections = w.boxes[w.center];
  std::vector<std::int8_t> reasons = exemption_reasons(w, p);
  const auto [lo, hi] = window_bounds(w, p);
  std::vector<int> neighbours;
  for (int g = lo; g <= hi; ++g) {
    if (g != w.center && !w.boxes[g].empty()) neighbours.push_back(g);
  }

  std::vector<size_t> searched;  // the detections the cheap test leaves undecided
  for (size_t i = 0; i < detections.size(); ++i) {
    if (reasons[i] != kUndecided) continue;
    if (iou_first) {
      for (int g : neighbours) {
        if (overlaps_any(detections[i], w.boxes[g], p.iou_threshold, false)) {
          reasons[i] = kPartner;
          break;
        }
      }
      if (reasons[i] != kUndecided) continue;
    }
    searched.push_back(i);
  }
  // Only those pay for a template; each is decided on its own, so they are spread over threads.
  parallel_for(searched.size(), [&](size_t k) {
    const size_t i = searched[k];
    const PixelBox templ_box = pixel_box(detections[i], frame.width, frame.height);
    const PixelBox region = grow(templ_box, p.margin, frame.width, frame.height);
    std::unique_ptr<NccTemplate> templ;
    for (int g : neighbours) {
      if (!templ) templ = std::make_unique<NccTemplate>(frame, templ_box);
      const NccMatch match = templ->search(w.frames[g], region);
      if (match.score < p.ncc_threshold) {
        reasons[i] = kAppearanceChanged;
        break;
      }
      if (overlaps_any(tracked_box(match, templ_box), w.boxes[g], p.iou_threshold, false) ||
          (!iou_first && overlaps_any(detections[i], w.boxes[g], p.iou_threshold, false))) {
        reasons[i] = kPartner;
        break;
      }
    }
    if (reasons[i] == kUndecided) reasons[i] = kIsolated;
  });
  return reasons;
}

std::vector<std::int8_t> tracklet(const Window& w, const Params& p) {
  const ImageView& frame = w.frames[w.center];
  const std::vector<Box>& detections = w.boxes[w.center];
  std::vector<std::int8_t> reasons = exemption_reasons(w, p);
  const auto [lo, hi] = window_bounds(w, p);

  const std::vector<size_t> todo = undecided(reasons);
  parallel_for(todo.size(), [&](size_t k) {
    const size_t i = todo[k];
    const PixelBox templ_box = pixel_box(detections[i], frame.width, frame.height);
    NccTemplate templ(frame, templ_box);
    int frames_reached = 0;
    for (int step : {1, -1}) {
      PixelBox previous = templ_box;
      for (int g = w.center + step; g >= lo && g <= hi && reasons[i] == kUndecided; g += step) {
        const PixelBox region = grow(previous, p.margin, frame.width, frame.height);
        const NccMatch match = templ.search(w.frames[g], region);
        if (match.score < p.ncc_threshold) break;
        ++frames_reached;
        const Box tracked = tracked_box(match, templ_box);
        if (overlaps_any(tracked, w.boxes[g], p.iou_threshold, true)) reasons[i] = kPartner;
        previous = PixelBox{match.x, match.y, match.x + templ_box.width(), match.y + templ_box.height()};
      }
      if (reasons[i] != kUndecided) break;
    }
    if (reasons[i] == kUndecided) {
      reasons[i] = frames_reached > 0 ? kIsolated : (hi > lo ? kAppearanceChanged : kNoNeighbours);
    }
  });
  return reasons;
}

// Rule "support" (rules.support_verdicts: support_evidence, then support_decision). A neighbour
// frame is tracked when the best NCC >= ncc_threshold (NaN never is) and supports when, moreover,
// a detection of it overlaps the tracked box at IoU >= support_iou. ISOLATED: at least
// min_tracked tracked frames and supporting <= max_support * tracked; too few tracked:
// APPEARANCE_CHANGED (NO_NEIGHBOURS without neighbour frames); else PARTNER.
//
// The searches of one detection stop as soon as no outcome of the frames left can change the
// verdict, so the verdicts are those of searching every frame. With t tracked and s supporting
// so far and r frames left, each left frame adds nothing, one tracked frame, or one tracked and
// supporting frame; the decision compares s' with max_support * t' (rounded, and rounding is
// monotone), so for 0 <= max_support the worst completions are: for PARTNER, every frame left
// tracked without support (s > max_support * (t + r) with t >= min_tracked); for ISOLATED, k of
// them tracked and supporting, each k checked with the decision's own expression; and too few
// frames left to reach min_tracked is APPEARANCE_CHANGED. Neighbours are searched nearest first
// (center -+ 1, -+ 2, ...): a consistent object is tracked and supported there first, so its
// search ends after min_tracked frames more often than in frame order.
std::vector<std::int8_t> support(const Window& w, const Params& p) {
  const ImageView& frame = w.frames[w.center];
  const std::vector<Box>& detections = w.boxes[w.center];
  std::vector<std::int8_t> reasons = exemption_reasons(w, p);
  const auto [lo, hi] = window_bounds(w, p);
  std::vector<int> neighbours;  // nearest first
  for (int d = 1; w.center - d >= lo || w.center + d <= hi; ++d) {
    if (w.center - d >= lo) neighbours.push_back(w.center - d);
    if (w.center + d <= hi) neighbours.push_back(w.center + d);
  }
  const std::int64_t num_neighbours = static_cast<std::int64_t>(neighbours.size());
  // Whether ISOLATED holds whatever the `left` frames give: k of them tracked and supporting
  // (the rest untracked) is the worst case for each k, as explained above.
  const auto isolated_whatever = [&p](std::int64_t tracked, std::int64_t supporting, std::int64_t left) {
    if (!(p.max_support >= 0.0 && p.max_support < 1.0) || tracked < p.min_tracked) return false;
    // k = left first: when any k fails, that one almost always does, so the loop rarely runs.
    if (!(double(supporting + left) <= p.max_support * double(tracked + left))) return false;
    for (std::int64_t k = 0; k < left; ++k) {
      if (!(double(supporting + k) <= p.max_support * double(tracked + k))) return false;
    }
    return true;
  };

  if (num_neighbours < p.min_tracked) {
    // Never enough frames to track into: no search can change the verdict.
    for (std::int8_t& reason : reasons)
      if (reason == kUndecided) reason = num_neighbours > 0 ? kAppearanceChanged : kNoNeighbours;
    return reasons;
  }
  const std::vector<size_t> todo = undecided(reasons);
  parallel_for(todo.size(), [&](size_t k) {
    const size_t i = todo[k];
    const PixelBox templ_box = pixel_box(detections[i], frame.width, frame.height);
    const PixelBox region = grow(templ_box, p.margin, frame.width, frame.height);
    NccTemplate templ(frame, templ_box);
    std::int64_t tracked = 0, supporting = 0, searched = 0;
    for (int g : neighbours) {
      const std::int64_t left = num_neighbours - searched;
      // PARTNER whatever comes: enough frames tracked, and more support than max_support of
      // every frame that can still be tracked.
      if (p.max_support >= 0 && tracked >= p.min_tracked && double(supporting) > p.max_support * double(tracked + left)) break;
      if (tracked + left < p.min_tracked) break;  // APPEARANCE_CHANGED whatever comes
      if (isolated_whatever(tracked, supporting, left)) break;
      ++searched;
      const NccMatch match = templ.search(w.frames[g], region);
      if (!(match.score >= p.ncc_threshold)) continue;
      ++tracked;
      const Box box = tracked_box(match, templ_box);
      double overlap = 0.0;
      for (const Box& other : w.boxes[g]) overlap = std::max(overlap, iou(box, other));
      if (overlap >= p.support_iou) ++supporting;
    }
    const bool enough = tracked >= p.min_tracked;
    if (!enough) {
      reasons[i] = kAppearanceChanged;  // tracked < min_tracked <= num_neighbours: there are neighbours
    } else if (double(supporting) <= p.max_support * double(tracked)) {
      reasons[i] = kIsolated;
    } else {
      reasons[i] = kPartner;
    }
  });
  return reasons;
}

void check_window(const Window& w) {
  const int n = static_cast<int>(w.frames.size());
  if (n == 0) throw std::invalid_argument("frames must not be empty");
  if (static_cast<int>(w.boxes.size()) != n) {
    throw std::invalid_argument("boxes has " + std::to_string(w.boxes.size()) + " entries but frames has " +
                                std::to_string(n) + "; give one (N_i, 4) array per frame");
  }
  if (w.center < 0 || w.center >= n) {
    throw std::invalid_argument("center " + std::to_string(w.center) + " is outside the window of " +
                                std::to_string(n) + " frames");
  }
  const ImageView& first = w.frames[0];
  for (int g = 0; g < n; ++g) {
    const ImageView& f = w.frames[g];
    if (f.height != first.height || f.width != first.width || f.type != first.type) {
      throw std::invalid_argument("frames[" + std::to_string(g) + "] has shape (" + std::to_string(f.height) + ", " +
                                  std::to_string(f.width) + ") or dtype different from frames[0] (" +
                                  std::to_string(first.height) + ", " + std::to_string(first.width) + ")");
    }
  }
}

}  // namespace

PixelBox pixel_box(const Box& box, int width, int height) {
  // Clamped as doubles, then converted: a coordinate far outside the image never meets an int.
  PixelBox p;
  p.x1 = static_cast<int>(std::clamp(round_half_up(box.x1), 0.0, double(width - 1)));
  p.y1 = static_cast<int>(std::clamp(round_half_up(box.y1), 0.0, double(height - 1)));
  p.x2 = static_cast<int>(std::clamp(round_half_up(box.x2), double(p.x1 + 1), double(width)));
  p.y2 = static_cast<int>(std::clamp(round_half_up(box.y2), double(p.y1 + 1), double(height)));
  return p;
}

PixelBox grow(const PixelBox& box, std::int64_t margin, int width, int height) {
  // In 64 bits, and a margin beyond the image is the image: no sum can overflow.
  const std::int64_t m = std::clamp<std::int64_t>(margin, 0, std::int64_t(width) + height);
  const auto lo = [m](int v) { return static_cast<int>(std::max<std::int64_t>(v - m, 0)); };
  const auto hi = [m](int v, int size) { return static_cast<int>(std::min<std::int64_t>(v + m, size)); };
  return PixelBox{lo(box.x1), lo(box.y1), hi(box.x2, width), hi(box.y2, height)};
}

std::vector<Box> hard_positives(const Window& w, const Params& p) {
  check_window(w);
  const ImageView& frame = w.frames[w.center];
  const int n = static_cast<int>(w.frames.size());
  // Beyond n frames every source and target is outside the window: the loops stop there.
  const std::int64_t max_gap = std::clamp<std::int64_t>(p.max_gap, 0, n);
  struct Source {
    int direction;  // 1: a source before the center, tracked forward
    int distance;
    const Box* detection;
  };
  std::vector<Source> sources;  // in the oracle's order: found boxes keep it
  for (int direction : {1, -1}) {
    for (int distance = 1; distance <= max_gap; ++distance) {
      const int source = w.center - direction * distance;
      if (source < 0 || source >= n) continue;
      for (const Box& detection : w.boxes[source]) sources.push_back(Source{direction, distance, &detection});
    }
  }
  // Each detection is tracked on its own: spread over threads, each result kept in its slot.
  std::vector<std::optional<Box>> found_at(sources.size());
  parallel_for(sources.size(), [&](size_t k) {
    const int direction = sources[k].direction, distance = sources[k].distance;
    const int source = w.center - direction * distance;
    const PixelBox templ_box = pixel_box(*sources[k].detection, frame.width, frame.height);
    NccTemplate templ(w.frames[source], templ_box);
    PixelBox previous = templ_box;
    Box at_center;
    for (int step = 1; step <= max_gap + 1; ++step) {
      const int g = source + direction * step;
      if (g < 0 || g >= n) break;
      const NccMatch match = templ.search(w.frames[g], grow(previous, p.margin, frame.width, frame.height));
      if (match.score < p.ncc_threshold) break;
      const Box tracked{double(match.x), double(match.y), double(match.x + templ_box.width()),
                        double(match.y + templ_box.height())};
      double overlap = 0.0;
      for (const Box& other : w.boxes[g]) overlap = std::max(overlap, iou(tracked, other));
      if (overlap >= kHardPositiveMatchIou) {
        if (step > distance) found_at[k] = at_center;
        break;
      }
      if (overlap >= p.iou_threshold || step > max_gap) break;  // partial overlap, or too many gaps
      if (step == distance) at_center = tracked;
      previous = PixelBox{match.x, match.y, match.x + templ_box.width(), match.y + templ_box.height()};
    }
  });
  std::vector<Box> found;
  for (const auto& box : found_at)
    if (box) found.push_back(*box);
  std::vector<Box> kept;
  for (const Box& box : found) {
    bool duplicate = false;
    for (const Box& k : kept) duplicate = duplicate || iou(box, k) >= kHardPositiveMatchIou;
    if (!duplicate) kept.push_back(box);
  }
  return kept;
}

std::vector<std::int8_t> frame_verdicts(const Window& window, const Params& params, Rule rule, bool iou_first) {
  check_window(window);
  if (window.scores.size() != window.boxes[window.center].size()) {
    throw std::invalid_argument("scores has " + std::to_string(window.scores.size()) +
                                " entries but the center frame has " +
                                std::to_string(window.boxes[window.center].size()) + " boxes");
  }
  switch (rule) {
    case Rule::kSeed:
      return seed(window, params, iou_first);
    case Rule::kSupport:
      return support(window, params);
    case Rule::kTracklet:
      break;
  }
  return tracklet(window, params);
}

}  // namespace flickermine
