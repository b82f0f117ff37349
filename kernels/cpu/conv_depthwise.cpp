// The f32 loop of stride-1 depthwise convolutions (conv_depthwise.h). Output rows go block by block:
// 16 outputs (one Float16) whose taps all read inside the input row keep their sums in registers across the taps
// (one load of y or the initial value, one store), where the generic loop reads and writes each output
// once per tap; the blocks at the row's ends run one output at a time with the same per-tap checks.
// Built with -ffp-contract=off (kernels/CMakeLists.txt): every ISA multiplies then adds, like the baseline.
#include "kernels/cpu/conv_depthwise.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels/cpu/per_isa.h"
#include "kernels/cpu/vector_math.h"

namespace se::kernels::cpu {
namespace {

void depthwise_taps(const float* x, int64_t in_h, int64_t in_w, const DepthwiseTap* taps, int64_t count,
                    bool accumulate, float init, float* y, int64_t out_h, int64_t out_w) {
  std::vector<const float*> row_start(static_cast<size_t>(count));  // x's row of each tap for output row r
  std::vector<float> weight(static_cast<size_t>(count));
  std::vector<int64_t> col(static_cast<size_t>(count));
  for (int64_t r = 0; r < out_h; ++r) {
    // The taps whose row lies inside x, in order; the columns where all of them lie inside too.
    int64_t live = 0, first = 0, last = out_w;
    for (int64_t t = 0; t < count; ++t) {
      const int64_t in_r = r + taps[t].row;
      if (in_r < 0 || in_r >= in_h) continue;
      row_start[live] = x + in_r * in_w;
      weight[live] = taps[t].weight;
      col[live] = taps[t].col;
      first = std::max(first, -taps[t].col);
      last = std::min(last, in_w - taps[t].col);
      ++live;
    }
    float* out = y + r * out_w;
    auto one = [&](int64_t c) {
      float sum = accumulate ? out[c] : init;
      for (int64_t t = 0; t < live; ++t) {
        const int64_t in_c = c + col[t];
        if (in_c >= 0 && in_c < in_w) sum += weight[t] * row_start[t][in_c];
      }
      out[c] = sum;
    };
    first = std::min(first, out_w);
    last = std::max(last, first);
    int64_t c = 0;
    for (; c < first; ++c) one(c);
    auto block = [&](int64_t c0) {  // outputs [c0, c0 + 16), all taps inside x
      Float16 sum = Float16{} + init;
      if (accumulate) load16(sum, out + c0);
      for (int64_t t = 0; t < live; ++t) {
        Float16 in;
        load16(in, row_start[t] + c0 + col[t]);
        sum += weight[t] * in;
      }
      store16(out + c0, sum);
    };
    for (; c + kFloat16Lanes <= last; c += kFloat16Lanes) block(c);
    // The rest of the inside as one more block ending at `last`: it recomputes some outputs with the same
    // bits, which only a sum into y (accumulate) cannot afford.
    if (c < last && last - first >= kFloat16Lanes && !accumulate) {
      block(last - kFloat16Lanes);
      c = last;
    }
    for (; c < out_w; ++c) one(c);
  }
}

#define SE_DEFINE_DEPTHWISE_TAPS(suffix, attribute)                                                         \
  attribute __attribute__((flatten)) void depthwise_taps_##suffix(                                          \
      const float* x, int64_t in_h, int64_t in_w, const DepthwiseTap* taps, int64_t count, bool accumulate, \
      float init, float* y, int64_t out_h, int64_t out_w) {                                                 \
    depthwise_taps(x, in_h, in_w, taps, count, accumulate, init, y, out_h, out_w);                          \
  }
SE_STAMP_PER_ISA(SE_DEFINE_DEPTHWISE_TAPS)
#undef SE_DEFINE_DEPTHWISE_TAPS

#if defined(__x86_64__)
// Rows outer, taps inner: each tap's vector of lanes (loaded from and stored back to tap_lanes around
// its row, in L1) is one dependent chain of adds, and the other taps' chains between two rows of it
// keep the adds' latency hidden.
__attribute__((target("avx512f"))) void depthwise_weight_lanes_avx512(const DepthwiseWeightPlane& g, int64_t oh0,
                                                                      int64_t oh1, float* tap_lanes) {
  constexpr int64_t kLanes = 16;
  const int64_t taps = g.kh * g.kw;
  std::vector<int64_t> lo(static_cast<size_t>(taps)), blocks_end(static_cast<size_t>(taps));
  std::vector<__mmask16> tail(static_cast<size_t>(taps));
  for (int64_t t = 0; t < taps; ++t) {
    const int64_t off_w = t % g.kw * g.dw - g.pw;
    // valid_range of conv_im2col.h with stride 1: the columns c with 0 <= c + off_w < w.
    const int64_t first = std::min(off_w >= 0 ? 0 : -off_w, g.ow);
    const int64_t last = std::clamp(g.w - off_w, first, g.ow);
    lo[t] = first;
    blocks_end[t] = first + (last - first) / kLanes * kLanes;
    tail[t] = static_cast<__mmask16>((1u << (last - blocks_end[t])) - 1u);
  }
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const float* d = g.dy_p + oh * g.ow;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ih = oh - g.ph + i * g.dh;
      if (ih < 0 || ih >= g.h) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t t = i * g.kw + j;
        const float* in = g.x_c + ih * g.w + j * g.dw - g.pw;
        __m512 sum = _mm512_loadu_ps(tap_lanes + t * kLanes);
        int64_t c = lo[t];
        for (; c < blocks_end[t]; c += kLanes) {
          sum = _mm512_add_ps(sum, _mm512_mul_ps(_mm512_loadu_ps(d + c), _mm512_loadu_ps(in + c)));
        }
        if (tail[t] != 0) {
          const __m512 product =
              _mm512_mul_ps(_mm512_maskz_loadu_ps(tail[t], d + c), _mm512_maskz_loadu_ps(tail[t], in + c));
          sum = _mm512_mask_add_ps(sum, tail[t], sum, product);  // the other lanes keep their bits
        }
        _mm512_storeu_ps(tap_lanes + t * kLanes, sum);
      }
    }
  }
}
#endif

}  // namespace

bool depthwise_weight_lanes_f32(const DepthwiseWeightPlane& plane, int64_t oh0, int64_t oh1, float* tap_lanes) {
#if defined(__x86_64__)
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512) {
    depthwise_weight_lanes_avx512(plane, oh0, oh1, tap_lanes);
    return true;
  }
#endif
  (void)plane, (void)oh0, (void)oh1, (void)tap_lanes;
  return false;
}

void depthwise_taps_f32(const float* x, int64_t in_h, int64_t in_w, const DepthwiseTap* taps, int64_t count,
                        bool accumulate, float init, float* y, int64_t out_h, int64_t out_w) {
  static const auto best = SE_PICK_PER_ISA(depthwise_taps);
  best(x, in_h, in_w, taps, count, accumulate, init, y, out_h, out_w);
}

}  // namespace se::kernels::cpu
