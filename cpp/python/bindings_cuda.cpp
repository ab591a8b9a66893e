// pybind11 bindings of flickermine._core_cuda: the CUDA kernels of ncc_cuda.cu, with the same
// signatures and argument checks as flickermine._core (cpp/python/bindings.cpp). A separate module so
// that _core never depends on the CUDA runtime. Work runs with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "ncc_cuda.hpp"

#include "array_args.hpp"

namespace py = pybind11;
using flickermine::ImageView;
using flickermine::image_view;
using flickermine::shape_of;
using flickermine::NccMatch;
using flickermine::PixelBox;
using flickermine::PixelType;
namespace fcuda = flickermine::cuda;

namespace {

using Int64Array = py::array_t<std::int64_t, py::array::c_style>;
using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

std::vector<std::int64_t> int_rows(const py::array& a, const std::string& name, py::ssize_t columns) {
  if (a.dtype().kind() != 'i' && a.dtype().kind() != 'u') {
    throw std::invalid_argument(name + " must be an integer array, but got dtype " + std::string(py::str(a.dtype())));
  }
  Int64Array values = Int64Array::ensure(a);
  const bool ok = columns == 0 ? (values && values.ndim() == 1) : (values && values.ndim() == 2 && values.shape(1) == columns);
  if (!ok) {
    throw std::invalid_argument(name + " must have shape " + (columns == 0 ? std::string("(K,)") : "(K, 4)") +
                                ", but got shape " + shape_of(a));
  }
  return std::vector<std::int64_t>(values.data(), values.data() + values.size());
}

PixelBox pixel_box(const std::vector<std::int64_t>& rows, std::size_t k, const std::string& name,
                   const ImageView& frame) {
  const PixelBox b{int(rows[4 * k]), int(rows[4 * k + 1]), int(rows[4 * k + 2]), int(rows[4 * k + 3])};
  if (b.x1 < 0 || b.y1 < 0 || b.x2 > frame.width || b.y2 > frame.height || b.x2 <= b.x1 || b.y2 <= b.y1) {
    throw std::invalid_argument(name + "[" + std::to_string(k) + "] = [" + std::to_string(b.x1) + ", " +
                                std::to_string(b.y1) + ", " + std::to_string(b.x2) + ", " + std::to_string(b.y2) +
                                "] is empty or outside the (" + std::to_string(frame.height) + ", " +
                                std::to_string(frame.width) + ") frame");
  }
  return b;
}

std::vector<double> boxes_arg(const py::handle& h, const std::string& name, std::size_t& count) {
  DoubleArray boxes = DoubleArray::ensure(h);
  if (!boxes) throw std::invalid_argument(name + " must be a numeric array");
  count = 0;
  if (boxes.size() == 0) return {};
  if (boxes.ndim() != 2 || boxes.shape(1) != 4) {
    throw std::invalid_argument(name + " must have shape (N, 4) as x1, y1, x2, y2, but got shape " + shape_of(boxes));
  }
  count = std::size_t(boxes.shape(0));
  std::vector<double> out(boxes.data(), boxes.data() + 4 * count);
  for (std::size_t k = 0; k < count; ++k) {
    const double* b = &out[4 * k];
    if (!(b[2] > b[0] && b[3] > b[1]) || !std::isfinite(b[0] + b[1] + b[2] + b[3])) {
      throw std::invalid_argument(name + "[" + std::to_string(k) + "] = [" + std::to_string(b[0]) + ", " +
                                  std::to_string(b[1]) + ", " + std::to_string(b[2]) + ", " + std::to_string(b[3]) +
                                  "] is not finite, empty or inverted (need x2 > x1, y2 > y1)");
    }
  }
  return out;
}

py::tuple run_jobs(const std::vector<ImageView>& frames, const std::vector<fcuda::SearchJob>& jobs) {
  const py::ssize_t count = static_cast<py::ssize_t>(jobs.size());
  py::array_t<double> scores(count);
  py::array_t<std::int64_t> top_left({count, py::ssize_t(2)});
  std::vector<NccMatch> matches;
  {
    py::gil_scoped_release release;
    matches = fcuda::ncc_search_batch(frames, jobs);
  }
  double* s = scores.mutable_data();
  std::int64_t* p = top_left.mutable_data();
  for (py::ssize_t k = 0; k < count; ++k) {
    s[k] = matches[k].score;
    p[2 * k] = matches[k].x;
    p[2 * k + 1] = matches[k].y;
  }
  return py::make_tuple(scores, top_left);
}

void check_sizes(const fcuda::SearchJob& job, std::size_t k) {
  if (job.region.width() < job.template_box.width() || job.region.height() < job.template_box.height()) {
    throw std::invalid_argument("regions[" + std::to_string(k) + "] is smaller than template_boxes[" +
                                std::to_string(k) + "]");
  }
}

py::tuple ncc_search_batch(const py::array& template_frame, const py::array& template_boxes,
                           const py::array& search_frame, const py::array& regions) {
  const ImageView templ_view = image_view(template_frame, "template_frame");
  const ImageView search_view = image_view(search_frame, "search_frame");
  if (templ_view.type != search_view.type) {
    throw std::invalid_argument("template_frame and search_frame must have the same dtype");
  }
  const std::vector<std::int64_t> templ_rows = int_rows(template_boxes, "template_boxes", 4);
  const std::vector<std::int64_t> region_rows = int_rows(regions, "regions", 4);
  if (templ_rows.size() != region_rows.size()) {
    throw std::invalid_argument("template_boxes has " + std::to_string(templ_rows.size() / 4) +
                                " rows but regions has " + std::to_string(region_rows.size() / 4));
  }
  std::vector<fcuda::SearchJob> jobs(templ_rows.size() / 4);
  for (std::size_t k = 0; k < jobs.size(); ++k) {
    jobs[k] = {0, pixel_box(templ_rows, k, "template_boxes", templ_view), 1,
               pixel_box(region_rows, k, "regions", search_view)};
    check_sizes(jobs[k], k);
  }
  return run_jobs({templ_view, search_view}, jobs);
}

// Searches from several frames in one launch: job k cuts template_boxes[k] from
// frames[template_index[k]] and searches regions[k] of frames[search_index[k]].
py::tuple ncc_search_multi(const py::list& frames, const py::array& template_index, const py::array& template_boxes,
                           const py::array& search_index, const py::array& regions) {
  std::vector<py::array> keep;
  std::vector<ImageView> views;
  for (std::size_t g = 0; g < frames.size(); ++g) {
    keep.push_back(py::reinterpret_borrow<py::array>(frames[g]));
    views.push_back(image_view(keep.back(), "frames[" + std::to_string(g) + "]"));
    if (views.back().type != views.front().type) {
      throw std::invalid_argument("frames[" + std::to_string(g) + "] must have frames[0]'s dtype");
    }
  }
  const std::vector<std::int64_t> templ_at = int_rows(template_index, "template_index", 0);
  const std::vector<std::int64_t> search_at = int_rows(search_index, "search_index", 0);
  const std::vector<std::int64_t> templ_rows = int_rows(template_boxes, "template_boxes", 4);
  const std::vector<std::int64_t> region_rows = int_rows(regions, "regions", 4);
  const std::size_t count = templ_at.size();
  if (search_at.size() != count || templ_rows.size() != 4 * count || region_rows.size() != 4 * count) {
    throw std::invalid_argument("template_index, template_boxes, search_index and regions must have the same length");
  }
  std::vector<fcuda::SearchJob> jobs(count);
  for (std::size_t k = 0; k < count; ++k) {
    for (const auto& [index, name] : {std::pair{templ_at[k], "template_index"}, std::pair{search_at[k], "search_index"}}) {
      if (index < 0 || index >= std::int64_t(views.size())) {
        throw std::invalid_argument(std::string(name) + "[" + std::to_string(k) + "] = " + std::to_string(index) +
                                    " is not an index of frames (" + std::to_string(views.size()) + " frames)");
      }
    }
    jobs[k] = {int(templ_at[k]), pixel_box(templ_rows, k, "template_boxes", views[templ_at[k]]), int(search_at[k]),
               pixel_box(region_rows, k, "regions", views[search_at[k]])};
    check_sizes(jobs[k], k);
  }
  return run_jobs(views, jobs);
}

py::array_t<double> iou(const py::array& a, const py::array& b) {
  std::size_t n = 0, m = 0;
  const std::vector<double> boxes_a = boxes_arg(a, "boxes_a", n);
  const std::vector<double> boxes_b = boxes_arg(b, "boxes_b", m);
  py::array_t<double> out({py::ssize_t(n), py::ssize_t(m)});
  if (n == 0 || m == 0) return out;
  std::vector<double> result;
  {
    py::gil_scoped_release release;
    result = fcuda::iou_matrix(boxes_a.data(), n, boxes_b.data(), m);
  }
  std::copy(result.begin(), result.end(), out.mutable_data());
  return out;
}

}  // namespace

