// CUDA normalization kernels. Every per-channel or per-row statistic is one block's reduction
// (threads stride over the values, then a block all-reduce with a fixed combine order), so results
// are deterministic; element-wise passes are grid-stride loops. LayerNorm and GroupNorm share one
// row core: GroupNorm is rows = N * groups of (C / groups) * HW values, the affine parameter of a
// value being its channel. Parameter gradients use one thread per parameter walking its rows, which
// for LayerNorm makes neighbouring threads read neighbouring columns (coalesced).
#include "kernels/norm.h"

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/group_reduce.cuh"
#include "kernels/reduce_ops.h"

namespace se::kernels::cuda {
namespace {

using reduce_ops::acc_t;

constexpr int kBlockThreads = 128;  // one block per channel or row
constexpr int kElemThreads = 256;
constexpr int64_t kMaxElemBlocks = 65536;

template <typename T>
using P = norm_param_t<T>;

// A value of T (a CUDA type) as the accumulator type A.
template <typename A, typename T>
__device__ A load(T v) {
  if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) {
    return static_cast<A>(v);
  } else {
    return static_cast<A>(static_cast<float>(v));
  }
}
__device__ inline float rsqrt_of(float x) {
  return 1.0f / sqrtf(x);
}
__device__ inline double rsqrt_of(double x) {
  return 1.0 / sqrt(x);
}

template <typename A>
struct VarCombine {
  using State = typename reduce_ops::VarOp<A>::State;
  __device__ State operator()(State a, State b) const { return reduce_ops::VarOp<A>::combine(a, b); }
};

template <typename A>
struct SumPair {
  A a;
  A b;
};
struct SumPairCombine {
  template <typename A>
  __device__ SumPair<A> operator()(SumPair<A> x, SumPair<A> y) const {
    return {x.a + y.a, x.b + y.b};
  }
};

unsigned elem_blocks(int64_t total) {
  return static_cast<unsigned>(std::min<int64_t>((total + kElemThreads - 1) / kElemThreads, kMaxElemBlocks));
}

void check_blocks(const char* op, int64_t blocks) {
  SE_CHECK(blocks < (int64_t{1} << 31), op, ": ", blocks, " rows or channels exceed the grid limit");
}

// ---- BatchNorm

// The block's channel (blockIdx.x): its mean and biased variance, returned to thread 0.
template <typename T>
__device__ void channel_stats(const cuda_t<T>* x,  // (N, C, HW)
                              int64_t n, int64_t c, int64_t hw, P<T>* mean, P<T>* var) {
  using A = acc_t<T>;
  using Op = reduce_ops::VarOp<A>;
  alignas(16) __shared__ typename Op::State scratch[32];
  const int64_t channel = blockIdx.x;
  typename Op::State s = Op::identity();
  for (int64_t i = threadIdx.x; i < n * hw; i += blockDim.x) {
    Op::update(s, load<A>(x[((i / hw) * c + channel) * hw + i % hw]), i);
  }
  s = block_allreduce(s, VarCombine<A>{}, scratch);
  *mean = static_cast<P<T>>(s.mean);
  *var = static_cast<P<T>>(s.count > 0 ? s.m2 / static_cast<A>(s.count) : A(0));
}

// invstd of channel ch and its running statistics (when running_mean is not null).
template <typename T>
__device__ void finalize_channel(int64_t ch, P<T>* invstd, P<T>* running_mean, P<T>* running_var, P<T> mean, P<T> var,
                                 int64_t count, double momentum, double eps) {
  invstd[ch] = static_cast<P<T>>(rsqrt_of(static_cast<double>(var) + eps));
  if (running_mean) {
    const double unbiased = static_cast<double>(var) * count / static_cast<double>(count - 1);
    running_mean[ch] = static_cast<P<T>>((1 - momentum) * running_mean[ch] + momentum * mean);
    running_var[ch] = static_cast<P<T>>((1 - momentum) * running_var[ch] + momentum * unbiased);
  }
}

template <typename T>
__global__ void batch_norm_stats_kernel(P<T>* mean,          // (C)
                                        P<T>* var,           // (C)
                                        const cuda_t<T>* x,  // (N, C, HW)
                                        int64_t n, int64_t c, int64_t hw) {
  P<T> m, v;
  channel_stats<T>(x, n, c, hw, &m, &v);
  if (threadIdx.x == 0) {
    mean[blockIdx.x] = m;
    var[blockIdx.x] = v;
  }
}

template <typename T>
__global__ void batch_norm_finalize_kernel(P<T>* invstd,        // (C)
                                           P<T>* running_mean,  // (C) or null
                                           P<T>* running_var,   // (C) or null
                                           const P<T>* mean,    // (C)
                                           const P<T>* var,     // (C)
                                           int64_t channels, int64_t count, double momentum, double eps) {
  const int64_t ch = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (ch >= channels) return;
  finalize_channel<T>(ch, invstd, running_mean, running_var, mean[ch], var[ch], count, momentum, eps);
}

// batch_norm_stats_kernel and batch_norm_finalize_kernel in one: the variance stays in a register.
template <typename T>
__global__ void batch_norm_stats_finalize_kernel(P<T>* mean,          // (C)
                                                 P<T>* invstd,        // (C)
                                                 P<T>* running_mean,  // (C) or null
                                                 P<T>* running_var,   // (C) or null
                                                 const cuda_t<T>* x,  // (N, C, HW)
                                                 int64_t n, int64_t c, int64_t hw, double momentum, double eps) {
  P<T> m, v;
  channel_stats<T>(x, n, c, hw, &m, &v);
  if (threadIdx.x == 0) {
    mean[blockIdx.x] = m;
    finalize_channel<T>(blockIdx.x, invstd, running_mean, running_var, m, v, n * hw, momentum, eps);
  }
}

// dy[i] as A, or 0 where a fused ReLU's output y[i] is not > 0 (relu's backward); y null: no ReLU.
template <typename A, typename T>
__device__ A masked_grad(const T* dy, const T* y, int64_t i) {
  if (y != nullptr && !(load<A>(y[i]) > A(0))) return A(0);
  return load<A>(dy[i]);
}

// With relu, the ReLU of the rounded value (the element-wise ReLU: x < 0 ? 0 : x, keeping NaN and -0).
template <typename T>
__global__ void batch_norm_elemt_kernel(cuda_t<T>* y,        // (N, C, HW)
                                        const cuda_t<T>* x,  // (N, C, HW)
                                        const P<T>* mean,    // (C)
                                        const P<T>* invstd,  // (C)
                                        const P<T>* weight,  // (C) or null
                                        const P<T>* bias,    // (C) or null
                                        int64_t total, int64_t c, int64_t hw, bool relu) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ch = (i / hw) % c;
    const P<T> scale = invstd[ch] * (weight ? weight[ch] : P<T>(1));
    const P<T> shift = (bias ? bias[ch] : P<T>(0)) - mean[ch] * scale;
    const cuda_t<T> v = static_cast<cuda_t<T>>(load<P<T>>(x[i]) * scale + shift);
    y[i] = relu && load<P<T>>(v) < P<T>(0) ? static_cast<cuda_t<T>>(P<T>(0)) : v;
  }
}

