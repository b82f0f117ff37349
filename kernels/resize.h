// 2-d resize of contiguous NCHW data viewed as (planes = N * C, H, W), forward and backward, for float,
// double, f16 and bf16, with the coordinates of torch.nn.functional.interpolate:
//   scale (per dim) = align_corners ? (in - 1) / (out - 1) (0 when out == 1)
//                   : scale_factor given ? 1 / scale_factor : in / out
//   (PyTorch maps with the user's scale_factor, not in / out, unless recompute_scale_factor is set;
//   e.g. in 5, scale_factor 1.7 -> out floor(8.5) = 8 with scale 1 / 1.7, where size 8 uses 5 / 8.)
//   bilinear: src = align_corners ? scale * dst : max(scale * (dst + 0.5) - 0.5, 0), computed in float
//             (double for f64); taps i0 = (int)src and i0 + 1 (not past in - 1), weights 1 - (src - i0)
//             and src - i0.
//   nearest:  PyTorch's legacy 'nearest': src = min(floor(dst * scale), in - 1) with a float scale, as in
//             PyTorch's CUDA kernels (its CPU kernels shortcut out == in and out == 2 in, which differs
//             only for scale factors that do not match the sizes).
// Backward kernels overwrite grad_x. CUDA backward: a gather, one thread per input cell, which finds the
// outputs that read it by binary search over the monotone source indices and sums them (in float for f16
// and bf16): no atomics, so the result is the same bits in any block order (a training run repeats bit for
// bit on a GPU, where PyTorch's atomicAdd backward does not) and no 16-bit atomics round partial sums.
#pragma once

#include <cstdint>

#include "kernels/stream.h"

namespace se::kernels {

enum class ResizeMode { nearest, bilinear };

struct ResizeDesc {
  int64_t planes = 1;  // N * C
  int64_t in_h = 1, in_w = 1;
  int64_t out_h = 1, out_w = 1;
  ResizeMode mode = ResizeMode::nearest;
  bool align_corners = false;           // bilinear only
  double scale_h = 0.0, scale_w = 0.0;  // the user's scale_factor; 0: size form (in / out)
};

namespace cpu {
template <typename T>
void resize_forward(T* y,        // (planes, out_h, out_w)
                    const T* x,  // (planes, in_h, in_w)
                    const ResizeDesc& desc, Stream stream);
template <typename T>
void resize_backward(T* grad_x,        // (planes, in_h, in_w)
                     const T* grad_y,  // (planes, out_h, out_w)
                     const ResizeDesc& desc, Stream stream);
}  // namespace cpu

namespace cuda {
template <typename T>
void resize_forward(T* y,        // (planes, out_h, out_w)
                    const T* x,  // (planes, in_h, in_w)
                    const ResizeDesc& desc, Stream stream);
template <typename T>
void resize_backward(T* grad_x,        // (planes, in_h, in_w)
                     const T* grad_y,  // (planes, out_h, out_w)
                     const ResizeDesc& desc, Stream stream);
}  // namespace cuda

}  // namespace se::kernels