PYBIND11_MODULE(_core_cuda, m) {
  m.doc() = "flickermine's CUDA kernels: batched NCC search and IoU (private; use flickermine's 'cuda' backend)";
  m.def(
      "device_status",
      []() {
        const fcuda::DeviceStatus s = fcuda::device_status();
        py::dict d;
        d["usable"] = s.usable;
        d["no_device"] = s.no_device;
        d["driver_present"] = s.driver_present;
        d["device_count"] = s.device_count;
        d["error_code"] = s.error_code;
        d["reason"] = s.reason;
        d["device_name"] = s.device_name;
        d["compute_capability"] = s.compute_capability;
        return d;
      },
      "What the CUDA runtime reports: usable, no_device, driver_present, device_count, error_code, reason, "
      "device_name, compute_capability.");
  m.def(
      "has_device", []() { return fcuda::device_status().usable; }, "True when a CUDA device answers.");
  m.def("ncc_search_batch", &ncc_search_batch, py::arg("template_frame"), py::arg("template_boxes"),
        py::arg("search_frame"), py::arg("regions"),
        "Best TM_CCOEFF_NORMED score and top-left (x, y) of each template box of template_frame inside its "
        "region of search_frame, all in one launch. Boxes (K, 4) int64 half-open pixels. Returns (scores (K,), "
        "top_left (K, 2)).");
  m.def("ncc_search_multi", &ncc_search_multi, py::arg("frames"), py::arg("template_index"),
        py::arg("template_boxes"), py::arg("search_index"), py::arg("regions"),
        "Searches from several frames in one launch: template_boxes[k] of frames[template_index[k]] inside "
        "regions[k] of frames[search_index[k]]. Returns (scores (K,), top_left (K, 2)).");
  m.def("iou", &iou, py::arg("boxes_a"), py::arg("boxes_b"),
        "IoU of (N, 4) and (M, 4) x1, y1, x2, y2 boxes, continuous coordinates: (N, M) float64.");
  m.attr("has_cuda") = true;
}
