// Internal to the CPU Conv2d (conv.cpp): the f32 loops of stride-1 depthwise convolutions, forward and
// backward data, and backward weight's sums. In forward and backward data each output is a sum of taps,
// weight * the input at a fixed offset from it, added in a given order to an initial value; a tap that
// falls outside the input is skipped (not added), as the generic loop in conv.cpp does, so both give the
// same bits.
#pragma once

#include <cstdint>

namespace se::kernels::cpu {

struct DepthwiseTap {
  float weight;
  int64_t row, col;  // output (r, c) reads input (r + row, c + col)
};

// y (out_h, out_w) = (accumulate ? y : init) + the taps, in order, of x (in_h, in_w). Output blocks
// whose taps all lie inside x's columns run as vectors (loops compiled per ISA).
void depthwise_taps_f32(const float* x,  // (in_h, in_w)
                        int64_t in_h, int64_t in_w,
                        const DepthwiseTap* taps,  // (count)
                        int64_t count, bool accumulate, float init,
                        float* y,  // (out_h, out_w)
                        int64_t out_h, int64_t out_w);

// A stride-1 depthwise conv's weight-gradient taps over one (image, output channel): x_c (h, w), the
// input plane, and dy_p (oh, ow), the output gradient plane, padded by (ph, pw), dilated by (dh, dw).
struct DepthwiseWeightPlane {
  const float* x_c;
  const float* dy_p;
  int64_t h, w, oh, ow;
  int64_t kh, kw, ph, pw, dh, dw;
};

// tap_lanes (KH * KW, 16) += the products of output rows [oh0, oh1), as conv.cpp's generic loop sums
// them: for tap (i, j), whose valid output columns are [lo, hi), lane l adds dy[r][c] * x[r - ph + i dh]
// [c + j dw - pw] for c = lo + 16 b + l, the last partial block from lane 0, row by row (rows that fall
// outside x skipped); multiplied, then added, so the bits are the generic loop's. Runs with AVX-512, the
// taps' sums in vectors; returns false (adding nothing) on a CPU without it.
bool depthwise_weight_lanes_f32(const DepthwiseWeightPlane& plane, int64_t oh0, int64_t oh1,
                                float* tap_lanes);  // (KH * KW, 16)

}  // namespace se::kernels::cpu
