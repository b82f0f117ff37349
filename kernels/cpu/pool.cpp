// CPU pooling: the shared per-element work of kernels/pool_ops.h in OpenMP loops over (plane, row).
// The backward kernels scatter each input row's gradients from the outputs whose windows reach that row
// instead of gathering cell by cell (pool_ops::*_grad_at, as CUDA does): the window arithmetic then runs
// once per row and output rather than once per input cell, and every cell still receives the same terms
// in the same order (output row, then output column), so both backends round identically.
#include "kernels/pool.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

// The window of max_pool2d along a row of outputs: its rows in the input, and its columns.
struct MaxWindow {
  pool_ops::IndexRange rows;  // clipped to the input, on the dilation grid
  int64_t dilation_h, kernel_w, dilation_w, stride_w, pad_w;
};

// Outputs [ow0, ow0 + kMaxBlock) of one row of max_pool2d, whose windows lie inside the input columns: y
// and the argmax as x's flat index in the plane. Each output visits its cells in max_window_scan's order
// (rows, then columns), so it gets the same maximum and index; the block's maxima and their offsets in
// the window stay in registers while all its cells pass, and neighbouring outputs are independent lanes.
// kStride: the column stride as a constant (1 and 2, the usual ones; 0 reads w.stride_w).
constexpr int64_t kMaxBlock = 16;

template <int kStride, typename T>
inline void max_block(T* __restrict y_row, int64_t* __restrict index_row, const T* plane, int64_t in_w,
                      const MaxWindow& w, int64_t ow0) {
  using C = pool_ops::compute_t<T>;
  const int64_t stride = kStride > 0 ? kStride : w.stride_w;
  const T* first_cells = plane + w.rows.first * in_w + ow0 * stride - w.pad_w;  // output ow0's window's first cell
  C best[kMaxBlock];
  int32_t best_offset[kMaxBlock];  // from the window's first cell (fits: max_pool_row_fits_int32)
  for (int l = 0; l < kMaxBlock; ++l) {
    best[l] = -static_cast<C>(INFINITY);
    best_offset[l] = 0;
  }
  for (int64_t h = w.rows.first; h < w.rows.last; h += w.dilation_h) {
    for (int64_t kw = 0; kw < w.kernel_w; ++kw) {
      const int32_t offset = static_cast<int32_t>((h - w.rows.first) * in_w + kw * w.dilation_w);
      const T* cells = first_cells + offset;  // cells[l * stride]: output ow0 + l's cell
      for (int l = 0; l < kMaxBlock; ++l) {
        const C v = static_cast<C>(cells[l * stride]);
        const bool take = pool_ops::max_takes(v, best[l]);
        best[l] = take ? v : best[l];
        best_offset[l] = take ? offset : best_offset[l];
      }
    }
  }
  const int64_t first_index = w.rows.first * in_w + ow0 * stride - w.pad_w;
  for (int l = 0; l < kMaxBlock; ++l) {
    y_row[ow0 + l] = static_cast<T>(best[l]);  // the cell's own value: C holds every T exactly
    index_row[ow0 + l] = first_index + l * stride + best_offset[l];
  }
}

// Outputs [first, last) of a row, at least kMaxBlock of them, in whole blocks; the last block ends at
// `last` and may recompute outputs of the one before it (the same values).
template <int kStride, typename T>
inline void max_blocks(T* y_row, int64_t* index_row, const T* plane, int64_t in_w, const MaxWindow& w, int64_t first,
                       int64_t last) {
  for (int64_t ow0 = first;; ow0 += kMaxBlock) {
    const int64_t at = std::min(ow0, last - kMaxBlock);
    max_block<kStride>(y_row, index_row, plane, in_w, w, at);
    if (at + kMaxBlock >= last) break;
  }
}

template <typename T>
inline void max_inner_row(T* y_row, int64_t* index_row, const T* plane, int64_t in_w, const MaxWindow& w,
                          int64_t first, int64_t last) {
  switch (w.stride_w) {
    case 1: return max_blocks<1>(y_row, index_row, plane, in_w, w, first, last);
    case 2: return max_blocks<2>(y_row, index_row, plane, in_w, w, first, last);
    default: return max_blocks<0>(y_row, index_row, plane, in_w, w, first, last);
  }
}

