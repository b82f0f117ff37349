// CUDA Conv2d without a GEMM, for both layouts (kChannelsLast: NHWC, else NCHW):
// - depthwise (groups == C_in; Og = C_out / C_in outputs per input channel): one thread per output
//   (forward) or input (backward data) element, consecutive threads along the contiguous dimension;
// - the reductions over images and pixels (depthwise backward weight, bias gradient) in a fixed order:
//   NCHW, one block per weight or channel over its contiguous planes; NHWC, 32 consecutive channels
//   per block row (coalesced) times 8 pixel lanes, the lanes summed in order through shared memory;
// - the bias broadcast under the 1x1 GEMMs;
// - the sum of a split backward weight's partial gradients, in part order.
// Weights (C_out, 1, KH, KW) and (C_out, KH, KW, 1) are the same memory. f64 computes in f64.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/conv_epilogue.h"
#include "kernels/cuda/conv_detail.cuh"
#include "kernels/cuda/conv_implicit_gemm.cuh"
#include "kernels/cuda/group_reduce.cuh"

namespace se::kernels::cuda::conv_detail {
namespace {

using conv_gemm::acc_t;
using conv_gemm::ConvArgs;

constexpr int kEltThreads = 256;
constexpr int kReduceThreads = 256;
constexpr int kChannelTile = 32, kPixelLanes = 8;  // the NHWC reductions' block: 32 x 8 threads

// Element offsets of x (N, C_in, H, W) and y (N, C_out, OH, OW) in either layout.
template <bool kChannelsLast>
__device__ inline int64_t x_offset(const ConvArgs& s, int64_t image, int64_t c, int64_t ih, int64_t iw) {
  return kChannelsLast ? ((image * s.h + ih) * s.w + iw) * s.c_in + c : ((image * s.c_in + c) * s.h + ih) * s.w + iw;
}
template <bool kChannelsLast>
__device__ inline int64_t y_offset(const ConvArgs& s, int64_t image, int64_t co, int64_t oh, int64_t ow) {
  return kChannelsLast ? ((image * s.oh + oh) * s.ow + ow) * s.c_out + co
                       : ((image * s.c_out + co) * s.oh + oh) * s.ow + ow;
}

// The (image, channel, row, column) of the e-th element in memory order of a (N, C, H, W) tensor.
struct Position {
  int64_t image, c, row, col;
};
template <bool kChannelsLast>
__device__ inline Position position(int64_t e, int64_t channels, int64_t height, int64_t width) {
  if constexpr (kChannelsLast) {
    const int64_t pixel = e / channels;
    return {pixel / (width * height), e % channels, pixel / width % height, pixel % width};
  } else {
    const int64_t plane = e / (width * height);
    return {plane / channels, plane % channels, e / width % height, e % width};
  }
}

template <typename T, bool kChannelsLast>
__global__ void depthwise_forward_kernel(ConvArgs s, const T* x,  // (N, C_in, H, W)
                                         const T* w,              // (C_out, 1, KH, KW)
                                         const T* bias,           // (C_out) or nullptr
                                         T* y) {                  // (N, C_out, OH, OW)
  using Acc = acc_t<T>;
  const int64_t total = s.n * s.c_out * s.oh * s.ow;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Position o = position<kChannelsLast>(e, s.c_out, s.oh, s.ow);
    const int64_t co = o.c, c = co / s.og;
    const T* w_c = w + co * s.kh * s.kw;
    Acc sum = bias != nullptr ? static_cast<Acc>(bias[co]) : Acc(0);
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t ih = o.row * s.sh - s.ph + i * s.dh;
      if (ih < 0 || ih >= s.h) continue;
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t iw = o.col * s.sw - s.pw + j * s.dw;
        if (iw < 0 || iw >= s.w) continue;
        sum +=
            static_cast<Acc>(w_c[i * s.kw + j]) * static_cast<Acc>(x[x_offset<kChannelsLast>(s, o.image, c, ih, iw)]);
      }
    }
    y[e] = static_cast<T>(conv_epilogue(s.act, sum));
  }
}

