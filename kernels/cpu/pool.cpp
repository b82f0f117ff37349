// CPU pooling: the shared per-element work of kernels/pool_ops.h in OpenMP loops over (plane, row).
#include "kernels/pool.h"

#include "kernels/pool_ops.h"

namespace se::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = 16384;

// Calls body(plane, row) for every row of `rows`-row planes, in parallel for large work.
template <typename Body>
void for_each_row(int64_t planes, int64_t rows, int64_t work, Body body) {
#pragma omp parallel for schedule(static) if (work >= kParallelWork)
  for (int64_t task = 0; task < planes * rows; ++task) body(task / rows, task % rows);
}

}  // namespace

template <typename T>
void max_pool2d_forward(T* y, int64_t* indices, const T* x, const Pool2dDesc& d, Stream) {
  for_each_row(d.planes, d.out_h, d.planes * d.out_h * d.out_w * d.kernel_h * d.kernel_w, [&](int64_t p, int64_t oh) {
    const int64_t row = (p * d.out_h + oh) * d.out_w;
    for (int64_t ow = 0; ow < d.out_w; ++ow) {
      y[row + ow] = pool_ops::max_window(x + p * d.in_h * d.in_w, d, oh, ow, &indices[row + ow]);
    }
  });
}

template <typename T>
void max_pool2d_backward(T* grad_x, const T* grad_y, const int64_t* indices, const Pool2dDesc& d, Stream) {
  const int64_t out_plane = d.out_h * d.out_w;
  for_each_row(d.planes, d.in_h, d.planes * d.in_h * d.in_w * d.kernel_h * d.kernel_w, [&](int64_t p, int64_t ih) {
    for (int64_t iw = 0; iw < d.in_w; ++iw) {
      grad_x[(p * d.in_h + ih) * d.in_w + iw] =
          pool_ops::max_pool_grad_at(grad_y + p * out_plane, indices + p * out_plane, d, ih, iw);
    }
  });
}

template <typename T>
void avg_pool2d_forward(T* y, const T* x, const Pool2dDesc& d, Stream) {
  for_each_row(d.planes, d.out_h, d.planes * d.out_h * d.out_w * d.kernel_h * d.kernel_w, [&](int64_t p, int64_t oh) {
    for (int64_t ow = 0; ow < d.out_w; ++ow) {
      y[(p * d.out_h + oh) * d.out_w + ow] = pool_ops::avg_window(x + p * d.in_h * d.in_w, d, oh, ow);
    }
  });
}

template <typename T>
void avg_pool2d_backward(T* grad_x, const T* grad_y, const Pool2dDesc& d, Stream) {
  for_each_row(d.planes, d.in_h, d.planes * d.in_h * d.in_w * d.kernel_h * d.kernel_w, [&](int64_t p, int64_t ih) {
    for (int64_t iw = 0; iw < d.in_w; ++iw) {
      grad_x[(p * d.in_h + ih) * d.in_w + iw] = pool_ops::avg_pool_grad_at(grad_y + p * d.out_h * d.out_w, d, ih, iw);
    }
  });
}

template <typename T>
void adaptive_avg_pool2d_forward(T* y, const T* x, const AdaptivePool2dDesc& d, Stream) {
  for_each_row(d.planes, d.out_h, d.planes * d.in_h * d.in_w, [&](int64_t p, int64_t oh) {
    for (int64_t ow = 0; ow < d.out_w; ++ow) {
      y[(p * d.out_h + oh) * d.out_w + ow] = pool_ops::adaptive_avg_window(x + p * d.in_h * d.in_w, d, oh, ow);
    }
  });
}

template <typename T>
void adaptive_avg_pool2d_backward(T* grad_x, const T* grad_y, const AdaptivePool2dDesc& d, Stream) {
  for_each_row(d.planes, d.in_h, d.planes * d.in_h * d.in_w, [&](int64_t p, int64_t ih) {
    for (int64_t iw = 0; iw < d.in_w; ++iw) {
      grad_x[(p * d.in_h + ih) * d.in_w + iw] =
          pool_ops::adaptive_avg_pool_grad_at(grad_y + p * d.out_h * d.out_w, d, ih, iw);
    }
  });
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

}  // namespace se::kernels::cpu
