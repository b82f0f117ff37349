// CUDA Conv2d over channels-last data (Conv2dLayout::nhwc; not depthwise, which conv_direct.cu runs):
// x (N, H, W, C_in), y (N, OH, OW, C_out), w (C_out, KH, KW, Cg). A filter tap's Cg input channels are
// one contiguous run, so the reduction index is ordered (tap, channel) with the channel fastest, and each
// pass is an implicit GEMM (kernels/cuda/conv_implicit_gemm.cuh) whose operands are read along their
// contiguous dimension by consecutive threads:
//   forward          M = N*OH*OW, N = Og, K = KH*KW*Cg   A = im2col(x) (along k),  B = w^T (along k)
//   backward data    M = N*H*W,   N = Cg, K = KH*KW*Og   A = dy gathered at the outputs that read each
//                                                        input pixel (along k),    B = w (along n)
//   backward weight  M = Og, N = KH*KW*Cg, K = N*OH*OW   A = dy^T (along m),       B = im2col(x) (along n);
//                                                        K may be split over blocks, their partial dw
//                                                        then added in order (f32, f64; kernels/conv.h)
// The outputs y and dx are stored with consecutive threads along their channels. Pixels index rows of the
// first two, so their tiles run along gridDim.x (no 65535-tile limit).
// 1x1 convolutions with stride 1, no padding and one group are, per image, (H*W, C_in) x (C_in, C_out)
// products: the tuned GEMM kernels run the forward and the backward data (kernels/cuda/gemm.cu).
#include <cstdint>
#include <type_traits>

#include "kernels/conv_epilogue.h"
#include "kernels/cuda/conv_detail.cuh"
#include "kernels/cuda/conv_implicit_gemm.cuh"
#include "kernels/gemm.h"