template <typename T, bool kChannelsLast>
__global__ void depthwise_backward_data_kernel(ConvArgs s, const T* dy,  // (N, C_out, OH, OW)
                                               const T* w,               // (C_out, 1, KH, KW)
                                               T* dx) {                  // (N, C_in, H, W)
  using Acc = acc_t<T>;
  const int64_t total = s.n * s.c_in * s.h * s.w;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Position in = position<kChannelsLast>(e, s.c_in, s.h, s.w);
    Acc sum = Acc(0);
    for (int64_t m = 0; m < s.og; ++m) {
      const int64_t co = in.c * s.og + m;
      const T* w_c = w + co * s.kh * s.kw;
      for (int64_t i = 0; i < s.kh; ++i) {
        const int64_t th = in.row + s.ph - i * s.dh;
        if (th < 0 || th % s.sh != 0 || th / s.sh >= s.oh) continue;
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t tw = in.col + s.pw - j * s.dw;
          if (tw < 0 || tw % s.sw != 0 || tw / s.sw >= s.ow) continue;
          sum += static_cast<Acc>(w_c[i * s.kw + j]) *
                 static_cast<Acc>(dy[y_offset<kChannelsLast>(s, in.image, co, th / s.sh, tw / s.sw)]);
        }
      }
    }
    dx[e] = static_cast<T>(sum);
  }
}

template <typename A>
struct Sum {
  __device__ A operator()(A a, A b) const { return a + b; }
};

// NCHW: one block per weight (co, i, j), the sum over images and output pixels of dy * x.
template <typename T>
__global__ void depthwise_backward_weight_kernel(ConvArgs s, const T* x,  // (N, C_in, H, W)
                                                 const T* dy,             // (N, C_out, OH, OW)
                                                 T* dw) {                 // (C_out, 1, KH, KW)
  using Acc = acc_t<T>;
  alignas(16) __shared__ Acc scratch[32];
  const int64_t taps = s.kh * s.kw;
  const int64_t co = blockIdx.x / taps, i = blockIdx.x % taps / s.kw, j = blockIdx.x % s.kw;
  const int64_t ohw = s.oh * s.ow;
  Acc sum = Acc(0);
  for (int64_t e = threadIdx.x; e < s.n * ohw; e += blockDim.x) {
    const int64_t image = e / ohw, ow = e % s.ow, oh = e % ohw / s.ow;
    const int64_t ih = oh * s.sh - s.ph + i * s.dh, iw = ow * s.sw - s.pw + j * s.dw;
    if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
    sum += static_cast<Acc>(dy[(image * s.c_out + co) * ohw + e % ohw]) *
           static_cast<Acc>(x[((image * s.c_in + co / s.og) * s.h + ih) * s.w + iw]);
  }
  sum = block_allreduce(sum, Sum<Acc>{}, scratch);
  if (threadIdx.x == 0) dw[blockIdx.x] = static_cast<T>(sum);
}

// NCHW: one block per output channel, db[co] = the sum of dy over images and pixels.
template <typename T>
__global__ void bias_grad_kernel(ConvArgs s, const T* dy,  // (N, C_out, OH, OW)
                                 T* db) {                  // (C_out)
  using Acc = acc_t<T>;
  alignas(16) __shared__ Acc scratch[32];
  const int64_t co = blockIdx.x, ohw = s.oh * s.ow;
  Acc sum = Acc(0);
  for (int64_t e = threadIdx.x; e < s.n * ohw; e += blockDim.x) {
    sum += static_cast<Acc>(dy[(e / ohw * s.c_out + co) * ohw + e % ohw]);
  }
  sum = block_allreduce(sum, Sum<Acc>{}, scratch);
  if (threadIdx.x == 0) db[co] = static_cast<T>(sum);
}