#if defined(__x86_64__)
// GCC 12's AVX-512 headers start some intrinsics from an undefined vector, which -Wuninitialized reports.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// max_block for f32 in AVX-512, one lane per output (GCC unrolls the portable one into scalar code): the
// same selects (pool_ops::max_takes: greater, or the first NaN) in the same cell order. kBlocks blocks of
// 16 outputs at a time keep their maxima and offsets in registers while the taps pass, each tap reading
// kBlocks consecutive vectors of its row (one block per tap read 3 rows a vector at a time, which the
// prefetchers did not follow: 3x slower). A stride-2 row is two loads and a permute, other strides
// gathers; all stay within the cells the outputs read.
template <int kBlocks>
__attribute__((target("avx512f"), always_inline)) inline void max_blocks_f32_avx512(
    float* y_row, int64_t* index_row, const float* plane, int64_t in_w, const MaxWindow& w, int64_t at) {
  const int64_t stride = w.stride_w;
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  // cells 0, 2, ..., 14 of a load at 0 and 16, 18, ..., 30 of a load at 15 (lanes 1, 3, ..., 15 of it)
  const __m512i pairs = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i strided = _mm512_mullo_epi32(lane, _mm512_set1_epi32(static_cast<int32_t>(stride)));
  const int64_t first_index = w.rows.first * in_w + at * stride - w.pad_w;  // output at's window's first cell
  const float* first_cells = plane + first_index;
  __m512 best[kBlocks];
  __m512i best_offset[kBlocks];
  for (int b = 0; b < kBlocks; ++b) {
    best[b] = _mm512_set1_ps(-INFINITY);
    best_offset[b] = _mm512_setzero_si512();
  }
  for (int64_t h = w.rows.first; h < w.rows.last; h += w.dilation_h) {
    for (int64_t kw = 0; kw < w.kernel_w; ++kw) {
      const int32_t offset = static_cast<int32_t>((h - w.rows.first) * in_w + kw * w.dilation_w);
      const __m512i offsets = _mm512_set1_epi32(offset);
      for (int b = 0; b < kBlocks; ++b) {
        const float* cells = first_cells + offset + b * kMaxBlock * stride;
        __m512 v;
        if (stride == 1) {
          v = _mm512_loadu_ps(cells);
        } else if (stride == 2) {
          v = _mm512_permutex2var_ps(_mm512_loadu_ps(cells), pairs, _mm512_loadu_ps(cells + 15));
        } else {
          v = _mm512_i32gather_ps(strided, cells, 4);
        }
        const __mmask16 take =
            _mm512_cmp_ps_mask(v, best[b], _CMP_GT_OQ) |
            (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best[b], best[b], _CMP_ORD_Q));
        best[b] = _mm512_mask_mov_ps(best[b], take, v);
        best_offset[b] = _mm512_mask_mov_epi32(best_offset[b], take, offsets);
      }
    }
  }
  const __m512i strided_lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(strided));
  const __m512i strided_hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(strided, 1));
  for (int b = 0; b < kBlocks; ++b) {
    const int64_t ow = at + b * kMaxBlock;
    _mm512_storeu_ps(y_row + ow, best[b]);
    const __m512i base = _mm512_set1_epi64(first_index + b * kMaxBlock * stride);
    _mm512_storeu_si512(index_row + ow, _mm512_add_epi64(_mm512_add_epi64(base, strided_lo),
                                                         _mm512_cvtepi32_epi64(_mm512_castsi512_si256(best_offset[b]))));
    _mm512_storeu_si512(index_row + ow + 8,
                        _mm512_add_epi64(_mm512_add_epi64(base, strided_hi),
                                         _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(best_offset[b], 1))));
  }
}

// Outputs [first, last) of a row (at least kMaxBlock), 4 blocks at a time where 4 fit, else 1; the last
// group ends at `last` and may recompute outputs of the one before it (the same values).
__attribute__((target("avx512f"))) void max_inner_row_f32_avx512(float* y_row, int64_t* index_row,
                                                                 const float* plane, int64_t in_w, const MaxWindow& w,
                                                                 int64_t first, int64_t last) {
  constexpr int64_t kWide = 4 * kMaxBlock;
  if (last - first >= kWide) {
    for (int64_t ow0 = first;; ow0 += kWide) {
      const int64_t at = std::min(ow0, last - kWide);
      max_blocks_f32_avx512<4>(y_row, index_row, plane, in_w, w, at);
      if (at + kWide >= last) return;
    }
  }
  for (int64_t ow0 = first;; ow0 += kMaxBlock) {
    const int64_t at = std::min(ow0, last - kMaxBlock);
    max_blocks_f32_avx512<1>(y_row, index_row, plane, in_w, w, at);
    if (at + kMaxBlock >= last) return;
  }
}

