// The direct stride-1 convolution of conv_direct_avx512.h (compiled with a target attribute: the build
// has no -march flags; conv2d_runs_direct checks the CPU at run time).
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
//
// Backward weight (shallow convs, and deep ones with few outputs): each output row adds its products of dy
// rows and the staged x rows into per-thread vector lanes, a tile of 8 output channels x 3 kernel columns
// at a time.
#include "kernels/cpu/conv_direct_avx512.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/elementwise_fast.h"
#include "kernels/gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace se::kernels::cpu {
namespace {

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

#if defined(__x86_64__)
#define SE_AVX512 __attribute__((target("avx512f")))

int max_threads() {
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

// Where a staged row's column 0 lies in its slot, and the slots' stride (floats).
struct StagingGeometry {
  int64_t left, stride;
};

StagingGeometry staging_geometry(const DirectConvShape& s) {
  // Column 0 of every row on a 64-byte boundary (the padding before it rounded up to whole vectors),
  // so that vectors of 16 outputs read whole cache lines where the kernel's offset is 0.
  const int64_t left = (std::max<int64_t>(s.pw, 0) + kLanes - 1) / kLanes * kLanes;
  // Past the furthest read: the last strip ends before OW + kMaxStripWidth, then the kernel's reach.
  const int64_t reach = s.ow + kMaxStripWidth + (s.kw - 1) * s.dw - s.pw;
  int64_t stride = (left + std::max(s.w, reach) + kLanes - 1) / kLanes * kLanes;
  if (stride % 256 == 0) stride += kLanes;  // keep rows off a 1 KB period (cache-set aliasing)
  return {left, stride};
}

// The bytes of one thread's staging ring.
int64_t staging_bytes(const DirectConvShape& s) {
  return s.c_in / s.groups * ((s.kh - 1) * s.dh + 1) * staging_geometry(s).stride * int64_t(sizeof(float));
}

// One thread's ring of staged x rows: for each of the `window` = (KH - 1) * dh + 1 most recent input
// rows (slot ih mod window) and each channel c of the group, the row with `left` zeros before it and
// zeros after it up to `stride`.
class StagingRing {
 public:
  explicit StagingRing(const DirectConvShape& s) : s_(s), cg_(s.c_in / s.groups), window_((s.kh - 1) * s.dh + 1) {
    const StagingGeometry geometry = staging_geometry(s);
    left_ = geometry.left;
    stride_ = geometry.stride;
    storage_.assign(static_cast<size_t>(window_ * cg_ * stride_ + kLanes), 0.0f);
    const uintptr_t address = reinterpret_cast<uintptr_t>(storage_.data());
    rows_ = storage_.data() + (64 - address % 64) % 64 / sizeof(float);
  }

  // Makes the rows of output row oh of x_g (Cg, H, W) present; `continues` when the ring already holds
  // those of output row oh - 1 of the same planes (only one new input row per channel to copy).
  void advance(const float* x_g, int64_t oh, bool continues) {
    const int64_t first = oh - s_.ph, last = oh - s_.ph + window_ - 1;  // input rows of the window
    for (int64_t ih = continues ? last : first; ih <= last; ++ih) {
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

// ---- backward weight: dW[o][c][i][j] = sum over (n, oh, ow) of dy[n][o][oh][ow] * x[n][c][oh+i*dh-ph][ow+j*dw-pw]

// One thread's running sums: `lanes` (C_out, K + 1, 16) f32, the 16 vector lanes of each output's sum
// (entry K, after the K taps: the bias gradient, the sum of dy), folded into a slot's f64 sums (C_out, K + 1)
// every kFoldRows output rows of the slot and at its end, so that no f32 lane adds up more than a few
// thousand products.
struct WeightLanes {
  explicit WeightLanes(int64_t outputs) : lanes(static_cast<size_t>(outputs * kLanes)), outputs(outputs) {}
  void fold_into(double* sums) {  // (outputs)
    for (int64_t e = 0; e < outputs; ++e) {
      double sum = 0.0;
      for (int64_t l = 0; l < kLanes; ++l) sum += lanes[static_cast<size_t>(e * kLanes + l)];
      sums[e] += sum;
    }
    std::fill(lanes.begin(), lanes.end(), 0.0f);
  }
  std::vector<float> lanes;
  int64_t outputs;
};
constexpr int64_t kFoldRows = 16;
// The slots of conv2d_backward_weight_direct.
constexpr int64_t kWeightSlots = 64;

// 16 floats from p (the first `count` of them when kTail, the rest zero and not read).
template <bool kTail>
SE_AVX512 inline __m512 load_row(const float* p, int64_t count) {
  if constexpr (kTail) {
    return _mm512_maskz_loadu_ps(first_lanes(count), p);
  } else {
    (void)count;
    return _mm512_loadu_ps(p);
  }
}

// lanes_o + (u * lanes_ld + jj) * 16 += acc[u][jj]: a tile's sums over one output row into the thread's lanes.
template <int CO, int TJ>
SE_AVX512 inline void add_to_lanes(const __m512 (&acc)[CO][TJ], float* lanes_o, int64_t lanes_ld) {
#pragma GCC unroll 8
  for (int u = 0; u < CO; ++u) {
#pragma GCC unroll 4
    for (int jj = 0; jj < TJ; ++jj) {
      float* lane = lanes_o + (u * lanes_ld + jj) * kLanes;
      _mm512_storeu_ps(lane, _mm512_add_ps(_mm512_loadu_ps(lane), acc[u][jj]));
    }
  }
}

// Columns ow0 .. ow0 + 16 of the CO dy rows at prefetch_o (planes `plane` apart) into L2; none when null.
template <int CO>
SE_AVX512 inline void prefetch_columns(const float* prefetch_o, int64_t plane, int64_t ow0) {
  if (prefetch_o == nullptr) return;
#pragma GCC unroll 8
  for (int u = 0; u < CO; ++u) _mm_prefetch(reinterpret_cast<const char*>(prefetch_o + u * plane + ow0), _MM_HINT_T1);
}

// acc[u][jj] += dy_u[ow0 .. ow0 + 16) * x[ow0 + (j0 + jj) * dw - pw ..] for the tile's CO channels and
// TJ kernel columns: one 16-pixel column block of a row (kTail: the row's last, partial one).
template <int CO, int TJ, bool kTail>
SE_AVX512 inline void weight_block(const DirectConvShape& s, const float* dy_o, int64_t plane, const float* x_j0,
                                   int64_t ow0, __m512 (&acc)[CO][TJ]) {
  const int64_t valid = s.ow - ow0;
  __m512 xv[TJ];
#pragma GCC unroll 4
  for (int jj = 0; jj < TJ; ++jj) xv[jj] = load_row<kTail>(x_j0 + jj * s.dw + ow0, valid);
#pragma GCC unroll 8
  for (int u = 0; u < CO; ++u) {
    __m512 d = load_row<kTail>(dy_o + u * plane + ow0, valid);
    asm("" : "+v"(d));  // one load: GCC would fold it into each of the TJ FMAs
#pragma GCC unroll 4
    for (int jj = 0; jj < TJ; ++jj) acc[u][jj] = _mm512_fmadd_ps(d, xv[jj], acc[u][jj]);
  }
}

// Adds one output row's products of CO output channels (from dy_o, planes `plane` apart) and TJ kernel
// columns j0.. of one staged x row into lanes_o + (u * (K + 1) + jj) * 16. prefetch_o: the same
// channels' dy row kPrefetchRowsAhead rows down, or nullptr.
template <int CO, int TJ>
SE_AVX512 void weight_row_tile(const DirectConvShape& s, const float* dy_o, int64_t plane, const float* prefetch_o,
                               const float* x_row, int64_t j0, float* lanes_o, int64_t lanes_ld) {
  __m512 acc[CO][TJ];
#pragma GCC unroll 8
  for (int u = 0; u < CO; ++u) {
#pragma GCC unroll 4
    for (int jj = 0; jj < TJ; ++jj) acc[u][jj] = _mm512_setzero_ps();
  }
  const float* x_j0 = x_row + j0 * s.dw - s.pw;
  int64_t ow0 = 0;
  for (; ow0 + kLanes <= s.ow; ow0 += kLanes) {
    prefetch_columns<CO>(prefetch_o, plane, ow0);
    weight_block<CO, TJ, false>(s, dy_o, plane, x_j0, ow0, acc);
  }
  if (ow0 < s.ow) weight_block<CO, TJ, true>(s, dy_o, plane, x_j0, ow0, acc);
  add_to_lanes<CO, TJ>(acc, lanes_o, lanes_ld);
}

// Lanes kShift.. of low, then the first kShift of high (valignd). Through the masked form: GCC 12's
// unmasked one passes an undefined vector that -Wmaybe-uninitialized flags.
template <int kShift>
SE_AVX512 inline __m512i rotate(__m512i high, __m512i low) {
  return _mm512_mask_alignr_epi32(high, static_cast<__mmask16>(0xffff), high, low, kShift);
}

// weight_row_tile<CO, 3> for the 3-wide, undilated kernel padded by 1 (nearly every 3x3 conv): the three
// shifted x vectors (columns ow0 - 1, ow0, ow0 + 1) come from one aligned load per 16 columns and two
// lane rotations, instead of three loads that each straddle two cache lines.
template <int CO>
SE_AVX512 void weight_row_tile_3x3(const DirectConvShape& s, const float* dy_o, int64_t plane, const float* prefetch_o,
                                   const float* x_row, float* lanes_o, int64_t lanes_ld) {
  __m512 acc[CO][3];
#pragma GCC unroll 8
  for (int u = 0; u < CO; ++u) acc[u][0] = acc[u][1] = acc[u][2] = _mm512_setzero_ps();
  __m512i previous = _mm512_castps_si512(_mm512_loadu_ps(x_row - kLanes));
  __m512i current = _mm512_castps_si512(_mm512_loadu_ps(x_row));
  int64_t ow0 = 0;
  for (; ow0 + kLanes <= s.ow; ow0 += kLanes) {
    prefetch_columns<CO>(prefetch_o, plane, ow0);
    const __m512i next = _mm512_castps_si512(_mm512_loadu_ps(x_row + ow0 + kLanes));
    const __m512 x_left = _mm512_castsi512_ps(rotate<15>(current, previous));  // x[ow0 - 1 ..]
    const __m512 x_mid = _mm512_castsi512_ps(current);
    const __m512 x_right = _mm512_castsi512_ps(rotate<1>(next, current));  // x[ow0 + 1 ..]
#pragma GCC unroll 8
    for (int u = 0; u < CO; ++u) {
      __m512 d = _mm512_loadu_ps(dy_o + u * plane + ow0);
      asm("" : "+v"(d));  // one load: GCC would fold it into each of the 3 FMAs
      acc[u][0] = _mm512_fmadd_ps(d, x_left, acc[u][0]);
      acc[u][1] = _mm512_fmadd_ps(d, x_mid, acc[u][1]);
      acc[u][2] = _mm512_fmadd_ps(d, x_right, acc[u][2]);
    }
    previous = current;
    current = next;
  }
  if (ow0 < s.ow) weight_block<CO, 3, true>(s, dy_o, plane, x_row - 1, ow0, acc);
  add_to_lanes<CO, 3>(acc, lanes_o, lanes_ld);
}

// Up to 3 kernel columns at a time: CO * TJ <= 24 accumulators.
template <int CO>
SE_AVX512 void weight_row_tiles(const DirectConvShape& s, const float* dy_o, int64_t plane, const float* prefetch_o,
                                const float* x_row, float* lanes_o, int64_t lanes_ld) {
  if (s.kw == 3 && s.dw == 1 && s.pw == 1) {
    return weight_row_tile_3x3<CO>(s, dy_o, plane, prefetch_o, x_row, lanes_o, lanes_ld);
  }
  for (int64_t j0 = 0; j0 < s.kw; j0 += 3) {
    float* lanes_j = lanes_o + j0 * kLanes;
    switch (std::min<int64_t>(3, s.kw - j0)) {
      case 1: weight_row_tile<CO, 1>(s, dy_o, plane, prefetch_o, x_row, j0, lanes_j, lanes_ld); break;
      case 2: weight_row_tile<CO, 2>(s, dy_o, plane, prefetch_o, x_row, j0, lanes_j, lanes_ld); break;
      default: weight_row_tile<CO, 3>(s, dy_o, plane, prefetch_o, x_row, j0, lanes_j, lanes_ld); break;
    }
    prefetch_o = nullptr;  // once per row
  }
}

// lanes (CO rows lanes_ld * 16 apart) += the row of dy of each channel, for the bias gradient.
SE_AVX512 void bias_row(const DirectConvShape& s, const float* dy_o, int64_t plane, int64_t channels, float* lanes,
                        int64_t lanes_ld) {
  for (int64_t u = 0; u < channels; ++u) {
    const float* row = dy_o + u * plane;
    __m512 acc = _mm512_setzero_ps();
    int64_t ow0 = 0;
    for (; ow0 + kLanes <= s.ow; ow0 += kLanes) acc = _mm512_add_ps(acc, _mm512_loadu_ps(row + ow0));
    if (ow0 < s.ow) acc = _mm512_add_ps(acc, load_row<true>(row + ow0, s.ow - ow0));
    float* lane = lanes + u * lanes_ld * kLanes;
    _mm512_storeu_ps(lane, _mm512_add_ps(_mm512_loadu_ps(lane), acc));
  }
}

// Output row oh of one (image, group): its products added into `thread_lanes` (every channel, every tap,
// and the bias when with_bias), from the staged rows of x_g and the dy planes of the group from dy_g.
SE_AVX512 void weight_row(const DirectConvShape& s, const float* dy_g, StagingRing& ring, int64_t oh, int64_t group,
                          bool with_bias, WeightLanes& thread_lanes) {
  const int64_t cg = s.c_in / s.groups, og = s.c_out / s.groups, k = cg * s.kh * s.kw;
  const int64_t plane = s.oh * s.ow, ahead = oh + kPrefetchRowsAhead;
  for (int64_t o = 0; o < og; o += kTileChannels) {
    const int64_t channels = std::min(kTileChannels, og - o);
    const float* dy_o = dy_g + o * plane + oh * s.ow;
    const float* prefetch_o = ahead < s.oh ? dy_o + kPrefetchRowsAhead * s.ow : nullptr;
    float* lanes_o = thread_lanes.lanes.data() + (group * og + o) * (k + 1) * kLanes;
    for (int64_t c = 0; c < cg; ++c) {
      for (int64_t i = 0; i < s.kh; ++i) {
        const int64_t ih = oh + i * s.dh - s.ph;
        if (ih < 0 || ih >= s.h) continue;
        const float* x_row = ring.row(c, ih);
        float* lanes_t = lanes_o + (c * s.kh + i) * s.kw * kLanes;
        switch (channels) {
          case 1: weight_row_tiles<1>(s, dy_o, plane, prefetch_o, x_row, lanes_t, k + 1); break;
          case 2: weight_row_tiles<2>(s, dy_o, plane, prefetch_o, x_row, lanes_t, k + 1); break;
          case 3: weight_row_tiles<3>(s, dy_o, plane, prefetch_o, x_row, lanes_t, k + 1); break;
          case 4: weight_row_tiles<4>(s, dy_o, plane, prefetch_o, x_row, lanes_t, k + 1); break;
          case 5: weight_row_tiles<5>(s, dy_o, plane, prefetch_o, x_row, lanes_t, k + 1); break;
          case 6: weight_row_tiles<6>(s, dy_o, plane, prefetch_o, x_row, lanes_t, k + 1); break;
          case 7: weight_row_tiles<7>(s, dy_o, plane, prefetch_o, x_row, lanes_t, k + 1); break;
          default: weight_row_tiles<8>(s, dy_o, plane, prefetch_o, x_row, lanes_t, k + 1); break;
        }
        prefetch_o = nullptr;  // once per row
      }
    }
    if (with_bias) bias_row(s, dy_o, plane, channels, lanes_o + k * kLanes, k + 1);
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
      ring.advance(x_g, oh, previous == t - 1 && oh > 0);
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

// The direct problem of d's forward.
DirectConvShape forward_shape(const Conv2dDesc& d) {
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

#if defined(__x86_64__)
// The CPU's L2 per core (1 MB when the C library cannot tell).
int64_t l2_bytes() {
  static const int64_t bytes = [] {
    const long reported = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return reported > 0 ? int64_t(reported) : int64_t(1) << 20;
  }();
  return bytes;
}
#endif

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
// 1.10 ms (noise); at 32 wide, 16 -> 32 and 64 -> 32 ch lose 3 to 17 %. Backward weight keeps
// kMinWideRow (directly, 32 -> 16 ch at 64 wide took 1.56 -> 2.59 ms).
constexpr int64_t kNarrowDepth = 288;
constexpr int64_t kMinNarrowConvRow = 64;

// Below this many outputs per group, deep convs' backward weight runs directly too (where its rows are
// wide and its staged rows and lanes fit in L2). Measured on the demo U-Net's layers (2 threads, 512 x
// 512, batch 1): 16 -> 16 ch 7.5 -> 4.2 ms, 32 -> 16 ch 15.4 -> 8.3 ms; with 32 outputs (32 ch at 256)
// the GEMM path's transposed product is as fast (5.3 against 5.5 ms).
constexpr int64_t kNarrowWeightOutputs = 32;

}  // namespace

bool conv2d_runs_direct(const Conv2dDesc& d, DirectPass pass) {
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
    // col^T with Og rows only, its time in im2col and packing; directly, over wide rows whose staged x
    // and f32 lanes stay in L2.
    const DirectConvShape s = forward_shape(d);
    const int64_t k = d.c_in / d.groups * d.kernel_h * d.kernel_w;
    const int64_t lane_bytes = d.c_out * (k + 1) * 16 * static_cast<int64_t>(sizeof(float));  // WeightLanes
    return d.c_out / d.groups < kNarrowWeightOutputs && s.ow >= kMinWideRow &&
           staging_bytes(s) + lane_bytes <= l2_bytes() * 3 / 4;
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
  SE_CHECK(conv2d_runs_direct(d, DirectPass::forward), "conv2d_forward_direct: this conv or CPU has no direct kernel");
  const DirectConvShape s = forward_shape(d);
  direct_conv_f32(s, x, w, bias, d.activation, stream, y);
}

// With stride 1, dx is the convolution of dy with each group's weights flipped in both axes and its
// input and output channels swapped, padded by d * (KH - 1) - p (which may be negative).
void conv2d_backward_data_direct(const Conv2dDesc& d, const float* dy, const float* w, bool stream, float* dx) {
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

void conv2d_backward_weight_direct(const Conv2dDesc& d, const float* x, const float* dy, float* dw, float* db) {
  SE_CHECK(conv2d_runs_direct(d, DirectPass::backward_weight),
           "conv2d_backward_weight_direct: this conv or CPU has no direct kernel");
#if defined(__x86_64__)
  const DirectConvShape s = forward_shape(d);
  const int64_t cg = s.c_in / s.groups, og = s.c_out / s.groups, k = cg * s.kh * s.kw;
  const int64_t tasks = s.n * s.groups * s.oh, outputs = s.c_out * (k + 1);
  // Slots: contiguous ranges of rows, each summed into f64 sums of its own, which are then added in slot
  // order. Their count is fixed by the shape, not by the threads (which take whole slots), so dW and db
  // do not depend on the thread count; 64 of them keep up to 16 threads evenly busy.
  const int64_t slots = std::min<int64_t>(tasks, kWeightSlots);
  std::vector<double> slot_sums(static_cast<size_t>(slots * outputs), 0.0);  // (slots, C_out, K + 1)
#pragma omp parallel num_threads(max_threads())
  {
    WeightLanes lanes(outputs);
    StagingRing ring(s);
    int64_t previous = -1;
#pragma omp for schedule(static)
    for (int64_t slot = 0; slot < slots; ++slot) {
      double* sums = slot_sums.data() + slot * outputs;
      const int64_t first = slot * tasks / slots, last = (slot + 1) * tasks / slots;
      for (int64_t t = first; t < last; ++t) {
        const int64_t oh = t % s.oh, image_group = t / s.oh;  // image * groups + group
        const int64_t group = image_group % s.groups, image = image_group / s.groups;
        ring.advance(x + (image * s.c_in + group * cg) * s.h * s.w, oh, previous == t - 1 && oh > 0);
        previous = t;
        weight_row(s, dy + image_group * og * s.oh * s.ow, ring, oh, group, db != nullptr, lanes);
        if ((t - first + 1) % kFoldRows == 0 || t + 1 == last) lanes.fold_into(sums);
      }
    }
  }
#pragma omp parallel for num_threads(max_threads()) schedule(static) if (outputs * slots >= 65536)
  for (int64_t e = 0; e < outputs; ++e) {
    double sum = 0.0;
    for (int64_t slot = 0; slot < slots; ++slot) sum += slot_sums[static_cast<size_t>(slot * outputs + e)];
    const int64_t o = e / (k + 1), tap = e % (k + 1);
    if (tap < k) {
      dw[o * k + tap] = static_cast<float>(sum);
    } else if (db != nullptr) {
      db[o] = static_cast<float>(sum);
    }
  }
#else
  (void)x, (void)dy, (void)dw, (void)db;
#endif
}

}  // namespace se::kernels::cpu
