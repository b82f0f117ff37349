// CUDA resize (see kernels/resize.h for the coordinates and the backward's gather). The
// mapping itself is shared with the CPU through kernels/resize_ops.h.
#include "kernels/resize.h"

#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/resize_ops.h"

namespace se::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536;

unsigned blocks_for(int64_t work) {
  return static_cast<unsigned>(std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

template <typename E>
__global__ void resize_forward_kernel(E* y,        // (planes, out_h, out_w)
                                      const E* x,  // (planes, in_h, in_w)
                                      ResizeDesc d) {
  using C = resize_ops::compute_t<E>;
  const auto ah = resize_ops::axis_h<C>(d);
  const auto aw = resize_ops::axis_w<C>(d);
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < d.planes * d.out_h * d.out_w;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ow = k % d.out_w, oh = k / d.out_w % d.out_h, p = k / (d.out_w * d.out_h);
    y[k] = resize_ops::resize_at(x + p * d.in_h * d.in_w, ah, aw, oh, ow);
  }
}

// One thread per input cell sums the outputs that read it, in output order (float for f16/bf16): no atomics,
// so the same bits in any block order.
template <typename E>
__global__ void resize_backward_gather_kernel(E* grad_x,        // (planes, in_h, in_w)
                                              const E* grad_y,  // (planes, out_h, out_w)
                                              ResizeDesc d) {
  using C = resize_ops::compute_t<E>;
  const auto ah = resize_ops::axis_h<C>(d);
  const auto aw = resize_ops::axis_w<C>(d);
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < d.planes * d.in_h * d.in_w;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t iw = k % d.in_w, ih = k / d.in_w % d.in_h, p = k / (d.in_w * d.in_h);
    int64_t oh0, oh1, ow0, ow1;
    ah.readers(ih, &oh0, &oh1);
    aw.readers(iw, &ow0, &ow1);
    const E* g = grad_y + p * d.out_h * d.out_w;
    C sum = 0;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      const C wh = resize_ops::Axis<C>::weight(ah.taps(oh), ih);
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        sum += wh * resize_ops::Axis<C>::weight(aw.taps(ow), iw) * static_cast<C>(g[oh * d.out_w + ow]);
      }
    }
    grad_x[k] = static_cast<E>(sum);
  }
}

}  // namespace

template <typename T>
void resize_forward(T* y, const T* x, const ResizeDesc& d, Stream stream) {
  const int64_t n = d.planes * d.out_h * d.out_w;
  if (n == 0) return;
  SE_LAUNCH((resize_forward_kernel<cuda_t<T>>), blocks_for(n), kThreads, 0, stream, reinterpret_cast<cuda_t<T>*>(y),
            reinterpret_cast<const cuda_t<T>*>(x), d);
}

template <typename T>
void resize_backward(T* grad_x, const T* grad_y, const ResizeDesc& d, Stream stream) {
  const int64_t n_in = d.planes * d.in_h * d.in_w;
  if (n_in == 0) return;
  SE_LAUNCH((resize_backward_gather_kernel<cuda_t<T>>), blocks_for(n_in), kThreads, 0, stream,
            reinterpret_cast<cuda_t<T>*>(grad_x), reinterpret_cast<const cuda_t<T>*>(grad_y), d);
}

#define SE_INSTANTIATE(T)                                                   \
  template void resize_forward<T>(T*, const T*, const ResizeDesc&, Stream); \
  template void resize_backward<T>(T*, const T*, const ResizeDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cuda
