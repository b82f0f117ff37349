// CUDA loss family. Cross-entropy and focal loss: one thread per pixel walking the classes with stride S, so the
// threads of a warp read neighbouring pixels of one class plane (coalesced for NCHW logits with S >= 32). Binary
// cross-entropy: one thread per element. The math is kernels/loss_math.h, the same as on the CPU.
#include "kernels/loss.h"

#include <algorithm>

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

// Focal loss: one thread per pixel, as cross-entropy.
template <typename T>
__global__ void focal_loss_forward_kernel(cuda_t<T>* loss,                 // (N, S)
                                          cuda_t<T>* valid,                // (N, S)
                                          loss_compute_t<T>* lse,          // (N, S)
                                          unsigned long long* bad_target,  // (1)
                                          const cuda_t<T>* logits,         // (N, C, S)
                                          const int64_t* target,           // (N, S)
                                          const cuda_t<T>* alpha,          // (C) or null
                                          FocalLossDesc d) {
  using C = loss_compute_t<T>;
  using V = cuda_t<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= d.batch * d.spatial) return;
  const int64_t n = i / d.spatial, s = i % d.spatial, y = target[i];
  loss[i] = static_cast<V>(C(0));
  valid[i] = static_cast<V>(C(0));
  lse[i] = 0;
  if (y == d.ignore_index) return;
  if (y < 0 || y >= d.classes) {
    atomicCAS(bad_target, static_cast<unsigned long long>(d.ignore_index), static_cast<unsigned long long>(y));
    return;
  }
  const V* z = logits + n * d.classes * d.spatial + s;
  const C l = loss::log_sum_exp_pixel<C>(z, d.spatial, d.classes);
  const C a = alpha ? static_cast<C>(alpha[y]) : C(1);
  loss[i] = static_cast<V>(loss::focal_pixel<C>(static_cast<C>(z[y * d.spatial]) - l, a, static_cast<C>(d.gamma)));
  valid[i] = static_cast<V>(C(1));
  lse[i] = l;
}

template <typename T>
__global__ void focal_loss_backward_kernel(cuda_t<T>* grad_logits,      // (N, C, S)
                                           const cuda_t<T>* grad_loss,  // (N, S) or (1)
                                           int64_t grad_loss_stride,
                                           const cuda_t<T>* logits,       // (N, C, S)
                                           const loss_compute_t<T>* lse,  // (N, S)
                                           const int64_t* target,         // (N, S)
                                           const cuda_t<T>* alpha,        // (C) or null
                                           FocalLossDesc d) {
  using C = loss_compute_t<T>;
  using V = cuda_t<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= d.batch * d.spatial) return;
  const int64_t n = i / d.spatial, s = i % d.spatial, y = target[i];
  const int64_t offset = n * d.classes * d.spatial + s;
  V* g = grad_logits + offset;
  const V* z = logits + offset;
  if (y < 0 || y >= d.classes) {
    for (int64_t c = 0; c < d.classes; ++c) g[c * d.spatial] = static_cast<V>(C(0));
    return;
  }
  const C a = alpha ? static_cast<C>(alpha[y]) : C(1);
  const C factor = static_cast<C>(grad_loss[i * grad_loss_stride]) *
                   loss::focal_factor<C>(static_cast<C>(z[y * d.spatial]) - lse[i], a, static_cast<C>(d.gamma));
  for (int64_t c = 0; c < d.classes; ++c) {
    const C p = loss::math_exp(static_cast<C>(z[c * d.spatial]) - lse[i]);
    g[c * d.spatial] = static_cast<V>(factor * ((c == y ? C(1) : C(0)) - p));
  }
}

// Binary cross-entropy: one thread per element, grid-stride.
template <typename T, bool kBackward>
__global__ void binary_cross_entropy_kernel(cuda_t<T>* out,              // (outer, channels, inner)
                                            const cuda_t<T>* grad_loss,  // (outer, channels, inner), (1) or null
                                            int64_t grad_loss_stride,
                                            const cuda_t<T>* logits,      // (outer, channels, inner)
                                            const cuda_t<T>* target,      // (outer, channels, inner)
                                            const cuda_t<T>* pos_weight,  // (channels) or null
                                            BinaryCrossEntropyDesc d) {
  using C = loss_compute_t<T>;
  const int64_t count = d.outer * d.channels * d.inner;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const C p = pos_weight ? static_cast<C>(pos_weight[(i / d.inner) % d.channels]) : C(1);
    const C x = static_cast<C>(logits[i]), y = static_cast<C>(target[i]);
    if constexpr (kBackward) {
      out[i] = static_cast<cuda_t<T>>(static_cast<C>(grad_loss[i * grad_loss_stride]) *
                                      loss::binary_cross_entropy_element_grad(x, y, p));
    } else {
      out[i] = static_cast<cuda_t<T>>(loss::binary_cross_entropy_element(x, y, p));
    }
  }
}

