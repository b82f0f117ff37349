// The direct stride-1 convolution of conv_direct_avx512.h, forward and backward data (compiled with a
// target attribute: the build has no -march flags; conv2d_runs_direct checks the CPU at run time);
// conv_direct_weight_avx512.cpp has the backward weight, conv_direct_staging.h what they share.
//
// Work: each thread takes a contiguous band of output rows of one or more (image, group) pairs. A row
// is computed a tile of CO output channels x NV 16-pixel vectors at a time (CO * NV <= 24 accumulators
// in zmm registers): for each tap (c, i, j) the NV input vectors of row oh + i*dh - ph, shifted by
// j*dw - pw, are loaded once and each is multiplied by the CO broadcast weights; the finished tile
// goes from the registers to y.
//
// Staging: the x rows a band reads are copied, once each, into a per-thread ring of the last
// (KH - 1) * dh + 1 input rows of every channel, each row with its zero padding around it. The loads
// then need no masks, and the rows sit at a stride of their own: in x, the same row of consecutive
// planes lies a power of two apart (1 MB for 512 x 512), so that with many channels (the backward
// data of a conv with 64 outputs reads 64) they all fall into the same few cache sets and are evicted
// before the next output rows reuse them.
#include "kernels/cpu/conv_direct_avx512.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/conv_direct_staging.h"
#include "kernels/cpu/elementwise_fast.h"
#include "kernels/gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace se::kernels::cpu {
namespace direct {
namespace {

#if defined(__x86_64__)
// The staged x rows of one output row: each (c, i) whose x row oh + i*dh - ph exists (the others are
// zero padding and left out), as a pointer to that row's column 0 in the staging ring.
struct TapRow {
  const float* x_row;  // (W), with zeros on either side as far as any strip reads
  int64_t tap;         // c * KH + i
  // For the last row of the window (i = KH - 1): the input row kPrefetchRowsAhead below it in x itself,
  // which a later output row stages. Each strip prefetches its columns into L2 while it computes, so
  // that the staging copy reads from cache rather than waiting on memory (with many channels, the rows
  // are too many streams for the hardware prefetchers). Else nullptr.
  const float* next_x_row;
};

// The outputs of one row tile: CO planes from y_o (the tile's first channel at the row's column 0),
// OH * OW apart.
struct RowTile {
  const TapRow* taps;
  int64_t tap_rows;
  const float* w_tile;  // (Cg * KH, KW, CO): the tile's weights as packed by pack_weights
  const float* bias_o;  // (CO) or nullptr
  float* y_o;
};

// The CO x (16 * NV) outputs of a row tile from column ow0. KW: the kernel width of an undilated
// kernel, or 0 for any kernel (width and dilation known at run time only). kEdge: the strip reaches
// past the end of the y row, so its stores go through lane masks.
template <int CO, int NV, int KW, bool kEdge>
SE_AVX512 void strip(const DirectConvShape& s, const RowTile& r, int64_t ow0, bool relu, bool stream) {
  const int64_t kw = KW > 0 ? KW : s.kw;
  const int64_t dw = KW > 0 ? 1 : s.dw;
  __m512 acc[CO][NV];
#pragma GCC unroll 8
  for (int u = 0; u < CO; ++u) {
    const __m512 b = r.bias_o != nullptr ? _mm512_set1_ps(r.bias_o[u]) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[u][v] = b;
  }
  for (int64_t t = 0; t < r.tap_rows; ++t) {
    const float* x_row = r.taps[t].x_row + ow0 - s.pw;  // under the strip's first output, for j = 0
    // Opaque to the optimizer, so that the loads below address x_row plus constants: otherwise GCC
    // keeps each of the KW * NV offsets (ow0 - pw + j + 16 v) in a register of its own and spills them.
    asm("" : "+r"(x_row));
    const float* w = r.w_tile + r.taps[t].tap * kw * CO;  // (KW, CO)
    if (const float* next = r.taps[t].next_x_row; next != nullptr) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(next + ow0 + v * kLanes), _MM_HINT_T1);
    }
#pragma GCC unroll 16
    for (int64_t j = 0; j < kw; ++j) {
      const float* x_j = x_row + j * dw;
      // Whichever of the NV x vectors and the CO weights are fewer stay in registers, the other kind
      // is loaded one at a time: CO * NV + min(CO, NV) + 1 <= 28 of the 32 zmm registers in use.
      if constexpr (NV <= CO) {
        __m512 xv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) xv[v] = _mm512_loadu_ps(x_j + v * kLanes);
#pragma GCC unroll 8
        for (int u = 0; u < CO; ++u) {
          const __m512 wv = _mm512_set1_ps(w[j * CO + u]);
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) acc[u][v] = _mm512_fmadd_ps(wv, xv[v], acc[u][v]);
        }
      } else {
        __m512 wv[CO];
#pragma GCC unroll 8
        for (int u = 0; u < CO; ++u) wv[u] = _mm512_set1_ps(w[j * CO + u]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          __m512 xv = _mm512_loadu_ps(x_j + v * kLanes);
          asm("" : "+v"(xv));  // one load: GCC would fold it into each of the CO FMAs, CO loads
#pragma GCC unroll 8
          for (int u = 0; u < CO; ++u) acc[u][v] = _mm512_fmadd_ps(wv[u], xv, acc[u][v]);
        }
      }
    }
  }
  const int64_t plane = s.oh * s.ow;
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const __mmask16 store_mask = first_lanes(s.ow - ow0 - v * kLanes);
#pragma GCC unroll 8
    for (int u = 0; u < CO; ++u) {
      // The ReLU op's x < 0 ? 0 : x (NaN stays NaN).
      const __m512 out =
          relu ? _mm512_mask_blend_ps(_mm512_cmp_ps_mask(acc[u][v], zero, _CMP_LT_OQ), acc[u][v], zero) : acc[u][v];
      float* dst = r.y_o + u * plane + ow0 + v * kLanes;
      if constexpr (kEdge) {
        if (store_mask != 0) _mm512_mask_storeu_ps(dst, store_mask, out);
      } else if (stream && reinterpret_cast<uintptr_t>(dst) % 64 == 0) {
        _mm512_stream_ps(dst, out);
      } else {
        _mm512_storeu_ps(dst, out);
      }
    }
  }
}

