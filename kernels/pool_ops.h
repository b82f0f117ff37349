// The per-element work of kernels/pool.h, shared by kernels/cpu/pool.cpp and kernels/cuda/pool.cu so that
// both backends pick the same argmax and sum in the same order. E is the stored element type (se::f16 on
// the host, __half in CUDA, ...); C is the compute type. Backward is a gather: each input cell sums the
// gradients of the outputs whose window holds it, which needs no atomics and is deterministic (the CPU
// scatters row by row in the same order, see kernels/cpu/pool.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/pool.h"

namespace se::kernels::pool_ops {

template <typename E>
using compute_t = std::conditional_t<std::is_same_v<E, double>, double, float>;

SE_HOST_DEVICE inline int64_t min_of(int64_t a, int64_t b) {
  return a < b ? a : b;
}
SE_HOST_DEVICE inline int64_t max_of(int64_t a, int64_t b) {
  return a > b ? a : b;
}
// Floor and ceiling of a / b for b > 0 and any sign of a.
SE_HOST_DEVICE inline int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
SE_HOST_DEVICE inline int64_t ceil_div(int64_t a, int64_t b) {
  return -floor_div(-a, b);
}

// Indices [first, last) along one axis.
struct IndexRange {
  int64_t first, last;
};
// The window of output o along one axis of max_pool2d, clipped to the input: its first cell on the
// dilation grid at or after 0, and one past its last cell.
SE_HOST_DEVICE inline IndexRange max_window_span(int64_t o, int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                                                 int64_t dilation) {
  int64_t first = o * stride - pad;
  const int64_t last = min_of(first + (kernel - 1) * dilation + 1, in);
  while (first < 0) first += dilation;
  return {first, last};
}

// Whether window value v replaces the maximum so far: when greater, or when the first NaN (which then
// stays: PyTorch ends its search there). Branch-free, so random data does not mispredict.
template <typename C>
SE_HOST_DEVICE inline bool max_takes(C v, C best) {
  return (v > best) | ((v != v) & (best == best));
}

// Max over the window rows x cols of one plane; writes the argmax to *index. Like PyTorch, the index
// starts at the first in-range cell, so an all -inf window still names a real cell.
template <typename E>
SE_HOST_DEVICE inline E max_window_scan(const E* x,  // (in_h, in_w), one plane
                                        int64_t in_w, IndexRange rows, IndexRange cols, int64_t dilation_h,
                                        int64_t dilation_w, int64_t* index) {
  using C = compute_t<E>;
  int64_t best_index = rows.first * in_w + cols.first;
  C best_value = -static_cast<C>(INFINITY);
  E best = static_cast<E>(best_value);
  for (int64_t h = rows.first; h < rows.last; h += dilation_h) {
    for (int64_t w = cols.first; w < cols.last; w += dilation_w) {
      const E e = x[h * in_w + w];
      const C v = static_cast<C>(e);
      const bool take = max_takes(v, best_value);
      best_value = take ? v : best_value;
      best = take ? e : best;
      best_index = take ? h * in_w + w : best_index;
    }
  }
  *index = best_index;
  return best;
}

// Max over the window of output (oh, ow) of one plane, as max_window_scan.
template <typename E>
SE_HOST_DEVICE inline E max_window(const E* x,  // (in_h, in_w), one plane
                                   const Pool2dDesc& d, int64_t oh, int64_t ow, int64_t* index) {
  return max_window_scan(x, d.in_w, max_window_span(oh, d.in_h, d.kernel_h, d.stride_h, d.pad_h, d.dilation_h),
                         max_window_span(ow, d.in_w, d.kernel_w, d.stride_w, d.pad_w, d.dilation_w), d.dilation_h,
                         d.dilation_w, index);
}

// The outputs [first, last) along one axis whose window [o * stride - pad, o * stride - pad + extent)
// holds input cell i (extent = dilation (kernel - 1) + 1), clipped to [0, out).
SE_HOST_DEVICE inline IndexRange outputs_holding(int64_t i, int64_t extent, int64_t stride, int64_t pad, int64_t out) {
  return {max_of(ceil_div(i + pad - (extent - 1), stride), 0), min_of(floor_div(i + pad, stride) + 1, out)};
}

// Gradient of input cell (ih, iw) of one plane: the outputs whose window may hold it are those with
// oh * stride - pad in [ih - dilation (kernel - 1), ih]; those whose argmax is this cell contribute.
template <typename E>
SE_HOST_DEVICE inline E max_pool_grad_at(const E* grad_y,         // (out_h, out_w), one plane
                                         const int64_t* indices,  // (out_h, out_w), one plane
                                         const Pool2dDesc& d, int64_t ih, int64_t iw) {
  using C = compute_t<E>;
  const IndexRange oh_span = outputs_holding(ih, (d.kernel_h - 1) * d.dilation_h + 1, d.stride_h, d.pad_h, d.out_h);
  const IndexRange ow_span = outputs_holding(iw, (d.kernel_w - 1) * d.dilation_w + 1, d.stride_w, d.pad_w, d.out_w);
  const int64_t self = ih * d.in_w + iw;
  C sum = 0;
  for (int64_t oh = oh_span.first; oh < oh_span.last; ++oh) {
    for (int64_t ow = ow_span.first; ow < ow_span.last; ++ow) {
      if (indices[oh * d.out_w + ow] == self) sum += static_cast<C>(grad_y[oh * d.out_w + ow]);
    }
  }
  return static_cast<E>(sum);
}

template <typename E>
SE_HOST_DEVICE inline E avg_window(const E* x,  // (in_h, in_w), one plane
                                   const Pool2dDesc& d, int64_t oh, int64_t ow) {
  using C = compute_t<E>;
  const int64_t h0 = max_of(oh * d.stride_h - d.pad_h, 0), w0 = max_of(ow * d.stride_w - d.pad_w, 0);
  const int64_t h1 = min_of(oh * d.stride_h - d.pad_h + d.kernel_h, d.in_h);
  const int64_t w1 = min_of(ow * d.stride_w - d.pad_w + d.kernel_w, d.in_w);
  C sum = 0;
  for (int64_t h = h0; h < h1; ++h) {
    for (int64_t w = w0; w < w1; ++w) sum += static_cast<C>(x[h * d.in_w + w]);
  }
  return static_cast<E>(sum / static_cast<C>(avg_pool_divisor(d, oh, ow)));
}

template <typename E>
SE_HOST_DEVICE inline E avg_pool_grad_at(const E* grad_y,  // (out_h, out_w), one plane
                                         const Pool2dDesc& d, int64_t ih, int64_t iw) {
  using C = compute_t<E>;
  const IndexRange oh_span = outputs_holding(ih, d.kernel_h, d.stride_h, d.pad_h, d.out_h);
  const IndexRange ow_span = outputs_holding(iw, d.kernel_w, d.stride_w, d.pad_w, d.out_w);
  C sum = 0;
  for (int64_t oh = oh_span.first; oh < oh_span.last; ++oh) {
    for (int64_t ow = ow_span.first; ow < ow_span.last; ++ow) {
      sum += static_cast<C>(grad_y[oh * d.out_w + ow]) / static_cast<C>(avg_pool_divisor(d, oh, ow));
    }
  }
  return static_cast<E>(sum);
}

// The mean of bin (oh, ow). Its sum runs in kAdaptiveLanes partial sums (lane = column offset in the bin
// mod kAdaptiveLanes), added pairwise at the end: global pooling sums thousands of cells, and one add
// chain would wait on each add's latency and keep the CPU's loop scalar; independent chains vectorize
// there and overlap a GPU thread's loads. The order is fixed, so both backends give the same bits.
constexpr int kAdaptiveLanes = 16;

template <typename E>
SE_HOST_DEVICE inline E adaptive_avg_window(const E* x,  // (in_h, in_w), one plane
                                            const AdaptivePool2dDesc& d, int64_t oh, int64_t ow) {
  using C = compute_t<E>;
  const int64_t h0 = adaptive_start(oh, d.in_h, d.out_h), h1 = adaptive_end(oh, d.in_h, d.out_h);
  const int64_t w0 = adaptive_start(ow, d.in_w, d.out_w), w1 = adaptive_end(ow, d.in_w, d.out_w);
  C lanes[kAdaptiveLanes] = {};
  for (int64_t h = h0; h < h1; ++h) {
    const E* row = x + h * d.in_w;
    int64_t w = w0;
    for (; w + kAdaptiveLanes <= w1; w += kAdaptiveLanes) {
      for (int l = 0; l < kAdaptiveLanes; ++l) lanes[l] += static_cast<C>(row[w + l]);
    }
    // The row's tail, into the first lanes. A GPU thread keeps `lanes` in registers only while every index
    // is a constant, hence the predicated form there; the CPU runs the shorter loop. Same sums either way.
#ifdef __CUDA_ARCH__
#pragma unroll
    for (int l = 0; l < kAdaptiveLanes; ++l) {
      if (w + l < w1) lanes[l] += static_cast<C>(row[w + l]);
    }
#else
    for (int64_t l = 0; w + l < w1; ++l) lanes[l] += static_cast<C>(row[w + l]);
#endif
  }
  for (int width = kAdaptiveLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) lanes[l] += lanes[l + width];
  }
  return static_cast<E>(lanes[0] / static_cast<C>((h1 - h0) * (w1 - w0)));
}

// Input cell i lies in the adaptive bins o with floor(i * out / in) <= o < ceil((i + 1) * out / in).
template <typename E>
SE_HOST_DEVICE inline E adaptive_avg_pool_grad_at(const E* grad_y,  // (out_h, out_w), one plane
                                                  const AdaptivePool2dDesc& d, int64_t ih, int64_t iw) {
  using C = compute_t<E>;
  const int64_t oh0 = adaptive_start(ih, d.out_h, d.in_h), oh1 = adaptive_end(ih, d.out_h, d.in_h);
  const int64_t ow0 = adaptive_start(iw, d.out_w, d.in_w), ow1 = adaptive_end(iw, d.out_w, d.in_w);
  C sum = 0;
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const int64_t rows = adaptive_end(oh, d.in_h, d.out_h) - adaptive_start(oh, d.in_h, d.out_h);
    for (int64_t ow = ow0; ow < ow1; ++ow) {
      const int64_t cols = adaptive_end(ow, d.in_w, d.out_w) - adaptive_start(ow, d.in_w, d.out_w);
      sum += static_cast<C>(grad_y[oh * d.out_w + ow]) / static_cast<C>(rows * cols);
    }
  }
  return static_cast<E>(sum);
}

}  // namespace se::kernels::pool_ops
