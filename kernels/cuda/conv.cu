// CUDA Conv2d over NCHW:
// - the three passes as implicit GEMMs (no im2col buffer) whose tile loaders compute the im2col /
//   col2im addresses on the fly, per group (group along gridDim.z):
//     forward          M = Og, N = N*OH*OW, K = Cg*KH*KW   A = w,   B = im2col(x)
//     backward data    M = Cg, N = N*H*W,   K = Og*KH*KW   A = w^T, B = dy gathered at the outputs
//                                                          that read each input pixel (no atomics)
//     backward weight  M = Og, N = Cg*KH*KW, K = N*OH*OW   A = dy,  B = im2col(x)^T; K is split over
//                                                          blocks that atomically add (f32, f64)
//   f32/f64: a shared-memory tiled kernel (64 x 64 block tile, k step 16, 4 x 4 outputs per thread).
//   f16/bf16: tensor cores (nvcuda::wmma 16 x 16 x 16, f32 accumulate; 64 x 64 block tile, k step 32,
//   four warps of 2 x 2 fragments), the same loaders filling half-precision tiles.
// - 1x1 convolutions with stride 1, no padding and one group are plain batched GEMMs over the images
//   (forward and backward data), run by the tuned GEMM kernels (kernels/cuda/gemm.cu).
// - depthwise (groups == C_in): one thread per output (forward) or input (backward data) element, one
//   block per weight (backward weight), and one block per channel for the bias gradient.
// f64 computes in f64. Built by nvcc and by the emulator from this one source (DESIGN.md rules).
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/conv.h"
#include "kernels/conv_epilogue.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/wmma_tile.cuh"
#include "kernels/gemm.h"
#include "kernels/cuda/group_reduce.cuh"

namespace se::kernels::cuda {
namespace {

template <typename T> using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// The descriptor as the kernels see it, passed by value.
struct ConvArgs {
  int64_t n, c_in, h, w, c_out;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  int64_t groups, cg, og;  // cg, og: input and output channels per group
  int64_t oh, ow;
  int64_t k;  // cg * kh * kw
  ConvActivation act;  // the forward's fused epilogue
};

ConvArgs conv_args(const Conv2dDesc& d) {
  return {d.n,          d.c_in,         d.h,         d.w,        d.c_out,          d.kernel_h,
          d.kernel_w,   d.stride_h,     d.stride_w,  d.pad_h,    d.pad_w,          d.dilation_h,
          d.dilation_w, d.groups,       d.c_in / d.groups,       d.c_out / d.groups,
          conv2d_output_h(d),           conv2d_output_w(d),      d.c_in / d.groups * d.kernel_h * d.kernel_w,
          d.activation};
}

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
  static constexpr bool kBAlongK = false;  // B loads walk pixels (n), contiguous in x
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
  static constexpr bool kBAlongK = false;
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
  static constexpr bool kBAlongK = true;  // B loads walk pixels, which are k here
  ConvArgs s;
  const T* x;   // (N, C_in, H, W)
  const T* dy;  // (N, C_out, OH, OW)
  T* dw;        // (C_out, Cg, KH, KW)
  bool accumulate;  // K is split over blocks: atomically add to a zeroed dw
  __device__ int64_t m() const { return s.og; }
  __device__ int64_t n() const { return s.k; }
  __device__ int64_t k() const { return s.n * s.oh * s.ow; }
  __device__ Acc a(int64_t g, int64_t m, int64_t p) const {
    const int64_t ohw = s.oh * s.ow;
    return static_cast<Acc>(dy[(p / ohw * s.c_out + g * s.og + m) * ohw + p % ohw]);
  }
  __device__ Acc b(int64_t g, int64_t p, int64_t kidx) const { return im2col_value(s, x, g, kidx, p); }
  __device__ void store(int64_t g, int64_t m, int64_t kidx, Acc v) const {
    T* out = dw + (g * s.og + m) * s.k + kidx;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      if (accumulate) {
        atomicAdd(out, v);
        return;
      }
    }
    *out = static_cast<T>(v);
  }
};

