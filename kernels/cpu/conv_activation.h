// Internal to the CPU Conv2d (conv.cpp, conv_depthwise_nhwc.cpp): the fused activation of a
// convolution's epilogue, applied to a run of outputs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/conv.h"
#include "kernels/conv_epilogue.h"
#include "kernels/cpu/elementwise_fast.h"

namespace se::kernels::cpu {

// dst (count) = the fused activation of src (count) + b; dst may be src. f32 GELU goes through the
// vectorized loop of the CPU's gelu op (elementwise_fast.h), so a fused conv + GELU gives the bits of conv
// then gelu; the other cases apply conv_epilogue's formula.
template <typename T>
inline void activate(ConvActivation activation, T b, const T* src, int64_t count, T* dst) {
  if constexpr (std::is_same_v<T, float>) {
    if (activation == ConvActivation::gelu) {
      constexpr int64_t kBlock = 256;
      alignas(64) float biased[kBlock];
      for (int64_t p = 0; p < count; p += kBlock) {
        const int64_t n = std::min(kBlock, count - p);
        for (int64_t q = 0; q < n; ++q) biased[q] = src[p + q] + b;
        run_fast_unary_f32(UnaryOp::gelu, biased, dst + p, n);
      }
      return;
    }
  }
  for (int64_t p = 0; p < count; ++p) dst[p] = conv_epilogue(activation, src[p] + b);
}

}  // namespace se::kernels::cpu