template <typename T>
__global__ void batch_norm_backward_reduce_kernel(P<T>* sum_dy,         // (C)
                                                  P<T>* sum_dy_xmu,     // (C)
                                                  const cuda_t<T>* dy,  // (N, C, HW)
                                                  const cuda_t<T>* x,   // (N, C, HW)
                                                  const cuda_t<T>* y,   // (N, C, HW): fused ReLU's output, or null
                                                  const P<T>* mean,     // (C)
                                                  int64_t n, int64_t c, int64_t hw) {
  using A = acc_t<T>;
  alignas(16) __shared__ SumPair<A> scratch[32];
  const int64_t channel = blockIdx.x;
  const A mu = static_cast<A>(mean[channel]);
  SumPair<A> s{A(0), A(0)};
  for (int64_t i = threadIdx.x; i < n * hw; i += blockDim.x) {
    const int64_t k = ((i / hw) * c + channel) * hw + i % hw;
    const A g = masked_grad<A>(dy, y, k);
    s.a += g;
    s.b += g * (load<A>(x[k]) - mu);
  }
  s = block_allreduce(s, SumPairCombine{}, scratch);
  if (threadIdx.x == 0) {
    sum_dy[channel] = static_cast<P<T>>(s.a);
    sum_dy_xmu[channel] = static_cast<P<T>>(s.b);
  }
}