constexpr int kBM = 64, kBN = 64, kBK = 16, kTM = 4, kTN = 4;
constexpr int kGemmThreads = (kBM / kTM) * (kBN / kTN);
constexpr unsigned int kMaxGridYZ = 65535;

// C(g)[m, n] = sum over k in this block's split of A(g)[m, k] * B(g)[k, n]; blockIdx.z = split * groups + g.
// Thread (ty, tx) owns rows ty + 16 i and columns tx + 16 j: a warp reads 16 consecutive shared words.
template <typename P>
__global__ void conv_gemm_kernel(P p, int64_t k_per_split) {
  using Acc = typename P::Acc;
  alignas(16) __shared__ Acc as[kBK * kBM];  // k-major
  alignas(16) __shared__ Acc bs[kBK * kBN];  // k-major
  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % (kBN / kTN), ty = tid / (kBN / kTN);
  const int64_t g = blockIdx.z % p.s.groups;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.z / p.s.groups) * k_per_split;
  const int64_t k_end = k_begin + k_per_split < p.k() ? k_begin + k_per_split : p.k();
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kBM, n0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const int64_t m_size = p.m(), n_size = p.n();
  Acc acc[kTM][kTN];
  for (int i = 0; i < kTM; ++i) {
    for (int j = 0; j < kTN; ++j) acc[i][j] = Acc(0);
  }
  for (int64_t k0 = k_begin; k0 < k_end; k0 += kBK) {
    for (int e = tid; e < kBK * kBM; e += kGemmThreads) {  // consecutive threads along k
      const int kk = e % kBK, mm = e / kBK;
      const int64_t gm = m0 + mm, gk = k0 + kk;
      as[kk * kBM + mm] = gm < m_size && gk < k_end ? p.a(g, gm, gk) : Acc(0);
    }
    for (int e = tid; e < kBK * kBN; e += kGemmThreads) {
      const int kk = P::kBAlongK ? e % kBK : e / kBN;
      const int nn = P::kBAlongK ? e / kBK : e % kBN;
      const int64_t gn = n0 + nn, gk = k0 + kk;
      bs[kk * kBN + nn] = gn < n_size && gk < k_end ? p.b(g, gk, gn) : Acc(0);
    }
    __syncthreads();
    for (int kk = 0; kk < kBK; ++kk) {
      Acc ar[kTM], br[kTN];
      for (int i = 0; i < kTM; ++i) ar[i] = as[kk * kBM + ty + i * (kBM / kTM)];
      for (int j = 0; j < kTN; ++j) br[j] = bs[kk * kBN + tx + j * (kBN / kTN)];
      for (int i = 0; i < kTM; ++i) {
        for (int j = 0; j < kTN; ++j) acc[i][j] += ar[i] * br[j];
      }
    }
    __syncthreads();  // the next k step overwrites the tiles
  }
  for (int i = 0; i < kTM; ++i) {
    const int64_t row = m0 + ty + i * (kBM / kTM);
    if (row >= m_size) continue;
    for (int j = 0; j < kTN; ++j) {
      const int64_t col = n0 + tx + j * (kBN / kTN);
      if (col < n_size) p.store(g, row, col, acc[i][j]);
    }
  }
}