template <int CO, int NV, int KW>
SE_AVX512 void row_tile(const DirectConvShape& s, const RowTile& r, bool relu, bool stream) {
  constexpr int64_t width = NV * kLanes;
  int64_t ow0 = 0;
  for (; ow0 + width <= s.ow; ow0 += width) strip<CO, NV, KW, false>(s, r, ow0, relu, stream);
  if (ow0 < s.ow) strip<CO, NV, KW, true>(s, r, ow0, relu, stream);
}

// Undilated 3-wide kernels (nearly every conv) get their tap loop unrolled; others run a loop.
template <int CO, int NV>
SE_AVX512 void row_tile_of_width(const DirectConvShape& s, const RowTile& r, bool relu, bool stream) {
  if (s.kw == 3 && s.dw == 1) {
    row_tile<CO, NV, 3>(s, r, relu, stream);
  } else {
    row_tile<CO, NV, 0>(s, r, relu, stream);
  }
}

// A tile of `channels` (the group's last ones may be fewer than 8) gets as many vectors as keep the
// accumulators within 24 of the 32 zmm registers.
SE_AVX512 void row_tiles(const DirectConvShape& s, const RowTile& r, int64_t channels, bool relu, bool stream) {
  switch (channels) {
    case 1: return row_tile_of_width<1, 8>(s, r, relu, stream);
    case 2: return row_tile_of_width<2, 8>(s, r, relu, stream);
    case 3: return row_tile_of_width<3, 8>(s, r, relu, stream);
    case 4: return row_tile_of_width<4, 6>(s, r, relu, stream);
    case 5: return row_tile_of_width<5, 4>(s, r, relu, stream);
    case 6: return row_tile_of_width<6, 4>(s, r, relu, stream);
    case 7: return row_tile_of_width<7, 3>(s, r, relu, stream);
    default: return row_tile_of_width<8, 3>(s, r, relu, stream);
  }
}

