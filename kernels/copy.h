// Strided copy with dtype conversion: the kernel behind contiguous(), clone(), copy_(), to(dtype)
// and every layout change (e.g. channels-last).
#pragma once

#include "core/dtype.h"
#include "kernels/stream.h"
#include "kernels/strided.h"

namespace se::kernels {

struct CopyDesc {
  StridedLayout src;  // same ndim and sizes as dst
  StridedLayout dst;
  DType src_dtype = DType::f32;
  DType dst_dtype = DType::f32;
};

// Fills every element of a strided view with one value (converted to the dtype).
struct FillDesc {
  StridedLayout dst;
  DType dtype = DType::f32;
  double value = 0.0;
};

// out[i] = start + i * step, contiguous, for i < count.
struct ArangeDesc {
  int64_t count = 0;
  double start = 0.0;
  double step = 1.0;
  DType dtype = DType::f32;
};

enum class Distribution { uniform, normal };

// out[i] = low + (high - low) * U(seed, offset + i)  (uniform)
//        = mean + std * N(seed, offset + i)           (normal); contiguous, floating dtypes.
// Element i depends only on (seed, offset + i): the same values on every backend.
struct RandomDesc {
  int64_t count = 0;
  uint64_t seed = 0;
  uint64_t offset = 0;  // multiple of 4
  Distribution distribution = Distribution::uniform;
  double a = 0.0;  // low or mean
  double b = 1.0;  // high or std
  DType dtype = DType::f32;
};

namespace cpu {
void copy_strided(const CopyDesc& desc, const void* src, void* dst, Stream stream);
void fill(const FillDesc& desc, void* dst, Stream stream);
void arange(const ArangeDesc& desc, void* out, Stream stream);      // out: (count,)
void random(const RandomDesc& desc, void* out, Stream stream);      // out: (count,)
}  // namespace cpu

namespace cuda {
void copy_strided(const CopyDesc& desc, const void* src, void* dst, Stream stream);
void fill(const FillDesc& desc, void* dst, Stream stream);
void arange(const ArangeDesc& desc, void* out, Stream stream);
void random(const RandomDesc& desc, void* out, Stream stream);
}  // namespace cuda

}  // namespace se::kernels
