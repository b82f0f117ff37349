// Describes a strided view of memory to a kernel: up to kMaxDims dimensions with element strides.
// The engine collapses dimensions before launching (see collapse_dims), so most calls arrive with
// 1-3 dims. Used by copy/cast, elementwise and index kernels on both backends.
#pragma once

#include <cstdint>

#include "core/half.h"

namespace se::kernels {

inline constexpr int kMaxDims = 8;

struct StridedLayout {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};  // in elements; 0 for broadcast dimensions

  SE_HOST_DEVICE int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= sizes[d];
    return n;
  }

  // Element offset of the `linear`-th element in row-major order of `sizes`.
  SE_HOST_DEVICE int64_t offset_of(int64_t linear) const {
    int64_t offset = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      int64_t i = linear % sizes[d];
      linear /= sizes[d];
      offset += i * strides[d];
    }
    return offset;
  }

  SE_HOST_DEVICE bool is_contiguous() const {
    int64_t expected = 1;
    for (int d = ndim - 1; d >= 0; --d) {
      if (sizes[d] != 1 && strides[d] != expected) return false;
      expected *= sizes[d];
    }
    return true;
  }
};

// A contiguous run of n elements as a 1-d layout (a dense tensor walked in storage order).
inline StridedLayout flat_layout(int64_t n) {
  StridedLayout layout;
  layout.ndim = 1;
  layout.sizes[0] = n;
  layout.strides[0] = 1;
  return layout;
}

// Merges adjacent dimensions that are contiguous with each other in every layout (same sizes in
// all), and drops size-1 dimensions, so the kernels index fewer dimensions. All layouts must have
// equal ndim and sizes. Leaves at least one dimension.
inline void collapse_dims(StridedLayout* layouts, int count) {
  StridedLayout& first = layouts[0];
  int out = 0;
  for (int d = 0; d < first.ndim; ++d) {
    if (first.sizes[d] == 1) continue;
    bool merge = out > 0;
    for (int l = 0; l < count && merge; ++l) {
      const StridedLayout& layout = layouts[l];
      merge = layout.strides[out - 1] == layout.strides[d] * layout.sizes[d];
    }
    for (int l = 0; l < count; ++l) {
      StridedLayout& layout = layouts[l];
      if (merge) {
        layout.sizes[out - 1] *= layout.sizes[d];
        layout.strides[out - 1] = layout.strides[d];
      } else {
        layout.sizes[out] = layout.sizes[d];
        layout.strides[out] = layout.strides[d];
      }
    }
    if (!merge) ++out;
  }
  if (out == 0) {
    for (int l = 0; l < count; ++l) {
      layouts[l].sizes[0] = 1;
      layouts[l].strides[0] = 1;
    }
    out = 1;
  }
  for (int l = 0; l < count; ++l) layouts[l].ndim = out;
}

}  // namespace se::kernels
