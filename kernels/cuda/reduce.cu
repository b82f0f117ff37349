// CUDA reductions over (outer, size, inner), three shapes of work:
//   inner == 1, size >= kBlockRowMin: one block per row (long rows, warp shuffles + shared memory)
//   inner == 1, shorter rows:         one warp per row
//   inner > 1:                        32 adjacent columns per block (coalesced loads), blockDim.y
//                                     threads split the reduced axis, combined through shared memory
// No atomics: results are deterministic. Semantics live in kernels/reduce_ops.h, shared with the CPU.
#include "kernels/reduce.h"

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/group_reduce.cuh"
#include "kernels/reduce_ops.h"

namespace se::kernels::cuda {
namespace {

using namespace se::kernels::reduce_ops;

constexpr int64_t kBlockRowMin = 2048;
constexpr int kBlockRowThreads = 512;
constexpr int kWarpsPerBlock = 8;
constexpr int kColumnSplit = 8;  // blockDim.y of the inner > 1 kernel

template <typename Op>
struct CombineOf {
  template <typename S>
  __device__ S operator()(const S& a, const S& b) const { return Op::combine(a, b); }
};

template <typename T, typename Op, typename Out, typename Finish>
__global__ void reduce_rows_block_kernel(Out* out,                // (outer,)
                                         const cuda_t<T>* in,     // (outer, n)
                                         int64_t n, Finish finish) {
  using A = acc_t<T>;
  using State = typename Op::State;
  alignas(16) __shared__ State scratch[32];
  const int64_t row = blockIdx.x;
  const cuda_t<T>* x = in + row * n;
  State s = Op::identity();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) Op::update(s, static_cast<A>(x[i]), i);
  s = block_allreduce(s, CombineOf<Op>{}, scratch);
  if (threadIdx.x == 0) out[row] = finish(s);
}

template <typename T, typename Op, typename Out, typename Finish>
__global__ void reduce_rows_warp_kernel(Out* out,             // (outer,)
                                        const cuda_t<T>* in,  // (outer, n)
                                        int64_t outer, int64_t n, Finish finish) {
  using A = acc_t<T>;
  using State = typename Op::State;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= outer) return;  // whole warps leave together
  const int lane = threadIdx.x % 32;
  const cuda_t<T>* x = in + row * n;
  State s = Op::identity();
  for (int64_t i = lane; i < n; i += 32) Op::update(s, static_cast<A>(x[i]), i);
  s = warp_allreduce(s, CombineOf<Op>{});
  if (lane == 0) out[row] = finish(s);
}

template <typename T, typename Op, typename Out, typename Finish>
__global__ void reduce_columns_kernel(Out* out,             // (outer, inner)
                                      const cuda_t<T>* in,  // (outer, n, inner)
                                      int64_t n, int64_t inner, Finish finish) {
  using A = acc_t<T>;
  using State = typename Op::State;
  alignas(16) __shared__ State scratch[kColumnSplit][32];
  const int64_t blocks_per_row = (inner + 31) / 32;
  const int64_t o = blockIdx.x / blocks_per_row;
  const int64_t col = (blockIdx.x % blocks_per_row) * 32 + threadIdx.x;
  State s = Op::identity();
  if (col < inner) {
    const cuda_t<T>* x = in + o * n * inner + col;
    for (int64_t r = threadIdx.y; r < n; r += blockDim.y) Op::update(s, static_cast<A>(x[r * inner]), r);
  }
  scratch[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < inner) {
    for (unsigned y = 1; y < blockDim.y; ++y) s = Op::combine(s, scratch[y][threadIdx.x]);
    out[o * inner + col] = finish(s);
  }
}

template <typename Out>
struct FinishValue {
  template <typename S>
  __device__ Out operator()(const S& s) const { return static_cast<Out>(s); }
};

template <typename Out, typename A>
struct FinishMean {
  A n;
  __device__ Out operator()(A s) const { return static_cast<Out>(s / n); }
};

template <typename Out, typename A>
struct FinishVar {
  A divisor;
  __device__ Out operator()(const typename VarOp<A>::State& s) const { return static_cast<Out>(s.m2 / divisor); }
};

struct FinishIndex {
  template <typename S>
  __device__ int64_t operator()(const S& s) const { return s.index; }
};

template <typename T, typename Op, typename Out, typename Finish>
void launch_reduce(Out* out, const T* in, const ReduceDesc& d, Finish finish, Stream stream) {
  if (d.outer * d.inner == 0) return;
  const auto* x = reinterpret_cast<const cuda_t<T>*>(in);
  if (d.inner == 1) {
    if (d.size >= kBlockRowMin) {
      SE_CHECK(d.outer < (int64_t{1} << 31), "reduce: outer ", d.outer, " exceeds the grid limit");
      SE_LAUNCH((reduce_rows_block_kernel<T, Op, Out, Finish>), static_cast<unsigned>(d.outer), kBlockRowThreads, 0,
                stream, out, x, d.size, finish);
    } else {
      SE_LAUNCH((reduce_rows_warp_kernel<T, Op, Out, Finish>), ceil_div(d.outer, kWarpsPerBlock), 32 * kWarpsPerBlock,
                0, stream, out, x, d.outer, d.size, finish);
    }
    return;
  }
  const int64_t blocks = d.outer * ((d.inner + 31) / 32);
  SE_CHECK(blocks < (int64_t{1} << 31), "reduce: outer ", d.outer, " x inner ", d.inner, " exceeds the grid limit");
  const unsigned split = static_cast<unsigned>(std::clamp<int64_t>(d.size, 1, kColumnSplit));
  SE_LAUNCH((reduce_columns_kernel<T, Op, Out, Finish>), static_cast<unsigned>(blocks), dim3(32, split), 0, stream,
            out, x, d.size, d.inner, finish);
}

