// The CUDA emulator: lets g++ compile a .cu file as C++ and run its kernels on the CPU.
//
// se_add_cuda_library (cmake/SegengineCuda.cmake) force-includes this header first in every emulated .cu and
// puts kernels/emu/include (shims for <cuda_runtime.h>, <cuda_fp16.h>, <mma.h>, ...) first on the include
// path. The real CUDA 13 headers still provide the runtime API declarations, the vector types and the
// __half/__nv_bfloat16 host arithmetic; the emulator implements the runtime (src/runtime.cpp, src/memory.cpp)
// and the device side:
//   - the threads of a block are fibers (boost::context) on one OS thread, resumed by a scheduler until
//     they reach a barrier or warp collective (src/block.cpp); blocks are spread over a thread pool
//     (src/launch.cpp);
//   - __shared__ is `static thread_local`: a block runs whole on one OS thread, so its fibers share it;
//   - warp collectives (warp.h), atomics (atomics.h), half intrinsics (half_ext.h), math intrinsics (math.h)
//     and nvcuda::wmma (wmma.h) get CPU definitions.
// Kernels launch through SE_LAUNCH (kernels/cuda/common.cuh), which calls se::emu::launch_kernel.
#pragma once

// Standard headers that spell GCC attributes with names CUDA uses as macros come before those macros.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <source_location>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

// Execution-space and memory-space keywords. The CUDA headers define most of them as empty annotations for
// host compilers; __shared__ needs real meaning here.
#undef __shared__
#define __shared__ static thread_local
#ifndef __global__
#define __global__
#endif
#ifndef __device__
#define __device__
#endif
#ifndef __host__
#define __host__
#endif
#ifndef __forceinline__
#define __forceinline__ inline __attribute__((always_inline))
#endif
#ifndef __noinline__
#define __noinline__ __attribute__((noinline))
#endif
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
#undef __constant__
#define __constant__
#undef __managed__
#define __managed__
#undef __grid_constant__
#define __grid_constant__

#include "kernels/emu/device.h"
#include "kernels/emu/math.h"
#include "kernels/emu/warp.h"
#include "kernels/emu/atomics.h"
#include "kernels/emu/half_ext.h"
#include "kernels/emu/launch.h"
