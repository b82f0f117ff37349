// 2-d pooling over contiguous NCHW data viewed as (planes = N * C, H, W), forward and backward, for
// float, double, f16 and bf16, with PyTorch's semantics:
//   max_pool2d:          kernel, stride, padding (implicit -inf), dilation, ceil_mode. A NaN in the window
//                        wins; ties keep the first maximum in row-major window order. The forward saves, per
//                        output, the argmax as an i64 index h * W + w into its input plane.
//   avg_pool2d:          kernel, stride, zero padding, ceil_mode, count_include_pad. As in PyTorch, a window
//                        is clipped to the padded input [-pad, in + pad) before counting (so ceil_mode's
//                        extra windows never count cells beyond the padding) and, without
//                        count_include_pad, to the input itself.
//   adaptive_avg_pool2d: output cell i averages input [floor(i * in / out), ceil((i + 1) * in / out)).
// Sums are taken in float (double for f64). Backward kernels overwrite grad_x.
#pragma once

#include <cstdint>

#include "core/half.h"
#include "kernels/stream.h"

namespace se::kernels {

struct Pool2dDesc {
  int64_t planes = 1;  // N * C
  int64_t in_h = 1, in_w = 1;
  int64_t out_h = 1, out_w = 1;  // from pool_output_size
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;  // max_pool2d only; avg_pool2d needs 1
  bool count_include_pad = true;           // avg_pool2d only
};

struct AdaptivePool2dDesc {
  int64_t planes = 1;  // N * C
  int64_t in_h = 1, in_w = 1;
  int64_t out_h = 1, out_w = 1;
};

// PyTorch's pooling_output_shape: floor or ceil of (in + 2 pad - dilation (kernel - 1) - 1) / stride, plus 1;
// in ceil_mode a last window that would start in the right padding is dropped. May be <= 0 (the caller
// reports that as an error).
inline int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation,
                                bool ceil_mode) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;  // floor division
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// The first input index of adaptive bin `i` and one past its last (PyTorch's start_index/end_index).
SE_HOST_DEVICE inline int64_t adaptive_start(int64_t i, int64_t in, int64_t out) {
  return (i * in) / out;
}
SE_HOST_DEVICE inline int64_t adaptive_end(int64_t i, int64_t in, int64_t out) {
  return ((i + 1) * in + out - 1) / out;
}

// The number of cells along one axis that avg_pool2d's divisor counts for output o: the window clipped to
// the padded input [-pad, in + pad) and, without count_include_pad, to the input [0, in).
SE_HOST_DEVICE inline int64_t avg_pool_axis_count(int64_t o, int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                                                  bool count_include_pad) {
  int64_t first = o * stride - pad;
  int64_t last = first + kernel < in + pad ? first + kernel : in + pad;
  if (!count_include_pad) first = first > 0 ? first : 0, last = last < in ? last : in;
  return last - first;
}

// avg_pool2d's divisor of output (oh, ow), shared by both backends so they divide identically.
SE_HOST_DEVICE inline int64_t avg_pool_divisor(const Pool2dDesc& d, int64_t oh, int64_t ow) {
  return avg_pool_axis_count(oh, d.in_h, d.kernel_h, d.stride_h, d.pad_h, d.count_include_pad) *
         avg_pool_axis_count(ow, d.in_w, d.kernel_w, d.stride_w, d.pad_w, d.count_include_pad);
}

namespace cpu {
template <typename T>
void max_pool2d_forward(T* y,              // (planes, out_h, out_w)
                        int64_t* indices,  // (planes, out_h, out_w), argmax h * in_w + w within the plane
                        const T* x,        // (planes, in_h, in_w)
                        const Pool2dDesc& desc, Stream stream);
template <typename T>
void max_pool2d_backward(T* grad_x,               // (planes, in_h, in_w)
                         const T* grad_y,         // (planes, out_h, out_w)
                         const int64_t* indices,  // (planes, out_h, out_w), from the forward
                         const Pool2dDesc& desc, Stream stream);
template <typename T>
void avg_pool2d_forward(T* y,        // (planes, out_h, out_w)
                        const T* x,  // (planes, in_h, in_w)
                        const Pool2dDesc& desc, Stream stream);
template <typename T>
void avg_pool2d_backward(T* grad_x,        // (planes, in_h, in_w)
                         const T* grad_y,  // (planes, out_h, out_w)
                         const Pool2dDesc& desc, Stream stream);
template <typename T>
void adaptive_avg_pool2d_forward(T* y,        // (planes, out_h, out_w)
                                 const T* x,  // (planes, in_h, in_w)
                                 const AdaptivePool2dDesc& desc, Stream stream);
template <typename T>
void adaptive_avg_pool2d_backward(T* grad_x,        // (planes, in_h, in_w)
                                  const T* grad_y,  // (planes, out_h, out_w)
                                  const AdaptivePool2dDesc& desc, Stream stream);
}  // namespace cpu

namespace cuda {
template <typename T>
void max_pool2d_forward(T* y,              // (planes, out_h, out_w)
                        int64_t* indices,  // (planes, out_h, out_w), argmax h * in_w + w within the plane
                        const T* x,        // (planes, in_h, in_w)
                        const Pool2dDesc& desc, Stream stream);
template <typename T>
void max_pool2d_backward(T* grad_x,               // (planes, in_h, in_w)
                         const T* grad_y,         // (planes, out_h, out_w)
                         const int64_t* indices,  // (planes, out_h, out_w), from the forward
                         const Pool2dDesc& desc, Stream stream);
template <typename T>
void avg_pool2d_forward(T* y,        // (planes, out_h, out_w)
                        const T* x,  // (planes, in_h, in_w)
                        const Pool2dDesc& desc, Stream stream);
template <typename T>
void avg_pool2d_backward(T* grad_x,        // (planes, in_h, in_w)
                         const T* grad_y,  // (planes, out_h, out_w)
                         const Pool2dDesc& desc, Stream stream);
template <typename T>
void adaptive_avg_pool2d_forward(T* y,        // (planes, out_h, out_w)
                                 const T* x,  // (planes, in_h, in_w)
                                 const AdaptivePool2dDesc& desc, Stream stream);
template <typename T>
void adaptive_avg_pool2d_backward(T* grad_x,        // (planes, in_h, in_w)
                                  const T* grad_y,  // (planes, out_h, out_w)
                                  const AdaptivePool2dDesc& desc, Stream stream);
}  // namespace cuda

}  // namespace se::kernels
