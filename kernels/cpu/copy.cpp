#include "kernels/copy.h"

#include <algorithm>
#include <cstring>

#include "core/philox.h"
#include "kernels/convert.h"
#include "kernels/cpu/gemm_microkernels.h"

namespace se::kernels::cpu {

namespace {

constexpr int64_t kParallelThreshold = 1 << 15;  // below this, threads cost more than they save

// A copy whose destination runs along a dim the source strides over, while the source runs along
// another (a transpose: contiguous() of a permuted or transposed view), goes tile by tile: a tile of
// kTransposeTile x kTransposeTile elements is read into a buffer along the source's unit-stride dim and
// written out along the destination's. Walking destination rows alone would touch a new source line per
// element, at a stride that is often a power of two, which maps all of a row's lines to one L1 set.
constexpr int64_t kTransposeTile = 32;

// Copies dst = src when dst's innermost dim has stride 1 and src has stride 1 along another dim (`across`);
// returns false, copying nothing, for any other layout.
template <typename Dst, typename Src>
bool copy_transposed(const CopyDesc& desc, const Src* src, Dst* dst) {
  const int last = desc.dst.ndim - 1;
  if (last < 1 || desc.dst.strides[last] != 1 || desc.src.strides[last] == 1) return false;
  int across = -1;
  for (int d = 0; d < last; ++d) {
    if (desc.src.strides[d] == 1) across = d;
  }
  if (across < 0) return false;
  // The other dims, walked per tile through offset_of.
  StridedLayout outer_src, outer_dst;
  for (int d = 0; d < last; ++d) {
    if (d == across) continue;
    outer_src.sizes[outer_src.ndim] = outer_dst.sizes[outer_dst.ndim] = desc.dst.sizes[d];
    outer_src.strides[outer_src.ndim++] = desc.src.strides[d];
    outer_dst.strides[outer_dst.ndim++] = desc.dst.strides[d];
  }
  const int64_t rows = desc.dst.sizes[across], cols = desc.dst.sizes[last];  // of dst: rows x cols
  const int64_t src_col_stride = desc.src.strides[last], dst_row_stride = desc.dst.strides[across];
  const int64_t row_tiles = (rows + kTransposeTile - 1) / kTransposeTile;
  const int64_t col_tiles = (cols + kTransposeTile - 1) / kTransposeTile;
  const int64_t tiles = outer_src.numel() * row_tiles * col_tiles;
  static const bool avx2 = gemm_isa_supported(GemmIsa::avx2);
#pragma omp parallel for schedule(static) if (desc.dst.numel() > kParallelThreshold)
  for (int64_t task = 0; task < tiles; ++task) {
    const int64_t o = task / (row_tiles * col_tiles), tile = task % (row_tiles * col_tiles);
    const int64_t r0 = tile / col_tiles * kTransposeTile, c0 = tile % col_tiles * kTransposeTile;
    const int64_t tile_rows = std::min(kTransposeTile, rows - r0), tile_cols = std::min(kTransposeTile, cols - c0);
    const Src* s = src + outer_src.offset_of(o) + r0 + c0 * src_col_stride;
    Dst* d = dst + outer_dst.offset_of(o) + r0 * dst_row_stride + c0;
    int64_t c = 0;
    if constexpr (std::is_same_v<Src, float> && std::is_same_v<Dst, float>) {
      // 8 destination columns at a time straight through 8 x 8 register transposes (the GEMM's packing
      // helper: out[p * ld_out + r] = rows[r][p], row r = the source run of destination column c + r).
      if (avx2) {
        for (; c + 8 <= tile_cols; c += 8) {
          detail::transpose_8_rows_avx2(s + c * src_col_stride, src_col_stride, tile_rows, d + c, dst_row_stride);
        }
      }
    }
    if (c == tile_cols) continue;
    Dst buffer[kTransposeTile][kTransposeTile];  // [row][col] of the tile's remaining columns
    for (int64_t cc = c; cc < tile_cols; ++cc) {
      for (int64_t r = 0; r < tile_rows; ++r) buffer[r][cc] = convert<Dst>(s[cc * src_col_stride + r]);
    }
    for (int64_t r = 0; r < tile_rows; ++r) {
      std::copy(buffer[r] + c, buffer[r] + tile_cols, d + r * dst_row_stride + c);
    }
  }
  return true;
}

template <typename Dst, typename Src>
void copy_typed(const CopyDesc& desc, const Src* src, Dst* dst) {
  const int64_t n = desc.dst.numel();
  const bool contiguous = desc.src.is_contiguous() && desc.dst.is_contiguous();
  if (contiguous) {
    if constexpr (std::is_same_v<Dst, Src>) {
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(Src));
    } else {
#pragma omp parallel for if (n > kParallelThreshold)
      for (int64_t i = 0; i < n; ++i) dst[i] = convert<Dst>(src[i]);
    }
    return;
  }
  if (copy_transposed(desc, src, dst)) return;
  // Walk the innermost dim with strides; decompose the outer index once per row.
  const int last = desc.dst.ndim - 1;
  const int64_t inner = desc.dst.sizes[last];
  const int64_t src_step = desc.src.strides[last];
  const int64_t dst_step = desc.dst.strides[last];
  const int64_t rows = n / inner;
#pragma omp parallel for if (n > kParallelThreshold)
  for (int64_t row = 0; row < rows; ++row) {
    const Src* s = src + desc.src.offset_of(row * inner);
    Dst* d = dst + desc.dst.offset_of(row * inner);
    for (int64_t i = 0; i < inner; ++i) d[i * dst_step] = convert<Dst>(s[i * src_step]);
  }
}

}  // namespace

