// Helpers for the elementwise kernel tests: host arrays in any dtype and memory layout (with their
// logical values as double), broadcasting, running a kernel on the CPU or on a CUDA device with host
// buffers, and tolerance checks.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/strided.h"
#include "tests/kernels/kernel_test_util.h"

namespace se::kernels::elementwise_test {

using Bytes = std::vector<unsigned char>;
using Shape = std::vector<int64_t>;

// ---- host arrays: logical values as double plus the dtype's bytes in some memory layout ----

inline double load_element(DType dtype, const Bytes& bytes, int64_t index) {
  return dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T value;
    std::memcpy(&value, bytes.data() + index * sizeof(T), sizeof(T));
    if constexpr (std::is_same_v<T, f16> || std::is_same_v<T, bf16>) {
      return static_cast<double>(static_cast<float>(value));
    } else {
      return static_cast<double>(value);
    }
  });
}

inline void store_element(DType dtype, Bytes& bytes, int64_t index, double v) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T value;
    if constexpr (std::is_same_v<T, f16> || std::is_same_v<T, bf16>) {
      value = T(static_cast<float>(v));
    } else {
      value = static_cast<T>(v);
    }
    std::memcpy(bytes.data() + index * sizeof(T), &value, sizeof(T));
  });
}

inline double round_to(DType dtype, double v) {
  Bytes one(dtype_size(dtype));
  store_element(dtype, one, 0, v);
  return load_element(dtype, one, 0);
}

inline int64_t numel_of(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

inline StridedLayout layout_of(int64_t numel) { return flat_layout(numel); }  // contiguous 1-d

struct Array {
  DType dtype = DType::f32;
  Shape shape;
  std::vector<double> values;  // row-major logical values, exactly representable in dtype
  Shape strides;               // element strides of `storage`
  Bytes storage;
};

// transposed: the last two dims are stored swapped (column-major), so the layout is non-contiguous.
inline Array make_array(DType dtype, const Shape& shape, const std::function<double()>& next, bool transposed = false) {
  Array a{dtype, shape, {}, Shape(shape.size()), Bytes(numel_of(shape) * dtype_size(dtype))};
  const int nd = static_cast<int>(shape.size());
  int64_t stride = 1;
  for (int d = nd - 1; d >= 0; --d) {
    a.strides[d] = stride;
    stride *= shape[d];
  }
  if (transposed && nd >= 2) {
    a.strides[nd - 2] = 1;
    a.strides[nd - 1] = shape[nd - 2];
  }
  for (int64_t i = 0; i < numel_of(shape); ++i) {
    const double v = round_to(dtype, next());
    a.values.push_back(v);
    int64_t rest = i, offset = 0;
    for (int d = nd - 1; d >= 0; --d) {
      offset += rest % shape[d] * a.strides[d];
      rest /= shape[d];
    }
    store_element(dtype, a.storage, offset, v);
  }
  return a;
}

inline Shape broadcast_shape(const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()), 1);
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t sa = i < a.size() ? a[a.size() - 1 - i] : 1;
    const int64_t sb = i < b.size() ? b[b.size() - 1 - i] : 1;
    out[out.size() - 1 - i] = sa == 1 ? sb : sa;
  }
  return out;
}

// The array seen with the output's shape: right-aligned, 0 strides on broadcast dims.
inline StridedLayout layout_as(const Array& a, const Shape& out) {
  StridedLayout layout;
  layout.ndim = static_cast<int>(out.size());
  const size_t lead = out.size() - a.shape.size();
  for (size_t d = 0; d < out.size(); ++d) {
    layout.sizes[d] = out[d];
    layout.strides[d] = d < lead || a.shape[d - lead] == 1 ? 0 : a.strides[d - lead];
  }
  return layout;
}

