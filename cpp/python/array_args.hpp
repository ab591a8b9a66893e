// Argument conversion shared by the pybind11 modules (_core and _core_cuda): numpy arrays in,
// checked views out; a bad argument throws std::invalid_argument (ValueError in Python) naming it.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "ncc.hpp"

namespace flickermine {

inline std::string shape_of(const pybind11::array& a) {
  std::string s = "(";
  for (pybind11::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// A grayscale frame: 2D uint8 or float32 with contiguous rows. Never converted silently.
inline ImageView image_view(const pybind11::array& a, const std::string& name) {
  namespace py = pybind11;
  if (a.ndim() != 2) throw std::invalid_argument(name + " must be a 2D (H, W) array, but got shape " + shape_of(a));
  ImageView v;
  if (a.dtype().equal(py::dtype::of<std::uint8_t>())) {
    v.type = PixelType::kUint8;
  } else if (a.dtype().equal(py::dtype::of<float>())) {
    v.type = PixelType::kFloat32;
  } else {
    throw std::invalid_argument(name + " must have dtype uint8 or float32, but got " +
                                std::string(py::str(a.dtype())) + " with shape " + shape_of(a));
  }
  const py::ssize_t item = a.itemsize();
  if (a.strides(1) != item || a.strides(0) % item != 0 || a.strides(0) < a.shape(1) * item) {
    throw std::invalid_argument(name + " must have contiguous rows (C layout), but got strides (" +
                                std::to_string(a.strides(0)) + ", " + std::to_string(a.strides(1)) + ")");
  }
  if (a.shape(0) < 1 || a.shape(1) < 1) throw std::invalid_argument(name + " is empty: shape " + shape_of(a));
  v.data = a.data();
  v.height = static_cast<int>(a.shape(0));
  v.width = static_cast<int>(a.shape(1));
  v.stride = a.strides(0) / item;
  return v;
}

}  // namespace flickermine