// NHWC: out[co * gridDim.y + tap] = the sum over output pixels p of dy[p, co] * (x at tap's input of p), or
// of dy[p, co] alone when x is null (the bias gradient, gridDim.y == 1). Block (32 channels) x (8 lanes);
// lane r takes pixels r, r + 8, ...; the lanes are added in order.
template <typename T>
__global__ void channels_last_reduce_kernel(ConvArgs s, const T* x,  // (N, H, W, C_in) or nullptr
                                            const T* dy,             // (N, OH, OW, C_out)
                                            T* out) {                // (C_out, KH, KW) or (C_out)
  using Acc = acc_t<T>;
  __shared__ Acc partial[kPixelLanes][kChannelTile + 1];
  const int64_t co = static_cast<int64_t>(blockIdx.x) * kChannelTile + threadIdx.x;
  const int64_t tap = blockIdx.y, i = tap / s.kw, j = tap % s.kw;
  const int64_t pixels = s.n * s.oh * s.ow;
  Acc sum = Acc(0);
  if (co < s.c_out) {
    for (int64_t p = threadIdx.y; p < pixels; p += kPixelLanes) {
      Acc factor = Acc(1);
      if (x != nullptr) {
        const int64_t ow = p % s.ow, oh = p / s.ow % s.oh, image = p / (s.ow * s.oh);
        const int64_t ih = oh * s.sh - s.ph + i * s.dh, iw = ow * s.sw - s.pw + j * s.dw;
        if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) continue;
        factor = static_cast<Acc>(x[x_offset<true>(s, image, co / s.og, ih, iw)]);
      }
      sum += static_cast<Acc>(dy[p * s.c_out + co]) * factor;
    }
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && co < s.c_out) {
    Acc total = partial[0][threadIdx.x];
    for (int r = 1; r < kPixelLanes; ++r) total += partial[r][threadIdx.x];
    out[co * gridDim.y + tap] = static_cast<T>(total);
  }
}

// y[e] = bias[channel of e] over (N, C, HW) or (N, HW, C).
template <typename T, bool kChannelsLast>
__global__ void fill_bias_kernel(T* y,           // (N, C, HW) or (N, HW, C)
                                 const T* bias,  // (C)
                                 int64_t channels, int64_t hw, int64_t total) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[e] = bias[kChannelsLast ? e % channels : e / hw % channels];
  }
}

// dw[e] = partials[0][e] + partials[1][e] + ..., in part order.
template <typename T>
__global__ void sum_weight_partials_kernel(T* dw,              // (elements)
                                           const T* partials,  // (splits, elements)
                                           int64_t splits, int64_t elements) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < elements;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    T sum = partials[e];
    for (int64_t part = 1; part < splits; ++part) sum += partials[part * elements + e];
    dw[e] = sum;
  }
}

#define SE_CONV_DIRECT_KERNELS_INSTANTIATE(T)                                                              \
  template __global__ void depthwise_forward_kernel<T, false>(ConvArgs, const T*, const T*, const T*, T*); \
  template __global__ void depthwise_forward_kernel<T, true>(ConvArgs, const T*, const T*, const T*, T*);  \
  template __global__ void depthwise_backward_data_kernel<T, false>(ConvArgs, const T*, const T*, T*);     \
  template __global__ void depthwise_backward_data_kernel<T, true>(ConvArgs, const T*, const T*, T*);      \
  template __global__ void depthwise_backward_weight_kernel<T>(ConvArgs, const T*, const T*, T*);          \
  template __global__ void bias_grad_kernel<T>(ConvArgs, const T*, T*);                                    \
  template __global__ void channels_last_reduce_kernel<T>(ConvArgs, const T*, const T*, T*);               \
  template __global__ void fill_bias_kernel<T, false>(T*, const T*, int64_t, int64_t, int64_t);            \
  template __global__ void fill_bias_kernel<T, true>(T*, const T*, int64_t, int64_t, int64_t);             \
  template __global__ void sum_weight_partials_kernel<T>(T*, const T*, int64_t, int64_t);
SE_CONV_DIRECT_KERNELS_INSTANTIATE(float)
SE_CONV_DIRECT_KERNELS_INSTANTIATE(double)
SE_CONV_DIRECT_KERNELS_INSTANTIATE(__half)
SE_CONV_DIRECT_KERNELS_INSTANTIATE(__nv_bfloat16)
#undef SE_CONV_DIRECT_KERNELS_INSTANTIATE

unsigned int elementwise_blocks(int64_t total) {
  return static_cast<unsigned int>(std::min<int64_t>((total + kEltThreads - 1) / kEltThreads, 65536));
}

dim3 channels_last_reduce_grid(const ConvArgs& s, int64_t taps) {
  return dim3(ceil_div(s.c_out, kChannelTile), static_cast<unsigned int>(taps));
}

}  // namespace

template <typename T>
void depthwise_forward(const Conv2dDesc& d, const T* x, const T* w, const T* bias, T* y, Stream stream) {
  const ConvArgs s = conv_gemm::conv_args(d);
  const unsigned int blocks = elementwise_blocks(conv2d_y_elements(d));
  if (d.layout == Conv2dLayout::nhwc) {
    SE_LAUNCH((depthwise_forward_kernel<T, true>), blocks, kEltThreads, 0, stream, s, x, w, bias, y);
  } else {
    SE_LAUNCH((depthwise_forward_kernel<T, false>), blocks, kEltThreads, 0, stream, s, x, w, bias, y);
  }
}

