// Sort and cumulative sum along the last dim of a contiguous (rows, length) matrix (the engine moves any dim
// there), forward only: sort's gradient is a gather, cumsum's a reversed cumsum.
//
// sort: stable (equal keys keep their order, ascending and descending alike), values and i64 indices into the
// row, like torch.sort(stable=True). NaN sorts above +inf (last ascending, first descending) and -0.0 equals
// +0.0, as in PyTorch. Keys are mapped to order-preserving unsigned integers (kernels/sort_ops.h), then
//   CPU:  per row, an LSD radix sort (8-bit digits, stable counting passes, passes whose digit is the same for
//         the whole row skipped); rows in parallel over OpenMP threads.
//   CUDA: a segmented LSD radix sort, 8-bit digits, each row cut into tiles of kSortTile keys:
//         1. histogram: one block per (row, tile) counts its digits into hist[row][digit][tile];
//         2. scan: one block per row turns hist into exclusive offsets in (digit, tile) order, so every tile
//            knows where its keys of each digit start in the row;
//         3. scatter: one block per (row, tile) sorts its tile by the digit in shared memory (8 stable 1-bit
//            split steps, each a block-wide prefix sum) and writes each key to offset + its rank among the
//            tile's keys of that digit, which keeps the pass stable;
//         rows that fit one tile are sorted entirely in shared memory by one block (all bits, one launch).
//         Values are gathered from x by the final indices, so they are bit-exact copies.
//         The caller provides sort_workspace_bytes(desc) of device memory.
// dtypes: f32, f64, i32, i64.
//
// cumsum: y[i] = sum_{j <= i} x[j] along the middle dim of an (outer, length, inner) view, or sum_{j >= i}
// with reverse (the gradient of cumsum). f32, f64, i32, i64. The CPU accumulates f32 in double; CUDA in the
// element type (one block per line scanning 1024-element chunks with a carry when inner == 1, else one thread
// per line).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/stream.h"

namespace se::kernels {

struct SortDesc {
  int64_t rows = 1;
  int64_t length = 1;  // sorted along this (contiguous) dim
  bool descending = false;
  DType dtype = DType::f32;
};

inline bool sort_dtype_supported(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f64 || dtype == DType::i32 || dtype == DType::i64;
}

inline void validate_sort(const SortDesc& d) {
  SE_CHECK(sort_dtype_supported(d.dtype), "sort: dtype ", dtype_name(d.dtype),
           " is not supported (expected f32, f64, i32 or i64)");
  SE_CHECK(d.rows >= 0 && d.length >= 0, "sort: rows = ", d.rows, ", length = ", d.length, " (expected >= 0)");
}

// Keys per tile of the CUDA sort (256 threads x 4 keys).
constexpr int64_t kSortTile = 1024;

// Device scratch of cuda::sort, each part 256-byte aligned: two key buffers (rows * length keys of 4 or 8
// bytes), one index buffer (rows * length i64), the per-tile digit histograms (rows * 256 * tiles u32).
struct SortWorkspace {
  size_t keys_a = 0, keys_b = 0, indices_b = 0, histograms = 0, bytes = 0;  // byte offsets, total
};
inline SortWorkspace sort_workspace(const SortDesc& d) {
  auto align = [](size_t bytes) { return (bytes + 255) / 256 * 256; };
  const size_t n = static_cast<size_t>(d.rows * d.length);
  const size_t key_bytes = d.dtype == DType::f64 || d.dtype == DType::i64 ? 8 : 4;
  const size_t tiles = static_cast<size_t>((d.length + kSortTile - 1) / kSortTile);
  SortWorkspace w;
  w.keys_b = align(n * key_bytes);
  w.indices_b = w.keys_b + align(n * key_bytes);
  w.histograms = w.indices_b + align(n * 8);
  w.bytes = w.histograms + align(static_cast<size_t>(d.rows) * 256 * tiles * 4);
  return w;
}
inline size_t sort_workspace_bytes(const SortDesc& d) { return sort_workspace(d).bytes; }

struct CumsumDesc {
  int64_t outer = 1, length = 1, inner = 1;  // x and y are (outer, length, inner), summed along length
  bool reverse = false;                      // y[i] = sum over j >= i
  DType dtype = DType::f32;
};

inline void validate_cumsum(const CumsumDesc& d) {
  SE_CHECK(d.dtype == DType::f32 || d.dtype == DType::f64 || d.dtype == DType::i32 || d.dtype == DType::i64,
           "cumsum: dtype ", dtype_name(d.dtype), " is not supported (expected f32, f64, i32 or i64)");
  SE_CHECK(d.outer >= 0 && d.length >= 0 && d.inner >= 0, "cumsum: negative size (", d.outer, ", ", d.length, ", ",
           d.inner, ")");
}

namespace cpu {
void sort(const SortDesc& desc, const void* x,  // (rows, length)
          void* values,                         // (rows, length), x's dtype
          int64_t* indices,                     // (rows, length), positions in the row
          void* workspace,                      // ignored (may be null)
          Stream stream);
void cumsum(const CumsumDesc& desc, const void* x,  // (outer, length, inner)
            void* y,                                // (outer, length, inner)
            Stream stream);
}  // namespace cpu

namespace cuda {
void sort(const SortDesc& desc, const void* x,  // (rows, length)
          void* values,                         // (rows, length), x's dtype
          int64_t* indices,                     // (rows, length), positions in the row
          void* workspace,                      // sort_workspace_bytes(desc) of device memory
          Stream stream);
void cumsum(const CumsumDesc& desc, const void* x,  // (outer, length, inner)
            void* y,                                // (outer, length, inner)
            Stream stream);
}  // namespace cuda

}  // namespace se::kernels