// The same implicit GEMM on tensor cores for f16/bf16 (kernels/cuda/wmma_tile.cuh): the loaders'
// values (exact in f32) go into half-precision tiles, and the epilogue rounds once per output as the
// f32 path does.
template <typename P>
__global__ void conv_wmma_kernel(P p, int64_t k_per_split) {
  namespace tile = wmma_tile;  // qualified: the f32 tile above has its own kBM and kBK
  using T = typename P::Element;
  alignas(32) __shared__ T as[tile::kBM * tile::kLdA];  // A tile, row-major (m, k)
  alignas(32) __shared__ T bs[tile::kBK * tile::kLdB];  // B tile, row-major (k, n)
  alignas(32) __shared__ float cs[tile::kBM * tile::kLdC];
  const int tid = static_cast<int>(threadIdx.x);
  const tile::WarpCorner corner = tile::warp_corner(tid);
  const int64_t g = blockIdx.z % p.s.groups;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.z / p.s.groups) * k_per_split;
  const int64_t k_end = k_begin + k_per_split < p.k() ? k_begin + k_per_split : p.k();
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * tile::kBM, n0 = static_cast<int64_t>(blockIdx.x) * tile::kBN;
  const int64_t m_size = p.m(), n_size = p.n();
  const T zero = static_cast<T>(0.0f);
  tile::Accumulators acc;
  tile::clear(acc);
  for (int64_t k0 = k_begin; k0 < k_end; k0 += tile::kBK) {
    for (int e = tid; e < tile::kBM * tile::kBK; e += tile::kThreads) {  // consecutive threads along k
      const int kk = e % tile::kBK, mm = e / tile::kBK;
      const int64_t gm = m0 + mm, gk = k0 + kk;
      as[mm * tile::kLdA + kk] = gm < m_size && gk < k_end ? static_cast<T>(p.a(g, gm, gk)) : zero;
    }
    for (int e = tid; e < tile::kBK * tile::kBN; e += tile::kThreads) {
      const int kk = P::kBAlongK ? e % tile::kBK : e / tile::kBN;
      const int nn = P::kBAlongK ? e / tile::kBK : e % tile::kBN;
      const int64_t gn = n0 + nn, gk = k0 + kk;
      bs[kk * tile::kLdB + nn] = gn < n_size && gk < k_end ? static_cast<T>(p.b(g, gk, gn)) : zero;
    }
    __syncthreads();
    tile::multiply_accumulate(acc, as, bs, corner);
    __syncthreads();  // the next k step overwrites the tiles
  }
  tile::store(cs, acc, corner);
  __syncthreads();
  for (int e = tid; e < tile::kBM * tile::kBN; e += tile::kThreads) {  // consecutive threads along n
    const int i = e / tile::kBN, j = e % tile::kBN;
    const int64_t row = m0 + i, col = n0 + j;
    if (row < m_size && col < n_size) p.store(g, row, col, cs[i * tile::kLdC + j]);
  }
}

// y[n, c, :] = bias[c] over (N, C, HW): the 1x1 convolutions that run as GEMMs accumulate onto it
// (beta = 1), so the bias is added before the single rounding, as in the implicit-GEMM epilogue.
template <typename T>
__global__ void fill_bias_kernel(T* y,           // (N, C, HW)
                                 const T* bias,  // (C)
                                 int64_t channels, int64_t hw, int64_t total) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[e] = bias[e / hw % channels];
  }
}

// ---- depthwise (groups == C_in; Og = C_out / C_in outputs per input channel) and the bias gradient ----

constexpr int kEltThreads = 256;
constexpr int kReduceThreads = 256;

template <typename T>
__global__ void depthwise_forward_kernel(ConvArgs s, const T* x,  // (N, C_in, H, W)
                                         const T* w,              // (C_out, 1, KH, KW)
                                         const T* bias,           // (C_out) or nullptr
                                         T* y) {                  // (N, C_out, OH, OW)
  using Acc = acc_t<T>;
  const int64_t total = s.n * s.c_out * s.oh * s.ow;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ow = e % s.ow, oh = e / s.ow % s.oh, plane = e / (s.ow * s.oh);
    const int64_t co = plane % s.c_out, image = plane / s.c_out;
    const T* x_c = x + (image * s.c_in + co / s.og) * s.h * s.w;
    const T* w_c = w + co * s.kh * s.kw;
    Acc sum = bias != nullptr ? static_cast<Acc>(bias[co]) : Acc(0);
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t ih = oh * s.sh - s.ph + i * s.dh;
      if (ih < 0 || ih >= s.h) continue;
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t iw = ow * s.sw - s.pw + j * s.dw;
        if (iw < 0 || iw >= s.w) continue;
        sum += static_cast<Acc>(w_c[i * s.kw + j]) * static_cast<Acc>(x_c[ih * s.w + iw]);
      }
    }
    y[e] = static_cast<T>(conv_epilogue(s.act, sum));
  }
}

