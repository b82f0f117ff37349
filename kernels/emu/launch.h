// Kernel launch in the emulator. SE_LAUNCH (kernels/cuda/common.cuh) calls launch_kernel, which converts
// the arguments to the kernel's parameter types (as a <<<>>> launch does) and hands the grid to the
// thread pool (src/launch.cpp). Errors (bad configuration, too much shared memory, an exception in a kernel)
// are reported through cudaGetLastError, as on a GPU.
#pragma once

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cuda_runtime.h>

namespace se::emu {

namespace detail {
// Runs `body(args)` once per thread of the grid.
using KernelBody = void (*)(const void* args);
void launch(const char* name, const void* kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
            KernelBody body, const void* args);
}  // namespace detail

template <typename... Params, typename... Args>
void launch_kernel(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                   cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong number of arguments");
  struct Pack {
    void (*kernel)(Params...);
    std::tuple<std::decay_t<Params>...> params;
  };
  const Pack pack{kernel, std::tuple<std::decay_t<Params>...>(std::forward<Args>(args)...)};
  detail::launch(name, reinterpret_cast<const void*>(kernel), grid, block, shared_bytes, stream,
                 [](const void* packed) {
                   const auto* p = static_cast<const Pack*>(packed);
                   std::apply(p->kernel, p->params);
                 },
                 &pack);
}

}  // namespace se::emu

// The kernel-pointer forms of the runtime's function APIs (the CUDA header declares them for nvcc only).
template <typename... Params>
cudaError_t cudaFuncSetAttribute(void (*kernel)(Params...), cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}
template <typename... Params>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, void (*kernel)(Params...), int block_size,
                                                          size_t dynamic_shared) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks, reinterpret_cast<const void*>(kernel), block_size,
                                                       dynamic_shared);
}