namespace se::kernels::cuda {
namespace {

using conv_gemm::acc_t;
using conv_gemm::ConvArgs;

// im2col(x)[p, kidx] of group g: p = (image, oh, ow), kidx = (i, j, c) over (KH, KW, Cg); 0 in the padding.
template <typename T>
__device__ acc_t<T> im2col_nhwc(const ConvArgs& s, const T* x,  // (N, H, W, C_in)
                                int64_t g, int64_t p, int64_t kidx) {
  const int64_t c = kidx % s.cg, j = kidx / s.cg % s.kw, i = kidx / (s.cg * s.kw);
  const int64_t ow = p % s.ow, oh = p / s.ow % s.oh, image = p / (s.ow * s.oh);
  const int64_t ih = oh * s.sh - s.ph + i * s.dh, iw = ow * s.sw - s.pw + j * s.dw;
  if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) return acc_t<T>(0);
  return static_cast<acc_t<T>>(x[((image * s.h + ih) * s.w + iw) * s.c_in + g * s.cg + c]);
}

template <typename T>
struct ForwardNhwc {
  using Element = T;
  using Acc = acc_t<T>;
  static constexpr bool kAAlongK = true;  // a tap's channels
  static constexpr bool kBAlongK = true;  // a weight row
  static constexpr bool kMAlongGridX = true;
  ConvArgs s;
  const T* x;     // (N, H, W, C_in)
  const T* w;     // (C_out, KH, KW, Cg)
  const T* bias;  // (C_out) or nullptr
  T* y;           // (N, OH, OW, C_out)
  __device__ int64_t m() const { return s.n * s.oh * s.ow; }
  __device__ int64_t n() const { return s.og; }
  __device__ int64_t k() const { return s.k; }
  __device__ Acc a(int64_t g, int64_t p, int64_t kidx) const { return im2col_nhwc(s, x, g, p, kidx); }
  __device__ Acc b(int64_t g, int64_t kidx, int64_t co) const {
    return static_cast<Acc>(w[(g * s.og + co) * s.k + kidx]);
  }
  __device__ void store(int64_t g, int64_t p, int64_t co, Acc v) const {
    const int64_t channel = g * s.og + co;
    if (bias != nullptr) v += static_cast<Acc>(bias[channel]);
    y[p * s.c_out + channel] = static_cast<T>(conv_epilogue(s.act, v));
  }
};

template <typename T>
struct BackwardDataNhwc {
  using Element = T;
  using Acc = acc_t<T>;
  static constexpr bool kAAlongK = true;   // a tap's output channels in dy
  static constexpr bool kBAlongK = false;  // w (co, i, j, :) is contiguous along the input channels, n here
  static constexpr bool kMAlongGridX = true;
  ConvArgs s;
  const T* dy;  // (N, OH, OW, C_out)
  const T* w;   // (C_out, KH, KW, Cg)
  T* dx;        // (N, H, W, C_in)
  __device__ int64_t m() const { return s.n * s.h * s.w; }
  __device__ int64_t n() const { return s.cg; }
  __device__ int64_t k() const { return s.kh * s.kw * s.og; }
  // A((image, ih, iw), (i, j, co)) = dy[image, oh, ow, g * Og + co] for the output (oh, ow) whose tap (i, j)
  // reads (ih, iw), or 0 when there is none.
  __device__ Acc a(int64_t g, int64_t p, int64_t kidx) const {
    const int64_t co = kidx % s.og, j = kidx / s.og % s.kw, i = kidx / (s.og * s.kw);
    const int64_t iw = p % s.w, ih = p / s.w % s.h, image = p / (s.w * s.h);
    const int64_t th = ih + s.ph - i * s.dh, tw = iw + s.pw - j * s.dw;
    if (th < 0 || tw < 0 || th % s.sh != 0 || tw % s.sw != 0) return Acc(0);
    const int64_t oh = th / s.sh, ow = tw / s.sw;
    if (oh >= s.oh || ow >= s.ow) return Acc(0);
    return static_cast<Acc>(dy[((image * s.oh + oh) * s.ow + ow) * s.c_out + g * s.og + co]);
  }
  // B((i, j, co), c) = w[g * Og + co, i, j, c]
  __device__ Acc b(int64_t g, int64_t kidx, int64_t c) const {
    const int64_t co = kidx % s.og, tap = kidx / s.og;
    return static_cast<Acc>(w[((g * s.og + co) * s.kh * s.kw + tap) * s.cg + c]);
  }
  __device__ void store(int64_t g, int64_t p, int64_t c, Acc v) const {
    dx[p * s.c_in + g * s.cg + c] = static_cast<T>(v);
  }
};

template <typename T>
struct BackwardWeightNhwc {
  using Element = T;
  using Acc = acc_t<T>;
  static constexpr bool kAAlongK = false;  // dy (p, :) is contiguous along the output channels, m here
  static constexpr bool kBAlongK = false;  // a tap's input channels, n here
  static constexpr bool kMAlongGridX = false;
  ConvArgs s;
  const T* x;       // (N, H, W, C_in)
  const T* dy;      // (N, OH, OW, C_out)
  T* dw;            // (C_out, KH, KW, Cg)
  T* partials;      // (splits, C_out, KH, KW, Cg) when K is split over blocks, else nullptr
  __device__ int64_t m() const { return s.og; }
  __device__ int64_t n() const { return s.k; }
  __device__ int64_t k() const { return s.n * s.oh * s.ow; }
  __device__ Acc a(int64_t g, int64_t co, int64_t p) const { return static_cast<Acc>(dy[p * s.c_out + g * s.og + co]); }
  __device__ Acc b(int64_t g, int64_t p, int64_t kidx) const { return im2col_nhwc(s, x, g, p, kidx); }
  __device__ void store(int64_t g, int64_t co, int64_t kidx, Acc v) const {
    conv_gemm::store_weight_gradient(dw, partials, s, (g * s.og + co) * s.k + kidx, v);
  }
};

// The per-image GEMM of a 1x1 convolution: rows are the image's H*W pixels, batched over images. Only
// when the rows fit the GEMM's grid (kernels/cuda/gemm.cu puts row tiles along gridDim.y; 64 rows per
// tile for its smallest tiles); larger images take the implicit GEMM.
bool is_pointwise_gemm(const Conv2dDesc& d) {
  return conv2d_is_pointwise(d) && ceil_div(d.h * d.w, 64) <= conv_gemm::kMaxGridYZ;
}

// (H*W, k) row-major A per image times B (k, n), or B (n, k) transposed, into C (H*W, n) per image.
GemmDesc pointwise_gemm(const Conv2dDesc& d, int64_t k, int64_t n, bool trans_b) {
  const int64_t hw = d.h * d.w;
  GemmDesc g;
  g.m = hw;
  g.n = n;
  g.k = k;
  g.trans_b = trans_b;
  g.lda = k;
  g.ldb = trans_b ? k : n;
  g.ldc = n;
  g.batch = d.n;
  g.stride_a = hw * k;
  g.stride_b = 0;
  g.stride_c = hw * n;
  g.dtype = d.dtype;
  return g;
}

}  // namespace

