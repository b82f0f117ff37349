// CUDA gather and scatter_add (see kernels/index.h). Grid-stride loops over positions; the
// position -> offsets decomposition is the same as the CPU's.
#include "kernels/index.h"

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/common.cuh"

namespace se::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536;

struct Offsets {
  int64_t dense = 0;
  int64_t index = 0;
  int64_t indexed = 0;  // without the `dim` coordinate
};

__device__ Offsets offsets_of(const GatherDesc& d, int64_t linear, bool skip_dim) {
  Offsets o;
  int64_t dense_stride = 1;
  for (int k = d.ndim - 1; k >= 0; --k) {
    if (skip_dim && k == d.dim) {
      dense_stride *= d.sizes[k];
      continue;
    }
    int64_t i = linear % d.sizes[k];
    linear /= d.sizes[k];
    o.dense += i * dense_stride;
    o.index += i * d.index_strides[k];
    if (k != d.dim) o.indexed += i * d.strides[k];
    dense_stride *= d.sizes[k];
  }
  return o;
}

template <typename T>
__global__ void gather_kernel(T* out,                // sizes, contiguous
                              const T* src,          // strided
                              const int64_t* index,  // sizes, strided
                              GatherDesc d, int64_t n) {
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < n;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Offsets o = offsets_of(d, p, false);
    int64_t i = index[o.index];
    if (i >= 0 && i < d.dim_size) out[o.dense] = src[o.indexed + i * d.strides[d.dim]];
  }
}

// float and double: every element adds atomically.
template <typename T>
__global__ void scatter_add_atomic_kernel(T* dst,                // strided
                                          const T* src,          // sizes, contiguous
                                          const int64_t* index,  // sizes, strided
                                          GatherDesc d, int64_t n) {
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < n;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Offsets o = offsets_of(d, p, false);
    int64_t i = index[o.index];
    if (i >= 0 && i < d.dim_size) atomicAdd(dst + o.indexed + i * d.strides[d.dim], src[o.dense]);
  }
}

// Other types: one thread per fiber along `dim`, adding in index order (no two threads share a
// destination element, so no atomics and a deterministic result).
template <typename T>
__global__ void scatter_add_fiber_kernel(T* dst,                // strided
                                         const T* src,          // sizes, contiguous
                                         const int64_t* index,  // sizes, strided
                                         GatherDesc d, int64_t fibers, int64_t dense_step) {
  const int64_t length = d.sizes[d.dim];
  for (int64_t f = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; f < fibers;
       f += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Offsets o = offsets_of(d, f, true);
    for (int64_t j = 0; j < length; ++j) {
      int64_t i = index[o.index + j * d.index_strides[d.dim]];
      if (i < 0 || i >= d.dim_size) continue;
      T& target = dst[o.indexed + i * d.strides[d.dim]];
      if constexpr (std::is_integral_v<T>) {
        target = static_cast<T>(target + src[o.dense + j * dense_step]);
      } else {
        target = static_cast<T>(static_cast<float>(target) + static_cast<float>(src[o.dense + j * dense_step]));
      }
    }
  }
}

unsigned blocks_for(int64_t work) { return static_cast<unsigned>(std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, kMaxBlocks)); }

}  // namespace

template <typename T>
void gather(T* out, const T* src, const int64_t* index, const GatherDesc& d, Stream stream) {
  const int64_t n = d.numel();
  if (n == 0) return;
  using C = cuda_t<T>;
  SE_LAUNCH((gather_kernel<C>), blocks_for(n), kThreads, 0, stream, reinterpret_cast<C*>(out),
            reinterpret_cast<const C*>(src), index, d, n);
}

template <typename T>
void scatter_add(T* dst, const T* src, const int64_t* index, const GatherDesc& d, Stream stream) {
  const int64_t n = d.numel();
  if (n == 0) return;
  using C = cuda_t<T>;
  auto* y = reinterpret_cast<C*>(dst);
  const auto* x = reinterpret_cast<const C*>(src);
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    SE_LAUNCH((scatter_add_atomic_kernel<C>), blocks_for(n), kThreads, 0, stream, y, x, index, d, n);
  } else {
    int64_t dense_step = 1;
    for (int k = d.dim + 1; k < d.ndim; ++k) dense_step *= d.sizes[k];
    const int64_t fibers = n / d.sizes[d.dim];
    SE_LAUNCH((scatter_add_fiber_kernel<C>), blocks_for(fibers), kThreads, 0, stream, y, x, index, d, fibers,
              dense_step);
  }
}

#define SE_INSTANTIATE_GATHER(T) \
  template void gather<T>(T*, const T*, const int64_t*, const GatherDesc&, Stream);
#define SE_INSTANTIATE_SCATTER(T) \
  template void scatter_add<T>(T*, const T*, const int64_t*, const GatherDesc&, Stream);
SE_INSTANTIATE_GATHER(float)
SE_INSTANTIATE_GATHER(double)
SE_INSTANTIATE_GATHER(f16)
SE_INSTANTIATE_GATHER(bf16)
SE_INSTANTIATE_GATHER(int32_t)
SE_INSTANTIATE_GATHER(int64_t)
SE_INSTANTIATE_GATHER(uint8_t)
SE_INSTANTIATE_GATHER(bool)
SE_INSTANTIATE_SCATTER(float)
SE_INSTANTIATE_SCATTER(double)
SE_INSTANTIATE_SCATTER(f16)
SE_INSTANTIATE_SCATTER(bf16)
SE_INSTANTIATE_SCATTER(int32_t)
SE_INSTANTIATE_SCATTER(int64_t)
SE_INSTANTIATE_SCATTER(uint8_t)
#undef SE_INSTANTIATE_GATHER
#undef SE_INSTANTIATE_SCATTER

}  // namespace se::kernels::cuda
