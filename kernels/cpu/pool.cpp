// CPU pooling: the shared per-element work of kernels/pool_ops.h in OpenMP loops over (plane, row).
// The backward kernels scatter each input row's gradients from the outputs whose windows reach that row
// instead of gathering cell by cell (pool_ops::*_grad_at, as CUDA does): the window arithmetic then runs
// once per row and output rather than once per input cell, and every cell still receives the same terms
// in the same order (output row, then output column), so both backends round identically.
#include "kernels/pool.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/pool_ops.h"

namespace se::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = 16384;

// Per-thread working rows of the kernels below.
template <typename C>
struct RowScratch {
  std::vector<C> values;
  std::vector<int32_t> positions;
};

// Calls body(plane, row, scratch) for every row of `rows`-row planes, in parallel for large work; scratch
// is the calling thread's, with `values` and `positions` entries.
template <typename C, typename Body>
void for_each_row(int64_t planes, int64_t rows, int64_t work, int64_t values, int64_t positions, Body body) {
#pragma omp parallel if (work >= kParallelWork)
  {
    RowScratch<C> scratch{std::vector<C>(values), std::vector<int32_t>(positions)};
#pragma omp for schedule(static)
    for (int64_t task = 0; task < planes * rows; ++task) body(task / rows, task % rows, scratch);
  }
}

// Calls add_row(plane, ih, acc) for every input row, where acc holds in_w zeros of the compute type to
// which add_row adds the row's gradient terms, followed by `extra` slots it may use freely; the sums are
// then rounded to T once, as the gather does.
template <typename T, typename AddRow>
void for_each_grad_row(T* grad_x,  // (planes, in_h, in_w)
                       int64_t planes, int64_t in_h, int64_t in_w, int64_t extra, int64_t work, AddRow add_row) {
  using C = pool_ops::compute_t<T>;
  for_each_row<C>(planes, in_h, work, in_w + extra, 0, [&](int64_t p, int64_t ih, RowScratch<C>& scratch) {
    C* acc = scratch.values.data();
    std::fill(acc, acc + in_w, C(0));
    add_row(p, ih, acc);
    T* row = grad_x + (p * in_h + ih) * in_w;
    for (int64_t iw = 0; iw < in_w; ++iw) row[iw] = static_cast<T>(acc[iw]);
  });
}

// The outputs along one axis whose window [o * stride - pad, o * stride - pad + extent) lies inside the
// input [0, in): for them, a row sweep needs no clipping.
pool_ops::IndexRange inner_outputs(int64_t out, int64_t in, int64_t extent, int64_t stride, int64_t pad) {
  const int64_t first = std::min(pool_ops::ceil_div(pad, stride), out);
  return {first, std::clamp(pool_ops::floor_div(in + pad - extent, stride) + 1, first, out)};
}

}  // namespace

// Outputs whose window columns all lie inside the input sweep the window cell by cell across the whole
// output row: the selects of neighbouring outputs are independent (they vectorize), and each output
// still visits its cells in max_window_scan's order, so it gets the same argmax, kept as the cell's
// position in the window (row-major from the first row inside the input). Outputs whose window reaches
// into the left or right padding use max_window_scan, and so do the rows of a window that lies in the
// padding only (padding beyond half the kernel, which the engine refuses, as PyTorch does).
template <typename T>
void max_pool2d_forward(T* y, int64_t* indices, const T* x, const Pool2dDesc& desc, Stream) {
  using C = pool_ops::compute_t<T>;
  const Pool2dDesc d = desc;  // a copy: the stores through y and indices cannot alias it
  const pool_ops::IndexRange inner =
      inner_outputs(d.out_w, d.in_w, (d.kernel_w - 1) * d.dilation_w + 1, d.stride_w, d.pad_w);
  std::vector<int64_t> cell_offset(d.kernel_h * d.kernel_w);  // of window position k from the window's first cell
  for (int64_t k = 0; k < d.kernel_h * d.kernel_w; ++k)
    cell_offset[k] = k / d.kernel_w * d.dilation_h * d.in_w + k % d.kernel_w * d.dilation_w;
  const int64_t work = d.planes * d.out_h * d.out_w * d.kernel_h * d.kernel_w;
  for_each_row<C>(d.planes, d.out_h, work, d.out_w, d.out_w, [&](int64_t p, int64_t oh, RowScratch<C>& scratch) {
    const T* plane = x + p * d.in_h * d.in_w;  // (in_h, in_w)
    T* y_row = y + (p * d.out_h + oh) * d.out_w;
    int64_t* index_row = indices + (p * d.out_h + oh) * d.out_w;
    const pool_ops::IndexRange rows =
        pool_ops::max_window_span(oh, d.in_h, d.kernel_h, d.stride_h, d.pad_h, d.dilation_h);
    const pool_ops::IndexRange sweep = rows.first < rows.last ? inner : pool_ops::IndexRange{0, 0};
    auto scan = [&](int64_t ow) {
      const pool_ops::IndexRange cols =
          pool_ops::max_window_span(ow, d.in_w, d.kernel_w, d.stride_w, d.pad_w, d.dilation_w);
      y_row[ow] = pool_ops::max_window_scan(plane, d.in_w, rows, cols, d.dilation_h, d.dilation_w, &index_row[ow]);
    };
    for (int64_t ow = 0; ow < sweep.first; ++ow) scan(ow);
    for (int64_t ow = sweep.last; ow < d.out_w; ++ow) scan(ow);
    C* best = scratch.values.data();
    int32_t* best_position = scratch.positions.data();
    std::fill(best + sweep.first, best + sweep.last, -static_cast<C>(INFINITY));
    std::fill(best_position + sweep.first, best_position + sweep.last, 0);
    int32_t position = 0;
    for (int64_t h = rows.first; h < rows.last; h += d.dilation_h) {
      for (int64_t kw = 0; kw < d.kernel_w; ++kw, ++position) {
        const T* cells = plane + h * d.in_w + kw * d.dilation_w;  // cells[ow * stride - pad]: output ow's cell
        for (int64_t ow = sweep.first; ow < sweep.last; ++ow) {
          const C v = static_cast<C>(cells[ow * d.stride_w - d.pad_w]);
          const bool take = pool_ops::max_takes(v, best[ow]);
          best[ow] = take ? v : best[ow];
          best_position[ow] = take ? position : best_position[ow];
        }
      }
    }
    for (int64_t ow = sweep.first; ow < sweep.last; ++ow) {
      const int64_t index = rows.first * d.in_w + ow * d.stride_w - d.pad_w + cell_offset[best_position[ow]];
      index_row[ow] = index;
      y_row[ow] = plane[index];
    }
  });
}