// w (C_out, Cg, KH, KW) regrouped tile by tile: the tile of CO channels from o holds, at packed + o * K,
// (Cg * KH, KW, CO), so that a tap's CO weights lie side by side at fixed offsets.
std::vector<float> pack_weights(const DirectConvShape& s, const float* w) {
  const int64_t og = s.c_out / s.groups, k = s.c_in / s.groups * s.kh * s.kw, taps = k / s.kw;
  std::vector<float> packed(static_cast<size_t>(s.c_out * k));
  for (int64_t co = 0; co < s.c_out;) {
    const int64_t width = std::min(kTileChannels, og - co % og);
    for (int64_t t = 0; t < taps; ++t) {
      for (int64_t j = 0; j < s.kw; ++j) {
        for (int64_t u = 0; u < width; ++u)
          packed[co * k + (t * s.kw + j) * width + u] = w[(co + u) * k + t * s.kw + j];
      }
    }
    co += width;
  }
  return packed;
}

// Output row oh of one (image, group), every channel, from the staged rows of x_g (Cg, H, W); y_g: the
// group's first output plane.
SE_AVX512 void run_row(const DirectConvShape& s, const float* x_g, StagingRing& ring, std::vector<TapRow>& taps,
                       int64_t oh, const float* packed_g, const float* bias_g, ConvActivation activation, bool stream,
                       float* y_g) {
  const int64_t cg = s.c_in / s.groups, og = s.c_out / s.groups, k = cg * s.kh * s.kw;
  taps.clear();
  for (int64_t c = 0; c < cg; ++c) {
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t ih = oh + i * s.dh - s.ph;
      if (ih < 0 || ih >= s.h) continue;
      const int64_t ahead = ih + kPrefetchRowsAhead;
      const bool prefetch = i == s.kh - 1 && ahead < s.h;
      taps.push_back({ring.row(c, ih), c * s.kh + i, prefetch ? x_g + (c * s.h + ahead) * s.w : nullptr});
    }
  }
  const bool relu = activation == ConvActivation::relu;
  for (int64_t o = 0; o < og; o += kTileChannels) {
    const RowTile r{taps.data(), static_cast<int64_t>(taps.size()), packed_g + o * k,
                    bias_g != nullptr ? bias_g + o : nullptr, y_g + o * s.oh * s.ow + oh * s.ow};
    row_tiles(s, r, std::min(kTileChannels, og - o), relu, stream);
  }
}

#endif

// y (N, C_out, OH, OW) from x (N, C_in, H, W), w (C_out, Cg, KH, KW) and bias (C_out) or nullptr.
void direct_conv_f32(const DirectConvShape& s, const float* x, const float* w, const float* bias,
                     ConvActivation activation, bool stream, float* y) {
#if defined(__x86_64__)
  // GELU goes through the vectorized loop of the gelu op over each finished row, so that a fused conv +
  // GELU gives the bits of conv then gelu; those rows are reread at once, so they are not streamed.
  const bool gelu = activation == ConvActivation::gelu;
  const bool nt = stream && !gelu;
  const int64_t cg = s.c_in / s.groups, og = s.c_out / s.groups, k = cg * s.kh * s.kw;
  const int64_t tasks = s.n * s.groups * s.oh;  // (image, group, output row), row fastest
  const std::vector<float> packed = pack_weights(s, w);
#pragma omp parallel num_threads(max_threads())
  {
    StagingRing ring(s);
    std::vector<TapRow> taps;
    int64_t previous = -1;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t oh = t % s.oh, image_group = t / s.oh;  // image * groups + group
      const int64_t group = image_group % s.groups, image = image_group / s.groups;
      const float* x_g = x + (image * s.c_in + group * cg) * s.h * s.w;
      ring.advance(x_g, oh, oh + 1, previous == t - 1 && oh > 0);
      previous = t;
      float* y_g = y + image_group * og * s.oh * s.ow;
      run_row(s, x_g, ring, taps, oh, packed.data() + group * og * k, bias != nullptr ? bias + group * og : nullptr,
              activation, nt, y_g);
      if (gelu) {
        for (int64_t o = 0; o < og; ++o) {
          float* row = y_g + (o * s.oh + oh) * s.ow;
          run_fast_unary_f32(UnaryOp::gelu, row, row, s.ow);
        }
      }
    }
    if (nt) _mm_sfence();  // each streaming thread, before the region's end publishes y
  }
