// CPU resize, separably: bilinear interpolation is a horizontal pass then a vertical one, in the order of
// resize_ops::resize_at (top = w0 x[i0][j0] + w1 x[i0][j1], likewise bottom, then h0 top + h1 bottom), so
// computing each needed input row's horizontal pass once and combining two such rows per output row gives
// the same bits with a fraction of the work. The taps of every output column and row are computed once per
// call (resize_ops::Axis, shared with CUDA).
//   forward:  tasks of (plane, block of output rows); each keeps the last two horizontal rows it made.
//   backward: one plane per task, the adjoint: each output row's gradient is added, weighted, into the
//             two input rows it came from (full-width vector loops), then each input column sums the
//             contiguous range of output columns that read it (a gather, not a scatter).
// Nearest is the same with one tap of weight 1 (the forward copies).
#include "kernels/resize.h"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/streaming.h"
#include "kernels/resize_ops.h"

namespace se::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = 16384;
constexpr int64_t kRowsPerTask = 32;  // forward: output rows per task

// The taps of every output index along one dim.
template <typename C>
struct AxisTaps {
  std::vector<resize_ops::Taps<C>> taps;  // (out)

  explicit AxisTaps(const resize_ops::Axis<C>& axis) : taps(static_cast<size_t>(axis.out)) {
    for (int64_t o = 0; o < axis.out; ++o) taps[o] = axis.taps(o);
  }
};

// The backward's width reduction: input column j sums outputs [first[j], first[j] + count[j]) with weights
// weight[offset[j] ...], in output order (Axis::weight: both taps of an output add when they coincide).
template <typename C>
struct ColumnReaders {
  std::vector<int64_t> first, count, offset;  // (in) each
  std::vector<C> weight;                      // (sum of count)

  explicit ColumnReaders(const resize_ops::Axis<C>& axis)
      : first(static_cast<size_t>(axis.in)), count(first.size()), offset(first.size()) {
    for (int64_t j = 0; j < axis.in; ++j) {
      int64_t last = 0;
      axis.readers(j, &first[j], &last);
      count[j] = last - first[j];
      offset[j] = static_cast<int64_t>(weight.size());
      for (int64_t o = first[j]; o < last; ++o) {
        weight.push_back(axis.bilinear ? resize_ops::Axis<C>::weight(axis.taps(o), j) : C(1));
      }
    }
  }
};

// dst[ow] = the horizontal pass of one input row for every output column.
template <typename C, typename T>
void horizontal_row(C* dst,        // (out_w)
                    const T* row,  // (in_w)
                    const AxisTaps<C>& w, bool bilinear) {
  const int64_t out_w = static_cast<int64_t>(w.taps.size());
  if (!bilinear) {
    for (int64_t ow = 0; ow < out_w; ++ow) dst[ow] = static_cast<C>(row[w.taps[ow].i0]);
    return;
  }
  for (int64_t ow = 0; ow < out_w; ++ow) {
    const resize_ops::Taps<C>& t = w.taps[ow];
    dst[ow] = t.w0 * static_cast<C>(row[t.i0]) + t.w1 * static_cast<C>(row[t.i1]);
  }
}

// The last two horizontal rows a forward task made, by input row index.
template <typename C>
class HorizontalRows {
 public:
  explicit HorizontalRows(int64_t out_w) : rows_{std::vector<C>(out_w), std::vector<C>(out_w)} {}

  void forget() { index_[0] = index_[1] = -1; }

  // Input row `wanted` after the horizontal pass; never evicts `keep` (the other tap of the same output row).
  template <typename T>
  const C* get(int64_t wanted, int64_t keep, const T* plane, int64_t in_w, const AxisTaps<C>& w, bool bilinear) {
    for (int s = 0; s < 2; ++s) {
      if (index_[s] == wanted) return rows_[s].data();
    }
    const int slot = index_[0] == keep ? 1 : 0;
    horizontal_row(rows_[slot].data(), plane + wanted * in_w, w, bilinear);
    index_[slot] = wanted;
    return rows_[slot].data();
  }

 private:
  std::vector<C> rows_[2];
  int64_t index_[2] = {-1, -1};
};

// out[k] = w0 * top[k] + w1 * bottom[k] for k < n; `stream`: through non-temporal stores where the CPU has
// them (f32), the same arithmetic, so the same bits.
template <typename C, typename T>
void combine_rows(T* out, const C* top, const C* bottom, C w0, C w1, int64_t n, bool stream) {
  int64_t k = 0;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    if (stream) {
      for (; k < n && reinterpret_cast<uintptr_t>(out + k) % 16 != 0; ++k) out[k] = w0 * top[k] + w1 * bottom[k];
      const __m128 v0 = _mm_set1_ps(w0), v1 = _mm_set1_ps(w1);
      for (; k + 4 <= n; k += 4) {
        const __m128 sum = _mm_add_ps(_mm_mul_ps(v0, _mm_loadu_ps(top + k)), _mm_mul_ps(v1, _mm_loadu_ps(bottom + k)));
        _mm_stream_ps(out + k, sum);
      }
    }
  }