SE_CONV_GEMM_INSTANTIATE_ALL(ForwardNhwc)
SE_CONV_GEMM_INSTANTIATE_ALL(BackwardDataNhwc)
SE_CONV_GEMM_INSTANTIATE_ALL(BackwardWeightNhwc)

namespace conv_detail {

template <typename T>
void channels_last_forward(const Conv2dDesc& d, const T* x, const T* w, const T* bias, T* y, Stream stream) {
  if (is_pointwise_gemm(d) && d.activation == ConvActivation::none) {  // the GEMM has no activation epilogue
    GemmDesc g = pointwise_gemm(d, d.c_in, d.c_out, true);             // y_n (HW, C_out) = x_n (HW, C_in) w^T
    if (bias != nullptr) {
      conv_detail::fill_bias(d, bias, y, stream);
      g.beta = 1.0f;
    }
    gemm(g, x, w, y, stream);
    return;
  }
  const ConvArgs s = conv_gemm::conv_args(d);
  const ForwardNhwc<T> p{s, x, w, bias, y};
  conv_gemm::launch_gemm(p, s.n * s.oh * s.ow, s.og, s.k, 1, stream);
}

template <typename T>
void channels_last_backward_data(const Conv2dDesc& d, const T* dy, const T* w, T* dx, Stream stream) {
  if (is_pointwise_gemm(d)) {  // dx_n (HW, C_in) = dy_n (HW, C_out) w (C_out, C_in)
    gemm(pointwise_gemm(d, d.c_out, d.c_in, false), dy, w, dx, stream);
    return;
  }
  const ConvArgs s = conv_gemm::conv_args(d);
  const BackwardDataNhwc<T> p{s, dy, w, dx};
  conv_gemm::launch_gemm(p, s.n * s.h * s.w, s.cg, s.kh * s.kw * s.og, 1, stream);
}

template <typename T>
void channels_last_backward_weight(const Conv2dDesc& d, const T* x, const T* dy, T* dw, T* partials, Stream stream) {
  const ConvArgs s = conv_gemm::conv_args(d);
  const int64_t splits = conv2d_backward_weight_splits(d);
  const BackwardWeightNhwc<T> p{s, x, dy, dw, splits > 1 ? partials : nullptr};
  conv_gemm::launch_gemm(p, s.og, s.k, s.n * s.oh * s.ow, splits, stream);
  if (splits > 1) conv_detail::sum_weight_partials(d, partials, splits, dw, stream);
}

#define SE_CONV_CHANNELS_LAST_INSTANTIATE(T)                                                           \
  template void channels_last_forward<T>(const Conv2dDesc&, const T*, const T*, const T*, T*, Stream); \
  template void channels_last_backward_data<T>(const Conv2dDesc&, const T*, const T*, T*, Stream);     \
  template void channels_last_backward_weight<T>(const Conv2dDesc&, const T*, const T*, T*, T*, Stream);
SE_CONV_CHANNELS_LAST_INSTANTIATE(float)
SE_CONV_CHANNELS_LAST_INSTANTIATE(double)
SE_CONV_CHANNELS_LAST_INSTANTIATE(__half)
SE_CONV_CHANNELS_LAST_INSTANTIATE(__nv_bfloat16)
#undef SE_CONV_CHANNELS_LAST_INSTANTIATE

}  // namespace conv_detail
}  // namespace se::kernels::cuda
