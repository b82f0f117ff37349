// 2-D convolution (cross-correlation, as in PyTorch's Conv2d), forward and both backwards.
//   y[n, co, oh, ow] = bias[co] + sum_{c, kh, kw} w[co, c, kh, kw] * x[n, g * Cg + c, ih, iw]
//   ih = oh * stride_h - pad_h + kh * dilation_h,  iw = ow * stride_w - pad_w + kw * dilation_w
// where g = co / (C_out / groups), Cg = C_in / groups, and x is zero outside the image.
// Memory layout (Conv2dDesc::layout), all contiguous:
//   nchw: x (N, C_in, H, W), y (N, C_out, OH, OW), weights (C_out, C_in / groups, KH, KW): what the engine passes.
//   nhwc: x (N, H, W, C_in), y (N, OH, OW, C_out), weights (C_out, KH, KW, C_in / groups): channels-last, the
//         physical order of PyTorch's torch.channels_last tensors, for which CUDA's implicit GEMM reads each
//         filter tap's channels as one contiguous run.
// The shape comments on the entry points below are for nchw. Every entry point overwrites its outputs.
// f16/bf16 accumulate in f32 and round once per output element; f64 computes in f64.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/stream.h"

namespace se::kernels {

enum class Conv2dLayout { nchw, nhwc };

// The optional fused epilogue of conv2d_forward: y = act(conv + bias), applied in the compute type
// before the one rounding, so a following activation costs no extra pass over y. Forward only: the
// backward kernels take the gradient with respect to y's pre-activation (the caller applies the
// activation's derivative, e.g. the ReLU mask from y).
enum class ConvActivation { none, relu, gelu /* exact (erf) */ };

struct Conv2dDesc {
  int64_t n = 1, c_in = 1, h = 1, w = 1;  // input (N, C_in, H, W)
  int64_t c_out = 1;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;  // zero padding on each side
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;  // divides c_in and c_out; groups == c_in == c_out is depthwise
  bool has_bias = false;
  DType dtype = DType::f32;  // of x, w, bias, y and their gradients: f32, f64, f16 or bf16
  Conv2dLayout layout = Conv2dLayout::nchw;
  ConvActivation activation = ConvActivation::none;  // conv2d_forward only
};

// Output length of one spatial dimension; 0 when the dilated kernel does not fit the padded input.
inline int64_t conv2d_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1;  // last valid start of the window
  return span < 0 ? 0 : span / stride + 1;
}
inline int64_t conv2d_output_h(const Conv2dDesc& d) {
  return conv2d_output_size(d.h, d.kernel_h, d.stride_h, d.pad_h, d.dilation_h);
}
inline int64_t conv2d_output_w(const Conv2dDesc& d) {
  return conv2d_output_size(d.w, d.kernel_w, d.stride_w, d.pad_w, d.dilation_w);
}

// Element counts of the tensors of a descriptor.
inline int64_t conv2d_x_elements(const Conv2dDesc& d) { return d.n * d.c_in * d.h * d.w; }
inline int64_t conv2d_w_elements(const Conv2dDesc& d) {
  return d.c_out * (d.c_in / d.groups) * d.kernel_h * d.kernel_w;
}
inline int64_t conv2d_y_elements(const Conv2dDesc& d) {
  return d.n * d.c_out * conv2d_output_h(d) * conv2d_output_w(d);
}
// Multiply-adds x 2 of the forward pass; each backward pass costs the same.
inline double conv2d_flops(const Conv2dDesc& d) {
  return 2.0 * double(conv2d_y_elements(d)) * double(d.c_in / d.groups) * double(d.kernel_h * d.kernel_w);
}

inline bool conv2d_is_depthwise(const Conv2dDesc& d) { return d.groups == d.c_in && d.groups > 1; }
// 1x1, stride 1, no padding, one group: per image a product of the weight with the image's pixels.
inline bool conv2d_is_pointwise(const Conv2dDesc& d) {
  return d.kernel_h == 1 && d.kernel_w == 1 && d.stride_h == 1 && d.stride_w == 1 && d.pad_h == 0 && d.pad_w == 0 &&
         d.groups == 1;
}

