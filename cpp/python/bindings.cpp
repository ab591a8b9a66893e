// pybind11 bindings of flickermine._core. Arrays are checked here (shape, dtype, layout, box
// bounds) and a std::invalid_argument becomes a ValueError naming the bad argument; the work
// itself runs with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ncc.hpp"
#include "parallel.hpp"
#include "verdicts.hpp"

#include "array_args.hpp"

namespace py = pybind11;
using namespace flickermine;

namespace {

using Int64Array = py::array_t<std::int64_t, py::array::c_style>;
using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

// A number in a message: short (%g), never the 300 digits std::to_string gives 1e308.
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// A frame argument as a checked view. A frame whose data or row stride is not a multiple of its
// item size (a float32 view at an odd byte offset) is copied first: the kernels load pixels as
// typed, aligned values. The array (or its copy) is appended to `keep`, which must outlive the view.
ImageView frame_arg(const py::handle& h, const std::string& name, std::vector<py::array>& keep) {
  if (!py::isinstance<py::array>(h)) {
    throw std::invalid_argument(name + " must be a numpy array, got " + std::string(py::str(py::type::of(h))));
  }
  py::array a = py::reinterpret_borrow<py::array>(h);
  const py::ssize_t item = a.itemsize();
  if (a.ndim() == 2 && item > 1 &&
      (reinterpret_cast<std::uintptr_t>(a.data()) % static_cast<std::uintptr_t>(item) != 0 || a.strides(0) % item != 0)) {
    a = a.attr("copy")().cast<py::array>();
  }
  keep.push_back(a);
  return image_view(keep.back(), name);
}

// MiningParams (a Python dataclass) to Params, field by field by name. The C++ fields are listed
// here once; a Python field missing from them fails unless `python_only` (params.PYTHON_ONLY_FIELDS,
// name -> reason) names it, and so does a C++ field the Python object lacks: the two definitions
// cannot drift apart silently.
struct DoubleField {
  const char* name;
  double Params::*member;
};
struct IntField {
  const char* name;
  std::int64_t Params::*member;
};
constexpr DoubleField kDoubleFields[] = {
    {"score_threshold", &Params::score_threshold}, {"ncc_threshold", &Params::ncc_threshold},
    {"iou_threshold", &Params::iou_threshold},     {"sure_score", &Params::sure_score},
    {"min_area", &Params::min_area},               {"max_support", &Params::max_support},
    {"support_iou", &Params::support_iou},
};
constexpr IntField kIntFields[] = {
    {"window", &Params::window}, {"margin", &Params::margin}, {"border", &Params::border}, {"max_gap", &Params::max_gap},
    {"min_tracked", &Params::min_tracked}};

py::tuple params_field_names() {
  py::list names;
  for (const DoubleField& f : kDoubleFields) names.append(f.name);
  for (const IntField& f : kIntFields) names.append(f.name);
  return py::tuple(names);
}

Params params_from_python(const py::object& obj, const py::dict& python_only) {
  py::module_ dataclasses = py::module_::import("dataclasses");
  if (py::isinstance<py::type>(obj) || !dataclasses.attr("is_dataclass")(obj).cast<bool>()) {
    throw std::invalid_argument("params must be a MiningParams instance, got " + std::string(py::repr(obj)));
  }
  const std::string type_name = py::str(py::type::of(obj).attr("__name__"));
  Params p;
  std::vector<std::string> seen;
  for (const py::handle field : dataclasses.attr("fields")(obj)) {
    const std::string name = py::str(field.attr("name"));
    const py::object value = obj.attr(name.c_str());
    bool known = false;
    for (const DoubleField& f : kDoubleFields) {
      if (name != f.name) continue;
      known = true;
      if (!PyFloat_Check(value.ptr()) && !(PyLong_Check(value.ptr()) && !PyBool_Check(value.ptr()))) {
        throw std::invalid_argument(type_name + "." + name + " must be a number, got " + std::string(py::repr(value)));
      }
      const double v = value.cast<double>();
      if (!std::isfinite(v)) throw std::invalid_argument(type_name + "." + name + " must be finite, got " + num(v));
      p.*f.member = v;
    }
    for (const IntField& f : kIntFields) {
      if (name != f.name) continue;
      known = true;
      if (!PyLong_Check(value.ptr()) || PyBool_Check(value.ptr())) {
        throw std::invalid_argument(type_name + "." + name + " must be an integer, got " + std::string(py::repr(value)));
      }
      int overflow = 0;
      const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
      if (overflow != 0 || v < -INT_MAX || v > INT_MAX) {
        throw std::invalid_argument(type_name + "." + name + " = " + std::string(py::repr(value)) +
                                    " is outside the C++ core's range (|value| <= " + std::to_string(INT_MAX) + ")");
      }
      p.*f.member = v;
    }
    if (known) {
      seen.push_back(name);
    } else if (!python_only.contains(name)) {
      throw std::runtime_error(type_name + " field '" + name +
                               "' is not a field of the C++ core's Params (cpp/include/verdicts.hpp, cpp/python/bindings.cpp) nor "
                               "listed in flickermine.mining.params.PYTHON_ONLY_FIELDS; add it to the C++ or list it "
                               "there with the reason the C++ may ignore it");
    }
  }
  for (const py::handle name : params_field_names()) {
    const std::string n = py::str(name);
    if (std::find(seen.begin(), seen.end(), n) == seen.end()) {
      throw std::runtime_error("the C++ core's Params field '" + n + "' is not a field of " + type_name +
                               "; the two definitions of the mining parameters disagree");
    }
  }
  return p;
}

// (K, 4) integer pixel boxes. Float input is refused rather than truncated.
std::vector<PixelBox> pixel_boxes_arg(const py::array& a, const std::string& name, const ImageView& frame) {
  if (a.dtype().kind() != 'i' && a.dtype().kind() != 'u') {
    throw std::invalid_argument(name + " must be an integer array of pixel boxes, but got dtype " +
                                std::string(py::str(a.dtype())));
  }
  Int64Array boxes = Int64Array::ensure(a);
  if (!boxes || boxes.ndim() != 2 || boxes.shape(1) != 4) {
    throw std::invalid_argument(name + " must have shape (K, 4), but got shape " + shape_of(a));
  }
  std::vector<PixelBox> out(boxes.shape(0));
  auto r = boxes.unchecked<2>();
  for (py::ssize_t k = 0; k < boxes.shape(0); ++k) {
    // Checked as 64-bit values, before any narrowing to int.
    const std::int64_t x1 = r(k, 0), y1 = r(k, 1), x2 = r(k, 2), y2 = r(k, 3);
    if (x1 < 0 || y1 < 0 || x2 > frame.width || y2 > frame.height || x2 <= x1 || y2 <= y1) {
      throw std::invalid_argument(name + "[" + std::to_string(k) + "] = [" + std::to_string(x1) + ", " +
                                  std::to_string(y1) + ", " + std::to_string(x2) + ", " + std::to_string(y2) +
                                  "] is empty or outside the (" + std::to_string(frame.height) + ", " +
                                  std::to_string(frame.width) + ") frame");
    }
    out[k] = PixelBox{int(x1), int(y1), int(x2), int(y2)};
  }
  return out;
}

std::vector<Box> boxes_arg(const py::handle& h, const std::string& name) {
  DoubleArray boxes = DoubleArray::ensure(h);
  if (!boxes) throw std::invalid_argument(name + " must be a numeric array");
  if (boxes.size() == 0) return {};
  if (boxes.ndim() != 2 || boxes.shape(1) != 4) {
    throw std::invalid_argument(name + " must have shape (N, 4) as x1, y1, x2, y2, but got shape " + shape_of(boxes));
  }
  std::vector<Box> out(boxes.shape(0));
  auto r = boxes.unchecked<2>();
  for (py::ssize_t k = 0; k < boxes.shape(0); ++k) {
    const Box b{r(k, 0), r(k, 1), r(k, 2), r(k, 3)};
    // Each coordinate on its own: a sum of finite +-1e308 would overflow. Comparisons with NaN
    // are false, so NaN fails the first test too.
    const bool finite = std::isfinite(b.x1) && std::isfinite(b.y1) && std::isfinite(b.x2) && std::isfinite(b.y2);
    if (!(b.x2 > b.x1 && b.y2 > b.y1) || !finite) {
      throw std::invalid_argument(name + "[" + std::to_string(k) + "] = [" + num(b.x1) + ", " + num(b.y1) + ", " +
                                  num(b.x2) + ", " + num(b.y2) + "] is " +
                                  (finite ? "empty or inverted (need x2 > x1, y2 > y1)" : "not finite"));
    }
    out[k] = b;
  }
  return out;
}

py::tuple ncc_search_batch(const py::array& template_frame, const py::array& template_boxes,
                           const py::array& search_frame, const py::array& regions) {
  std::vector<py::array> keep;
  const ImageView templ_view = frame_arg(template_frame, "template_frame", keep);
  const ImageView search_view = frame_arg(search_frame, "search_frame", keep);
  if (templ_view.type != search_view.type) {
    throw std::invalid_argument("template_frame and search_frame must have the same dtype");
  }
  const std::vector<PixelBox> templ_boxes = pixel_boxes_arg(template_boxes, "template_boxes", templ_view);
  const std::vector<PixelBox> region_boxes = pixel_boxes_arg(regions, "regions", search_view);
  if (templ_boxes.size() != region_boxes.size()) {
    throw std::invalid_argument("template_boxes has " + std::to_string(templ_boxes.size()) + " rows but regions has " +
                                std::to_string(region_boxes.size()));
  }
  for (size_t k = 0; k < templ_boxes.size(); ++k) {
    if (region_boxes[k].width() < templ_boxes[k].width() || region_boxes[k].height() < templ_boxes[k].height()) {
      throw std::invalid_argument("regions[" + std::to_string(k) + "] is smaller than template_boxes[" +
                                  std::to_string(k) + "]");
    }
  }
  const py::ssize_t count = static_cast<py::ssize_t>(templ_boxes.size());
  py::array_t<double> scores(count);
  py::array_t<std::int64_t> top_left({count, py::ssize_t(2)});
  double* s = scores.mutable_data();
  std::int64_t* p = top_left.mutable_data();
  {
    py::gil_scoped_release release;
    for (py::ssize_t k = 0; k < count; ++k) {
      NccTemplate templ(templ_view, templ_boxes[k]);
      const NccMatch m = templ.search(search_view, region_boxes[k]);
      s[k] = m.score;
      p[2 * k] = m.x;
      p[2 * k + 1] = m.y;
    }
  }
  return py::make_tuple(scores, top_left);
}

// One template searched in several frames: what the rules do with each detection (the
// template is cut once, its transform reused). Used by the benchmark and by tests.
py::tuple ncc_search_frames(const py::array& template_frame, const py::array& template_box,
                            const py::list& search_frames, const py::array& region) {
  std::vector<py::array> keep;
  const ImageView templ_view = frame_arg(template_frame, "template_frame", keep);
  const PixelBox templ_box = pixel_boxes_arg(template_box, "template_box", templ_view).at(0);
  std::vector<ImageView> views;
  for (size_t g = 0; g < search_frames.size(); ++g) {
    views.push_back(frame_arg(search_frames[g], "search_frames[" + std::to_string(g) + "]", keep));
    if (views.back().type != templ_view.type) {
      throw std::invalid_argument("search_frames[" + std::to_string(g) + "] must have template_frame's dtype");
    }
  }
  PixelBox region_box{};
  for (size_t g = 0; g < views.size(); ++g) {
    region_box = pixel_boxes_arg(region, "region", views[g]).at(0);
  }
  if (region_box.width() < templ_box.width() || region_box.height() < templ_box.height()) {
    throw std::invalid_argument("region is smaller than template_box");
  }
  const py::ssize_t count = static_cast<py::ssize_t>(views.size());
  py::array_t<double> scores(count);
  py::array_t<std::int64_t> top_left({count, py::ssize_t(2)});
  double* s = scores.mutable_data();
  std::int64_t* p = top_left.mutable_data();
  {
    py::gil_scoped_release release;
    NccTemplate templ(templ_view, templ_box);
    for (py::ssize_t g = 0; g < count; ++g) {
      const NccMatch m = templ.search(views[g], region_box);
      s[g] = m.score;
      p[2 * g] = m.x;
      p[2 * g + 1] = m.y;
    }
  }
  return py::make_tuple(scores, top_left);
}

py::array_t<double> iou_matrix(const py::array& a, const py::array& b) {
  const std::vector<Box> boxes_a = boxes_arg(a, "boxes_a");
  const std::vector<Box> boxes_b = boxes_arg(b, "boxes_b");
  py::array_t<double> out({py::ssize_t(boxes_a.size()), py::ssize_t(boxes_b.size())});
  double* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    for (size_t i = 0; i < boxes_a.size(); ++i)
      for (size_t j = 0; j < boxes_b.size(); ++j) o[i * boxes_b.size() + j] = iou(boxes_a[i], boxes_b[j]);
  }
  return out;
}

