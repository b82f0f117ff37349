// CUDA softmax family, three shapes of work like the reductions:
//   inner == 1, size > kWarpRowMax: one block per row, block-wide all-reductions
//   inner == 1, shorter rows:       one warp per row, warp shuffles only
//   inner > 1:                      one thread per (outer, column), walking the axis with stride inner
//                                   (neighbouring threads read neighbouring columns: coalesced)
// Each thread makes three passes over its elements (max, sum, write); the passes re-read global
// memory, which the L1/L2 caches serve for the row sizes segmentation models use.
#include "kernels/softmax.h"

#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/group_reduce.cuh"
#include "kernels/reduce_ops.h"

namespace se::kernels::cuda {
namespace {

using reduce_ops::acc_t;

constexpr int64_t kWarpRowMax = 1024;
constexpr int kBlockRowThreads = 512;
constexpr int kWarpsPerBlock = 8;
constexpr int kColumnThreads = 256;

template <typename T> using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

__device__ inline float exp_of(float x) { return expf(x); }
__device__ inline double exp_of(double x) { return exp(x); }
__device__ inline float log_of(float x) { return logf(x); }
__device__ inline double log_of(double x) { return log(x); }

struct MaxCombine {
  template <typename C>
  __device__ C operator()(C a, C b) const { return reduce_ops::ExtremeOp<C, true>::combine(a, b); }
};
struct SumCombine {
  template <typename A>
  __device__ A operator()(A a, A b) const { return a + b; }
};

// The threads that share one row: a warp (kBlock false) or the whole block.
template <bool kBlock>
struct RowGroup {
  __device__ static int rank() { return kBlock ? threadIdx.x : threadIdx.x % 32; }
  __device__ static int size() { return kBlock ? blockDim.x : 32; }
  __device__ static int64_t row() {
    return kBlock ? blockIdx.x : static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  }
  template <typename S, typename Combine>
  __device__ static S allreduce(S s, Combine combine, S* scratch) {
    if constexpr (kBlock) {
      return block_allreduce(s, combine, scratch);
    } else {
      return warp_allreduce(s, combine);
    }
  }
};

template <typename T, bool kLog, bool kBlock>
__global__ void forward_rows_kernel(cuda_t<T>* y,        // (outer, n)
                                    const cuda_t<T>* x,  // (outer, n)
                                    int64_t outer, int64_t n) {
  using C = compute_t<T>;
  using A = acc_t<T>;
  using Group = RowGroup<kBlock>;
  alignas(16) __shared__ C max_scratch[32];
  alignas(16) __shared__ A sum_scratch[32];
  const int64_t row = Group::row();
  if (row >= outer) return;  // only in warp mode, where whole warps leave together
  x += row * n;
  y += row * n;
  C max = -INFINITY;
  for (int64_t i = Group::rank(); i < n; i += Group::size()) max = MaxCombine{}(max, static_cast<C>(x[i]));
  max = Group::allreduce(max, MaxCombine{}, max_scratch);
  A sum = 0;
  for (int64_t i = Group::rank(); i < n; i += Group::size()) sum += exp_of(static_cast<C>(x[i]) - max);
  sum = Group::allreduce(sum, SumCombine{}, sum_scratch);
  for (int64_t i = Group::rank(); i < n; i += Group::size()) {
    C shifted = static_cast<C>(x[i]) - max;
    y[i] = static_cast<cuda_t<T>>(kLog ? shifted - static_cast<C>(log_of(sum)) : static_cast<C>(exp_of(shifted) / sum));
  }
}

template <typename T, bool kLog, bool kBlock>
__global__ void backward_rows_kernel(cuda_t<T>* grad_x,        // (outer, n)
                                     const cuda_t<T>* grad_y,  // (outer, n)
                                     const cuda_t<T>* y,       // (outer, n)
                                     int64_t outer, int64_t n) {
  using C = compute_t<T>;
  using A = acc_t<T>;
  using Group = RowGroup<kBlock>;
  alignas(16) __shared__ A sum_scratch[32];
  const int64_t row = Group::row();
  if (row >= outer) return;
  grad_x += row * n;
  grad_y += row * n;
  y += row * n;
  A sum = 0;  // sum(grad_y * y) for softmax, sum(grad_y) for log_softmax
  for (int64_t i = Group::rank(); i < n; i += Group::size()) {
    A g = static_cast<A>(static_cast<C>(grad_y[i]));
    sum += kLog ? g : g * static_cast<A>(static_cast<C>(y[i]));
  }
  const C s = static_cast<C>(Group::allreduce(sum, SumCombine{}, sum_scratch));
  for (int64_t i = Group::rank(); i < n; i += Group::size()) {
    C g = static_cast<C>(grad_y[i]), out = static_cast<C>(y[i]);
    grad_x[i] = static_cast<cuda_t<T>>(kLog ? g - exp_of(out) * s : out * (g - s));
  }
}

template <typename T, bool kLog>
__global__ void forward_columns_kernel(cuda_t<T>* y,        // (outer, n, inner)
                                       const cuda_t<T>* x,  // (outer, n, inner)
                                       int64_t outer, int64_t n, int64_t inner) {
  using C = compute_t<T>;
  using A = acc_t<T>;
  const int64_t column = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (column >= outer * inner) return;
  const int64_t base = (column / inner) * n * inner + column % inner;
  C max = -INFINITY;
  for (int64_t r = 0; r < n; ++r) max = MaxCombine{}(max, static_cast<C>(x[base + r * inner]));
  A sum = 0;
  for (int64_t r = 0; r < n; ++r) sum += exp_of(static_cast<C>(x[base + r * inner]) - max);
  for (int64_t r = 0; r < n; ++r) {
    C shifted = static_cast<C>(x[base + r * inner]) - max;
    y[base + r * inner] =
        static_cast<cuda_t<T>>(kLog ? shifted - static_cast<C>(log_of(sum)) : static_cast<C>(exp_of(shifted) / sum));
  }
}

template <typename T, bool kLog>
__global__ void backward_columns_kernel(cuda_t<T>* grad_x,        // (outer, n, inner)
                                        const cuda_t<T>* grad_y,  // (outer, n, inner)
                                        const cuda_t<T>* y,       // (outer, n, inner)
                                        int64_t outer, int64_t n, int64_t inner) {
  using C = compute_t<T>;
  using A = acc_t<T>;
  const int64_t column = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (column >= outer * inner) return;
  const int64_t base = (column / inner) * n * inner + column % inner;
  A sum = 0;
  for (int64_t r = 0; r < n; ++r) {
    A g = static_cast<A>(static_cast<C>(grad_y[base + r * inner]));
    sum += kLog ? g : g * static_cast<A>(static_cast<C>(y[base + r * inner]));
  }
  const C s = static_cast<C>(sum);
  for (int64_t r = 0; r < n; ++r) {
    C g = static_cast<C>(grad_y[base + r * inner]), out = static_cast<C>(y[base + r * inner]);
    grad_x[base + r * inner] = static_cast<cuda_t<T>>(kLog ? g - exp_of(out) * s : out * (g - s));
  }
}

void check_grid(const SoftmaxDesc& d, int64_t blocks) {
  SE_CHECK(blocks < (int64_t{1} << 31), "softmax: shape (outer ", d.outer, ", size ", d.size, ", inner ", d.inner,
           ") exceeds the grid limit");
}

template <typename T, bool kLog>
void launch_forward(T* y, const T* x, const SoftmaxDesc& d, Stream stream) {
  if (d.outer * d.size * d.inner == 0) return;
  auto* out = reinterpret_cast<cuda_t<T>*>(y);
  const auto* in = reinterpret_cast<const cuda_t<T>*>(x);
  if (d.inner > 1) {
    check_grid(d, d.outer * d.inner / kColumnThreads + 1);
    SE_LAUNCH((forward_columns_kernel<T, kLog>), ceil_div(d.outer * d.inner, kColumnThreads), kColumnThreads, 0, stream,
              out, in, d.outer, d.size, d.inner);
  } else if (d.size > kWarpRowMax) {
    check_grid(d, d.outer);
    SE_LAUNCH((forward_rows_kernel<T, kLog, true>), static_cast<unsigned>(d.outer), kBlockRowThreads, 0, stream, out,
              in, d.outer, d.size);
  } else {
    SE_LAUNCH((forward_rows_kernel<T, kLog, false>), ceil_div(d.outer, kWarpsPerBlock), 32 * kWarpsPerBlock, 0, stream,
              out, in, d.outer, d.size);
  }
}

template <typename T, bool kLog>
void launch_backward(T* grad_x, const T* grad_y, const T* y, const SoftmaxDesc& d, Stream stream) {
  if (d.outer * d.size * d.inner == 0) return;
  auto* gx = reinterpret_cast<cuda_t<T>*>(grad_x);
  const auto* gy = reinterpret_cast<const cuda_t<T>*>(grad_y);
  const auto* out = reinterpret_cast<const cuda_t<T>*>(y);
  if (d.inner > 1) {
    check_grid(d, d.outer * d.inner / kColumnThreads + 1);
    SE_LAUNCH((backward_columns_kernel<T, kLog>), ceil_div(d.outer * d.inner, kColumnThreads), kColumnThreads, 0,
              stream, gx, gy, out, d.outer, d.size, d.inner);
  } else if (d.size > kWarpRowMax) {
    check_grid(d, d.outer);
    SE_LAUNCH((backward_rows_kernel<T, kLog, true>), static_cast<unsigned>(d.outer), kBlockRowThreads, 0, stream, gx,
              gy, out, d.outer, d.size);
  } else {
    SE_LAUNCH((backward_rows_kernel<T, kLog, false>), ceil_div(d.outer, kWarpsPerBlock), 32 * kWarpsPerBlock, 0,
              stream, gx, gy, out, d.outer, d.size);
  }
}

}  // namespace

template <typename T>
void softmax_forward(T* y, const T* x, const SoftmaxDesc& desc, Stream stream) {
  launch_forward<T, false>(y, x, desc, stream);
}
template <typename T>
void log_softmax_forward(T* y, const T* x, const SoftmaxDesc& desc, Stream stream) {
  launch_forward<T, true>(y, x, desc, stream);
}
template <typename T>
void softmax_backward(T* grad_x, const T* grad_y, const T* y, const SoftmaxDesc& desc, Stream stream) {
  launch_backward<T, false>(grad_x, grad_y, y, desc, stream);
}
template <typename T>
void log_softmax_backward(T* grad_x, const T* grad_y, const T* y, const SoftmaxDesc& desc, Stream stream) {
  launch_backward<T, true>(grad_x, grad_y, y, desc, stream);
}

#define SE_INSTANTIATE(T)                                                                          \
  template void softmax_forward<T>(T*, const T*, const SoftmaxDesc&, Stream);                      \
  template void log_softmax_forward<T>(T*, const T*, const SoftmaxDesc&, Stream);                  \
  template void softmax_backward<T>(T*, const T*, const T*, const SoftmaxDesc&, Stream);           \
  template void log_softmax_backward<T>(T*, const T*, const T*, const SoftmaxDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cuda