// CUDA's backward weight (kernels/cuda/conv_implicit_gemm.cuh) is a GEMM over the N * OH * OW pixels whose
// output, dw, may be too few 64 x 64 tiles to fill a GPU. For f32 and f64 (depthwise excepted) it then cuts
// the pixels into parts (about 256 blocks in all, parts of at least 1024 pixels); each part writes its own
// partial dw into the caller's workspace and a second kernel adds the parts in part order. The result is
// the same bits whatever order the blocks run in, so a training run repeats bit for bit on a GPU, which
// floating-point atomics into dw would not give.
constexpr int64_t kConvWeightTile = 64;  // the implicit GEMM's block tile, in both dims
constexpr int64_t kConvWeightBlocks = 256;
constexpr int64_t kConvWeightMinSplitPixels = 1024;
constexpr int64_t kConvMaxGridYZ = 65535;
inline int64_t conv2d_backward_weight_splits(const Conv2dDesc& d) {
  if ((d.dtype != DType::f32 && d.dtype != DType::f64) || conv2d_is_depthwise(d) || d.groups < 1) return 1;
  const int64_t pixels = d.n * conv2d_output_h(d) * conv2d_output_w(d);
  const int64_t og = d.c_out / d.groups, k = d.c_in / d.groups * d.kernel_h * d.kernel_w;
  const int64_t tiles = (og + kConvWeightTile - 1) / kConvWeightTile * ((k + kConvWeightTile - 1) / kConvWeightTile);
  const int64_t splits = std::clamp<int64_t>(kConvWeightBlocks / std::max<int64_t>(1, tiles * d.groups), 1,
                                             std::max<int64_t>(1, pixels / kConvWeightMinSplitPixels));
  return std::min<int64_t>(splits, kConvMaxGridYZ / d.groups);
}
// Device memory cuda::conv2d_backward_weight needs: the parts' partial weight gradients (0 when unsplit).
inline size_t conv2d_backward_weight_workspace_bytes(const Conv2dDesc& d) {
  const int64_t splits = conv2d_backward_weight_splits(d);
  return splits > 1 ? static_cast<size_t>(splits * conv2d_w_elements(d)) * dtype_size(d.dtype) : 0;
}

// Throws se::Error naming the first bad field and its value.
inline void validate_conv2d(const Conv2dDesc& d) {
  SE_CHECK(d.dtype == DType::f32 || d.dtype == DType::f64 || d.dtype == DType::f16 || d.dtype == DType::bf16,
           "conv2d: dtype ", dtype_name(d.dtype), " is not supported (expected f32, f64, f16 or bf16)");
  SE_CHECK(d.layout == Conv2dLayout::nchw || d.layout == Conv2dLayout::nhwc, "conv2d: layout ",
           static_cast<int>(d.layout), " is not a Conv2dLayout (expected nchw or nhwc)");
  SE_CHECK(d.activation == ConvActivation::none || d.activation == ConvActivation::relu ||
               d.activation == ConvActivation::gelu,
           "conv2d: activation ", static_cast<int>(d.activation), " is not a ConvActivation");
  SE_CHECK(d.n >= 0, "conv2d: n = ", d.n, " is negative");
  SE_CHECK(d.c_in >= 1, "conv2d: c_in = ", d.c_in, " (expected >= 1)");
  SE_CHECK(d.h >= 1, "conv2d: h = ", d.h, " (expected >= 1)");
  SE_CHECK(d.w >= 1, "conv2d: w = ", d.w, " (expected >= 1)");
  SE_CHECK(d.c_out >= 1, "conv2d: c_out = ", d.c_out, " (expected >= 1)");
  SE_CHECK(d.kernel_h >= 1, "conv2d: kernel_h = ", d.kernel_h, " (expected >= 1)");
  SE_CHECK(d.kernel_w >= 1, "conv2d: kernel_w = ", d.kernel_w, " (expected >= 1)");
  SE_CHECK(d.stride_h >= 1, "conv2d: stride_h = ", d.stride_h, " (expected >= 1)");
  SE_CHECK(d.stride_w >= 1, "conv2d: stride_w = ", d.stride_w, " (expected >= 1)");
  SE_CHECK(d.pad_h >= 0, "conv2d: pad_h = ", d.pad_h, " is negative");
  SE_CHECK(d.pad_w >= 0, "conv2d: pad_w = ", d.pad_w, " is negative");
  SE_CHECK(d.dilation_h >= 1, "conv2d: dilation_h = ", d.dilation_h, " (expected >= 1)");
  SE_CHECK(d.dilation_w >= 1, "conv2d: dilation_w = ", d.dilation_w, " (expected >= 1)");
  SE_CHECK(d.groups >= 1, "conv2d: groups = ", d.groups, " (expected >= 1)");
  SE_CHECK(d.c_in % d.groups == 0, "conv2d: groups = ", d.groups, " does not divide c_in = ", d.c_in);
  SE_CHECK(d.c_out % d.groups == 0, "conv2d: groups = ", d.groups, " does not divide c_out = ", d.c_out);
  SE_CHECK(conv2d_output_h(d) >= 1, "conv2d: output height ", conv2d_output_h(d), " < 1 (h = ", d.h,
           ", kernel_h = ", d.kernel_h, ", pad_h = ", d.pad_h, ", dilation_h = ", d.dilation_h, ")");
  SE_CHECK(conv2d_output_w(d) >= 1, "conv2d: output width ", conv2d_output_w(d), " < 1 (w = ", d.w,
           ", kernel_w = ", d.kernel_w, ", pad_w = ", d.pad_w, ", dilation_w = ", d.dilation_w, ")");
}

