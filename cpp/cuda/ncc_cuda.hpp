// CUDA kernels of flickermine: batched NCC template search and IoU.
//
// Same semantics as cpp/include/ncc.hpp (OpenCV TM_CCOEFF_NORMED: zero-mean template and window;
// a template or window whose sum of squared deviations is <= n * kFlatVariance scores exactly
// 0; scores clamped to [-1, 1]; the first maximum in row-major order wins ties; the returned
// score is accurate to 1e-6 of a float64 computation).
//
// How: one launch scores every position of every search of the batch in float32 (with float64
// window statistics, exact for uint8 pixels) together with a per-position bound on the float32
// error; a second launch rescores in float64 every position whose upper bound reaches the best
// lower bound of its search, then picks the first maximum. So the result is the float64 answer,
// not a float32 approximation of it.
//
// Only this header and ncc.hpp's plain structs are shared with the host build: nothing here
// needs the CUDA headers, so the bindings compile with the ordinary C++ compiler.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "ncc.hpp"

namespace flickermine::cuda {

// What the CUDA runtime says about this machine. `usable`: at least one device answered.
// `no_device`: there is plainly no GPU here (no driver library, or the driver sees no device),
// as on any CPU machine; otherwise an unusable state is a broken install worth a warning.
struct DeviceStatus {
  bool usable = false;
  bool no_device = true;
  bool driver_present = false;
  int device_count = 0;
  int error_code = 0;         // cudaError_t of the failing call, 0 when none failed
  std::string reason;         // why not usable (empty when usable)
  std::string device_name;    // of device 0 when usable
  int compute_capability = 0; // major * 10 + minor of device 0 when usable
};

DeviceStatus device_status();

// One search: the template box of frames[template_frame] searched inside region of
// frames[search_frame]. Boxes are half-open pixel boxes already checked to lie inside their
// frames, region at least as large as the template.
struct SearchJob {
  int template_frame = 0;
  PixelBox template_box;
  int search_frame = 0;
  PixelBox region;
};

// Runs every job in one pair of kernel launches on the current device. All frames must have
// the same PixelType. Returns the best match of each job (top-left in image coordinates).
// Throws std::invalid_argument on bad input, std::runtime_error on a CUDA failure.
std::vector<NccMatch> ncc_search_batch(const std::vector<ImageView>& frames, const std::vector<SearchJob>& jobs);

// IoU of every pair of x1, y1, x2, y2 boxes (a: n x 4, b: m x 4, row-major float64), continuous
// coordinates, 0 where the union is 0: n x m row-major, as flickermine.boxes.iou_matrix.
std::vector<double> iou_matrix(const double* boxes_a, std::size_t n, const double* boxes_b, std::size_t m);

}  // namespace flickermine::cuda