// The logical value of `a` at the out-shaped row-major index `linear`.
inline double value_at(const Array& a, const Shape& out, int64_t linear) {
  int64_t index = 0, stride = 1;
  for (int d = static_cast<int>(out.size()) - 1; d >= 0; --d) {
    const int64_t i = linear % out[d];
    linear /= out[d];
    const int da = d - static_cast<int>(out.size() - a.shape.size());
    if (da < 0) continue;
    if (a.shape[da] != 1) index += i * stride;
    stride *= a.shape[da];
  }
  return a.values[index];
}

// ---- running a kernel on either backend with host buffers ----

enum class Device { cpu, cuda };

// CUDA_ONLY(cuda::f(...)): builds without CUDA have no se::kernels::cuda to link (and no CUDA tests).
#ifdef SEGENGINE_HAS_CUDA
#define CUDA_ONLY(call) call
#else
#define CUDA_ONLY(call) ADD_FAILURE() << "CUDA is off in this build"
#endif

// Calls kernel(out, inputs) with device copies of the inputs (CUDA) or the host buffers (CPU), and
// returns the output bytes.
inline Bytes run_on(Device device, size_t out_bytes, const std::vector<const Bytes*>& inputs,
                    const std::function<void(void*, const std::vector<const void*>&)>& kernel) {
  Bytes out(out_bytes);
  if (device == Device::cpu) {
    std::vector<const void*> ptrs;
    for (const Bytes* in : inputs) ptrs.push_back(in->data());
    kernel(out.data(), ptrs);
    return out;
  }
#ifdef SEGENGINE_HAS_CUDA
  std::vector<std::unique_ptr<se::test::DeviceBuffer<unsigned char>>> buffers;
  std::vector<const void*> ptrs;
  for (const Bytes* in : inputs) {
    buffers.push_back(std::make_unique<se::test::DeviceBuffer<unsigned char>>(*in));
    ptrs.push_back(buffers.back()->get());
  }
  se::test::DeviceBuffer<unsigned char> dev_out(out_bytes);
  kernel(dev_out.get(), ptrs);
  kernels::cuda::stream_synchronize(nullptr);
  out = dev_out.to_host();
#endif
  return out;
}

struct Tolerance {
  double rel;
  double abs;
};

inline Tolerance tolerance_of(DType dtype) {
  switch (dtype) {
    case DType::f64: return {1e-12, 1e-14};
    case DType::f32: return {1e-5, 1e-6};
    case DType::f16: return {1e-3, 1e-4};   // half an ulp is 2^-11 relative
    case DType::bf16: return {8e-3, 1e-4};  // half an ulp is 2^-8 relative
    default: return {0.0, 0.0};             // integers and bool: exact
  }
}

inline void expect_close_values(const std::vector<double>& got, const std::vector<double>& expected, Tolerance tol,
                                const std::string& what) {
  ASSERT_EQ(got.size(), expected.size()) << what;
  int failures = 0;
  for (size_t i = 0; i < expected.size() && failures < 5; ++i) {
    const double g = got[i];
    const double e = expected[i];
    const bool same_nan = std::isnan(g) && std::isnan(e);
    const bool same_inf = std::isinf(e) && g == e;
    if (!same_nan && !same_inf && !(std::fabs(g - e) <= tol.abs + tol.rel * std::fabs(e))) {
      ADD_FAILURE() << what << ": element " << i << " is " << g << ", expected " << e;
      ++failures;
    }
  }
}

inline std::vector<double> decode(DType dtype, const Bytes& bytes) {
  std::vector<double> values(bytes.size() / dtype_size(dtype));
  for (size_t i = 0; i < values.size(); ++i) values[i] = load_element(dtype, bytes, static_cast<int64_t>(i));
  return values;
}

inline void expect_close(DType dtype, const Bytes& got, const std::vector<double>& expected, Tolerance tol,
                         const std::string& what) {
  expect_close_values(decode(dtype, got), expected, tol, what);
}

inline std::function<double()> uniform(std::mt19937& rng, double lo, double hi) {
  return [&rng, lo, hi] { return std::uniform_real_distribution<double>(lo, hi)(rng); };
}

}  // namespace se::kernels::elementwise_test