// Shapes below: OH = conv2d_output_h(desc), OW = conv2d_output_w(desc), Cg = C_in / groups.
namespace cpu {
// Synchronous; `stream` is ignored. Uses OpenMP threads and cpu::gemm; every result is the same bits whatever
// the thread count. The CPU kernels are built for nchw: nhwc runs them on nchw copies of the operands
// (kernels/cpu/conv_channels_last.cpp), a permutation each way, except where conv2d_runs_nhwc_natively.
void conv2d_forward(const Conv2dDesc& desc, const void* x,  // (N, C_in, H, W)
                    const void* w,                          // (C_out, Cg, KH, KW)
                    const void* bias,                       // (C_out); ignored unless has_bias
                    void* y,                                // (N, C_out, OH, OW)
                    Stream stream);
void conv2d_backward_data(const Conv2dDesc& desc, const void* dy,  // (N, C_out, OH, OW)
                          const void* w,                           // (C_out, Cg, KH, KW)
                          void* dx,                                // (N, C_in, H, W)
                          Stream stream);
void conv2d_backward_weight(const Conv2dDesc& desc, const void* x,  // (N, C_in, H, W)
                            const void* dy,                         // (N, C_out, OH, OW)
                            void* dw,                               // (C_out, Cg, KH, KW)
                            void* db,                               // (C_out), or nullptr: no bias gradient
                            void* workspace,                        // ignored (may be null)
                            Stream stream);
// Whether the CPU runs this nhwc conv on its own channels-last loops, without permuting: stride-1
// depthwise convs with one output per channel (SegFormer's Mix-FFN), whose forward and backward data give
// the bits of the nchw kernels (kernels/cpu/conv_depthwise_nhwc.cpp).
bool conv2d_runs_nhwc_natively(const Conv2dDesc& desc);
}  // namespace cpu

