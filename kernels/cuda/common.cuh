// Shared by every .cu file: error checking, the one launch helper, and the mapping from our host
// element types to CUDA's. Compiles with nvcc and, through the emulator, with g++.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "core/dtype.h"
#include "core/error.h"

// CUDA_CHECK(cudaMemcpyAsync(...)): throws se::Error naming the call and CUDA's message. The error is
// taken out of the runtime's last-error slot first, so a caught failure does not resurface at the next
// launch's cudaGetLastError (sticky errors stay, as CUDA keeps them).
#define CUDA_CHECK(call)                                                                        \
  do {                                                                                          \
    cudaError_t se_cuda_status_ = (call);                                                       \
    if (se_cuda_status_ != cudaSuccess) {                                                       \
      (void)cudaGetLastError();                                                                 \
      SE_THROW("CUDA error ", cudaGetErrorName(se_cuda_status_), " (", cudaGetErrorString(se_cuda_status_), \
               ") in ", #call);                                                                 \
    }                                                                                           \
  } while (0)

// SE_LAUNCH(kernel, grid, block, smem_bytes, stream, args...): the only way kernels are launched.
// Wrap template kernels in parentheses: SE_LAUNCH((gemm_kernel<float, 64>), ...).
#ifdef SEGENGINE_CUDA_EMU
#define SE_LAUNCH(kernel, grid, block, smem_bytes, stream, ...)                                          \
  do {                                                                                                   \
    ::se::emu::launch_kernel(#kernel, kernel, dim3(grid), dim3(block), (smem_bytes), (stream) __VA_OPT__(,) __VA_ARGS__); \
    CUDA_CHECK(cudaGetLastError());                                                                      \
  } while (0)
#else
#define SE_LAUNCH(kernel, grid, block, smem_bytes, stream, ...)             \
  do {                                                                      \
    kernel<<<dim3(grid), dim3(block), (smem_bytes), (stream)>>>(__VA_ARGS__); \
    CUDA_CHECK(cudaGetLastError());                                         \
  } while (0)
#endif

// DYN_SHARED(float, smem): a pointer named `smem` to the block's dynamic shared memory.
#ifdef SEGENGINE_CUDA_EMU
#define DYN_SHARED(type, name) type* name = reinterpret_cast<type*>(::se::emu::dynamic_shared_memory())
#else
#define DYN_SHARED(type, name)                           \
  extern __shared__ __align__(16) unsigned char se_dynamic_smem_[]; \
  type* name = reinterpret_cast<type*>(se_dynamic_smem_)
#endif

// SE_UNROLL before a loop with a constant trip count: nvcc unrolls it fully, so a per-thread array it
// indexes keeps its elements in registers. A loop left rolled indexes the array at run time, which puts
// it in local memory (device memory, cached in L1/L2); the real build rejects any local memory (SE_CUDA_LOCAL_MEMORY_OK in
// cmake/SegengineCuda.cmake). g++ in the emulated build unrolls on its own judgement.
#ifdef SEGENGINE_CUDA_EMU
#define SE_UNROLL
#else
#define SE_UNROLL _Pragma("unroll")
#endif

namespace se::kernels::cuda {

// Host element type -> the type CUDA kernels compute with (same bits).
template <typename T> struct CudaType { using type = T; };
template <> struct CudaType<se::f16> { using type = __half; };
template <> struct CudaType<se::bf16> { using type = __nv_bfloat16; };
template <typename T> using cuda_t = typename CudaType<T>::type;

// dispatch_floating (core/dtype.h) handing `f` a TypeTag of the CUDA element type.
template <typename F>
void dispatch_floating_cuda(DType dtype, const char* op, F&& f) {
  dispatch_floating(dtype, op, [&](auto tag) { f(TypeTag<cuda_t<typename decltype(tag)::type>>{}); });
}

// ceil(a / b) as a grid dimension. Past 2^31 - 1, the most any grid axis takes, it throws rather than
// let the narrowing wrap a huge count into a small grid that silently skips work.
inline unsigned int ceil_div(long long a, long long b) {
  const long long blocks = (a + b - 1) / b;
  SE_CHECK(blocks <= 0x7fffffffLL, "CUDA launch: ", blocks, " blocks along one grid axis (", a, " items, ", b,
           " per block); at most 2^31 - 1");
  return static_cast<unsigned int>(blocks);
}

}  // namespace se::kernels::cuda