// max_pool2d in f32 where output rows are narrower than a block (U-Net's 2x2 pooling of 16 x 16 and
// smaller maps: the row sweep would leave every output to max_window_scan) and every window lies inside
// the input: 16 consecutive outputs of the flattened (plane, oh, ow) at a time, across rows and planes,
// each lane gathering its window's cells in max_window_scan's order (rows, then columns) with the same
// selects as above. Blocks [block0, block1) of 16, the last one ending at the last output and
// recomputing outputs of the one before it (the same values).
__attribute__((target("avx512f"))) void max_pool_flat_f32_avx512(float* y, int64_t* indices, const float* x,
                                                                 const Pool2dDesc& d, int64_t block0, int64_t block1) {
  const int64_t out_plane = d.out_h * d.out_w, in_plane = d.in_h * d.in_w, outputs = d.planes * out_plane;
  for (int64_t block = block0; block < block1; ++block) {
    const int64_t q = std::min(block * kMaxBlock, outputs - kMaxBlock);
    // Lane l: output q + l, its window's first cell in its plane, and that cell's offset from plane p0.
    const int64_t p0 = q / out_plane;
    int64_t p = p0, oh = q % out_plane / d.out_w, ow = q % d.out_w;
    alignas(64) int32_t first_cell[kMaxBlock], lane_offset[kMaxBlock];
    for (int l = 0; l < kMaxBlock; ++l) {
      first_cell[l] = static_cast<int32_t>(oh * d.stride_h * d.in_w + ow * d.stride_w);
      lane_offset[l] = static_cast<int32_t>((p - p0) * in_plane) + first_cell[l];
      if (++ow == d.out_w) ow = 0, oh = oh + 1 == d.out_h ? (++p, 0) : oh + 1;
    }
    const __m512i offsets = _mm512_load_si512(lane_offset);
    const float* base = x + p0 * in_plane;
    __m512 best = _mm512_set1_ps(-INFINITY);
    __m512i best_offset = _mm512_setzero_si512();
    for (int64_t kh = 0; kh < d.kernel_h; ++kh) {
      for (int64_t kw = 0; kw < d.kernel_w; ++kw) {
        const int32_t tap = static_cast<int32_t>(kh * d.dilation_h * d.in_w + kw * d.dilation_w);
        const __m512i taps = _mm512_set1_epi32(tap);
        const __m512 v = _mm512_i32gather_ps(_mm512_add_epi32(offsets, taps), base, 4);
        const __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |
                               (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q));
        best = _mm512_mask_mov_ps(best, take, v);
        best_offset = _mm512_mask_mov_epi32(best_offset, take, taps);
      }
    }
    _mm512_storeu_ps(y + q, best);
    const __m512i index = _mm512_add_epi32(_mm512_load_si512(first_cell), best_offset);  // in its plane
    _mm512_storeu_si512(indices + q, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(index)));
    _mm512_storeu_si512(indices + q + 8, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(index, 1)));
  }
}
#pragma GCC diagnostic pop
#endif

using MaxInnerRowF32 = void (*)(float*, int64_t*, const float*, int64_t, const MaxWindow&, int64_t, int64_t);
using MaxPoolFlatF32 = void (*)(float*, int64_t*, const float*, const Pool2dDesc&, int64_t, int64_t);

MaxPoolFlatF32 pick_max_pool_flat_f32() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) return max_pool_flat_f32_avx512;
#endif
  return nullptr;
}

// Whether max_pool_flat_f32_avx512 takes d: rows narrower than a block, at least one block of outputs,
// every window inside the input (no padding, no ceil-mode window over the edge), and the offsets of a
// block's cells (within 17 planes) in int32.
bool max_pool_runs_flat(const Pool2dDesc& d) {
  const int64_t extent_h = (d.kernel_h - 1) * d.dilation_h + 1, extent_w = (d.kernel_w - 1) * d.dilation_w + 1;
  return d.out_w < kMaxBlock && d.planes * d.out_h * d.out_w >= kMaxBlock && d.pad_h == 0 && d.pad_w == 0 &&
         (d.out_h - 1) * d.stride_h + extent_h <= d.in_h && (d.out_w - 1) * d.stride_w + extent_w <= d.in_w &&
         (kMaxBlock + 1) * d.in_h * d.in_w < INT32_MAX;
}