template <typename T>
__global__ void batch_norm_backward_elemt_kernel(cuda_t<T>* dx,           // (N, C, HW)
                                                 const cuda_t<T>* dy,     // (N, C, HW)
                                                 const cuda_t<T>* x,      // (N, C, HW)
                                                 const cuda_t<T>* y,      // (N, C, HW): fused ReLU's output, or null
                                                 const P<T>* mean,        // (C)
                                                 const P<T>* invstd,      // (C)
                                                 const P<T>* weight,      // (C) or null
                                                 const P<T>* sum_dy,      // (C) or null
                                                 const P<T>* sum_dy_xmu,  // (C) or null
                                                 int64_t count, int64_t total, int64_t c, int64_t hw) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ch = (i / hw) % c;
    const P<T> scale = invstd[ch] * (weight ? weight[ch] : P<T>(1));
    const P<T> mean_dy = sum_dy ? sum_dy[ch] / static_cast<P<T>>(count) : P<T>(0);
    const P<T> proj = sum_dy_xmu ? sum_dy_xmu[ch] / static_cast<P<T>>(count) * invstd[ch] * invstd[ch] : P<T>(0);
    dx[i] =
        static_cast<cuda_t<T>>(scale * (masked_grad<P<T>>(dy, y, i) - mean_dy - (load<P<T>>(x[i]) - mean[ch]) * proj));
  }
}

// ---- LayerNorm and GroupNorm: rows of `cols` values; the affine parameter of (row, col) is
// (row % groups) * per_group + col / inner.
struct RowNorm {
  int64_t rows, cols, groups, per_group, inner;
  __device__ int64_t param(int64_t row, int64_t col) const { return (row % groups) * per_group + col / inner; }
};

RowNorm row_norm(const LayerNormDesc& d) {
  return {d.rows, d.cols, 1, d.cols, 1};
}
RowNorm row_norm(const GroupNormDesc& d) {
  return {d.n * d.groups, d.c / d.groups * d.hw, d.groups, d.c / d.groups, d.hw};
}

template <typename T>
__global__ void row_forward_kernel(cuda_t<T>* y,        // (rows, cols)
                                   P<T>* mean,          // (rows)
                                   P<T>* invstd,        // (rows)
                                   const cuda_t<T>* x,  // (rows, cols)
                                   const P<T>* weight,  // (groups * per_group) or null
                                   const P<T>* bias,    // (groups * per_group) or null
                                   RowNorm d, double eps) {
  using A = acc_t<T>;
  using Op = reduce_ops::VarOp<A>;
  alignas(16) __shared__ typename Op::State scratch[32];
  const int64_t row = blockIdx.x;
  x += row * d.cols;
  y += row * d.cols;
  typename Op::State s = Op::identity();
  for (int64_t k = threadIdx.x; k < d.cols; k += blockDim.x) Op::update(s, load<A>(x[k]), k);
  s = block_allreduce(s, VarCombine<A>{}, scratch);
  const A inv = rsqrt_of(s.m2 / static_cast<A>(d.cols) + static_cast<A>(eps));
  if (threadIdx.x == 0) {
    mean[row] = static_cast<P<T>>(s.mean);
    invstd[row] = static_cast<P<T>>(inv);
  }
  for (int64_t k = threadIdx.x; k < d.cols; k += blockDim.x) {
    const int64_t p = d.param(row, k);
    A v = (load<A>(x[k]) - s.mean) * inv;
    if (weight) v *= static_cast<A>(weight[p]);
    if (bias) v += static_cast<A>(bias[p]);
    y[k] = static_cast<cuda_t<T>>(v);
  }
}

