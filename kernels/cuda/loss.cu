// CUDA loss family. Cross-entropy: one thread per pixel walking the classes with stride S, so the
// threads of a warp read neighbouring pixels of one class plane (coalesced for NCHW logits with
// S >= 32). The per-pixel math is kernels/loss_math.h, the same as on the CPU.
#include "kernels/loss.h"

#include "kernels/cuda/common.cuh"
#include "kernels/loss_math.h"

namespace se::kernels::cuda {
namespace {

constexpr int kPixelThreads = 256;

template <typename T>
__global__ void cross_entropy_forward_kernel(cuda_t<T>* loss,                 // (N, S)
                                             cuda_t<T>* pixel_weight,         // (N, S)
                                             loss_compute_t<T>* lse,          // (N, S)
                                             unsigned long long* bad_target,  // (1)
                                             const cuda_t<T>* logits,         // (N, C, S)
                                             const int64_t* target,           // (N, S)
                                             const cuda_t<T>* weight,         // (C) or null
                                             CrossEntropyDesc d) {
  using C = loss_compute_t<T>;
  using V = cuda_t<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= d.batch * d.spatial) return;
  const int64_t n = i / d.spatial, s = i % d.spatial, y = target[i];
  loss[i] = static_cast<V>(C(0));
  pixel_weight[i] = static_cast<V>(C(0));
  lse[i] = 0;
  if (y == d.ignore_index) return;
  if (y < 0 || y >= d.classes) {
    atomicCAS(bad_target, static_cast<unsigned long long>(d.ignore_index), static_cast<unsigned long long>(y));
    return;
  }
  const auto p = loss::cross_entropy_pixel<C>(logits + n * d.classes * d.spatial + s, d.spatial, d.classes, y, weight,
                                              static_cast<C>(d.label_smoothing));
  loss[i] = static_cast<V>(p.loss);
  pixel_weight[i] = static_cast<V>(p.weight);
  lse[i] = p.lse;
}

template <typename T>
__global__ void cross_entropy_backward_kernel(cuda_t<T>* grad_logits,      // (N, C, S)
                                              const cuda_t<T>* grad_loss,  // (N, S) or (1)
                                              int64_t grad_loss_stride,
                                              const cuda_t<T>* logits,       // (N, C, S)
                                              const loss_compute_t<T>* lse,  // (N, S)
                                              const int64_t* target,         // (N, S)
                                              const cuda_t<T>* weight,       // (C) or null
                                              CrossEntropyDesc d) {
  using C = loss_compute_t<T>;
  using V = cuda_t<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= d.batch * d.spatial) return;
  const int64_t n = i / d.spatial, s = i % d.spatial, y = target[i];
  const int64_t offset = n * d.classes * d.spatial + s;
  if (y < 0 || y >= d.classes) {
    for (int64_t c = 0; c < d.classes; ++c) grad_logits[offset + c * d.spatial] = static_cast<V>(C(0));
    return;
  }
  loss::cross_entropy_pixel_backward<C>(grad_logits + offset, logits + offset, d.spatial, d.classes, y, weight,
                                        static_cast<C>(d.label_smoothing), lse[i],
                                        static_cast<C>(grad_loss[i * grad_loss_stride]));
}

void check_grid(const CrossEntropyDesc& d) {
  SE_CHECK(d.batch * d.spatial / kPixelThreads < (int64_t{1} << 31), "cross_entropy: ", d.batch * d.spatial,
           " pixels exceed the grid limit");
}

}  // namespace

template <typename T>
void cross_entropy_forward(T* loss, T* pixel_weight, loss_compute_t<T>* lse, int64_t* bad_target, const T* logits,
                           const int64_t* target, const T* weight, const CrossEntropyDesc& d, Stream stream) {
  const int64_t pixels = d.batch * d.spatial;
  if (pixels == 0) return;
  check_grid(d);
  SE_LAUNCH((cross_entropy_forward_kernel<T>), ceil_div(pixels, kPixelThreads), kPixelThreads, 0, stream,
            reinterpret_cast<cuda_t<T>*>(loss), reinterpret_cast<cuda_t<T>*>(pixel_weight), lse,
            reinterpret_cast<unsigned long long*>(bad_target), reinterpret_cast<const cuda_t<T>*>(logits), target,
            reinterpret_cast<const cuda_t<T>*>(weight), d);
}

template <typename T>
void cross_entropy_backward(T* grad_logits, const T* grad_loss, int64_t grad_loss_stride, const T* logits,
                            const loss_compute_t<T>* lse, const int64_t* target, const T* weight,
                            const CrossEntropyDesc& d, Stream stream) {
  const int64_t pixels = d.batch * d.spatial;
  if (pixels == 0) return;
  check_grid(d);
  SE_LAUNCH((cross_entropy_backward_kernel<T>), ceil_div(pixels, kPixelThreads), kPixelThreads, 0, stream,
            reinterpret_cast<cuda_t<T>*>(grad_logits), reinterpret_cast<const cuda_t<T>*>(grad_loss), grad_loss_stride,
            reinterpret_cast<const cuda_t<T>*>(logits), lse, target, reinterpret_cast<const cuda_t<T>*>(weight), d);
}

#define SE_INSTANTIATE(T)                                                                                            \
  template void cross_entropy_forward<T>(T*, T*, loss_compute_t<T>*, int64_t*, const T*, const int64_t*, const T*,   \
                                         const CrossEntropyDesc&, Stream);                                           \
  template void cross_entropy_backward<T>(T*, const T*, int64_t, const T*, const loss_compute_t<T>*, const int64_t*, \
                                          const T*, const CrossEntropyDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cuda
