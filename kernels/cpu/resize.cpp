// CPU resize: forward in OpenMP loops over (plane, output row); backward scatters each plane's output
// gradients into a compute-type buffer (one plane per task, so no two threads share a destination) and
// rounds once at the end.
#include "kernels/resize.h"

#include <vector>

#include "kernels/resize_ops.h"

namespace se::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = 16384;

}  // namespace

template <typename T>
void resize_forward(T* y, const T* x, const ResizeDesc& d, Stream) {
  using C = resize_ops::compute_t<T>;
  const auto ah = resize_ops::axis_h<C>(d);
  const auto aw = resize_ops::axis_w<C>(d);
#pragma omp parallel for schedule(static) if (d.planes * d.out_h * d.out_w >= kParallelWork)
  for (int64_t task = 0; task < d.planes * d.out_h; ++task) {
    const int64_t p = task / d.out_h, oh = task % d.out_h;
    for (int64_t ow = 0; ow < d.out_w; ++ow)
      y[task * d.out_w + ow] = resize_ops::resize_at(x + p * d.in_h * d.in_w, ah, aw, oh, ow);
  }
}

template <typename T>
void resize_backward(T* grad_x, const T* grad_y, const ResizeDesc& d, Stream) {
  using C = resize_ops::compute_t<T>;
  const auto ah = resize_ops::axis_h<C>(d);
  const auto aw = resize_ops::axis_w<C>(d);
#pragma omp parallel for schedule(static) if (d.planes * d.out_h * d.out_w >= kParallelWork)
  for (int64_t p = 0; p < d.planes; ++p) {
    std::vector<C> acc(static_cast<size_t>(d.in_h * d.in_w), C(0));
    const T* g = grad_y + p * d.out_h * d.out_w;
    for (int64_t oh = 0; oh < d.out_h; ++oh) {
      const resize_ops::Taps<C> h = ah.taps(oh);
      for (int64_t ow = 0; ow < d.out_w; ++ow) {
        const resize_ops::Taps<C> w = aw.taps(ow);
        const C v = static_cast<C>(g[oh * d.out_w + ow]);
        acc[h.i0 * d.in_w + w.i0] += h.w0 * w.w0 * v;
        acc[h.i0 * d.in_w + w.i1] += h.w0 * w.w1 * v;
        acc[h.i1 * d.in_w + w.i0] += h.w1 * w.w0 * v;
        acc[h.i1 * d.in_w + w.i1] += h.w1 * w.w1 * v;
      }
    }
    for (int64_t k = 0; k < d.in_h * d.in_w; ++k) grad_x[p * d.in_h * d.in_w + k] = static_cast<T>(acc[k]);
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

}  // namespace se::kernels::cpu