#endif
  for (; k < n; ++k) out[k] = static_cast<T>(w0 * top[k] + w1 * bottom[k]);
}

}  // namespace

template <typename T>
void resize_forward(T* y, const T* x, const ResizeDesc& d, Stream) {
  using C = resize_ops::compute_t<T>;
  const auto ah = resize_ops::axis_h<C>(d);
  const auto aw = resize_ops::axis_w<C>(d);
  const AxisTaps<C> h_taps(ah), w_taps(aw);
  const bool bilinear = d.mode == ResizeMode::bilinear;
  const int64_t blocks = (d.out_h + kRowsPerTask - 1) / kRowsPerTask;
  const bool stream = d.planes * d.out_h * d.out_w * int64_t(sizeof(T)) > kStreamOutputBytes;
#pragma omp parallel if (d.planes * d.out_h * d.out_w >= kParallelWork)
  {
    HorizontalRows<C> cache(d.out_w);
    int64_t cached_plane = -1;
#pragma omp for schedule(static)
    for (int64_t task = 0; task < d.planes * blocks; ++task) {
      const int64_t p = task / blocks, oh_begin = task % blocks * kRowsPerTask;
      const int64_t oh_end = std::min(d.out_h, oh_begin + kRowsPerTask);
      if (p != cached_plane) {
        cache.forget();
        cached_plane = p;
      }
      const T* plane = x + p * d.in_h * d.in_w;
      for (int64_t oh = oh_begin; oh < oh_end; ++oh) {
        const resize_ops::Taps<C>& t = h_taps.taps[oh];
        T* out = y + (p * d.out_h + oh) * d.out_w;
        const C* top = cache.get(t.i0, t.i1, plane, d.in_w, w_taps, bilinear);
        if (!bilinear) {
          for (int64_t ow = 0; ow < d.out_w; ++ow) out[ow] = static_cast<T>(top[ow]);
          continue;
        }
        const C* bottom = cache.get(t.i1, t.i0, plane, d.in_w, w_taps, bilinear);
        combine_rows(out, top, bottom, t.w0, t.w1, d.out_w, stream);
      }
    }
#if defined(__SSE2__)
    if (stream) _mm_sfence();  // the streamed stores are visible before the region's closing barrier
#endif
  }
}

template <typename T>
void resize_backward(T* grad_x, const T* grad_y, const ResizeDesc& d, Stream) {
  using C = resize_ops::compute_t<T>;
  const auto ah = resize_ops::axis_h<C>(d);
  const auto aw = resize_ops::axis_w<C>(d);
  const AxisTaps<C> h_taps(ah);
  const ColumnReaders<C> columns(aw);
  const bool bilinear = d.mode == ResizeMode::bilinear;
#pragma omp parallel if (d.planes * d.out_h * d.out_w >= kParallelWork)
  {
    std::vector<C> rows(static_cast<size_t>(d.in_h * d.out_w));  // (in_h, out_w): grad_y summed over its rows
#pragma omp for schedule(static)
    for (int64_t p = 0; p < d.planes; ++p) {
      std::fill(rows.begin(), rows.end(), C(0));
      for (int64_t oh = 0; oh < d.out_h; ++oh) {
        const T* g = grad_y + (p * d.out_h + oh) * d.out_w;
        const resize_ops::Taps<C>& t = h_taps.taps[oh];
        C* row0 = rows.data() + t.i0 * d.out_w;
        C* row1 = rows.data() + t.i1 * d.out_w;
        // Nearest has one tap of weight 1 (w1 = 0 on the same row).
        if (!bilinear) {
          for (int64_t ow = 0; ow < d.out_w; ++ow) row0[ow] += static_cast<C>(g[ow]);
          continue;
        }
        for (int64_t ow = 0; ow < d.out_w; ++ow) row0[ow] += t.w0 * static_cast<C>(g[ow]);
        for (int64_t ow = 0; ow < d.out_w; ++ow) row1[ow] += t.w1 * static_cast<C>(g[ow]);
      }
      for (int64_t ih = 0; ih < d.in_h; ++ih) {
        const C* row = rows.data() + ih * d.out_w;
        T* out = grad_x + (p * d.in_h + ih) * d.in_w;
        for (int64_t j = 0; j < d.in_w; ++j) {
          const C* reader = row + columns.first[j];
          const C* weight = columns.weight.data() + columns.offset[j];
          C sum = 0;
          for (int64_t r = 0; r < columns.count[j]; ++r) sum += weight[r] * reader[r];
          out[j] = static_cast<T>(sum);
        }
      }
    }
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
