// Internal to the CPU Conv2d (conv.cpp): the f32 loop of stride-1 depthwise convolutions, forward and
// backward data. Each output is a sum of taps, weight * the input at a fixed offset from it, added in a
// given order to an initial value; a tap that falls outside the input is skipped (not added), as the
// generic loop in conv.cpp does, so both give the same bits.
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

}  // namespace se::kernels::cpu
