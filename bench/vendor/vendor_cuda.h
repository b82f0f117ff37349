// What the cuDNN and cuBLAS halves of bench/vendor share: CUDA runtime checks, device memory owned by a
// Call, and a Call that runs two others. Internal to bench/vendor (includes the CUDA runtime headers).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <string>

#include "bench/vendor/vendor.h"

namespace se::vendor::detail {

// Throws se::Error naming the runtime call and `context` when a CUDA runtime call fails.
#define SE_VENDOR_CUDA_CHECK(expr, context)                                                               \
  do {                                                                                                    \
    const cudaError_t se_vendor_error_ = (expr);                                                          \
    if (se_vendor_error_ != cudaSuccess) {                                                                \
      SE_THROW("vendor: ", #expr, " failed for ", (context), ": ", cudaGetErrorString(se_vendor_error_)); \
    }                                                                                                     \
  } while (0)

// The name of the library function in a call expression's text: "cudnnAddTensor(h, ...)" -> "cudnnAddTensor".
inline std::string function_name(const char* call_text) {
  const std::string text(call_text);
  return text.substr(0, text.find('('));
}

// `bytes` of device memory (null for 0), freed when the last copy of the pointer goes.
inline std::shared_ptr<void> device_buffer(size_t bytes, const std::string& context) {
  if (bytes == 0) return nullptr;
  void* ptr = nullptr;
  SE_VENDOR_CUDA_CHECK(cudaMalloc(&ptr, bytes), context + " (" + std::to_string(bytes >> 20) + " MiB)");
  return std::shared_ptr<void>(ptr, [](void* p) { cudaFree(p); });
}

inline int current_device() {
  int device = 0;
  SE_VENDOR_CUDA_CHECK(cudaGetDevice(&device), "the current device");
  return device;
}

// "13.1.0": the version of the cuBLAS library loaded at run time (vendor_cublas.cpp).
std::string cublas_version();

// `first`, then `second`, as one Call.
inline Call then(const Call& first, const Call& second) {
  return Call(first.library(), first.description() + " + " + second.description(), [first, second] {
    first();
    second();
  });
}

}  // namespace se::vendor::detail
