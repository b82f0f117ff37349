// Internal to the direct convolution (conv_direct_avx512.cpp: forward and backward data;
// conv_direct_weight_avx512.cpp: backward weight): the problem they share, the per-thread ring of
// staged input rows both read, and the cache size their selection weighs.
#pragma once

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/conv.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace se::kernels::cpu::direct {

// A stride-1 convolution over NCHW planes, per group g of `groups`:
//   y[n][g*Og + o][oh][ow] = bias[g*Og + o] + sum over c < Cg, i < KH, j < KW of
//       w[g*Og + o][c][i][j] * x[n][g*Cg + c][oh + i*dh - ph][ow + j*dw - pw]   (zero outside x)
// with Cg = c_in / groups, Og = c_out / groups. The output size is given, not derived: the backward
// data problem has a padding (dh * (KH - 1) - ph) that may be negative.
struct DirectConvShape {
  int64_t n, c_in, h, w, c_out, oh, ow;
  int64_t kh, kw, ph, pw, dh, dw;
  int64_t groups;
};

// The widest kernel the direct kernel takes.
constexpr int64_t kMaxKernelWidth = 16;

// The direct problem of d's forward.
inline DirectConvShape forward_shape(const Conv2dDesc& d) {
  return {.n = d.n,
          .c_in = d.c_in,
          .h = d.h,
          .w = d.w,
          .c_out = d.c_out,
          .oh = conv2d_output_h(d),
          .ow = conv2d_output_w(d),
          .kh = d.kernel_h,
          .kw = d.kernel_w,
          .ph = d.pad_h,
          .pw = d.pad_w,
          .dh = d.dilation_h,
          .dw = d.dilation_w,
          .groups = d.groups};
}

#if defined(__x86_64__)
#define SE_AVX512 __attribute__((target("avx512f")))

inline int max_threads() {
  return omp_in_parallel() ? 1 : omp_get_max_threads();
}

constexpr int64_t kLanes = 16;
// Output channels per tile: 8, or the group's last few (see row_tiles).
constexpr int64_t kTileChannels = 8;
// Output pixels per strip, at most (NV <= 8 vectors).
constexpr int64_t kMaxStripWidth = 8 * kLanes;

// The first `count` lanes (none for count <= 0, all 16 for count >= 16).
SE_AVX512 inline __mmask16 first_lanes(int64_t count) {
  return static_cast<__mmask16>(count <= 0 ? 0u : count >= kLanes ? 0xffffu : (1u << count) - 1u);
}

// Rows ahead of the window that a row prefetches: the next row's would arrive too late for the next
// output row (its last strips issue them just before that row stages it); 2 measured best, 3 or 4 no better.
constexpr int64_t kPrefetchRowsAhead = 2;

// Where a staged row's column 0 lies in its slot, and the slots' stride (floats).
struct StagingGeometry {
  int64_t left, stride;
};

inline StagingGeometry staging_geometry(const DirectConvShape& s) {
  // Column 0 of every row on a 64-byte boundary (the padding before it rounded up to whole vectors),
  // so that vectors of 16 outputs read whole cache lines where the kernel's offset is 0.
  const int64_t left = (std::max<int64_t>(s.pw, 0) + kLanes - 1) / kLanes * kLanes;
  // Past the furthest read: the last strip ends before OW + kMaxStripWidth, then the kernel's reach.
  const int64_t reach = s.ow + kMaxStripWidth + (s.kw - 1) * s.dw - s.pw;
  int64_t stride = (left + std::max(s.w, reach) + kLanes - 1) / kLanes * kLanes;
  if (stride % 256 == 0) stride += kLanes;  // keep rows off a 1 KB period (cache-set aliasing)
  return {left, stride};
}

// The bytes of one thread's staging ring for bands of `band_rows` output rows.
inline int64_t staging_bytes(const DirectConvShape& s, int64_t band_rows = 1) {
  return s.c_in / s.groups * ((s.kh - 1) * s.dh + band_rows) * staging_geometry(s).stride * int64_t(sizeof(float));
}

// One thread's ring of staged x rows: for each of the `window` = (KH - 1) * dh + band_rows most recent
// input rows (slot ih mod window: the rows of a band of output rows) and each channel c of the group,
// the row with `left` zeros before it and zeros after it up to `stride`.
class StagingRing {
 public:
  explicit StagingRing(const DirectConvShape& s, int64_t band_rows = 1)
      : s_(s), cg_(s.c_in / s.groups), window_((s.kh - 1) * s.dh + band_rows) {
    const StagingGeometry geometry = staging_geometry(s);
    left_ = geometry.left;
    stride_ = geometry.stride;
    storage_.assign(static_cast<size_t>(window_ * cg_ * stride_ + kLanes), 0.0f);
    const uintptr_t address = reinterpret_cast<uintptr_t>(storage_.data());
    rows_ = storage_.data() + (64 - address % 64) % 64 / sizeof(float);
  }

  // Makes the rows of output rows [oh0, oh1) (at most band_rows) of x_g (Cg, H, W) present; `continues`
  // when the ring already holds those of the rows before oh0 of the same planes (only oh1 - oh0 new
  // input rows per channel to copy).
  void advance(const float* x_g, int64_t oh0, int64_t oh1, bool continues) {
    const int64_t first = oh0 - s_.ph, last = oh1 - 1 - s_.ph + (s_.kh - 1) * s_.dh;  // input rows of the band
    for (int64_t ih = continues ? last - (oh1 - oh0) + 1 : first; ih <= last; ++ih) {
      if (ih < 0 || ih >= s_.h) continue;
      for (int64_t c = 0; c < cg_; ++c) std::memcpy(row(c, ih), x_g + (c * s_.h + ih) * s_.w, s_.w * sizeof(float));
    }
  }

  // Column 0 of channel c's input row ih (which must be in the window).
  float* row(int64_t c, int64_t ih) { return rows_ + ((ih % window_) * cg_ + c) * stride_ + left_; }

 private:
  const DirectConvShape& s_;
  int64_t cg_, window_, left_ = 0, stride_ = 0;
  std::vector<float> storage_;
  float* rows_ = nullptr;  // 64-byte aligned, within storage_
};

// The CPU's L2 per core (1 MB when the C library cannot tell).
inline int64_t l2_bytes() {
  static const int64_t bytes = [] {
    const long reported = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return reported > 0 ? int64_t(reported) : int64_t(1) << 20;
  }();
  return bytes;
}

// The band rows of the direct backward weight and the bytes of one thread's f32 lanes
// (conv_direct_weight_avx512.cpp), which the selection weighs against L2 with the staged rows.
int64_t weight_band_rows(const DirectConvShape& s);
int64_t weight_lane_bytes(const DirectConvShape& s);
#endif

}  // namespace se::kernels::cpu::direct