#else
  (void)s, (void)x, (void)w, (void)bias, (void)activation, (void)stream, (void)y;
  SE_THROW("direct_conv_f32: needs an x86-64 CPU with AVX-512");
#endif
}

// The direct problem of d's backward data (stride 1): dy (N, C_out, OH, OW) convolved with the flipped,
// transposed weights into dx (N, C_in, H, W), padded by d * (K - 1) - p (which may be negative).
DirectConvShape backward_data_shape(const Conv2dDesc& d) {
  return {.n = d.n,
          .c_in = d.c_out,
          .h = conv2d_output_h(d),
          .w = conv2d_output_w(d),
          .c_out = d.c_in,
          .oh = d.h,
          .ow = d.w,
          .kh = d.kernel_h,
          .kw = d.kernel_w,
          .ph = d.dilation_h * (d.kernel_h - 1) - d.pad_h,
          .pw = d.dilation_w * (d.kernel_w - 1) - d.pad_w,
          .dh = d.dilation_h,
          .dw = d.dilation_w,
          .groups = d.groups};
}

// Rows at least this wide let a deep conv (K >= kShallowConvDepth) run directly: narrower rows leave the
// strips' last vectors partly empty, and the staged rows carry a strip's width of padding each. Measured
// on U-Net's 3x3 layers (2 threads, 512 x 512 input): 64 ch at 512 wide, forward 124 -> 94 ms and
// backward data 124 -> 91 ms; 128 ch at 256, 110 -> 98 and 107 -> 99 ms; 256 ch at 128 even (its ring
// is over 3/4 of L2 anyway); 512 ch at 64 wide, 94 -> 135 ms (the GEMM path keeps those).
constexpr int64_t kMinWideRow = 128;
// Convs of at most kNarrowDepth (Cg * KH * KW: 32 channels of a 3x3) run directly from half that row
// width: their GEMMs are short in K, and im2col and packing weigh more. Measured on the demo U-Net's
// layers (2 threads, 64 x 64, batch 8, min of rounds): 16 -> 16 ch forward 0.64 -> 0.54 ms and backward
// data 0.62 -> 0.53 ms, 32 -> 16 ch forward 1.34 -> 1.05 ms and backward data 0.97 -> 1.02 / 1.19 ->
// 1.10 ms (noise); at 32 wide, 16 -> 32 and 64 -> 32 ch lose 3 to 17 %.
constexpr int64_t kNarrowDepth = 288;
constexpr int64_t kMinNarrowConvRow = 64;

// Below this many outputs per group, deep convs' backward weight runs directly too, over rows at least
// kMinWeightRow wide whose staged rows and lanes fit in L2. Measured on the demo U-Net's layers (2
// threads, min of rounds): at 512 x 512, batch 1, 16 -> 16 ch 7.5 -> 4.2 ms and 32 -> 16 ch 15.4 -> 8.3
// ms; at 64 x 64, batch 8 (bands of 8 rows, conv_direct_weight_avx512.cpp), 16 -> 16 ch 0.92 -> 0.57
// ms and 32 -> 16 ch 1.54 -> 1.14 ms; with 32 outputs (32 ch at 256) the GEMM path's transposed product
// is as fast (5.3 against 5.5 ms).
constexpr int64_t kNarrowWeightOutputs = 32;
constexpr int64_t kMinWeightRow = 64;

}  // namespace
}  // namespace direct

