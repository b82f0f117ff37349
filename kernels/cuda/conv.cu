// CUDA Conv2d: the entry points, and the NCHW passes. Depthwise convolutions (either layout) and the
// bias gradient go to conv_direct.cu, the other NHWC passes to conv_channels_last.cu. Here, over NCHW:
// - the three passes as implicit GEMMs (no im2col buffer; kernels/cuda/conv_implicit_gemm.cuh) whose
//   operand loaders compute the im2col / col2im addresses on the fly, per group (group along gridDim.z):
//     forward          M = Og, N = N*OH*OW, K = Cg*KH*KW   A = w,   B = im2col(x)
//     backward data    M = Cg, N = N*H*W,   K = Og*KH*KW   A = w^T, B = dy gathered at the outputs
//                                                          that read each input pixel (no atomics)
//     backward weight  M = Og, N = Cg*KH*KW, K = N*OH*OW   A = dy,  B = im2col(x)^T; K may be split
//                                                          over blocks whose partial dw are then added
//                                                          in order (f32, f64; kernels/conv.h)
// - 1x1 convolutions with stride 1, no padding and one group are plain batched GEMMs over the images
//   (forward and backward data), run by the tuned GEMM kernels (kernels/cuda/gemm.cu).
// f64 computes in f64. Built by nvcc and by the emulator from this one source (DESIGN.md rules).
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/conv.h"
#include "kernels/conv_epilogue.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/conv_detail.cuh"
#include "kernels/cuda/conv_implicit_gemm.cuh"
#include "kernels/gemm.h"