MaxInnerRowF32 pick_max_inner_row_f32() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) return max_inner_row_f32_avx512;
#endif
  return max_inner_row<float>;
}

}  // namespace

// Outputs whose window columns all lie inside the input go in register blocks across the row (max_block);
// the others, outputs whose window reaches into the left or right padding, use max_window_scan, and so
// do whole rows whose window lies in the padding only (padding beyond half the kernel, which the engine
// refuses, as PyTorch does) or that hold fewer such outputs than a block.
template <typename T>
void max_pool2d_forward(T* y, int64_t* indices, const T* x, const Pool2dDesc& desc, Stream) {
  using C = pool_ops::compute_t<T>;
  const Pool2dDesc d = desc;  // a copy: the stores through y and indices cannot alias it
  const pool_ops::IndexRange inner =
      inner_outputs(d.out_w, d.in_w, (d.kernel_w - 1) * d.dilation_w + 1, d.stride_w, d.pad_w);
  // A window's cell offsets from its first cell must fit max_block's int32 lanes.
  const bool offsets_fit = (d.kernel_h - 1) * d.dilation_h * d.in_w + (d.kernel_w - 1) * d.dilation_w < INT32_MAX;
  const bool blocks = offsets_fit && inner.last - inner.first >= kMaxBlock;
  const int64_t work = d.planes * d.out_h * d.out_w * d.kernel_h * d.kernel_w;
  if constexpr (std::is_same_v<T, float>) {
    static const MaxPoolFlatF32 flat = pick_max_pool_flat_f32();
    if (flat != nullptr && max_pool_runs_flat(d)) {
      // Whole blocks in runs of 64; a last, overlapping block goes with the run of the block it overlaps,
      // so that no two threads write the same outputs.
      const int64_t outputs = d.planes * d.out_h * d.out_w, whole = outputs / kMaxBlock;
      const int64_t tail = outputs % kMaxBlock != 0 ? 1 : 0;
#pragma omp parallel for schedule(static) if (work >= kParallelWork)
      for (int64_t b = 0; b < whole; b += 64) {
        flat(y, indices, x, d, b, b + 64 >= whole ? whole + tail : b + 64);
      }
      return;
    }
  }
  for_each_row<C>(d.planes, d.out_h, work, 0, 0, [&](int64_t p, int64_t oh, RowScratch<C>&) {
    const T* plane = x + p * d.in_h * d.in_w;  // (in_h, in_w)
    T* y_row = y + (p * d.out_h + oh) * d.out_w;
    int64_t* index_row = indices + (p * d.out_h + oh) * d.out_w;
    const MaxWindow w{pool_ops::max_window_span(oh, d.in_h, d.kernel_h, d.stride_h, d.pad_h, d.dilation_h),
                      d.dilation_h, d.kernel_w, d.dilation_w, d.stride_w, d.pad_w};
    const pool_ops::IndexRange swept =
        blocks && w.rows.first < w.rows.last ? inner : pool_ops::IndexRange{d.out_w, d.out_w};
    for (int64_t ow = 0; ow < d.out_w; ++ow) {
      if (ow == swept.first) ow = swept.last;
      if (ow == d.out_w) break;
      const pool_ops::IndexRange cols =
          pool_ops::max_window_span(ow, d.in_w, d.kernel_w, d.stride_w, d.pad_w, d.dilation_w);
      y_row[ow] = pool_ops::max_window_scan(plane, d.in_w, w.rows, cols, d.dilation_h, d.dilation_w, &index_row[ow]);
    }
    if (swept.first < swept.last) {
      if constexpr (std::is_same_v<T, float>) {
        static const MaxInnerRowF32 f32_row = pick_max_inner_row_f32();
        f32_row(y_row, index_row, plane, d.in_w, w, swept.first, swept.last);
      } else {
        max_inner_row(y_row, index_row, plane, d.in_w, w, swept.first, swept.last);
      }
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