template <typename T>
__global__ void depthwise_backward_data_kernel(ConvArgs s, const T* dy,  // (N, C_out, OH, OW)
                                               const T* w,               // (C_out, 1, KH, KW)
                                               T* dx) {                  // (N, C_in, H, W)
  using Acc = acc_t<T>;
  const int64_t total = s.n * s.c_in * s.h * s.w;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t iw = e % s.w, ih = e / s.w % s.h, plane = e / (s.w * s.h);
    const int64_t c = plane % s.c_in, image = plane / s.c_in;
    Acc sum = Acc(0);
    for (int64_t m = 0; m < s.og; ++m) {
      const int64_t co = c * s.og + m;
      const T* dy_p = dy + (image * s.c_out + co) * s.oh * s.ow;
      const T* w_c = w + co * s.kh * s.kw;
      for (int64_t i = 0; i < s.kh; ++i) {
        const int64_t th = ih + s.ph - i * s.dh;
        if (th < 0 || th % s.sh != 0 || th / s.sh >= s.oh) continue;
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t tw = iw + s.pw - j * s.dw;
          if (tw < 0 || tw % s.sw != 0 || tw / s.sw >= s.ow) continue;
          sum += static_cast<Acc>(w_c[i * s.kw + j]) * static_cast<Acc>(dy_p[th / s.sh * s.ow + tw / s.sw]);
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

// One block per weight (co, i, j): the sum over images and output pixels of dy * x.
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

// One block per output channel: db[co] = sum of dy over images and pixels.
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

#define SE_CONV_INSTANTIATE(T)                                                                               \
  template __global__ void depthwise_forward_kernel<T>(ConvArgs, const T*, const T*, const T*, T*);          \
  template __global__ void depthwise_backward_data_kernel<T>(ConvArgs, const T*, const T*, T*);              \
  template __global__ void depthwise_backward_weight_kernel<T>(ConvArgs, const T*, const T*, T*);            \
  template __global__ void bias_grad_kernel<T>(ConvArgs, const T*, T*);                                       \
  template __global__ void fill_bias_kernel<T>(T*, const T*, int64_t, int64_t, int64_t);
SE_CONV_INSTANTIATE(float)
SE_CONV_INSTANTIATE(double)
SE_CONV_INSTANTIATE(__half)
SE_CONV_INSTANTIATE(__nv_bfloat16)
#undef SE_CONV_INSTANTIATE
// The implicit GEMMs: CUDA cores for f32/f64, tensor cores for f16/bf16.
#define SE_CONV_GEMM_INSTANTIATE(kernel, T)                                                         \
  template __global__ void kernel<ForwardGemm<T>>(ForwardGemm<T>, int64_t);                         \
  template __global__ void kernel<BackwardDataGemm<T>>(BackwardDataGemm<T>, int64_t);               \
  template __global__ void kernel<BackwardWeightGemm<T>>(BackwardWeightGemm<T>, int64_t);
SE_CONV_GEMM_INSTANTIATE(conv_gemm_kernel, float)
SE_CONV_GEMM_INSTANTIATE(conv_gemm_kernel, double)
SE_CONV_GEMM_INSTANTIATE(conv_wmma_kernel, __half)
SE_CONV_GEMM_INSTANTIATE(conv_wmma_kernel, __nv_bfloat16)
#undef SE_CONV_GEMM_INSTANTIATE

template <typename T>
constexpr bool kUsesTensorCores = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

// Grid of the implicit GEMM with `splits` parts of K (times groups along z).
template <typename P>
void launch_gemm(const P& p, int64_t m, int64_t n, int64_t k, int64_t splits, Stream stream) {
  const unsigned int grid_y = ceil_div(m, kBM);
  const int64_t grid_z = p.s.groups * splits;
  SE_CHECK(grid_y <= kMaxGridYZ && grid_z <= kMaxGridYZ, "conv2d: ", m, " rows and ", grid_z,
           " group splits exceed the CUDA grid");
  const dim3 grid(ceil_div(n, kBN), grid_y, static_cast<unsigned int>(grid_z));
  if constexpr (kUsesTensorCores<typename P::Element>) {
    static_assert(wmma_tile::kBM == kBM && wmma_tile::kBN == kBN, "one grid for both kernels");
    const int64_t k_per_split = ((k + splits - 1) / splits + wmma_tile::kBK - 1) / wmma_tile::kBK * wmma_tile::kBK;
    SE_LAUNCH(conv_wmma_kernel<P>, grid, wmma_tile::kThreads, 0, stream, p, k_per_split);
  } else {
    const int64_t k_per_split = ((k + splits - 1) / splits + kBK - 1) / kBK * kBK;
    SE_LAUNCH(conv_gemm_kernel<P>, grid, kGemmThreads, 0, stream, p, k_per_split);
  }
}

// A 1x1 convolution with stride 1, no padding and one group is, per image, a product of the weight
// (C_out, C_in) with the image's (C_in, H*W) plane: a batched GEMM (the weight broadcast).
bool is_pointwise_gemm(const Conv2dDesc& d) {
  return d.kernel_h == 1 && d.kernel_w == 1 && d.stride_h == 1 && d.stride_w == 1 && d.pad_h == 0 &&
         d.pad_w == 0 && d.groups == 1;
}

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

unsigned int elementwise_blocks(int64_t total) {
  return static_cast<unsigned int>(std::min<int64_t>(ceil_div(total, kEltThreads), 65536));
}

template <typename T>
void forward_typed(const Conv2dDesc& d, const T* x, const T* w, const T* bias, T* y, Stream stream) {
  const ConvArgs s = conv_args(d);
  if (conv2d_is_depthwise(d)) {
    SE_LAUNCH(depthwise_forward_kernel<T>, elementwise_blocks(conv2d_y_elements(d)), kEltThreads, 0, stream, s,
              x, w, bias, y);
    return;
  }
  if (is_pointwise_gemm(d) && d.activation == ConvActivation::none) {  // the GEMM has no activation epilogue
    GemmDesc g = pointwise_gemm(d, d.c_out, d.c_in, false);  // y_n = w (C_out, C_in) x_n (C_in, HW)
    if (bias != nullptr) {
      const int64_t total = conv2d_y_elements(d);
      SE_LAUNCH(fill_bias_kernel<T>, elementwise_blocks(total), kEltThreads, 0, stream, y, bias, d.c_out, d.h * d.w,
                total);
      g.beta = 1.0f;
    }
    gemm(g, w, x, y, stream);
    return;
  }
  const ForwardGemm<T> p{s, x, w, bias, y};
  launch_gemm(p, s.og, s.n * s.oh * s.ow, s.k, 1, stream);
}

template <typename T>
void backward_data_typed(const Conv2dDesc& d, const T* dy, const T* w, T* dx, Stream stream) {
  const ConvArgs s = conv_args(d);
  if (conv2d_is_depthwise(d)) {
    SE_LAUNCH(depthwise_backward_data_kernel<T>, elementwise_blocks(conv2d_x_elements(d)), kEltThreads, 0, stream,
              s, dy, w, dx);
    return;
  }
  if (is_pointwise_gemm(d)) {  // dx_n = w^T (C_in, C_out) dy_n (C_out, HW)
    gemm(pointwise_gemm(d, d.c_in, d.c_out, true), w, dy, dx, stream);
    return;
  }
  const BackwardDataGemm<T> p{s, dy, w, dx};
  launch_gemm(p, s.cg, s.n * s.h * s.w, s.og * s.kh * s.kw, 1, stream);
}

template <typename T>
void backward_weight_typed(const Conv2dDesc& d, const T* x, const T* dy, T* dw, T* db, Stream stream) {
  const ConvArgs s = conv_args(d);
  if (conv2d_is_depthwise(d)) {
    SE_LAUNCH(depthwise_backward_weight_kernel<T>, static_cast<unsigned int>(s.c_out * s.kh * s.kw),
              kReduceThreads, 0, stream, s, x, dy, dw);
  } else {
    // Split the long pixel reduction so that small weights still fill the GPU: about 256 blocks, at
    // least 1024 pixels per split. f16/bf16 have no fast atomics on every architecture: one split.
    const int64_t pixels = s.n * s.oh * s.ow;
    const int64_t blocks = static_cast<int64_t>(ceil_div(s.og, kBM)) * ceil_div(s.k, kBN) * s.groups;
    int64_t splits = 1;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      splits = std::clamp<int64_t>(256 / blocks, 1, std::max<int64_t>(1, pixels / 1024));
      splits = std::min<int64_t>(splits, kMaxGridYZ / s.groups);
    }
    if (splits > 1) {
      CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(conv2d_w_elements(d)) * sizeof(T), stream));
    }
    const BackwardWeightGemm<T> p{s, x, dy, dw, splits > 1};
    launch_gemm(p, s.og, s.k, pixels, splits, stream);
  }
  if (db != nullptr) {
    SE_LAUNCH(bias_grad_kernel<T>, static_cast<unsigned int>(s.c_out), kReduceThreads, 0, stream, s, dy, db);
  }
}