bool conv2d_runs_direct(const Conv2dDesc& d, DirectPass pass) {
  using namespace direct;
#if defined(__x86_64__)
  const bool unpadded_1x1 = d.kernel_h == 1 && d.kernel_w == 1 && d.pad_h == 0 && d.pad_w == 0;
  if (d.layout != Conv2dLayout::nchw || d.stride_h != 1 || d.stride_w != 1 || unpadded_1x1 || conv2d_is_depthwise(d) ||
      d.kernel_w > kMaxKernelWidth || gemm_isa() != GemmIsa::avx512) {
    return false;
  }
  if (d.c_in / d.groups * d.kernel_h * d.kernel_w < kShallowConvDepth) return true;
  // Deeper convs: where the rows are wide and the staged rows of a thread stay in L2 (see kMinWideRow).
  if (pass == DirectPass::backward_weight) {
    // Few outputs per group (kNarrowWeightOutputs) leave the GEMM path's dW (Og, K) += dy (Og, cols) @
    // col^T with Og rows only, its time in im2col and packing; directly, over rows whose staged x and
    // f32 lanes stay in L2.
    const DirectConvShape s = forward_shape(d);
    return d.c_out / d.groups < kNarrowWeightOutputs && s.ow >= kMinWeightRow &&
           staging_bytes(s, weight_band_rows(s)) + weight_lane_bytes(s) <= l2_bytes() * 3 / 4;
  }
  const DirectConvShape s = pass == DirectPass::forward ? forward_shape(d) : backward_data_shape(d);
  const int64_t min_row = s.c_in / s.groups * s.kh * s.kw <= kNarrowDepth ? kMinNarrowConvRow : kMinWideRow;
  return s.ow >= min_row && staging_bytes(s) <= l2_bytes() * 3 / 4;
#else
  (void)d, (void)pass;
  return false;
#endif
}

void conv2d_forward_direct(const Conv2dDesc& d, const float* x, const float* w, const float* bias, bool stream,
                           float* y) {
  using namespace direct;
  SE_CHECK(conv2d_runs_direct(d, DirectPass::forward), "conv2d_forward_direct: this conv or CPU has no direct kernel");
  const DirectConvShape s = forward_shape(d);
  direct_conv_f32(s, x, w, bias, d.activation, stream, y);
}

// With stride 1, dx is the convolution of dy with each group's weights flipped in both axes and its
// input and output channels swapped, padded by d * (KH - 1) - p (which may be negative).
void conv2d_backward_data_direct(const Conv2dDesc& d, const float* dy, const float* w, bool stream, float* dx) {
  using namespace direct;
  SE_CHECK(conv2d_runs_direct(d, DirectPass::backward_data),
           "conv2d_backward_data_direct: this conv or CPU has no direct kernel");
  const int64_t cg = d.c_in / d.groups, og = d.c_out / d.groups, taps = d.kernel_h * d.kernel_w;
  std::vector<float> flipped(static_cast<size_t>(d.c_in * og * taps));  // (C_in, Og, KH, KW)
  for (int64_t group = 0; group < d.groups; ++group) {
    for (int64_t c = 0; c < cg; ++c) {
      for (int64_t m = 0; m < og; ++m) {
        const float* src = w + ((group * og + m) * cg + c) * taps;
        float* dst = flipped.data() + ((group * cg + c) * og + m) * taps;
        std::reverse_copy(src, src + taps, dst);  // (i, j) -> (KH-1-i, KW-1-j)
      }
    }
  }
  const DirectConvShape s = backward_data_shape(d);
  direct_conv_f32(s, dy, flipped.data(), nullptr, ConvActivation::none, stream, dx);
}

}  // namespace se::kernels::cpu