namespace se::kernels::cuda {
namespace {

using conv_gemm::acc_t;
using conv_gemm::ConvArgs;

// im2col(x)[kidx, p] of group g: kidx = (c, i, j) over (Cg, KH, KW), p = (image, oh, ow); 0 in the padding.
template <typename T>
__device__ acc_t<T> im2col_value(const ConvArgs& s, const T* x,  // (N, C_in, H, W)
                                 int64_t g, int64_t kidx, int64_t p) {
  const int64_t j = kidx % s.kw, i = kidx / s.kw % s.kh, c = kidx / (s.kw * s.kh);
  const int64_t ow = p % s.ow, oh = p / s.ow % s.oh, image = p / (s.ow * s.oh);
  const int64_t ih = oh * s.sh - s.ph + i * s.dh, iw = ow * s.sw - s.pw + j * s.dw;
  if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) return acc_t<T>(0);
  return static_cast<acc_t<T>>(x[((image * s.c_in + g * s.cg + c) * s.h + ih) * s.w + iw]);
}

template <typename T>
struct ForwardGemm {
  using Element = T;
  using Acc = acc_t<T>;
  static constexpr bool kAAlongK = true;   // w rows
  static constexpr bool kBAlongK = false;  // B loads walk pixels (n), contiguous in x
  static constexpr bool kMAlongGridX = false;
  ConvArgs s;
  const T* x;     // (N, C_in, H, W)
  const T* w;     // (C_out, Cg, KH, KW)
  const T* bias;  // (C_out) or nullptr
  T* y;           // (N, C_out, OH, OW)
  __device__ int64_t m() const { return s.og; }
  __device__ int64_t n() const { return s.n * s.oh * s.ow; }
  __device__ int64_t k() const { return s.k; }
  __device__ Acc a(int64_t g, int64_t m, int64_t k) const { return static_cast<Acc>(w[(g * s.og + m) * s.k + k]); }
  __device__ Acc b(int64_t g, int64_t k, int64_t p) const { return im2col_value(s, x, g, k, p); }
  __device__ void store(int64_t g, int64_t m, int64_t p, Acc v) const {
    const int64_t co = g * s.og + m, ohw = s.oh * s.ow;
    if (bias != nullptr) v += static_cast<Acc>(bias[co]);
    y[(p / ohw * s.c_out + co) * ohw + p % ohw] = static_cast<T>(conv_epilogue(s.act, v));
  }
};

template <typename T>
struct BackwardDataGemm {
  using Element = T;
  using Acc = acc_t<T>;
  static constexpr bool kAAlongK = true;
  static constexpr bool kBAlongK = false;
  static constexpr bool kMAlongGridX = false;
  ConvArgs s;
  const T* dy;  // (N, C_out, OH, OW)
  const T* w;   // (C_out, Cg, KH, KW)
  T* dx;        // (N, C_in, H, W)
  __device__ int64_t m() const { return s.cg; }
  __device__ int64_t n() const { return s.n * s.h * s.w; }
  __device__ int64_t k() const { return s.og * s.kh * s.kw; }
  // A(c, (co, i, j)) = w[g * Og + co, c, i, j]
  __device__ Acc a(int64_t g, int64_t c, int64_t k) const {
    const int64_t taps = s.kh * s.kw;
    return static_cast<Acc>(w[((g * s.og + k / taps) * s.cg + c) * taps + k % taps]);
  }
  // B((co, i, j), (image, ih, iw)) = dy[image, g * Og + co, oh, ow] for the output (oh, ow) whose tap (i, j)
  // reads (ih, iw), or 0 when there is none.
  __device__ Acc b(int64_t g, int64_t k, int64_t p) const {
    const int64_t j = k % s.kw, i = k / s.kw % s.kh, co = k / (s.kw * s.kh);
    const int64_t iw = p % s.w, ih = p / s.w % s.h, image = p / (s.w * s.h);
    const int64_t th = ih + s.ph - i * s.dh, tw = iw + s.pw - j * s.dw;
    if (th < 0 || tw < 0 || th % s.sh != 0 || tw % s.sw != 0) return Acc(0);
    const int64_t oh = th / s.sh, ow = tw / s.sw;
    if (oh >= s.oh || ow >= s.ow) return Acc(0);
    return static_cast<Acc>(dy[((image * s.c_out + g * s.og + co) * s.oh + oh) * s.ow + ow]);
  }
  __device__ void store(int64_t g, int64_t c, int64_t p, Acc v) const {
    const int64_t hw = s.h * s.w;
    dx[(p / hw * s.c_in + g * s.cg + c) * hw + p % hw] = static_cast<T>(v);
  }
};

template <typename T>
struct BackwardWeightGemm {
  using Element = T;
  using Acc = acc_t<T>;
  static constexpr bool kAAlongK = true;  // dy rows: pixels, which are k here
  static constexpr bool kBAlongK = true;  // B loads walk pixels too
  static constexpr bool kMAlongGridX = false;
  ConvArgs s;
  const T* x;   // (N, C_in, H, W)
  const T* dy;  // (N, C_out, OH, OW)
  T* dw;        // (C_out, Cg, KH, KW)
  T* partials;  // (splits, C_out, Cg, KH, KW) when K is split over blocks, else nullptr
  __device__ int64_t m() const { return s.og; }
  __device__ int64_t n() const { return s.k; }
  __device__ int64_t k() const { return s.n * s.oh * s.ow; }
  __device__ Acc a(int64_t g, int64_t m, int64_t p) const {
    const int64_t ohw = s.oh * s.ow;
    return static_cast<Acc>(dy[(p / ohw * s.c_out + g * s.og + m) * ohw + p % ohw]);
  }
  __device__ Acc b(int64_t g, int64_t p, int64_t kidx) const { return im2col_value(s, x, g, kidx, p); }
  __device__ void store(int64_t g, int64_t m, int64_t kidx, Acc v) const {
    conv_gemm::store_weight_gradient(dw, partials, s, (g * s.og + m) * s.k + kidx, v);
  }
};

// Batched over images: op(A) (m, k) shared by all, B and C strided per image.
GemmDesc pointwise_gemm(const Conv2dDesc& d, int64_t m, int64_t k, bool trans_a) {
  const int64_t hw = d.h * d.w;
  GemmDesc g;
  g.m = m;
  g.n = hw;
  g.k = k;
  g.trans_a = trans_a;
  g.lda = trans_a ? m : k;
  g.ldb = hw;
  g.ldc = hw;
  g.batch = d.n;
  g.stride_a = 0;
  g.stride_b = k * hw;
  g.stride_c = m * hw;
  g.dtype = d.dtype;
  return g;
}


template <typename T>
void forward_typed(const Conv2dDesc& d, const T* x, const T* w, const T* bias, T* y, Stream stream) {
  const ConvArgs s = conv_gemm::conv_args(d);
  if (conv2d_is_depthwise(d)) {
    conv_detail::depthwise_forward(d, x, w, bias, y, stream);
    return;
  }
  if (d.layout == Conv2dLayout::nhwc) {
    conv_detail::channels_last_forward(d, x, w, bias, y, stream);
    return;
  }
  if (conv2d_is_pointwise(d) && d.activation == ConvActivation::none) {  // the GEMM has no activation epilogue
    GemmDesc g = pointwise_gemm(d, d.c_out, d.c_in, false);  // y_n = w (C_out, C_in) x_n (C_in, HW)
    if (bias != nullptr) {
      conv_detail::fill_bias(d, bias, y, stream);
      g.beta = 1.0f;
    }
    gemm(g, w, x, y, stream);
    return;
  }
  const ForwardGemm<T> p{s, x, w, bias, y};
  conv_gemm::launch_gemm(p, s.og, s.n * s.oh * s.ow, s.k, 1, stream);
}

template <typename T>
void backward_data_typed(const Conv2dDesc& d, const T* dy, const T* w, T* dx, Stream stream) {
  const ConvArgs s = conv_gemm::conv_args(d);
  if (conv2d_is_depthwise(d)) {
    conv_detail::depthwise_backward_data(d, dy, w, dx, stream);
    return;
  }
  if (d.layout == Conv2dLayout::nhwc) {
    conv_detail::channels_last_backward_data(d, dy, w, dx, stream);
    return;
  }
  if (conv2d_is_pointwise(d)) {  // dx_n = w^T (C_in, C_out) dy_n (C_out, HW)
    gemm(pointwise_gemm(d, d.c_in, d.c_out, true), w, dy, dx, stream);
    return;
  }
  const BackwardDataGemm<T> p{s, dy, w, dx};
  conv_gemm::launch_gemm(p, s.cg, s.n * s.h * s.w, s.og * s.kh * s.kw, 1, stream);
}

template <typename T>
void backward_weight_typed(const Conv2dDesc& d, const T* x, const T* dy, T* dw, T* db, T* partials, Stream stream) {
  const ConvArgs s = conv_gemm::conv_args(d);
  if (conv2d_is_depthwise(d)) {
    conv_detail::depthwise_backward_weight(d, x, dy, dw, stream);
  } else if (d.layout == Conv2dLayout::nhwc) {
    conv_detail::channels_last_backward_weight(d, x, dy, dw, partials, stream);
  } else {
    const int64_t splits = conv2d_backward_weight_splits(d);
    const BackwardWeightGemm<T> p{s, x, dy, dw, splits > 1 ? partials : nullptr};
    conv_gemm::launch_gemm(p, s.og, s.k, s.n * s.oh * s.ow, splits, stream);
    if (splits > 1) conv_detail::sum_weight_partials(d, partials, splits, dw, stream);
  }
  if (db != nullptr) conv_detail::bias_gradient(d, dy, db, stream);
}

}  // namespace