// Host dtype tag -> the CUDA element type.
template <typename F>
void dispatch_cuda(DType dtype, const char* op, F&& f) {
  dispatch_floating(dtype, op, [&](auto tag) { f(TypeTag<cuda_t<typename decltype(tag)::type>>{}); });
}

}  // namespace

void conv2d_forward(const Conv2dDesc& desc, const void* x, const void* w, const void* bias, void* y,
                    Stream stream) {
  validate_conv2d(desc);
  if (desc.n == 0) return;
  SE_CHECK(x != nullptr && w != nullptr && y != nullptr, "conv2d_forward: x, w or y is null");
  SE_CHECK(!desc.has_bias || bias != nullptr, "conv2d_forward: has_bias is set but bias is null");
  dispatch_cuda(desc.dtype, "conv2d_forward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    forward_typed<T>(desc, static_cast<const T*>(x), static_cast<const T*>(w),
                     desc.has_bias ? static_cast<const T*>(bias) : nullptr, static_cast<T*>(y), stream);
  });
}

void conv2d_backward_data(const Conv2dDesc& desc, const void* dy, const void* w, void* dx, Stream stream) {
  validate_conv2d(desc);
  if (desc.n == 0) return;
  SE_CHECK(dy != nullptr && w != nullptr && dx != nullptr, "conv2d_backward_data: dy, w or dx is null");
  dispatch_cuda(desc.dtype, "conv2d_backward_data", [&](auto tag) {
    using T = typename decltype(tag)::type;
    backward_data_typed<T>(desc, static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<T*>(dx), stream);
  });
}

void conv2d_backward_weight(const Conv2dDesc& desc, const void* x, const void* dy, void* dw, void* db,
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
  dispatch_cuda(desc.dtype, "conv2d_backward_weight", [&](auto tag) {
    using T = typename decltype(tag)::type;
    backward_weight_typed<T>(desc, static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dw),
                             static_cast<T*>(db), stream);
  });
}

}  // namespace se::kernels::cuda