void copy_strided(const CopyDesc& desc, const void* src, void* dst, Stream) {
  CopyDesc collapsed = desc;
  StridedLayout layouts[2] = {desc.src, desc.dst};
  collapse_dims(layouts, 2);
  collapsed.src = layouts[0];
  collapsed.dst = layouts[1];
  if (collapsed.dst.numel() == 0) return;
  dispatch_dtype(desc.src_dtype, [&](auto src_tag) {
    using Src = typename decltype(src_tag)::type;
    dispatch_dtype(desc.dst_dtype, [&](auto dst_tag) {
      using Dst = typename decltype(dst_tag)::type;
      copy_typed(collapsed, static_cast<const Src*>(src), static_cast<Dst*>(dst));
    });
  });
}

void fill(const FillDesc& desc, void* dst, Stream) {
  StridedLayout layout = desc.dst;
  collapse_dims(&layout, 1);
  const int64_t n = layout.numel();
  dispatch_dtype(desc.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T value = convert<T>(desc.value);
    T* out = static_cast<T*>(dst);
    if (layout.is_contiguous()) {
#pragma omp parallel for if (n > kParallelThreshold)
      for (int64_t i = 0; i < n; ++i) out[i] = value;
    } else {
#pragma omp parallel for if (n > kParallelThreshold)
      for (int64_t i = 0; i < n; ++i) out[layout.offset_of(i)] = value;
    }
  });
}

void arange(const ArangeDesc& desc, void* out, Stream) {
  dispatch_dtype(desc.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out);
    for (int64_t i = 0; i < desc.count; ++i) o[i] = convert<T>(desc.start + static_cast<double>(i) * desc.step);
  });
}

void random(const RandomDesc& desc, void* out, Stream) {
  dispatch_floating(desc.dtype, "random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out);
    const bool uniform = desc.distribution == Distribution::uniform;
#pragma omp parallel for if (desc.count > kParallelThreshold)
    for (int64_t i = 0; i < desc.count; ++i) {
      uint64_t index = desc.offset + static_cast<uint64_t>(i);
      double v = uniform ? desc.a + (desc.b - desc.a) * philox::uniform_at(desc.seed, index)
                         : desc.a + desc.b * philox::normal_at(desc.seed, index);
      o[i] = convert<T>(v);
    }
  });
}

}  // namespace se::kernels::cpu
