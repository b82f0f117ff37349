// CUDA resize (see kernels/resize.h for the coordinates and the backward strategy per dtype). The
// mapping itself is shared with the CPU through kernels/resize_ops.h.
#include "kernels/resize.h"

#include <algorithm>
#include <type_traits>

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

// f32 and f64: one thread per output cell adds into its (up to four) taps; grad_x starts at zero.
template <typename E>
__global__ void resize_backward_scatter_kernel(E* grad_x,        // (planes, in_h, in_w), zeroed
                                               const E* grad_y,  // (planes, out_h, out_w)
                                               ResizeDesc d) {
  const auto ah = resize_ops::axis_h<E>(d);
  const auto aw = resize_ops::axis_w<E>(d);
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < d.planes * d.out_h * d.out_w;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ow = k % d.out_w, oh = k / d.out_w % d.out_h, p = k / (d.out_w * d.out_h);
    const resize_ops::Taps<E> h = ah.taps(oh), w = aw.taps(ow);
    E* plane = grad_x + p * d.in_h * d.in_w;
    const E v = grad_y[k];
    if (d.mode == ResizeMode::nearest) {
      atomicAdd(plane + h.i0 * d.in_w + w.i0, v);
      continue;
    }
    atomicAdd(plane + h.i0 * d.in_w + w.i0, h.w0 * w.w0 * v);
    atomicAdd(plane + h.i0 * d.in_w + w.i1, h.w0 * w.w1 * v);
    atomicAdd(plane + h.i1 * d.in_w + w.i0, h.w1 * w.w0 * v);
    atomicAdd(plane + h.i1 * d.in_w + w.i1, h.w1 * w.w1 * v);
  }
}

// f16 and bf16: one thread per input cell sums, in float, the outputs that read it.
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
  const int64_t n_in = d.planes * d.in_h * d.in_w, n_out = d.planes * d.out_h * d.out_w;
  if (n_in == 0) return;
  auto* gx = reinterpret_cast<cuda_t<T>*>(grad_x);
  const auto* gy = reinterpret_cast<const cuda_t<T>*>(grad_y);
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    CUDA_CHECK(cudaMemsetAsync(gx, 0, static_cast<size_t>(n_in) * sizeof(T), stream));
    if (n_out == 0) return;
    SE_LAUNCH((resize_backward_scatter_kernel<T>), blocks_for(n_out), kThreads, 0, stream, gx, gy, d);
  } else {
    SE_LAUNCH((resize_backward_gather_kernel<cuda_t<T>>), blocks_for(n_in), kThreads, 0, stream, gx, gy, d);
  }
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
