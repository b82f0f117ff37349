// Channels-last Conv2d on the CPU through the NCHW kernels (see conv_channels_last.h).
#include "kernels/cpu/conv_channels_last.h"

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/copy.h"

namespace se::kernels::cpu {
namespace {

// A scratch buffer of `count` elements of `dtype` (operator new[] aligns to 16 bytes, enough for f64).
std::unique_ptr<std::byte[]> scratch(int64_t count, DType dtype) {
  return std::make_unique<std::byte[]>(static_cast<size_t>(count) * dtype_size(dtype));
}

// Copies a (A, B, C, D) tensor between the channels-first order (A, B, C, D) and the channels-last
// order (A, C, D, B): activations with (N, C, H, W), weights with (C_out, Cg, KH, KW).
void permute(int64_t a, int64_t b, int64_t c, int64_t d, DType dtype, const void* src, void* dst,
             bool to_channels_last) {
  StridedLayout first{4, {a, b, c, d}, {b * c * d, c * d, d, 1}};  // (A, B, C, D) contiguous
  StridedLayout last{4, {a, b, c, d}, {c * d * b, 1, d * b, b}};   // the same elements stored (A, C, D, B)
  CopyDesc copy;
  copy.src = to_channels_last ? first : last;
  copy.dst = to_channels_last ? last : first;
  copy.src_dtype = copy.dst_dtype = dtype;
  copy_strided(copy, src, dst, nullptr);
}

Conv2dDesc as_nchw(const Conv2dDesc& desc) {
  Conv2dDesc d = desc;
  d.layout = Conv2dLayout::nchw;
  return d;
}

void x_to_nchw(const Conv2dDesc& d, const void* src, void* dst) {
  permute(d.n, d.c_in, d.h, d.w, d.dtype, src, dst, false);
}
void y_to_nchw(const Conv2dDesc& d, const void* src, void* dst) {
  permute(d.n, d.c_out, conv2d_output_h(d), conv2d_output_w(d), d.dtype, src, dst, false);
}
void w_to_nchw(const Conv2dDesc& d, const void* src, void* dst) {
  permute(d.c_out, d.c_in / d.groups, d.kernel_h, d.kernel_w, d.dtype, src, dst, false);
}

}  // namespace

void conv2d_forward_channels_last(const Conv2dDesc& desc, const void* x, const void* w, const void* bias, void* y) {
  if (conv2d_runs_nhwc_natively(desc)) return depthwise_nhwc_forward(desc, x, w, bias, y);
  const Conv2dDesc d = as_nchw(desc);
  const auto x_nchw = scratch(conv2d_x_elements(d), d.dtype), w_nchw = scratch(conv2d_w_elements(d), d.dtype);
  const auto y_nchw = scratch(conv2d_y_elements(d), d.dtype);
  x_to_nchw(d, x, x_nchw.get());
  w_to_nchw(d, w, w_nchw.get());
  conv2d_forward(d, x_nchw.get(), w_nchw.get(), bias, y_nchw.get(), nullptr);
  permute(d.n, d.c_out, conv2d_output_h(d), conv2d_output_w(d), d.dtype, y_nchw.get(), y, true);
}

void conv2d_backward_data_channels_last(const Conv2dDesc& desc, const void* dy, const void* w, void* dx) {
  if (conv2d_runs_nhwc_natively(desc)) return depthwise_nhwc_backward_data(desc, dy, w, dx);
  const Conv2dDesc d = as_nchw(desc);
  const auto dy_nchw = scratch(conv2d_y_elements(d), d.dtype), w_nchw = scratch(conv2d_w_elements(d), d.dtype);
  const auto dx_nchw = scratch(conv2d_x_elements(d), d.dtype);
  y_to_nchw(d, dy, dy_nchw.get());
  w_to_nchw(d, w, w_nchw.get());
  conv2d_backward_data(d, dy_nchw.get(), w_nchw.get(), dx_nchw.get(), nullptr);
  permute(d.n, d.c_in, d.h, d.w, d.dtype, dx_nchw.get(), dx, true);
}

void conv2d_backward_weight_channels_last(const Conv2dDesc& desc, const void* x, const void* dy, void* dw, void* db) {
  if (conv2d_runs_nhwc_natively(desc)) return depthwise_nhwc_backward_weight(desc, x, dy, dw, db);
  const Conv2dDesc d = as_nchw(desc);
  const auto x_nchw = scratch(conv2d_x_elements(d), d.dtype), dy_nchw = scratch(conv2d_y_elements(d), d.dtype);
  const auto dw_nchw = scratch(conv2d_w_elements(d), d.dtype);
  x_to_nchw(d, x, x_nchw.get());
  y_to_nchw(d, dy, dy_nchw.get());
  conv2d_backward_weight(d, x_nchw.get(), dy_nchw.get(), dw_nchw.get(), db, nullptr,
                         nullptr);  // db needs no permutation
  permute(d.c_out, d.c_in / d.groups, d.kernel_h, d.kernel_w, d.dtype, dw_nchw.get(), dw, true);
}

}  // namespace se::kernels::cpu
