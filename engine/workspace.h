// Device memory that a CUDA kernel asks its caller for (the kernels' *_workspace_bytes functions): a byte
// tensor from the device's stream-ordered caching allocator, so it may be dropped as soon as the kernel is
// queued. The CPU kernels take none.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/tensor.h"

namespace se {

// Undefined on the CPU or for 0 bytes.
inline Tensor kernel_workspace(size_t bytes, Device device) {
  if (device.is_cpu() || bytes == 0) return Tensor();
  return empty({static_cast<int64_t>(bytes)}, {DType::u8, device});
}

// What to pass a kernel for a tensor that may be undefined.
inline void* data_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

}  // namespace se
