// Dropout with the counter-based RNG: element i is kept when uniform(seed, offset + i) >= p, so the
// mask depends only on (seed, offset) and is the same on every backend. Kept elements are scaled by
// 1 / (1 - p). The mask is stored as one byte per element for the backward.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "kernels/stream.h"

namespace se::kernels {

struct DropoutDesc {
  int64_t count = 0;    // elements, contiguous
  uint64_t seed = 0;
  uint64_t offset = 0;  // multiple of 4 (whole Philox blocks)
  float p = 0.5f;       // drop probability, in [0, 1)
  DType dtype = DType::f32;  // f32, f64, f16, bf16
};

namespace cpu {
void dropout_forward(const DropoutDesc& desc, const void* x /* (count,) */, void* y /* (count,) */,
                     uint8_t* mask /* (count,) */, Stream stream);
void dropout_backward(const DropoutDesc& desc, const void* grad_y /* (count,) */, const uint8_t* mask /* (count,) */,
                      void* grad_x /* (count,) */, Stream stream);
}  // namespace cpu

namespace cuda {
void dropout_forward(const DropoutDesc& desc, const void* x, void* y, uint8_t* mask, Stream stream);
void dropout_backward(const DropoutDesc& desc, const void* grad_y, const uint8_t* mask, void* grad_x, Stream stream);
}  // namespace cuda

}  // namespace se::kernels
