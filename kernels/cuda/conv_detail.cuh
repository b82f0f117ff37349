// The parts of CUDA Conv2d that conv.cu's entry points hand work to (shapes as in kernels/conv.h, in the
// layout desc.layout names). Explicitly instantiated for float, double, __half and __nv_bfloat16.
#pragma once

#include "kernels/conv.h"
#include "kernels/cuda/common.cuh"

namespace se::kernels::cuda::conv_detail {

// conv_direct.cu: depthwise convolution (groups == C_in) and the bias, in either layout.
template <typename T>
void depthwise_forward(const Conv2dDesc& d, const T* x, const T* w, const T* bias /* or nullptr */, T* y,
                       Stream stream);
template <typename T>
void depthwise_backward_data(const Conv2dDesc& d, const T* dy, const T* w, T* dx, Stream stream);
template <typename T>
void depthwise_backward_weight(const Conv2dDesc& d, const T* x, const T* dy, T* dw, Stream stream);
// db[co] = the sum of dy over images and pixels.
template <typename T>
void bias_gradient(const Conv2dDesc& d, const T* dy, T* db, Stream stream);
// y = bias broadcast over images and pixels: 1x1 convolutions run as GEMMs accumulate onto it (beta = 1),
// so the bias is added before the single rounding, as in the implicit-GEMM epilogue.
template <typename T>
void fill_bias(const Conv2dDesc& d, const T* bias, T* y, Stream stream);

// dw = the sum of the `splits` partial weight gradients (splits, conv2d_w_elements(d)), added in part order
// (the split backward weight's second kernel: the same bits in any block order).
template <typename T>
void sum_weight_partials(const Conv2dDesc& d, const T* partials, int64_t splits, T* dw, Stream stream);

// conv_channels_last.cu: the non-depthwise passes over NHWC (the bias gradient is bias_gradient's).
template <typename T>
void channels_last_forward(const Conv2dDesc& d, const T* x, const T* w, const T* bias /* or nullptr */, T* y,
                           Stream stream);
template <typename T>
void channels_last_backward_data(const Conv2dDesc& d, const T* dy, const T* w, T* dx, Stream stream);
// `partials`: conv2d_backward_weight_workspace_bytes(d) of device memory when the pixels are split.
template <typename T>
void channels_last_backward_weight(const Conv2dDesc& d, const T* x, const T* dy, T* dw, T* partials, Stream stream);

}  // namespace se::kernels::cuda::conv_detail
