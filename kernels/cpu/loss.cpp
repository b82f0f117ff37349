// CPU loss family. Cross-entropy and focal loss work one pixel at a time (kernels/loss_math.h), pixels split over
// OpenMP threads in contiguous ranges, so the class-strided reads of neighbouring pixels share cache lines. Binary
// cross-entropy is elementwise.
#include "kernels/loss.h"

#include "kernels/loss_math.h"

namespace se::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = 16384;

}  // namespace

template <typename T>
void cross_entropy_forward(T* loss, T* pixel_weight, loss_compute_t<T>* lse, int64_t* bad_target, const T* logits,
                           const int64_t* target, const T* weight, const CrossEntropyDesc& d, Stream) {
  using C = loss_compute_t<T>;
  const int64_t pixels = d.batch * d.spatial;
  const C smoothing = static_cast<C>(d.label_smoothing);
#pragma omp parallel for schedule(static) if (pixels * d.classes >= kParallelWork)
  for (int64_t i = 0; i < pixels; ++i) {
    const int64_t n = i / d.spatial, s = i % d.spatial, y = target[i];
    loss[i] = T(0.0f);
    pixel_weight[i] = T(0.0f);
    lse[i] = 0;
    if (y == d.ignore_index) continue;
    if (y < 0 || y >= d.classes) {
#pragma omp atomic write
      *bad_target = y;
      continue;
    }
    const auto p = loss::cross_entropy_pixel<C>(logits + n * d.classes * d.spatial + s, d.spatial, d.classes, y, weight,
                                                smoothing);
    loss[i] = static_cast<T>(p.loss);
    pixel_weight[i] = static_cast<T>(p.weight);
    lse[i] = p.lse;
  }
}

template <typename T>
void cross_entropy_backward(T* grad_logits, const T* grad_loss, int64_t grad_loss_stride, const T* logits,
                            const loss_compute_t<T>* lse, const int64_t* target, const T* weight,
                            const CrossEntropyDesc& d, Stream) {
  using C = loss_compute_t<T>;
  const int64_t pixels = d.batch * d.spatial;
  const C smoothing = static_cast<C>(d.label_smoothing);
#pragma omp parallel for schedule(static) if (pixels * d.classes >= kParallelWork)
  for (int64_t i = 0; i < pixels; ++i) {
    const int64_t n = i / d.spatial, s = i % d.spatial, y = target[i];
    const int64_t offset = n * d.classes * d.spatial + s;
    if (y < 0 || y >= d.classes) {  // ignored (or invalid, which the forward reported)
      for (int64_t c = 0; c < d.classes; ++c) grad_logits[offset + c * d.spatial] = T(0.0f);
      continue;
    }
    loss::cross_entropy_pixel_backward<C>(grad_logits + offset, logits + offset, d.spatial, d.classes, y, weight,
                                          smoothing, lse[i], static_cast<C>(grad_loss[i * grad_loss_stride]));
  }
}

template <typename T>
void focal_loss_forward(T* loss, T* valid, loss_compute_t<T>* lse, int64_t* bad_target, const T* logits,
                        const int64_t* target, const T* alpha, const FocalLossDesc& d, Stream) {
  using C = loss_compute_t<T>;
  const int64_t pixels = d.batch * d.spatial;
  const C gamma = static_cast<C>(d.gamma);
#pragma omp parallel for schedule(static) if (pixels * d.classes >= kParallelWork)
  for (int64_t i = 0; i < pixels; ++i) {
    const int64_t n = i / d.spatial, s = i % d.spatial, y = target[i];
    loss[i] = T(0.0f);
    valid[i] = T(0.0f);
    lse[i] = 0;
    if (y == d.ignore_index) continue;
    if (y < 0 || y >= d.classes) {
#pragma omp atomic write
      *bad_target = y;
      continue;
    }
    const T* z = logits + n * d.classes * d.spatial + s;
    const C l = loss::log_sum_exp_pixel<C>(z, d.spatial, d.classes);
    const C a = alpha ? static_cast<C>(alpha[y]) : C(1);
    loss[i] = static_cast<T>(loss::focal_pixel<C>(static_cast<C>(z[y * d.spatial]) - l, a, gamma));
    valid[i] = T(1.0f);
    lse[i] = l;
  }
}

template <typename T>
void focal_loss_backward(T* grad_logits, const T* grad_loss, int64_t grad_loss_stride, const T* logits,
                         const loss_compute_t<T>* lse, const int64_t* target, const T* alpha, const FocalLossDesc& d,
                         Stream) {
  using C = loss_compute_t<T>;
  const int64_t pixels = d.batch * d.spatial;
  const C gamma = static_cast<C>(d.gamma);
#pragma omp parallel for schedule(static) if (pixels * d.classes >= kParallelWork)
  for (int64_t i = 0; i < pixels; ++i) {
    const int64_t n = i / d.spatial, s = i % d.spatial, y = target[i];
    const int64_t offset = n * d.classes * d.spatial + s;
    T* g = grad_logits + offset;
    const T* z = logits + offset;
    if (y < 0 || y >= d.classes) {
      for (int64_t c = 0; c < d.classes; ++c) g[c * d.spatial] = T(0.0f);
      continue;
    }
    const C a = alpha ? static_cast<C>(alpha[y]) : C(1);
    const C factor = static_cast<C>(grad_loss[i * grad_loss_stride]) *
                     loss::focal_factor<C>(static_cast<C>(z[y * d.spatial]) - lse[i], a, gamma);
    for (int64_t c = 0; c < d.classes; ++c) {
      const C p = loss::math_exp(static_cast<C>(z[c * d.spatial]) - lse[i]);
      g[c * d.spatial] = static_cast<T>(factor * ((c == y ? C(1) : C(0)) - p));
    }
  }
}

template <typename T>
void binary_cross_entropy_forward(T* loss, const T* logits, const T* target, const T* pos_weight,
                                  const BinaryCrossEntropyDesc& d, Stream) {
  using C = loss_compute_t<T>;
  const int64_t count = d.outer * d.channels * d.inner;
#pragma omp parallel for schedule(static) if (count >= kParallelWork)
  for (int64_t i = 0; i < count; ++i) {
    const C p = pos_weight ? static_cast<C>(pos_weight[(i / d.inner) % d.channels]) : C(1);
    loss[i] =
        static_cast<T>(loss::binary_cross_entropy_element(static_cast<C>(logits[i]), static_cast<C>(target[i]), p));
  }
}

template <typename T>
void binary_cross_entropy_backward(T* grad_logits, const T* grad_loss, int64_t grad_loss_stride, const T* logits,
                                   const T* target, const T* pos_weight, const BinaryCrossEntropyDesc& d, Stream) {
  using C = loss_compute_t<T>;
  const int64_t count = d.outer * d.channels * d.inner;
#pragma omp parallel for schedule(static) if (count >= kParallelWork)
  for (int64_t i = 0; i < count; ++i) {
    const C p = pos_weight ? static_cast<C>(pos_weight[(i / d.inner) % d.channels]) : C(1);
    grad_logits[i] = static_cast<T>(
        static_cast<C>(grad_loss[i * grad_loss_stride]) *
        loss::binary_cross_entropy_element_grad(static_cast<C>(logits[i]), static_cast<C>(target[i]), p));
  }
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

}  // namespace se::kernels::cpu
