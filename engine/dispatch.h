// Calls a kernel of kernels/<family>.h on the backend of `device`: se::kernels::cpu::fn or
// se::kernels::cuda::fn with the same arguments plus the current stream of the device.
//   SE_DISPATCH(x.device(), copy_strided, desc, src, dst);
#pragma once

#include "core/error.h"
#include "engine/device.h"
#include "engine/stream.h"

#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#define SE_DISPATCH(device, fn, ...)                                                   \
  do {                                                                                 \
    const ::se::Device se_dispatch_device_ = (device);                                 \
    if (se_dispatch_device_.is_cpu()) {                                                \
      ::se::kernels::cpu::fn(__VA_ARGS__, nullptr);                                    \
    } else {                                                                           \
      ::se::check_device(se_dispatch_device_, #fn);                                    \
      ::se::kernels::cuda::set_device(se_dispatch_device_.index);                      \
      ::se::kernels::cuda::fn(__VA_ARGS__, ::se::current_stream(se_dispatch_device_).handle()); \
    }                                                                                  \
  } while (0)
#else
#define SE_DISPATCH(device, fn, ...)                                \
  do {                                                              \
    const ::se::Device se_dispatch_device_ = (device);              \
    ::se::check_device(se_dispatch_device_, #fn);                   \
    ::se::kernels::cpu::fn(__VA_ARGS__, nullptr);                   \
  } while (0)
#endif