SE_CONV_GEMM_INSTANTIATE_ALL(ForwardGemm)
SE_CONV_GEMM_INSTANTIATE_ALL(BackwardDataGemm)
SE_CONV_GEMM_INSTANTIATE_ALL(BackwardWeightGemm)

void conv2d_forward(const Conv2dDesc& desc, const void* x, const void* w, const void* bias, void* y,
                    Stream stream) {
  validate_conv2d(desc);
  if (desc.n == 0) return;
  SE_CHECK(x != nullptr && w != nullptr && y != nullptr, "conv2d_forward: x, w or y is null");
  SE_CHECK(!desc.has_bias || bias != nullptr, "conv2d_forward: has_bias is set but bias is null");
  dispatch_floating_cuda(desc.dtype, "conv2d_forward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    forward_typed<T>(desc, static_cast<const T*>(x), static_cast<const T*>(w),
                     desc.has_bias ? static_cast<const T*>(bias) : nullptr, static_cast<T*>(y), stream);
  });
}

void conv2d_backward_data(const Conv2dDesc& desc, const void* dy, const void* w, void* dx, Stream stream) {
  validate_conv2d(desc);
  if (desc.n == 0) return;
  SE_CHECK(dy != nullptr && w != nullptr && dx != nullptr, "conv2d_backward_data: dy, w or dx is null");
  dispatch_floating_cuda(desc.dtype, "conv2d_backward_data", [&](auto tag) {
    using T = typename decltype(tag)::type;
    backward_data_typed<T>(desc, static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<T*>(dx), stream);
  });
}

void conv2d_backward_weight(const Conv2dDesc& desc, const void* x, const void* dy, void* dw, void* db, void* workspace,
                            Stream stream) {
  validate_conv2d(desc);
  SE_CHECK(dw != nullptr, "conv2d_backward_weight: dw is null");
  if (desc.n == 0) {  // no images: zero gradients
    const size_t elt = dtype_size(desc.dtype);
    CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(conv2d_w_elements(desc)) * elt, stream));
    if (db != nullptr) CUDA_CHECK(cudaMemsetAsync(db, 0, static_cast<size_t>(desc.c_out) * elt, stream));
    return;
  }
  SE_CHECK(x != nullptr && dy != nullptr, "conv2d_backward_weight: x or dy is null");
  SE_CHECK(workspace != nullptr || conv2d_backward_weight_workspace_bytes(desc) == 0,
           "conv2d_backward_weight: the workspace is null; this conv needs conv2d_backward_weight_workspace_bytes = ",
           conv2d_backward_weight_workspace_bytes(desc), " bytes");
  dispatch_floating_cuda(desc.dtype, "conv2d_backward_weight", [&](auto tag) {
    using T = typename decltype(tag)::type;
    backward_weight_typed<T>(desc, static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dw),
                             static_cast<T*>(db), static_cast<T*>(workspace), stream);
  });
}

}  // namespace se::kernels::cuda
