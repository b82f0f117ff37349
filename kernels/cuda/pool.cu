// CUDA pooling: one thread per output cell (forward) or per input cell (backward, a gather, so no
// atomics and the same deterministic sums as the CPU), grid-stride loops, the per-element work shared
// with the CPU through kernels/pool_ops.h.
#include "kernels/pool.h"

#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/pool_ops.h"

namespace se::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536;

unsigned blocks_for(int64_t work) {
  return static_cast<unsigned>(std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

#define SE_GRID_STRIDE(i, n)                                                             \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

template <typename E>
__global__ void max_pool2d_forward_kernel(E* y,              // (planes, out_h, out_w)
                                          int64_t* indices,  // (planes, out_h, out_w)
                                          const E* x,        // (planes, in_h, in_w)
                                          Pool2dDesc d) {
  SE_GRID_STRIDE(k, d.planes * d.out_h * d.out_w) {
    const int64_t ow = k % d.out_w, oh = k / d.out_w % d.out_h, p = k / (d.out_w * d.out_h);
    y[k] = pool_ops::max_window(x + p * d.in_h * d.in_w, d, oh, ow, &indices[k]);
  }
}

template <typename E>
__global__ void max_pool2d_backward_kernel(E* grad_x,               // (planes, in_h, in_w)
                                           const E* grad_y,         // (planes, out_h, out_w)
                                           const int64_t* indices,  // (planes, out_h, out_w)
                                           Pool2dDesc d) {
  SE_GRID_STRIDE(k, d.planes * d.in_h * d.in_w) {
    const int64_t iw = k % d.in_w, ih = k / d.in_w % d.in_h, p = k / (d.in_w * d.in_h);
    const int64_t out_plane = d.out_h * d.out_w;
    grad_x[k] = pool_ops::max_pool_grad_at(grad_y + p * out_plane, indices + p * out_plane, d, ih, iw);
  }
}

template <typename E>
__global__ void avg_pool2d_forward_kernel(E* y,        // (planes, out_h, out_w)
                                          const E* x,  // (planes, in_h, in_w)
                                          Pool2dDesc d) {
  SE_GRID_STRIDE(k, d.planes * d.out_h * d.out_w) {
    const int64_t ow = k % d.out_w, oh = k / d.out_w % d.out_h, p = k / (d.out_w * d.out_h);
    y[k] = pool_ops::avg_window(x + p * d.in_h * d.in_w, d, oh, ow);
  }
}

template <typename E>
__global__ void avg_pool2d_backward_kernel(E* grad_x,        // (planes, in_h, in_w)
                                           const E* grad_y,  // (planes, out_h, out_w)
                                           Pool2dDesc d) {
  SE_GRID_STRIDE(k, d.planes * d.in_h * d.in_w) {
    const int64_t iw = k % d.in_w, ih = k / d.in_w % d.in_h, p = k / (d.in_w * d.in_h);
    grad_x[k] = pool_ops::avg_pool_grad_at(grad_y + p * d.out_h * d.out_w, d, ih, iw);
  }
}

template <typename E>
__global__ void adaptive_avg_pool2d_forward_kernel(E* y,        // (planes, out_h, out_w)
                                                   const E* x,  // (planes, in_h, in_w)
                                                   AdaptivePool2dDesc d) {
  SE_GRID_STRIDE(k, d.planes * d.out_h * d.out_w) {
    const int64_t ow = k % d.out_w, oh = k / d.out_w % d.out_h, p = k / (d.out_w * d.out_h);
    y[k] = pool_ops::adaptive_avg_window(x + p * d.in_h * d.in_w, d, oh, ow);
  }
}

template <typename E>
__global__ void adaptive_avg_pool2d_backward_kernel(E* grad_x,        // (planes, in_h, in_w)
                                                    const E* grad_y,  // (planes, out_h, out_w)
                                                    AdaptivePool2dDesc d) {
  SE_GRID_STRIDE(k, d.planes * d.in_h * d.in_w) {
    const int64_t iw = k % d.in_w, ih = k / d.in_w % d.in_h, p = k / (d.in_w * d.in_h);
    grad_x[k] = pool_ops::adaptive_avg_pool_grad_at(grad_y + p * d.out_h * d.out_w, d, ih, iw);
  }
}

#undef SE_GRID_STRIDE

template <typename T>
cuda_t<T>* device_ptr(T* p) {
  return reinterpret_cast<cuda_t<T>*>(p);
}
template <typename T>
const cuda_t<T>* device_ptr(const T* p) {
  return reinterpret_cast<const cuda_t<T>*>(p);
}

}  // namespace

template <typename T>
void max_pool2d_forward(T* y, int64_t* indices, const T* x, const Pool2dDesc& d, Stream stream) {
  const int64_t n = d.planes * d.out_h * d.out_w;
  if (n == 0) return;
  SE_LAUNCH((max_pool2d_forward_kernel<cuda_t<T>>), blocks_for(n), kThreads, 0, stream, device_ptr(y), indices,
            device_ptr(x), d);
}

template <typename T>
void max_pool2d_backward(T* grad_x, const T* grad_y, const int64_t* indices, const Pool2dDesc& d, Stream stream) {
  const int64_t n = d.planes * d.in_h * d.in_w;
  if (n == 0) return;
  SE_LAUNCH((max_pool2d_backward_kernel<cuda_t<T>>), blocks_for(n), kThreads, 0, stream, device_ptr(grad_x),
            device_ptr(grad_y), indices, d);
}

template <typename T>
void avg_pool2d_forward(T* y, const T* x, const Pool2dDesc& d, Stream stream) {
  const int64_t n = d.planes * d.out_h * d.out_w;
  if (n == 0) return;
  SE_LAUNCH((avg_pool2d_forward_kernel<cuda_t<T>>), blocks_for(n), kThreads, 0, stream, device_ptr(y), device_ptr(x),
            d);
}

template <typename T>
void avg_pool2d_backward(T* grad_x, const T* grad_y, const Pool2dDesc& d, Stream stream) {
  const int64_t n = d.planes * d.in_h * d.in_w;
  if (n == 0) return;
  SE_LAUNCH((avg_pool2d_backward_kernel<cuda_t<T>>), blocks_for(n), kThreads, 0, stream, device_ptr(grad_x),
            device_ptr(grad_y), d);
}

template <typename T>
void adaptive_avg_pool2d_forward(T* y, const T* x, const AdaptivePool2dDesc& d, Stream stream) {
  const int64_t n = d.planes * d.out_h * d.out_w;
  if (n == 0) return;
  SE_LAUNCH((adaptive_avg_pool2d_forward_kernel<cuda_t<T>>), blocks_for(n), kThreads, 0, stream, device_ptr(y),
            device_ptr(x), d);
}

template <typename T>
void adaptive_avg_pool2d_backward(T* grad_x, const T* grad_y, const AdaptivePool2dDesc& d, Stream stream) {
  const int64_t n = d.planes * d.in_h * d.in_w;
  if (n == 0) return;
  SE_LAUNCH((adaptive_avg_pool2d_backward_kernel<cuda_t<T>>), blocks_for(n), kThreads, 0, stream, device_ptr(grad_x),
            device_ptr(grad_y), d);
}

#define SE_INSTANTIATE(T)                                                                        \
  template void max_pool2d_forward<T>(T*, int64_t*, const T*, const Pool2dDesc&, Stream);        \
  template void max_pool2d_backward<T>(T*, const T*, const int64_t*, const Pool2dDesc&, Stream); \
  template void avg_pool2d_forward<T>(T*, const T*, const Pool2dDesc&, Stream);                  \
  template void avg_pool2d_backward<T>(T*, const T*, const Pool2dDesc&, Stream);                 \
  template void adaptive_avg_pool2d_forward<T>(T*, const T*, const AdaptivePool2dDesc&, Stream); \
  template void adaptive_avg_pool2d_backward<T>(T*, const T*, const AdaptivePool2dDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cuda
