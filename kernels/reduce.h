// Reductions over one axis of a contiguous tensor viewed as (outer, size, inner): "reduce the last
// dim" is inner == 1, "reduce a middle dim" is inner > 1, so no transpose copy is needed. The engine
// maps any set of dims to this form by permuting and collapsing.
//
// Accumulation: f32 and f64 in double, f16 and bf16 in float, integers in int64. Results do not depend
// on the number of threads (fixed chunking and combine order on both backends).
// NaN propagates through sum/max/min; argmax/argmin treat NaN as the extreme value (like PyTorch) and
// return the index of the first extreme element.
#pragma once

#include <cstdint>

#include "kernels/stream.h"

namespace se::kernels {

enum class ReduceOp : uint8_t {
  sum,
  mean,  // floating types only
  prod,
  max,   // size >= 1
  min,   // size >= 1
  var,   // floating types only; divides the sum of squared deviations by max(size - correction, 0)
};

enum class ArgReduceOp : uint8_t { argmax, argmin };  // size >= 1

struct ReduceDesc {
  int64_t outer = 1;
  int64_t size = 1;   // length of the reduced axis
  int64_t inner = 1;
  int64_t correction = 1;  // ReduceOp::var only: 1 is the unbiased estimator, 0 the population variance
};

// Instantiated for float, double, f16, bf16, int32_t, int64_t, uint8_t (reduce_backward: floating).
namespace cpu {
template <typename T>
void reduce(ReduceOp op, T* out,  // (outer, inner)
            const T* in,          // (outer, size, inner)
            const ReduceDesc& desc, Stream stream);
template <typename T>
void arg_reduce(ArgReduceOp op, int64_t* out,  // (outer, inner), indices in [0, size)
                const T* in,                   // (outer, size, inner)
                const ReduceDesc& desc, Stream stream);
// Backward of sum, mean and var (floating types): broadcasts grad_out back over the reduced axis,
//   sum: grad_out, mean: grad_out / size, var: grad_out * 2 * (in - mean) / max(size - correction, 0).
// `in` and `mean` are read for var only (may be null otherwise).
template <typename T>
void reduce_backward(ReduceOp op, T* grad_in,  // (outer, size, inner)
                     const T* grad_out,        // (outer, inner)
                     const T* in,              // (outer, size, inner)
                     const T* mean,            // (outer, inner)
                     const ReduceDesc& desc, Stream stream);
}  // namespace cpu

namespace cuda {
template <typename T>
void reduce(ReduceOp op, T* out,  // (outer, inner)
            const T* in,          // (outer, size, inner)
            const ReduceDesc& desc, Stream stream);
template <typename T>
void arg_reduce(ArgReduceOp op, int64_t* out,  // (outer, inner), indices in [0, size)
                const T* in,                   // (outer, size, inner)
                const ReduceDesc& desc, Stream stream);
// Backward of sum, mean and var (floating types): broadcasts grad_out back over the reduced axis,
//   sum: grad_out, mean: grad_out / size, var: grad_out * 2 * (in - mean) / max(size - correction, 0).
// `in` and `mean` are read for var only (may be null otherwise).
template <typename T>
void reduce_backward(ReduceOp op, T* grad_in,  // (outer, size, inner)
                     const T* grad_out,        // (outer, inner)
                     const T* in,              // (outer, size, inner)
                     const T* mean,            // (outer, inner)
                     const ReduceDesc& desc, Stream stream);
}  // namespace cuda

}  // namespace se::kernels