namespace cuda {
// Asynchronous on `stream`; pointers are device memory.
void conv2d_forward(const Conv2dDesc& desc, const void* x,  // (N, C_in, H, W)
                    const void* w,                          // (C_out, Cg, KH, KW)
                    const void* bias,                       // (C_out); ignored unless has_bias
                    void* y,                                // (N, C_out, OH, OW)
                    Stream stream);
void conv2d_backward_data(const Conv2dDesc& desc, const void* dy,  // (N, C_out, OH, OW)
                          const void* w,                           // (C_out, Cg, KH, KW)
                          void* dx,                                // (N, C_in, H, W)
                          Stream stream);
void conv2d_backward_weight(const Conv2dDesc& desc, const void* x,  // (N, C_in, H, W)
                            const void* dy,                         // (N, C_out, OH, OW)
                            void* dw,                               // (C_out, Cg, KH, KW)
                            void* db,                               // (C_out), or nullptr: no bias gradient
                            void* workspace,  // conv2d_backward_weight_workspace_bytes(desc) (null when 0)
                            Stream stream);
}  // namespace cuda

// ---- ConvTranspose2d (kernels/cpu/conv_transpose.cpp, kernels/cuda/conv_transpose.cu) ----
// PyTorch's conv_transpose2d, the adjoint of conv2d: x (N, C_in, H, W), weight (C_in, C_out / groups, KH, KW),
// y (N, C_out, OH, OW) with OH = (H - 1) * stride_h - 2 * pad_h + dilation_h * (KH - 1) + output_padding_h + 1.
// It is computed by the Conv2d kernels on the "mirror" conv2d that maps y's shape to x's shape with the same
// weight tensor (conv2d_of_transpose): forward = its backward-data (plus the bias), backward-data = its forward,
// backward-weight = its backward-weight with x and dy swapped. output_padding must be < stride here (the engine
// op turns output_padding >= stride, which PyTorch allows when < dilation, into zero rows appended to x).
struct ConvTranspose2dDesc {
  int64_t n = 1, c_in = 1, h = 1, w = 1;  // input (N, C_in, H, W)
  int64_t c_out = 1;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;  // removed from each side of the output
  int64_t output_padding_h = 0, output_padding_w = 0;  // added to the bottom / right of the output
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  bool has_bias = false;
  DType dtype = DType::f32;
};

inline int64_t conv_transpose2d_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                                            int64_t output_padding, int64_t dilation) {
  return (in - 1) * stride - 2 * pad + dilation * (kernel - 1) + output_padding + 1;
}
inline int64_t conv_transpose2d_output_h(const ConvTranspose2dDesc& d) {
  return conv_transpose2d_output_size(d.h, d.kernel_h, d.stride_h, d.pad_h, d.output_padding_h, d.dilation_h);
}
inline int64_t conv_transpose2d_output_w(const ConvTranspose2dDesc& d) {
  return conv_transpose2d_output_size(d.w, d.kernel_w, d.stride_w, d.pad_w, d.output_padding_w, d.dilation_w);
}

// The conv2d whose input is y's shape and whose output is x's shape, with weight (C_in, C_out / groups, KH, KW)
// read as conv2d's (C_out', C_in' / groups, KH, KW). has_bias is false: the bias belongs to the transpose.
inline Conv2dDesc conv2d_of_transpose(const ConvTranspose2dDesc& d) {
  Conv2dDesc c;
  c.n = d.n;
  c.c_in = d.c_out;
  c.h = conv_transpose2d_output_h(d);
  c.w = conv_transpose2d_output_w(d);
  c.c_out = d.c_in;
  c.kernel_h = d.kernel_h;
  c.kernel_w = d.kernel_w;
  c.stride_h = d.stride_h;
  c.stride_w = d.stride_w;
  c.pad_h = d.pad_h;
  c.pad_w = d.pad_w;
  c.dilation_h = d.dilation_h;
  c.dilation_w = d.dilation_w;
  c.groups = d.groups;
  c.dtype = d.dtype;
  return c;
}

inline int64_t conv_transpose2d_x_elements(const ConvTranspose2dDesc& d) { return d.n * d.c_in * d.h * d.w; }
inline int64_t conv_transpose2d_w_elements(const ConvTranspose2dDesc& d) {
  return d.c_in * (d.c_out / d.groups) * d.kernel_h * d.kernel_w;
}
inline int64_t conv_transpose2d_y_elements(const ConvTranspose2dDesc& d) {
  return d.n * d.c_out * conv_transpose2d_output_h(d) * conv_transpose2d_output_w(d);
}