template <typename T, typename A>
__global__ void reduce_backward_kernel(T* grad_in,         // (outer, size, inner)
                                       const T* grad_out,  // (outer, inner)
                                       const T* in,        // (outer, size, inner), var only
                                       const T* mean,      // (outer, inner), var only
                                       int64_t count, int64_t size, int64_t inner, A scale) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < count;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = (k / (size * inner)) * inner + k % inner;
    A g = static_cast<A>(grad_out[j]) * scale;
    if (in != nullptr) g *= static_cast<A>(in[k]) - static_cast<A>(mean[j]);
    grad_in[k] = static_cast<T>(g);
  }
}

}  // namespace

template <typename T>
void reduce(ReduceOp op, T* out, const T* in, const ReduceDesc& d, Stream stream) {
  using A = acc_t<T>;
  using Out = cuda_t<T>;
  Out* y = reinterpret_cast<Out*>(out);
  constexpr bool floating = std::is_floating_point_v<A>;
  switch (op) {
    case ReduceOp::sum:
      launch_reduce<T, SumOp<A>>(y, in, d, FinishValue<Out>{}, stream);
      return;
    case ReduceOp::prod:
      launch_reduce<T, ProdOp<A>>(y, in, d, FinishValue<Out>{}, stream);
      return;
    case ReduceOp::max:
      SE_CHECK(d.size > 0, "reduce: max of an empty axis (outer ", d.outer, ", size 0, inner ", d.inner, ")");
      launch_reduce<T, ExtremeOp<A, true>>(y, in, d, FinishValue<Out>{}, stream);
      return;
    case ReduceOp::min:
      SE_CHECK(d.size > 0, "reduce: min of an empty axis (outer ", d.outer, ", size 0, inner ", d.inner, ")");
      launch_reduce<T, ExtremeOp<A, false>>(y, in, d, FinishValue<Out>{}, stream);
      return;
    case ReduceOp::mean:
      if constexpr (floating) {
        launch_reduce<T, SumOp<A>>(y, in, d, FinishMean<Out, A>{static_cast<A>(d.size)}, stream);
        return;
      }
      break;
    case ReduceOp::var:
      if constexpr (floating) {
        const A divisor = static_cast<A>(std::max<int64_t>(d.size - d.correction, 0));
        launch_reduce<T, VarOp<A>>(y, in, d, FinishVar<Out, A>{divisor}, stream);
        return;
      }
      break;
  }
  SE_THROW("reduce: op ", static_cast<int>(op), " needs a floating dtype");
}

template <typename T>
void arg_reduce(ArgReduceOp op, int64_t* out, const T* in, const ReduceDesc& d, Stream stream) {
  using A = acc_t<T>;
  SE_CHECK(d.size > 0, "arg_reduce: ", op == ArgReduceOp::argmax ? "argmax" : "argmin", " of an empty axis (outer ",
           d.outer, ", size 0, inner ", d.inner, ")");
  if (op == ArgReduceOp::argmax) {
    launch_reduce<T, ArgExtremeOp<A, true>>(out, in, d, FinishIndex{}, stream);
  } else {
    launch_reduce<T, ArgExtremeOp<A, false>>(out, in, d, FinishIndex{}, stream);
  }
}

template <typename T>
void reduce_backward(ReduceOp op, T* grad_in, const T* grad_out, const T* in, const T* mean, const ReduceDesc& d,
                     Stream stream) {
  using A = acc_t<T>;
  using C = cuda_t<T>;
  SE_CHECK(op == ReduceOp::sum || op == ReduceOp::mean || op == ReduceOp::var, "reduce_backward: op ",
           static_cast<int>(op), " has no broadcast backward (max/min route through their indices)");
  const int64_t count = d.outer * d.size * d.inner;
  if (count == 0) return;
  const A scale = op == ReduceOp::sum    ? A(1)
                  : op == ReduceOp::mean ? A(1) / static_cast<A>(d.size)
                                         : A(2) / static_cast<A>(std::max<int64_t>(d.size - d.correction, 0));
  const bool is_var = op == ReduceOp::var;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((count + 255) / 256, 65536));
  SE_LAUNCH((reduce_backward_kernel<C, A>), blocks, 256, 0, stream, reinterpret_cast<C*>(grad_in),
            reinterpret_cast<const C*>(grad_out), is_var ? reinterpret_cast<const C*>(in) : nullptr,
            is_var ? reinterpret_cast<const C*>(mean) : nullptr, count, d.size, d.inner, scale);
}

#define SE_INSTANTIATE(T)                                                            \
  template void reduce<T>(ReduceOp, T*, const T*, const ReduceDesc&, Stream);        \
  template void arg_reduce<T>(ArgReduceOp, int64_t*, const T*, const ReduceDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
SE_INSTANTIATE(int32_t)
SE_INSTANTIATE(int64_t)
SE_INSTANTIATE(uint8_t)
#undef SE_INSTANTIATE
template void reduce_backward<float>(ReduceOp, float*, const float*, const float*, const float*, const ReduceDesc&, Stream);
template void reduce_backward<double>(ReduceOp, double*, const double*, const double*, const double*, const ReduceDesc&,
                                      Stream);
template void reduce_backward<f16>(ReduceOp, f16*, const f16*, const f16*, const f16*, const ReduceDesc&, Stream);
template void reduce_backward<bf16>(ReduceOp, bf16*, const bf16*, const bf16*, const bf16*, const ReduceDesc&, Stream);

}  // namespace se::kernels::cuda