template <typename T>
void depthwise_backward_data(const Conv2dDesc& d, const T* dy, const T* w, T* dx, Stream stream) {
  const ConvArgs s = conv_gemm::conv_args(d);
  const unsigned int blocks = elementwise_blocks(conv2d_x_elements(d));
  if (d.layout == Conv2dLayout::nhwc) {
    SE_LAUNCH((depthwise_backward_data_kernel<T, true>), blocks, kEltThreads, 0, stream, s, dy, w, dx);
  } else {
    SE_LAUNCH((depthwise_backward_data_kernel<T, false>), blocks, kEltThreads, 0, stream, s, dy, w, dx);
  }
}

template <typename T>
void depthwise_backward_weight(const Conv2dDesc& d, const T* x, const T* dy, T* dw, Stream stream) {
  const ConvArgs s = conv_gemm::conv_args(d);
  if (d.layout == Conv2dLayout::nhwc) {
    SE_LAUNCH(channels_last_reduce_kernel<T>, channels_last_reduce_grid(s, s.kh * s.kw),
              dim3(kChannelTile, kPixelLanes), 0, stream, s, x, dy, dw);
  } else {
    SE_LAUNCH(depthwise_backward_weight_kernel<T>, static_cast<unsigned int>(s.c_out * s.kh * s.kw), kReduceThreads, 0,
              stream, s, x, dy, dw);
  }
}

template <typename T>
void bias_gradient(const Conv2dDesc& d, const T* dy, T* db, Stream stream) {
  const ConvArgs s = conv_gemm::conv_args(d);
  if (d.layout == Conv2dLayout::nhwc) {
    SE_LAUNCH(channels_last_reduce_kernel<T>, channels_last_reduce_grid(s, 1), dim3(kChannelTile, kPixelLanes), 0,
              stream, s, static_cast<const T*>(nullptr), dy, db);
  } else {
    SE_LAUNCH(bias_grad_kernel<T>, static_cast<unsigned int>(s.c_out), kReduceThreads, 0, stream, s, dy, db);
  }
}

template <typename T>
void fill_bias(const Conv2dDesc& d, const T* bias, T* y, Stream stream) {
  const int64_t total = conv2d_y_elements(d), hw = conv2d_output_h(d) * conv2d_output_w(d);
  const unsigned int blocks = elementwise_blocks(total);
  if (d.layout == Conv2dLayout::nhwc) {
    SE_LAUNCH((fill_bias_kernel<T, true>), blocks, kEltThreads, 0, stream, y, bias, d.c_out, hw, total);
  } else {
    SE_LAUNCH((fill_bias_kernel<T, false>), blocks, kEltThreads, 0, stream, y, bias, d.c_out, hw, total);
  }
}

template <typename T>
void sum_weight_partials(const Conv2dDesc& d, const T* partials, int64_t splits, T* dw, Stream stream) {
  const int64_t elements = conv2d_w_elements(d);
  SE_LAUNCH(sum_weight_partials_kernel<T>, elementwise_blocks(elements), kEltThreads, 0, stream, dw, partials, splits,
            elements);
}

#define SE_CONV_DIRECT_INSTANTIATE(T)                                                              \
  template void depthwise_forward<T>(const Conv2dDesc&, const T*, const T*, const T*, T*, Stream); \
  template void depthwise_backward_data<T>(const Conv2dDesc&, const T*, const T*, T*, Stream);     \
  template void depthwise_backward_weight<T>(const Conv2dDesc&, const T*, const T*, T*, Stream);   \
  template void bias_gradient<T>(const Conv2dDesc&, const T*, T*, Stream);                         \
  template void fill_bias<T>(const Conv2dDesc&, const T*, T*, Stream);                             \
  template void sum_weight_partials<T>(const Conv2dDesc&, const T*, int64_t, T*, Stream);
SE_CONV_DIRECT_INSTANTIATE(float)
SE_CONV_DIRECT_INSTANTIATE(double)
SE_CONV_DIRECT_INSTANTIATE(__half)
SE_CONV_DIRECT_INSTANTIATE(__nv_bfloat16)
#undef SE_CONV_DIRECT_INSTANTIATE

}  // namespace se::kernels::cuda::conv_detail