// Output (oh, ow) adds its gradient to the cell its argmax names when pool_ops::max_pool_grad_at would:
// the cell lies in row ih, inside the input and inside the window of column ow (always, for indices from
// the forward). A miss adds to a scratch slot of its own past the row instead, so the loop has no
// branch to mispredict on random data.
template <typename T>
void max_pool2d_backward(T* grad_x, const T* grad_y, const int64_t* indices, const Pool2dDesc& desc, Stream) {
  using C = pool_ops::compute_t<T>;
  const Pool2dDesc d = desc;
  const int64_t out_plane = d.out_h * d.out_w;
  const int64_t extent_h = (d.kernel_h - 1) * d.dilation_h + 1, extent_w = (d.kernel_w - 1) * d.dilation_w + 1;
  for_each_grad_row(grad_x, d.planes, d.in_h, d.in_w, d.out_w, d.planes * d.in_h * d.in_w * d.kernel_h * d.kernel_w,
                    [&](int64_t p, int64_t ih, C* acc) {
                      const pool_ops::IndexRange oh_span =
                          pool_ops::outputs_holding(ih, extent_h, d.stride_h, d.pad_h, d.out_h);
                      for (int64_t oh = oh_span.first; oh < oh_span.last; ++oh) {
                        const T* g = grad_y + p * out_plane + oh * d.out_w;
                        const int64_t* index = indices + p * out_plane + oh * d.out_w;
                        for (int64_t ow = 0; ow < d.out_w; ++ow) {
                          const int64_t col = index[ow] - ih * d.in_w;
                          const int64_t window_col = col - (ow * d.stride_w - d.pad_w);
                          const int64_t hit = (static_cast<uint64_t>(col) < static_cast<uint64_t>(d.in_w)) &
                                              (static_cast<uint64_t>(window_col) < static_cast<uint64_t>(extent_w));
                          const int64_t miss_slot = d.in_w + ow;
                          acc[miss_slot + ((col - miss_slot) & -hit)] += static_cast<C>(g[ow]);
                        }
                      }
                    });
}

// As max_pool2d_forward: outputs whose window lies inside the input columns sweep it across the row, each
// summing its cells in avg_window's order; the others use avg_window.
template <typename T>
void avg_pool2d_forward(T* y, const T* x, const Pool2dDesc& desc, Stream) {
  using C = pool_ops::compute_t<T>;
  const Pool2dDesc d = desc;
  const pool_ops::IndexRange inner = inner_outputs(d.out_w, d.in_w, d.kernel_w, d.stride_w, d.pad_w);
  const int64_t work = d.planes * d.out_h * d.out_w * d.kernel_h * d.kernel_w;
  for_each_row<C>(d.planes, d.out_h, work, d.out_w, 0, [&](int64_t p, int64_t oh, RowScratch<C>& scratch) {
    const T* plane = x + p * d.in_h * d.in_w;  // (in_h, in_w)
    T* y_row = y + (p * d.out_h + oh) * d.out_w;
    for (int64_t ow = 0; ow < inner.first; ++ow) y_row[ow] = pool_ops::avg_window(plane, d, oh, ow);
    for (int64_t ow = inner.last; ow < d.out_w; ++ow) y_row[ow] = pool_ops::avg_window(plane, d, oh, ow);
    C* sum = scratch.values.data();
    std::fill(sum + inner.first, sum + inner.last, C(0));
    const int64_t h1 = std::min(oh * d.stride_h - d.pad_h + d.kernel_h, d.in_h);
    for (int64_t h = std::max<int64_t>(oh * d.stride_h - d.pad_h, 0); h < h1; ++h) {
      for (int64_t kw = 0; kw < d.kernel_w; ++kw) {
        const T* cells = plane + h * d.in_w + kw;  // cells[ow * stride - pad]: output ow's cell
        for (int64_t ow = inner.first; ow < inner.last; ++ow)
          sum[ow] += static_cast<C>(cells[ow * d.stride_w - d.pad_w]);
      }
    }
    for (int64_t ow = inner.first; ow < inner.last; ++ow)
      y_row[ow] = static_cast<T>(sum[ow] / static_cast<C>(avg_pool_divisor(d, oh, ow)));
  });
}