// dx = invstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * weight.
template <typename T>
__global__ void row_backward_kernel(cuda_t<T>* dx,        // (rows, cols)
                                    const cuda_t<T>* dy,  // (rows, cols)
                                    const cuda_t<T>* x,   // (rows, cols)
                                    const P<T>* mean,     // (rows)
                                    const P<T>* invstd,   // (rows)
                                    const P<T>* weight,   // (groups * per_group) or null
                                    RowNorm d) {
  using A = acc_t<T>;
  alignas(16) __shared__ SumPair<A> scratch[32];
  const int64_t row = blockIdx.x;
  const int64_t base = row * d.cols;
  const A mu = static_cast<A>(mean[row]), inv = static_cast<A>(invstd[row]);
  SumPair<A> s{A(0), A(0)};  // sum(g), sum(g * xhat)
  for (int64_t k = threadIdx.x; k < d.cols; k += blockDim.x) {
    const A g = load<A>(dy[base + k]) * (weight ? static_cast<A>(weight[d.param(row, k)]) : A(1));
    s.a += g;
    s.b += g * (load<A>(x[base + k]) - mu) * inv;
  }
  s = block_allreduce(s, SumPairCombine{}, scratch);
  const A n = static_cast<A>(d.cols);
  for (int64_t k = threadIdx.x; k < d.cols; k += blockDim.x) {
    const A g = load<A>(dy[base + k]) * (weight ? static_cast<A>(weight[d.param(row, k)]) : A(1));
    const A xhat = (load<A>(x[base + k]) - mu) * inv;
    dx[base + k] = static_cast<cuda_t<T>>(inv * (g - s.a / n - xhat * s.b / n));
  }
}

template <typename T>
__global__ void row_param_grad_kernel(P<T>* grad_weight,    // (groups * per_group) or null
                                      P<T>* grad_bias,      // (groups * per_group) or null
                                      const cuda_t<T>* dy,  // (rows, cols)
                                      const cuda_t<T>* x,   // (rows, cols)
                                      const P<T>* mean,     // (rows)
                                      const P<T>* invstd,   // (rows)
                                      RowNorm d) {
  using A = acc_t<T>;
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= d.groups * d.per_group) return;
  const int64_t group = p / d.per_group, c0 = (p % d.per_group) * d.inner;
  A sum_dy = 0, sum_dy_xhat = 0;
  for (int64_t r = group; r < d.rows; r += d.groups) {
    const A mu = static_cast<A>(mean[r]), inv = static_cast<A>(invstd[r]);
    for (int64_t k = r * d.cols + c0; k < r * d.cols + c0 + d.inner; ++k) {
      const A g = load<A>(dy[k]);
      sum_dy += g;
      sum_dy_xhat += g * (load<A>(x[k]) - mu) * inv;
    }
  }
  if (grad_weight) grad_weight[p] = static_cast<P<T>>(sum_dy_xhat);
  if (grad_bias) grad_bias[p] = static_cast<P<T>>(sum_dy);
}

template <typename T>
void row_forward(T* y, P<T>* mean, P<T>* invstd, const T* x, const P<T>* weight, const P<T>* bias, const RowNorm& d,
                 double eps, Stream stream, const char* op) {
  if (d.rows * d.cols == 0) return;
  check_blocks(op, d.rows);
  SE_LAUNCH((row_forward_kernel<T>), static_cast<unsigned>(d.rows), kBlockThreads, 0, stream,
            reinterpret_cast<cuda_t<T>*>(y), mean, invstd, reinterpret_cast<const cuda_t<T>*>(x), weight, bias, d, eps);
}

template <typename T>
void row_backward(T* dx, P<T>* grad_weight, P<T>* grad_bias, const T* dy, const T* x, const P<T>* mean,
                  const P<T>* invstd, const P<T>* weight, const RowNorm& d, Stream stream, const char* op) {
  if (d.rows * d.cols == 0) return;
  const auto* gy = reinterpret_cast<const cuda_t<T>*>(dy);
  const auto* in = reinterpret_cast<const cuda_t<T>*>(x);
  if (dx) {
    check_blocks(op, d.rows);
    SE_LAUNCH((row_backward_kernel<T>), static_cast<unsigned>(d.rows), kBlockThreads, 0, stream,
              reinterpret_cast<cuda_t<T>*>(dx), gy, in, mean, invstd, weight, d);
  }
  if (grad_weight || grad_bias) {
    SE_LAUNCH((row_param_grad_kernel<T>), ceil_div(d.groups * d.per_group, kElemThreads), kElemThreads, 0, stream,
              grad_weight, grad_bias, gy, in, mean, invstd, d);
  }
}

}  // namespace

