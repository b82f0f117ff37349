// Softmax and log-softmax over one axis of a contiguous tensor viewed as (outer, size, inner),
// forward and backward, for float, double, f16 and bf16. Numerically stable: the row maximum is
// subtracted before exponentiating. Compute in float (double for f64); the normaliser's sum is
// accumulated in acc_t<T> (double for f32 and f64). A row containing NaN gives NaN.
//   softmax_backward:     grad_x = y * (grad_y - sum(grad_y * y))
//   log_softmax_backward: grad_x = grad_y - exp(y) * sum(grad_y)
#pragma once

#include <cstdint>

#include "kernels/stream.h"

namespace se::kernels {

struct SoftmaxDesc {
  int64_t outer = 1;
  int64_t size = 1;  // length of the softmax axis
  int64_t inner = 1;
};

namespace cpu {
template <typename T>
void softmax_forward(T* y,        // (outer, size, inner)
                     const T* x,  // (outer, size, inner)
                     const SoftmaxDesc& desc, Stream stream);
template <typename T>
void log_softmax_forward(T* y,        // (outer, size, inner)
                         const T* x,  // (outer, size, inner)
                         const SoftmaxDesc& desc, Stream stream);
template <typename T>
void softmax_backward(T* grad_x,         // (outer, size, inner)
                      const T* grad_y,   // (outer, size, inner)
                      const T* y,        // (outer, size, inner), the forward output
                      const SoftmaxDesc& desc, Stream stream);
template <typename T>
void log_softmax_backward(T* grad_x,        // (outer, size, inner)
                          const T* grad_y,  // (outer, size, inner)
                          const T* y,       // (outer, size, inner), the forward output
                          const SoftmaxDesc& desc, Stream stream);
}  // namespace cpu

namespace cuda {
template <typename T>
void softmax_forward(T* y,        // (outer, size, inner)
                     const T* x,  // (outer, size, inner)
                     const SoftmaxDesc& desc, Stream stream);
template <typename T>
void log_softmax_forward(T* y,        // (outer, size, inner)
                         const T* x,  // (outer, size, inner)
                         const SoftmaxDesc& desc, Stream stream);
template <typename T>
void softmax_backward(T* grad_x,         // (outer, size, inner)
                      const T* grad_y,   // (outer, size, inner)
                      const T* y,        // (outer, size, inner), the forward output
                      const SoftmaxDesc& desc, Stream stream);
template <typename T>
void log_softmax_backward(T* grad_x,        // (outer, size, inner)
                          const T* grad_y,  // (outer, size, inner)
                          const T* y,       // (outer, size, inner), the forward output
                          const SoftmaxDesc& desc, Stream stream);
}  // namespace cuda

}  // namespace se::kernels