// The divisor avg_pool_divisor(d, oh, ow) is the product of a row count and a column count; the column
// counts are computed once per call.
template <typename T>
void avg_pool2d_backward(T* grad_x, const T* grad_y, const Pool2dDesc& desc, Stream) {
  using C = pool_ops::compute_t<T>;
  const Pool2dDesc d = desc;
  std::vector<int64_t> col_count(d.out_w);
  for (int64_t ow = 0; ow < d.out_w; ++ow)
    col_count[ow] = avg_pool_axis_count(ow, d.in_w, d.kernel_w, d.stride_w, d.pad_w, d.count_include_pad);
  for_each_grad_row(grad_x, d.planes, d.in_h, d.in_w, 0, d.planes * d.in_h * d.in_w * d.kernel_h * d.kernel_w,
                    [&](int64_t p, int64_t ih, C* acc) {
                      const pool_ops::IndexRange oh_span =
                          pool_ops::outputs_holding(ih, d.kernel_h, d.stride_h, d.pad_h, d.out_h);
                      for (int64_t oh = oh_span.first; oh < oh_span.last; ++oh) {
                        const T* g = grad_y + (p * d.out_h + oh) * d.out_w;
                        const int64_t row_count =
                            avg_pool_axis_count(oh, d.in_h, d.kernel_h, d.stride_h, d.pad_h, d.count_include_pad);
                        for (int64_t ow = 0; ow < d.out_w; ++ow) {
                          const C term = static_cast<C>(g[ow]) / static_cast<C>(row_count * col_count[ow]);
                          const int64_t w0 = ow * d.stride_w - d.pad_w;
                          const int64_t w1 = std::min(w0 + d.kernel_w, d.in_w);
                          for (int64_t iw = std::max<int64_t>(w0, 0); iw < w1; ++iw) acc[iw] += term;
                        }
                      }
                    });
}

template <typename T>
void adaptive_avg_pool2d_forward(T* y, const T* x, const AdaptivePool2dDesc& d, Stream) {
  using C = pool_ops::compute_t<T>;
  for_each_row<C>(d.planes, d.out_h, d.planes * d.in_h * d.in_w, 0, 0, [&](int64_t p, int64_t oh, RowScratch<C>&) {
    for (int64_t ow = 0; ow < d.out_w; ++ow) {
      y[(p * d.out_h + oh) * d.out_w + ow] = pool_ops::adaptive_avg_window(x + p * d.in_h * d.in_w, d, oh, ow);
    }
  });
}

// Input row ih lies in the output rows [adaptive_start(ih, out_h, in_h), adaptive_end(ih, out_h, in_h)),
// exactly the bins whose [adaptive_start, adaptive_end) holds ih (pool_ops::adaptive_avg_pool_grad_at).
// The column bins are computed once per call.
template <typename T>
void adaptive_avg_pool2d_backward(T* grad_x, const T* grad_y, const AdaptivePool2dDesc& d, Stream) {
  using C = pool_ops::compute_t<T>;
  std::vector<pool_ops::IndexRange> col_bins(d.out_w);
  for (int64_t ow = 0; ow < d.out_w; ++ow)
    col_bins[ow] = {adaptive_start(ow, d.in_w, d.out_w), adaptive_end(ow, d.in_w, d.out_w)};
  for_each_grad_row(grad_x, d.planes, d.in_h, d.in_w, 0, d.planes * d.in_h * d.in_w,
                    [&](int64_t p, int64_t ih, C* acc) {
                      const int64_t oh1 = adaptive_end(ih, d.out_h, d.in_h);
                      for (int64_t oh = adaptive_start(ih, d.out_h, d.in_h); oh < oh1; ++oh) {
                        const T* g = grad_y + (p * d.out_h + oh) * d.out_w;
                        const int64_t rows = adaptive_end(oh, d.in_h, d.out_h) - adaptive_start(oh, d.in_h, d.out_h);
                        for (int64_t ow = 0; ow < d.out_w; ++ow) {
                          const pool_ops::IndexRange bin = col_bins[ow];
                          const C term = static_cast<C>(g[ow]) / static_cast<C>(rows * (bin.last - bin.first));
                          for (int64_t iw = bin.first; iw < bin.last; ++iw) acc[iw] += term;
                        }
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