template <typename T>
void batch_norm_stats(P<T>* mean, P<T>* var, const T* x, const BatchNormDesc& d, Stream stream) {
  if (d.c == 0) return;
  check_blocks("batch_norm_stats", d.c);
  SE_LAUNCH((batch_norm_stats_kernel<T>), static_cast<unsigned>(d.c), kBlockThreads, 0, stream, mean, var,
            reinterpret_cast<const cuda_t<T>*>(x), d.n, d.c, d.hw);
}

template <typename T>
void batch_norm_finalize(P<T>* invstd, P<T>* running_mean, P<T>* running_var, const P<T>* mean, const P<T>* var,
                         int64_t channels, int64_t count, double momentum, double eps, Stream stream) {
  if (channels == 0) return;
  SE_LAUNCH((batch_norm_finalize_kernel<T>), ceil_div(channels, kElemThreads), kElemThreads, 0, stream, invstd,
            running_mean, running_var, mean, var, channels, count, momentum, eps);
}

template <typename T>
void batch_norm_elemt(T* y, const T* x, const P<T>* mean, const P<T>* invstd, const P<T>* weight, const P<T>* bias,
                      const BatchNormDesc& d, Stream stream) {
  const int64_t total = d.n * d.c * d.hw;
  if (total == 0) return;
  SE_LAUNCH((batch_norm_elemt_kernel<T>), elem_blocks(total), kElemThreads, 0, stream, reinterpret_cast<cuda_t<T>*>(y),
            reinterpret_cast<const cuda_t<T>*>(x), mean, invstd, weight, bias, total, d.c, d.hw, d.relu);
}

template <typename T>
void batch_norm_backward_reduce(P<T>* sum_dy, P<T>* sum_dy_xmu, const T* dy, const T* x,
                                const std::type_identity_t<T>* y, const P<T>* mean, const BatchNormDesc& d,
                                Stream stream) {
  if (d.c == 0) return;
  check_blocks("batch_norm_backward_reduce", d.c);
  SE_LAUNCH((batch_norm_backward_reduce_kernel<T>), static_cast<unsigned>(d.c), kBlockThreads, 0, stream, sum_dy,
            sum_dy_xmu, reinterpret_cast<const cuda_t<T>*>(dy), reinterpret_cast<const cuda_t<T>*>(x),
            reinterpret_cast<const cuda_t<T>*>(d.relu ? y : nullptr), mean, d.n, d.c, d.hw);
}

template <typename T>
void batch_norm_backward_elemt(T* dx, const T* dy, const T* x, const std::type_identity_t<T>* y, const P<T>* mean,
                               const P<T>* invstd, const P<T>* weight, const P<T>* sum_dy, const P<T>* sum_dy_xmu,
                               int64_t count, const BatchNormDesc& d, Stream stream) {
  const int64_t total = d.n * d.c * d.hw;
  if (total == 0) return;
  SE_LAUNCH((batch_norm_backward_elemt_kernel<T>), elem_blocks(total), kElemThreads, 0, stream,
            reinterpret_cast<cuda_t<T>*>(dx), reinterpret_cast<const cuda_t<T>*>(dy),
            reinterpret_cast<const cuda_t<T>*>(x), reinterpret_cast<const cuda_t<T>*>(d.relu ? y : nullptr), mean,
            invstd, weight, sum_dy, sum_dy_xmu, count, total, d.c, d.hw);
}

template <typename T>
void batch_norm_forward_training(T* y, P<T>* mean, P<T>* invstd, P<T>* running_mean, P<T>* running_var, const T* x,
                                 const P<T>* weight, const P<T>* bias, const BatchNormDesc& d, double momentum,
                                 double eps, Stream stream) {
  if (d.c == 0) return;
  check_blocks("batch_norm_forward_training", d.c);
  SE_LAUNCH((batch_norm_stats_finalize_kernel<T>), static_cast<unsigned>(d.c), kBlockThreads, 0, stream, mean, invstd,
            running_mean, running_var, reinterpret_cast<const cuda_t<T>*>(x), d.n, d.c, d.hw, momentum, eps);
  batch_norm_elemt(y, x, mean, invstd, weight, bias, d, stream);
}

