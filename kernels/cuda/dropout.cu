#include "core/philox.h"
#include "kernels/convert.h"
#include "kernels/cuda/common.cuh"
#include "kernels/dropout.h"

namespace se::kernels::cuda {

namespace {

constexpr int kThreads = 256;

unsigned int grid_for(int64_t n) {
  const long long blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

// f64 is scaled in double; the others in float (16-bit types are stored as se::f16/se::bf16).
template <typename T>
using ScaleT = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
__global__ void dropout_forward_kernel(DropoutDesc desc, const T* __restrict__ x, T* __restrict__ y,
                                       uint8_t* __restrict__ mask) {
  const ScaleT<T> scale = ScaleT<T>(1) / (ScaleT<T>(1) - desc.p);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < desc.count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const bool keep = philox::uniform_at(desc.seed, desc.offset + static_cast<uint64_t>(i)) >= desc.p;
    mask[i] = keep ? 1 : 0;
    y[i] = keep ? convert<T>(convert<ScaleT<T>>(x[i]) * scale) : convert<T>(ScaleT<T>(0));
  }
}

template <typename T>
__global__ void dropout_backward_kernel(DropoutDesc desc, const T* __restrict__ grad_y,
                                        const uint8_t* __restrict__ mask, T* __restrict__ grad_x) {
  const ScaleT<T> scale = ScaleT<T>(1) / (ScaleT<T>(1) - desc.p);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < desc.count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    grad_x[i] = mask[i] ? convert<T>(convert<ScaleT<T>>(grad_y[i]) * scale) : convert<T>(ScaleT<T>(0));
  }
}

}  // namespace

void dropout_forward(const DropoutDesc& desc, const void* x, void* y, uint8_t* mask, Stream stream) {
  if (desc.count == 0) return;
  dispatch_floating(desc.dtype, "dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_LAUNCH((dropout_forward_kernel<T>), grid_for(desc.count), kThreads, 0, stream, desc,
              static_cast<const T*>(x), static_cast<T*>(y), mask);
  });
}

void dropout_backward(const DropoutDesc& desc, const void* grad_y, const uint8_t* mask, void* grad_x, Stream stream) {
  if (desc.count == 0) return;
  dispatch_floating(desc.dtype, "dropout_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    SE_LAUNCH((dropout_backward_kernel<T>), grid_for(desc.count), kThreads, 0, stream, desc,
              static_cast<const T*>(grad_y), mask, static_cast<T*>(grad_x));
  });
}

}  // namespace se::kernels::cuda