template <typename T, bool kBackward>
void launch_binary_cross_entropy(T* out, const T* grad_loss, int64_t grad_loss_stride, const T* logits, const T* target,
                                 const T* pos_weight, const BinaryCrossEntropyDesc& d, Stream stream) {
  const int64_t count = d.outer * d.channels * d.inner;
  if (count == 0) return;
  constexpr int64_t kMaxBlocks = 65536;  // grid-stride beyond this
  SE_LAUNCH((binary_cross_entropy_kernel<T, kBackward>),
            ceil_div(std::min(count, kMaxBlocks * kPixelThreads), kPixelThreads), kPixelThreads, 0, stream,
            reinterpret_cast<cuda_t<T>*>(out), reinterpret_cast<const cuda_t<T>*>(grad_loss), grad_loss_stride,
            reinterpret_cast<const cuda_t<T>*>(logits), reinterpret_cast<const cuda_t<T>*>(target),
            reinterpret_cast<const cuda_t<T>*>(pos_weight), d);
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

template <typename T>
void focal_loss_forward(T* loss, T* valid, loss_compute_t<T>* lse, int64_t* bad_target, const T* logits,
                        const int64_t* target, const T* alpha, const FocalLossDesc& d, Stream stream) {
  const int64_t pixels = d.batch * d.spatial;
  if (pixels == 0) return;
  SE_CHECK(pixels / kPixelThreads < (int64_t{1} << 31), "focal_loss: ", pixels, " pixels exceed the grid limit");
  SE_LAUNCH((focal_loss_forward_kernel<T>), ceil_div(pixels, kPixelThreads), kPixelThreads, 0, stream,
            reinterpret_cast<cuda_t<T>*>(loss), reinterpret_cast<cuda_t<T>*>(valid), lse,
            reinterpret_cast<unsigned long long*>(bad_target), reinterpret_cast<const cuda_t<T>*>(logits), target,
            reinterpret_cast<const cuda_t<T>*>(alpha), d);
}

template <typename T>
void focal_loss_backward(T* grad_logits, const T* grad_loss, int64_t grad_loss_stride, const T* logits,
                         const loss_compute_t<T>* lse, const int64_t* target, const T* alpha, const FocalLossDesc& d,
                         Stream stream) {
  const int64_t pixels = d.batch * d.spatial;
  if (pixels == 0) return;
  SE_CHECK(pixels / kPixelThreads < (int64_t{1} << 31), "focal_loss: ", pixels, " pixels exceed the grid limit");
  SE_LAUNCH((focal_loss_backward_kernel<T>), ceil_div(pixels, kPixelThreads), kPixelThreads, 0, stream,
            reinterpret_cast<cuda_t<T>*>(grad_logits), reinterpret_cast<const cuda_t<T>*>(grad_loss), grad_loss_stride,
            reinterpret_cast<const cuda_t<T>*>(logits), lse, target, reinterpret_cast<const cuda_t<T>*>(alpha), d);
}

template <typename T>
void binary_cross_entropy_forward(T* loss, const T* logits, const T* target, const T* pos_weight,
                                  const BinaryCrossEntropyDesc& d, Stream stream) {
  launch_binary_cross_entropy<T, false>(loss, nullptr, 0, logits, target, pos_weight, d, stream);
}

template <typename T>
void binary_cross_entropy_backward(T* grad_logits, const T* grad_loss, int64_t grad_loss_stride, const T* logits,
                                   const T* target, const T* pos_weight, const BinaryCrossEntropyDesc& d,
                                   Stream stream) {
  launch_binary_cross_entropy<T, true>(grad_logits, grad_loss, grad_loss_stride, logits, target, pos_weight, d, stream);
}

#define SE_INSTANTIATE(T)                                                                                            \
  template void cross_entropy_forward<T>(T*, T*, loss_compute_t<T>*, int64_t*, const T*, const int64_t*, const T*,   \
                                         const CrossEntropyDesc&, Stream);                                           \
  template void cross_entropy_backward<T>(T*, const T*, int64_t, const T*, const loss_compute_t<T>*, const int64_t*, \
                                          const T*, const CrossEntropyDesc&, Stream);                                \
  template void binary_cross_entropy_forward<T>(T*, const T*, const T*, const T*, const BinaryCrossEntropyDesc&,     \
                                                Stream);                                                             \
  template void focal_loss_forward<T>(T*, T*, loss_compute_t<T>*, int64_t*, const T*, const int64_t*, const T*,      \
                                      const FocalLossDesc&, Stream);                                                 \
  template void focal_loss_backward<T>(T*, const T*, int64_t, const T*, const loss_compute_t<T>*, const int64_t*,    \
                                       const T*, const FocalLossDesc&, Stream);                                      \
  template void binary_cross_entropy_backward<T>(T*, const T*, int64_t, const T*, const T*, const T*,                \
                                                 const BinaryCrossEntropyDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
#undef SE_INSTANTIATE

}  // namespace se::kernels::cuda