Window window_arg(const py::list& frames, const py::list& boxes, int center, std::vector<py::array>& keep) {
  Window w;
  for (size_t g = 0; g < frames.size(); ++g) w.frames.push_back(frame_arg(frames[g], "frames[" + std::to_string(g) + "]", keep));
  for (size_t g = 0; g < boxes.size(); ++g) w.boxes.push_back(boxes_arg(boxes[g], "boxes[" + std::to_string(g) + "]"));
  w.center = center;
  return w;
}

py::array_t<double> hard_positives_py(const py::list& frames, const py::list& boxes, int center,
                                      const Params& params) {
  std::vector<py::array> keep;
  const Window w = window_arg(frames, boxes, center, keep);
  std::vector<Box> found;
  {
    py::gil_scoped_release release;
    found = hard_positives(w, params);
  }
  py::array_t<double> out({py::ssize_t(found.size()), py::ssize_t(4)});
  double* o = out.mutable_data();
  for (size_t i = 0; i < found.size(); ++i) {
    o[4 * i] = found[i].x1;
    o[4 * i + 1] = found[i].y1;
    o[4 * i + 2] = found[i].x2;
    o[4 * i + 3] = found[i].y2;
  }
  return out;
}

py::array_t<std::int8_t> frame_verdicts_py(const py::list& frames, const py::list& boxes, const py::array& scores,
                                           int center, const Params& params, const std::string& rule,
                                           bool iou_first) {
  Rule r;
  if (rule == "seed") {
    r = Rule::kSeed;
  } else if (rule == "tracklet") {
    r = Rule::kTracklet;
  } else if (rule == "support") {
    r = Rule::kSupport;
  } else {
    throw std::invalid_argument("rule must be 'seed', 'tracklet' or 'support', got '" + rule + "'");
  }
  std::vector<py::array> keep;  // keeps the frames alive while the GIL is released
  Window w = window_arg(frames, boxes, center, keep);
  DoubleArray score_array = DoubleArray::ensure(scores);
  if (!score_array || score_array.ndim() != 1) throw std::invalid_argument("scores must be a 1D array");
  w.scores.assign(score_array.data(), score_array.data() + score_array.size());
  std::vector<std::int8_t> reasons;
  {
    py::gil_scoped_release release;
    reasons = frame_verdicts(w, params, r, iou_first);
  }
  py::array_t<std::int8_t> out(static_cast<py::ssize_t>(reasons.size()));
  std::copy(reasons.begin(), reasons.end(), out.mutable_data());
  return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "flickermine's C++ core: NCC search, IoU and flicker verdicts (private; use flickermine)";

  py::class_<Params>(m, "Params")
      .def(py::init<>())
      .def_readwrite("score_threshold", &Params::score_threshold)
      .def_readwrite("window", &Params::window)
      .def_readwrite("margin", &Params::margin)
      .def_readwrite("ncc_threshold", &Params::ncc_threshold)
      .def_readwrite("iou_threshold", &Params::iou_threshold)
      .def_readwrite("sure_score", &Params::sure_score)
      .def_readwrite("min_area", &Params::min_area)
      .def_readwrite("border", &Params::border)
      .def_readwrite("max_gap", &Params::max_gap)
      .def_readwrite("min_tracked", &Params::min_tracked)
      .def_readwrite("max_support", &Params::max_support)
      .def_readwrite("support_iou", &Params::support_iou)
      .def_static("from_python", &params_from_python, py::arg("params"), py::arg("python_only"),
                  "Params from a MiningParams dataclass, field by field by name. Raises RuntimeError naming a "
                  "field the C++ lacks (unless python_only, name -> reason, lists it) or a C++ field the "
                  "dataclass lacks; ValueError for a value out of range.")
      .def_property_readonly_static("fields", [](const py::object&) { return params_field_names(); },
                                    "The names of the fields the C++ rules take.");

  m.def("ncc_search_batch", &ncc_search_batch, py::arg("template_frame"), py::arg("template_boxes"),
        py::arg("search_frame"), py::arg("regions"),
        "Best TM_CCOEFF_NORMED score and top-left (x, y) of each template box of template_frame inside its "
        "region of search_frame. Boxes (K, 4) int64 half-open pixels. Returns (scores (K,), top_left (K, 2)).");
  m.def("ncc_search_frames", &ncc_search_frames, py::arg("template_frame"), py::arg("template_box"),
        py::arg("search_frames"), py::arg("region"),
        "Search one (1, 4) template box of template_frame inside the same (1, 4) region of each of search_frames, "
        "reusing the template's transform. Returns (scores (G,), top_left (G, 2)).");
  m.def("iou", &iou_matrix, py::arg("boxes_a"), py::arg("boxes_b"),
        "IoU of (N, 4) and (M, 4) x1, y1, x2, y2 boxes, continuous coordinates: (N, M) float64.");
  m.def("frame_verdicts", &frame_verdicts_py, py::arg("frames"), py::arg("boxes"), py::arg("scores"),
        py::arg("center"), py::arg("params"), py::arg("rule"), py::arg("iou_first") = true,
        "Reason codes (N,) int8 of the center frame's boxes; see flickermine.rules.");
  m.def("hard_positives", &hard_positives_py, py::arg("frames"), py::arg("boxes"), py::arg("center"),
        py::arg("params"), "Hard positives (M, 4) x1, y1, x2, y2 of the center frame; see flickermine.rules.");
  m.def(
      "ncc_score_map_reference",
      [](const py::array& template_frame, const py::array& template_box, const py::array& search_frame,
         const py::array& region) {
        std::vector<py::array> keep;
        const ImageView tv = frame_arg(template_frame, "template_frame", keep);
        const ImageView sv = frame_arg(search_frame, "search_frame", keep);
        const PixelBox tb = pixel_boxes_arg(template_box, "template_box", tv).at(0);
        const PixelBox rb = pixel_boxes_arg(region, "region", sv).at(0);
        std::vector<double> map = ncc_score_map_reference(tv, tb, sv, rb);
        py::array_t<double> out({py::ssize_t(rb.height() - tb.height() + 1), py::ssize_t(rb.width() - tb.width() + 1)});
        std::copy(map.begin(), map.end(), out.mutable_data());
        return out;
      },
      "Float64 direct score map of one (1, 4) template box in one (1, 4) region (slow; for tests).");
  m.def(
      "_ncc_isa",
      [](const std::string& name) {
        if (!name.empty()) {
          NccIsa isa = NccIsa::kBaseline;
          if (name == "avx2") {
            isa = NccIsa::kAvx2;
          } else if (name == "avx512") {
            isa = NccIsa::kAvx512;
          } else if (name != "baseline") {
            throw std::invalid_argument("unknown NCC kernel set '" + name + "' (baseline, avx2, avx512)");
          }
          ncc_set_isa(isa);
        }
        py::list available;
        for (int k = 0; k <= static_cast<int>(ncc_best_isa()); ++k) available.append(ncc_isa_name(static_cast<NccIsa>(k)));
        return py::make_tuple(ncc_isa_name(ncc_isa()), available);
      },
      py::arg("name") = "",
      "Private, for tests and benchmarks: switch the NCC kernels to the vector code path `name` (baseline, avx2, "
      "avx512; '' leaves it). Returns (in use, available here).");
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 0 || n > kMaxThreads)
          throw std::invalid_argument("threads must be >= 0 and <= " + std::to_string(kMaxThreads) + ", got " +
                                      std::to_string(n));
        set_num_threads(n);
      },
      py::arg("threads"),
      "Threads that frame_verdicts and hard_positives spread one frame's detections over, the caller's "
      "included (0: the default, one less than the cores this process may run on, at least 1). Process-wide.");
  m.def("num_threads", &num_threads, "The threads frame_verdicts and hard_positives use (see set_num_threads).");
  m.def(
      "_parallel_for_check",
      [](int n, int fail_at, int sleep_us) {
        if (n < 0 || n > 100000 || sleep_us < 0 || sleep_us > 100000)
          throw std::invalid_argument("n must be in [0, 100000] and sleep_us in [0, 100000]");
        std::vector<int> calls(static_cast<size_t>(n), 0);
        std::mutex lock;
        std::set<std::thread::id> threads;
        {
          py::gil_scoped_release release;
          parallel_for(calls.size(), [&](size_t i) {
            if (static_cast<int>(i) == fail_at) throw std::invalid_argument("item " + std::to_string(i) + " failed");
            std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
            ++calls[i];
            std::lock_guard<std::mutex> guard(lock);
            threads.insert(std::this_thread::get_id());
          });
        }
        return py::make_tuple(calls, threads.size());
      },
      py::arg("n"), py::arg("fail_at") = -1, py::arg("sleep_us") = 0,
      "Private, for tests: parallel_for over n items, each sleeping sleep_us; item fail_at throws. Returns "
      "(calls of each item, number of threads that ran items).");
  m.attr("has_cuda") = false;
}