// Throws se::Error naming the first bad field; the rest is checked by validate_conv2d on the mirror conv.
inline void validate_conv_transpose2d(const ConvTranspose2dDesc& d) {
  SE_CHECK(d.output_padding_h >= 0 && d.output_padding_h < d.stride_h, "conv_transpose2d: output_padding_h = ",
           d.output_padding_h, " (expected 0 <= output_padding_h < stride_h = ", d.stride_h, ")");
  SE_CHECK(d.output_padding_w >= 0 && d.output_padding_w < d.stride_w, "conv_transpose2d: output_padding_w = ",
           d.output_padding_w, " (expected 0 <= output_padding_w < stride_w = ", d.stride_w, ")");
  SE_CHECK(conv_transpose2d_output_h(d) >= 1 && conv_transpose2d_output_w(d) >= 1, "conv_transpose2d: output size (",
           conv_transpose2d_output_h(d), ", ", conv_transpose2d_output_w(d), ") is empty (h = ", d.h, ", w = ", d.w,
           ", pad = (", d.pad_h, ", ", d.pad_w, "))");
  const Conv2dDesc c = conv2d_of_transpose(d);
  validate_conv2d(c);
  SE_CHECK(conv2d_output_h(c) == d.h && conv2d_output_w(c) == d.w, "conv_transpose2d: internal shape mismatch");
}

// The mirror conv's backward weight computes the transposed conv's: the same workspace.
inline size_t conv_transpose2d_backward_weight_workspace_bytes(const ConvTranspose2dDesc& d) {
  return conv2d_backward_weight_workspace_bytes(conv2d_of_transpose(d));
}

// Shapes below: OH = conv_transpose2d_output_h(desc), OW = conv_transpose2d_output_w(desc), Og = C_out / groups.
namespace cpu {
void conv_transpose2d_forward(const ConvTranspose2dDesc& desc, const void* x,  // (N, C_in, H, W)
                              const void* w,                                   // (C_in, Og, KH, KW)
                              const void* bias,                                // (C_out); ignored unless has_bias
                              void* y,                                         // (N, C_out, OH, OW)
                              Stream stream);
void conv_transpose2d_backward_data(const ConvTranspose2dDesc& desc, const void* dy,  // (N, C_out, OH, OW)
                                    const void* w,                                    // (C_in, Og, KH, KW)
                                    void* dx,                                         // (N, C_in, H, W)
                                    Stream stream);
void conv_transpose2d_backward_weight(const ConvTranspose2dDesc& desc, const void* x,  // (N, C_in, H, W)
                                      const void* dy,                                  // (N, C_out, OH, OW)
                                      void* dw,                                        // (C_in, Og, KH, KW)
                                      void* db,         // (C_out), or nullptr: no bias gradient
                                      void* workspace,  // ignored (may be null)
                                      Stream stream);
}  // namespace cpu

namespace cuda {
void conv_transpose2d_forward(const ConvTranspose2dDesc& desc, const void* x,  // (N, C_in, H, W)
                              const void* w,                                   // (C_in, Og, KH, KW)
                              const void* bias,                                // (C_out); ignored unless has_bias
                              void* y,                                         // (N, C_out, OH, OW)
                              Stream stream);
void conv_transpose2d_backward_data(const ConvTranspose2dDesc& desc, const void* dy,  // (N, C_out, OH, OW)
                                    const void* w,                                    // (C_in, Og, KH, KW)
                                    void* dx,                                         // (N, C_in, H, W)
                                    Stream stream);
void conv_transpose2d_backward_weight(const ConvTranspose2dDesc& desc, const void* x,  // (N, C_in, H, W)
                                      const void* dy,                                  // (N, C_out, OH, OW)
                                      void* dw,                                        // (C_in, Og, KH, KW)
                                      void* db,         // (C_out), or nullptr: no bias gradient
                                      void* workspace,  // conv_transpose2d_backward_weight_workspace_bytes(desc)
                                      Stream stream);
}  // namespace cuda

}  // namespace se::kernels