template <typename T>
void batch_norm_backward_training(T* dx, P<T>* sum_dy, P<T>* sum_dy_xmu, const T* dy, const T* x,
                                  const std::type_identity_t<T>* y, const P<T>* mean, const P<T>* invstd,
                                  const P<T>* weight, const BatchNormDesc& d, Stream stream) {
  batch_norm_backward_reduce(sum_dy, sum_dy_xmu, dy, x, y, mean, d, stream);
  if (dx) batch_norm_backward_elemt(dx, dy, x, y, mean, invstd, weight, sum_dy, sum_dy_xmu, d.n * d.hw, d, stream);
}

template <typename T>
void layer_norm_forward(T* y, P<T>* mean, P<T>* invstd, const T* x, const P<T>* weight, const P<T>* bias,
                        const LayerNormDesc& desc, double eps, Stream stream) {
  row_forward(y, mean, invstd, x, weight, bias, row_norm(desc), eps, stream, "layer_norm");
}
template <typename T>
void layer_norm_backward(T* dx, P<T>* grad_weight, P<T>* grad_bias, const T* dy, const T* x, const P<T>* mean,
                         const P<T>* invstd, const P<T>* weight, const LayerNormDesc& desc, Stream stream) {
  row_backward(dx, grad_weight, grad_bias, dy, x, mean, invstd, weight, row_norm(desc), stream, "layer_norm backward");
}
template <typename T>
void group_norm_forward(T* y, P<T>* mean, P<T>* invstd, const T* x, const P<T>* weight, const P<T>* bias,
                        const GroupNormDesc& desc, double eps, Stream stream) {
  row_forward(y, mean, invstd, x, weight, bias, row_norm(desc), eps, stream, "group_norm");
}
template <typename T>
void group_norm_backward(T* dx, P<T>* grad_weight, P<T>* grad_bias, const T* dy, const T* x, const P<T>* mean,
                         const P<T>* invstd, const P<T>* weight, const GroupNormDesc& desc, Stream stream) {
  row_backward(dx, grad_weight, grad_bias, dy, x, mean, invstd, weight, row_norm(desc), stream, "group_norm backward");
}

#define SE_INSTANTIATE(T)                                                                                             \
  template void batch_norm_stats<T>(P<T>*, P<T>*, const T*, const BatchNormDesc&, Stream);                            \
  template void batch_norm_finalize<T>(P<T>*, P<T>*, P<T>*, const P<T>*, const P<T>*, int64_t, int64_t, double,       \
                                       double, Stream);                                                               \
  template void batch_norm_elemt<T>(T*, const T*, const P<T>*, const P<T>*, const P<T>*, const P<T>*,                 \
                                    const BatchNormDesc&, Stream);                                                    \
  template void batch_norm_backward_reduce<T>(P<T>*, P<T>*, const T*, const T*, const T*, const P<T>*,                \
                                              const BatchNormDesc&, Stream);                                          \
  template void batch_norm_backward_elemt<T>(T*, const T*, const T*, const T*, const P<T>*, const P<T>*, const P<T>*, \
                                             const P<T>*, const P<T>*, int64_t, const BatchNormDesc&, Stream);        \
  template void batch_norm_forward_training<T>(T*, P<T>*, P<T>*, P<T>*, P<T>*, const T*, const P<T>*, const P<T>*,    \
                                               const BatchNormDesc&, double, double, Stream);                         \
  template void batch_norm_backward_training<T>(T*, P<T>*, P<T>*, const T*, const T*, const T*, const P<T>*,          \
                                                const P<T>*, const P<T>*, const BatchNormDesc&, Stream);              \
  template void layer_norm_forward<T>(T*, P<T>*, P<T>*, const T*, const P<T>*, const P<T>*, const LayerNormDesc&,     \
                                      double, Stream);                                                                \
  template void layer_norm_backward<T>(T*, P<T>*, P<T>*, const T*, const T*, const P<T>*, const P<T>*, const P<T>*,   \
                                       const LayerNormDesc&, Stream);                                                 \
  template void group_norm_forward<T>(T*, P<T>*, P<T>*, const T*, const P<T>*, const P<T>*, const GroupNormDesc&,     \
                                      double, Stream);                                                                \
  template void group_norm_backward<T>(T*, P<T>*, P<T>*, const T*, const T*, const P<T>*, const P<T>*, const P<T>*,   \
                                       const GroupNormDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cuda
