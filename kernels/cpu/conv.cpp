// CPU Conv2d over NCHW (channels-last goes through conv_channels_last.cpp), as GEMMs on cpu::gemm:
//   forward          y_g (Og, P)       = W_g (Og, K) @ col (K, P)
//   backward data    dcol (K, P)       = W_g^T (K, Og) @ dy_g (Og, P), then col2im into dx
//                    (stride 1: the forward of the dual conv, see backward_data_as_forward)
//   backward weight  dW_g (Og, K)     += dy_g (Og, P) @ col^T (P, K)
// with K = Cg * KH * KW and P the output pixels of one image. This file has the forward GEMM path, the
// depthwise convs and the entry points; conv_backward.cpp the backward GEMM paths; conv_im2col.h the
// geometry, tasks and im2col they share. col (im2col) is not stored: the GEMM gathers it from x block
// by block as it packs it (implicit GEMM, conv_im2col.h's TaskColumns), a few output rows per task;
// small planes (deep layers, small inputs) are instead taken several images per task, side by side in
// col, so that one GEMM packs W once for them all and its n is wide enough to fill the micro-tiles.
// 1x1 stride-1 unpadded convs use x itself as col.
// Depthwise convs (groups == C_in) skip GEMM for a direct per-plane loop.
// Stride-1 convs run on the direct kernel of conv_direct_avx512.h instead where the CPU has AVX-512 (f32)
// and the shape suits it (see conv2d_runs_direct): shallow ones, and deeper ones over wide rows.
// Shallow convs (K < 128, e.g. the RGB input layer) do few FMAs per byte: as GEMMs, their chunks are
// longer, and a large output is written by the epilogue with non-temporal stores.
// Parallelism: independent (image, group, row chunk) tasks over OpenMP threads, each with a
// single-threaded GEMM; when there are fewer tasks than threads the GEMM itself runs multi-threaded,
// and so do the copies around it (split by channel).
// f16/bf16 are converted to f32, computed in f32 and rounded once on the way out.
#include <omp.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "kernels/conv.h"
#include "kernels/conv_epilogue.h"
#include "kernels/cpu/channel_sum.h"
#include "kernels/cpu/conv_activation.h"
#include "kernels/cpu/conv_channels_last.h"
#include "kernels/cpu/conv_depthwise.h"
#include "kernels/cpu/conv_direct_avx512.h"
#include "kernels/cpu/conv_im2col.h"
#include "kernels/cpu/elementwise_fast.h"
#include "kernels/cpu/streaming.h"
#include "kernels/cpu/vector_math.h"
#include "kernels/gemm.h"

namespace se::kernels::cpu {
namespace {

using namespace conv_gemm;

// ---- forward GEMM path ----

// dst (count) = the fused epilogue of src (count) + b; dst may be src.
template <typename T>
void apply_epilogue(ConvActivation activation, bool has_bias, T b, const T* src, int64_t count, T* dst) {
  if (activation != ConvActivation::none) {
    activate(activation, b, src, count, dst);
  } else if (has_bias) {
    for (int64_t p = 0; p < count; ++p) dst[p] = src[p] + b;
  } else if (src != dst) {
    std::copy(src, src + count, dst);
  }
}

// dst (count) = the fused epilogue of src (count) + b, through non-temporal stores where the CPU has them
// (f32 only: f64 serves gradient checks); call stream_fence before another thread reads dst.
template <typename T>
void stream_epilogue(ConvActivation activation, T b, const T* src, int64_t count, T* dst) {
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    int64_t p = 0;  // the values before dst's first 16-byte boundary
    while (p < count && reinterpret_cast<uintptr_t>(dst + p) % 16 != 0) ++p;
    activate(activation, b, src, p, dst);
    // Blocks of values finished in registers (or a small stack buffer for an activation), then stored.
    constexpr int64_t kBlock = 64;
    alignas(16) float block[kBlock];
    for (; p + kBlock <= count; p += kBlock) {
      if (activation == ConvActivation::none) {
        const __m128 vb = _mm_set1_ps(b);
        for (int64_t q = 0; q < kBlock; q += 4) _mm_stream_ps(dst + p + q, _mm_add_ps(_mm_loadu_ps(src + p + q), vb));
      } else {
        activate(activation, b, src + p, kBlock, block);
        for (int64_t q = 0; q < kBlock; q += 4) _mm_stream_ps(dst + p + q, _mm_load_ps(block + q));
      }
    }
    activate(activation, b, src + p, count - p, dst + p);
    return;
  }
#endif
  activate(activation, b, src, count, dst);
}

inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// Whether a shallow conv's output of `elements` (f32) goes out through non-temporal stores.
bool streams_output(const Geometry& g, int64_t elements) {
  return g.k < kShallowDepth && elements * int64_t(sizeof(float)) > kStreamOutputBytes;
}

template <typename T>
void forward_gemm(const Geometry& geometry_of_conv, const T* x, const T* w, const T* bias, T* y) {
  // Tasks of several small images: fewer images per task until every thread has a task of its own. One
  // task's GEMM split over the threads meets them at a barrier twice per block of K and has each read
  // the B panels the other packed; apart, each packs all of W for itself, a small matrix beside col.
  // (Every output's sum is the same whichever task computes it: this changes no result.)
  Geometry g = geometry_of_conv;
  while (g.images > 1 && task_count(g) < max_threads()) g.images = (g.images + 1) / 2;
  const int64_t tasks = task_count(g);
  const bool stream = std::is_same_v<T, float> && streams_output(g, g.n * g.c_out * g.ohw);
  // inner: threads for the copies around the GEMM of a task that runs alone (its GEMM threads itself).
  auto run = [&](int64_t t, int inner) {
    const Task tk = task_of(g, t);
    const int64_t chunk_cols = (tk.oh1 - tk.oh0) * g.ow;  // of one image
    T* y_g = y + (tk.image * g.c_out + tk.group * g.og) * g.ohw + tk.oh0 * g.ow;
    // One image's chunk is written in place; several go through a scratch and are spread out below, and
    // so does a shallow conv's chunk: its GEMM would store to Og planes at once, tile by tile, where the
    // epilogue writes one plane's run after another.
    const bool in_place = tk.images == 1 && g.k >= kShallowDepth;  // never when streaming
    T* out = in_place ? y_g : scratch<T, 1>(static_cast<size_t>(g.og * tk.ld));
    const int64_t ldc = in_place ? g.ohw : tk.ld;
    const T* w_g = w + tk.group * g.og * g.k;
    if (is_pointwise(g) && tk.images == 1) {  // x is col
      const T* col = x + (tk.image * g.c_in + tk.group * g.cg) * g.hw + tk.oh0 * g.ow;
      gemm(gemm_desc<T>(g.og, tk.cols, g.k, false, g.k, false, g.hw, ldc, 0.0f), w_g, col, out, nullptr);
    } else {
      gemm_packing_b(gemm_desc<T>(g.og, tk.cols, g.k, false, g.k, false, tk.cols, ldc, 0.0f), w_g,
                     TaskColumns<T>(g, x, tk), out);
    }
    // The epilogue on the chunk while it is in cache: bias, then the fused activation.
#pragma omp parallel for num_threads(inner) if (inner > 1) schedule(static)
    for (int64_t co = 0; co < g.og; ++co) {
      const T b = bias != nullptr ? bias[tk.group * g.og + co] : T(0);
      for (int64_t j = 0; j < tk.images; ++j) {
        T* src = out + co * ldc + j * chunk_cols;
        T* dst = y_g + (j * g.c_out + co) * g.ohw;
        if (stream) {
          stream_epilogue(g.activation, b, src, chunk_cols, dst);
          stream_fence();  // on the thread that streamed, before the region's end publishes y
        } else if (g.activation != ConvActivation::none || bias != nullptr || src != dst) {
          apply_epilogue(g.activation, bias != nullptr, b, src, chunk_cols, dst);
        }
      }
    }
  };
  run_tasks(tasks, run);
}

// ---- depthwise: groups == C_in, Og = C_out / C_in outputs per input channel ----

// Stride-1 f32 depthwise convs run on depthwise_taps_f32 (conv_depthwise.h): the same sums in the same
// order as the loops below, their outputs kept in registers across the taps.
bool depthwise_runs_taps(const Geometry& g) {
  return g.sh == 1 && g.sw == 1;
}

// The forward's taps of a channel with weights w_c (KH, KW): (i, j) in order, like the loop below.
std::vector<DepthwiseTap> forward_taps(const Geometry& g, const float* w_c) {
  std::vector<DepthwiseTap> taps;
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) taps.push_back({w_c[i * g.kw + j], i * g.dh - g.ph, j * g.dw - g.pw});
  }
  return taps;
}

// Backward data's taps, dx (ih, iw) += w[i][j] * dy (ih + ph - i * dh, iw + pw - j * dw): in the order the
// loop below adds them to one dx element, i descending (its output rows ascending), then j ascending.
std::vector<DepthwiseTap> backward_data_taps(const Geometry& g, const float* w_c) {
  std::vector<DepthwiseTap> taps;
  for (int64_t i = g.kh - 1; i >= 0; --i) {
    for (int64_t j = 0; j < g.kw; ++j) taps.push_back({w_c[i * g.kw + j], g.ph - i * g.dh, g.pw - j * g.dw});
  }
  return taps;
}

template <typename T>
void forward_depthwise(const Geometry& g, const T* x, const T* w, const T* bias, T* y) {
  const int64_t planes = g.n * g.c_out;
#pragma omp parallel for num_threads(max_threads()) schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t co = p % g.c_out;
    const T* x_c = x + (p / g.c_out * g.c_in + co / g.og) * g.hw;
    const T* w_c = w + co * g.kh * g.kw;
    T* y_p = y + p * g.ohw;
    if constexpr (std::is_same_v<T, float>) {
      if (depthwise_runs_taps(g)) {
        const std::vector<DepthwiseTap> taps = forward_taps(g, w_c);
        depthwise_taps_f32(x_c, g.h, g.w, taps.data(), static_cast<int64_t>(taps.size()), false,
                           bias != nullptr ? bias[co] : 0.0f, y_p, g.oh, g.ow);
        if (g.activation != ConvActivation::none) activate(g.activation, T(0), y_p, g.ohw, y_p);
        continue;
      }
    }
    std::fill(y_p, y_p + g.ohw, bias != nullptr ? bias[co] : T(0));
    for (int64_t oh = 0; oh < g.oh; ++oh) {
      T* out = y_p + oh * g.ow;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ih = oh * g.sh - g.ph + i * g.dh;
        if (ih < 0 || ih >= g.h) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t off_w = j * g.dw - g.pw;
          int64_t lo, hi;
          valid_range(off_w, g.sw, g.w, g.ow, lo, hi);
          const T wv = w_c[i * g.kw + j];
          const T* in = x_c + ih * g.w + off_w;
          for (int64_t ow = lo; ow < hi; ++ow) out[ow] += wv * in[ow * g.sw];
        }
      }
    }
    if (g.activation != ConvActivation::none) activate(g.activation, T(0), y_p, g.ohw, y_p);
  }
}

template <typename T>
void backward_data_depthwise(const Geometry& g, const T* dy, const T* w, T* dx) {
  const int64_t planes = g.n * g.c_in;
#pragma omp parallel for num_threads(max_threads()) schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t c = p % g.c_in;
    T* dx_p = dx + p * g.hw;
    if constexpr (std::is_same_v<T, float>) {
      if (depthwise_runs_taps(g)) {
        for (int64_t m = 0; m < g.og; ++m) {
          const int64_t co = c * g.og + m;
          const std::vector<DepthwiseTap> taps = backward_data_taps(g, w + co * g.kh * g.kw);
          depthwise_taps_f32(dy + (p / g.c_in * g.c_out + co) * g.ohw, g.oh, g.ow, taps.data(),
                             static_cast<int64_t>(taps.size()), m > 0, 0.0f, dx_p, g.h, g.w);
        }
        continue;
      }
    }
    std::fill(dx_p, dx_p + g.hw, T(0));
    for (int64_t m = 0; m < g.og; ++m) {
      const int64_t co = c * g.og + m;
      const T* dy_p = dy + (p / g.c_in * g.c_out + co) * g.ohw;
      const T* w_c = w + co * g.kh * g.kw;
      for (int64_t oh = 0; oh < g.oh; ++oh) {
        const T* in = dy_p + oh * g.ow;
        for (int64_t i = 0; i < g.kh; ++i) {
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.h) continue;
          for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t off_w = j * g.dw - g.pw;
            int64_t lo, hi;
            valid_range(off_w, g.sw, g.w, g.ow, lo, hi);
            const T wv = w_c[i * g.kw + j];
            T* out = dx_p + ih * g.w + off_w;
            for (int64_t ow = lo; ow < hi; ++ow) out[ow * g.sw] += wv * in[ow];
          }
        }
      }
    }
  }
}

// Each channel's taps in one pass over its rows (the planes stay in L2 for all KH * KW taps). A tap's
// products along an output row go into kLanes independent float partial sums, which GCC vectorizes (a single
// running sum is one dependent add chain per element). The lanes are added into a double every few rows
// (<= kProductsPerLane products each) in a fixed order, so the result does not depend on the thread count.
// Stride-1 f32 convs sum the same lanes in vectors where the CPU has AVX-512 (depthwise_weight_lanes_f32).
template <typename T>
void backward_weight_depthwise(const Geometry& g, const T* x, const T* dy, T* dw) {
  constexpr int64_t kLanes = 16, kProductsPerLane = 256;
  const int64_t taps = g.kh * g.kw;
  const int64_t rows_per_fold = std::max<int64_t>(1, kProductsPerLane * kLanes / std::max<int64_t>(1, g.ow));
#pragma omp parallel num_threads(max_threads())
  {
    std::vector<double> sums(static_cast<size_t>(taps));
    std::vector<T> tap_lanes(static_cast<size_t>(taps * kLanes));  // (KH * KW, kLanes)
    auto fold_lanes = [&] {
      for (int64_t tap = 0; tap < taps; ++tap) {
        for (int64_t l = 0; l < kLanes; ++l) sums[static_cast<size_t>(tap)] += tap_lanes[tap * kLanes + l];
      }
    };
#pragma omp for schedule(static)
    for (int64_t co = 0; co < g.c_out; ++co) {
      std::fill(sums.begin(), sums.end(), 0.0);
      for (int64_t n = 0; n < g.n; ++n) {
        const T* x_c = x + (n * g.c_in + co / g.og) * g.hw;
        const T* dy_p = dy + (n * g.c_out + co) * g.ohw;
        for (int64_t oh0 = 0; oh0 < g.oh; oh0 += rows_per_fold) {
          std::fill(tap_lanes.begin(), tap_lanes.end(), T(0));
          const int64_t oh1 = std::min(g.oh, oh0 + rows_per_fold);
          if constexpr (std::is_same_v<T, float>) {
            if (g.sh == 1 && g.sw == 1 &&
                depthwise_weight_lanes_f32({x_c, dy_p, g.h, g.w, g.oh, g.ow, g.kh, g.kw, g.ph, g.pw, g.dh, g.dw}, oh0,
                                           oh1, tap_lanes.data())) {
              fold_lanes();
              continue;
            }
          }
          for (int64_t oh = oh0; oh < oh1; ++oh) {
            const T* d = dy_p + oh * g.ow;
            for (int64_t i = 0; i < g.kh; ++i) {
              const int64_t ih = oh * g.sh - g.ph + i * g.dh;
              if (ih < 0 || ih >= g.h) continue;
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t off_w = j * g.dw - g.pw;
                int64_t lo, hi;
                valid_range(off_w, g.sw, g.w, g.ow, lo, hi);
                const T* in = x_c + ih * g.w + off_w;
                T* lanes = tap_lanes.data() + (i * g.kw + j) * kLanes;
                int64_t ow = lo;
                if (g.sw == 1) {
                  for (; ow + kLanes <= hi; ow += kLanes) {
                    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += d[ow + l] * in[ow + l];
                  }
                } else {
                  for (; ow + kLanes <= hi; ow += kLanes) {
                    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += d[ow + l] * in[(ow + l) * g.sw];
                  }
                }
                for (int64_t l = 0; ow < hi; ++ow, ++l) lanes[l] += d[ow] * in[ow * g.sw];
              }
            }
          }
          fold_lanes();
        }
      }
      for (int64_t tap = 0; tap < taps; ++tap) dw[co * taps + tap] = static_cast<T>(sums[static_cast<size_t>(tap)]);
    }
  }
}

// ---- typed entry points (T is float or double) ----

template <typename T>
void forward_typed(const Conv2dDesc& d, const T* x, const T* w, const T* bias, T* y) {
  const Geometry g = geometry(d);
  if (conv2d_is_depthwise(d)) return forward_depthwise(g, x, w, bias, y);
  if constexpr (std::is_same_v<T, float>) {
    if (conv2d_runs_direct(d, DirectPass::forward))
      return conv2d_forward_direct(d, x, w, bias, streams_output(g, g.n * g.c_out * g.ohw), y);
  }
  forward_gemm(g, x, w, bias, y);
}

// Below this many input channels per group, the backward data of a stride-1 conv stays a GEMM into
// dcol and col2im: as the forward of its dual (below) the GEMM would have that few rows, a fraction of
// the micro-kernel's 8 to 12.
constexpr int64_t kMinDualRows = 8;

// The backward data of a stride-1 conv is the forward of its dual: dx = conv(dy, w'), w' the weights
// with input and output channels swapped and the taps flipped, w'[g Cg + c][o][i][j] =
// w[g Og + o][c][KH-1-i][KW-1-j], the padding dilation * (kernel - 1) - pad (may be negative), the
// same dilation and groups. It runs on the forward's implicit GEMM, which packs dy straight into the
// GEMM's panels: no dcol to write, no col2im to add it up, no dx to zero first. Per pixel it gathers
// Og * KH * KW values of dy where col2im adds Cg * KH * KW into dx, and its GEMM has Cg rows where the
// other has Cg * KH * KW: convs that widen (Og > Cg) keep col2im. Measured on the demo U-Net's layers
// (2 threads, 8 images): 16 -> 16 channels at 64 x 64, 0.80 -> 0.63 ms; 32 -> 16, 1.50 -> 0.97; 256 ->
// 128 at 8 x 8, 1.00 -> 0.82; but 128 -> 256 at 4 x 4, 0.32 -> 0.36.
bool backward_data_runs_as_forward(const Geometry& g) {
  return g.sh == 1 && g.sw == 1 && !is_pointwise(g) && g.cg >= std::max(kMinDualRows, g.og) && g.oh > 0 &&
         g.ow > 0;
}

template <typename T>
void backward_data_as_forward(const Conv2dDesc& d, const Geometry& g, const T* dy, const T* w, T* dx) {
  Conv2dDesc dual = d;
  dual.c_in = d.c_out;
  dual.h = g.oh;
  dual.w = g.ow;
  dual.c_out = d.c_in;
  dual.pad_h = d.dilation_h * (d.kernel_h - 1) - d.pad_h;
  dual.pad_w = d.dilation_w * (d.kernel_w - 1) - d.pad_w;
  dual.has_bias = false;
  dual.activation = ConvActivation::none;
  const Geometry gd = geometry(dual);
  SE_CHECK(gd.oh == g.h && gd.ow == g.w, "conv2d_backward_data: the dual conv gives ", gd.oh, "x", gd.ow,
           " planes, not ", g.h, "x", g.w);
  const int64_t taps = g.kh * g.kw;
  T* w_dual = scratch<T, 3>(static_cast<size_t>(g.c_out * g.k));  // (C_in, Og, KH, KW)
#pragma omp parallel for collapse(2) num_threads(max_threads()) schedule(static)
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    for (int64_t c = 0; c < g.cg; ++c) {
      T* out = w_dual + (grp * g.cg + c) * g.og * taps;
      for (int64_t o = 0; o < g.og; ++o) {
        const T* in = w + ((grp * g.og + o) * g.cg + c) * taps;
        for (int64_t t = 0; t < taps; ++t) out[o * taps + t] = in[taps - 1 - t];
      }
    }
  }
  forward_gemm<T>(gd, dy, w_dual, nullptr, dx);
}

template <typename T>
void backward_data_typed(const Conv2dDesc& d, const T* dy, const T* w, T* dx) {
  const Geometry g = geometry(d);
  if (conv2d_is_depthwise(d)) return backward_data_depthwise(g, dy, w, dx);
  if constexpr (std::is_same_v<T, float>) {
    if (conv2d_runs_direct(d, DirectPass::backward_data))
      return conv2d_backward_data_direct(d, dy, w, streams_output(g, g.n * g.c_in * g.hw), dx);
  }
  if (backward_data_runs_as_forward(g)) return backward_data_as_forward(d, g, dy, w, dx);
  backward_data_gemm(g, dy, w, dx);
}

template <typename T>
void backward_weight_typed(const Conv2dDesc& d, const T* x, const T* dy, T* dw, T* db) {
  const Geometry g = geometry(d);
  if (conv2d_is_depthwise(d)) {
    backward_weight_depthwise(g, x, dy, dw);
    if (db != nullptr) channel_sums(dy, g.n, g.c_out, g.ohw, db);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (conv2d_runs_direct(d, DirectPass::backward_weight)) return conv2d_backward_weight_direct(d, x, dy, dw, db);
  }
  backward_weight_gemm(g, x, dy, dw, db);
}

// f16/bf16 run the f32 code on converted copies.
template <typename T>
std::vector<float> widen(const void* p, int64_t count) {
  if (p == nullptr) return {};
  const T* src = static_cast<const T*>(p);
  return std::vector<float>(src, src + count);
}

template <typename T>
void narrow(const std::vector<float>& src, void* dst) {
  T* out = static_cast<T*>(dst);
  for (size_t i = 0; i < src.size(); ++i) out[i] = T(src[i]);
}

template <typename T>
constexpr bool is_half() {
  return std::is_same_v<T, f16> || std::is_same_v<T, bf16>;
}

}  // namespace

void conv2d_forward(const Conv2dDesc& desc, const void* x, const void* w, const void* bias, void* y,
                    Stream /*stream*/) {
  validate_conv2d(desc);
  if (desc.n == 0) return;
  SE_CHECK(x != nullptr && w != nullptr && y != nullptr, "conv2d_forward: x, w or y is null");
  SE_CHECK(!desc.has_bias || bias != nullptr, "conv2d_forward: has_bias is set but bias is null");
  const void* b = desc.has_bias ? bias : nullptr;
  if (desc.layout == Conv2dLayout::nhwc) {
    conv2d_forward_channels_last(desc, x, w, b, y);
    return;
  }
  dispatch_floating(desc.dtype, "conv2d_forward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (is_half<T>()) {
      const auto x32 = widen<T>(x, conv2d_x_elements(desc)), w32 = widen<T>(w, conv2d_w_elements(desc));
      const auto b32 = widen<T>(b, desc.c_out);
      std::vector<float> y32(static_cast<size_t>(conv2d_y_elements(desc)));
      forward_typed<float>(desc, x32.data(), w32.data(), b ? b32.data() : nullptr, y32.data());
      narrow<T>(y32, y);
    } else {
      forward_typed<T>(desc, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b),
                       static_cast<T*>(y));
    }
  });
}

void conv2d_backward_data(const Conv2dDesc& desc, const void* dy, const void* w, void* dx, Stream /*stream*/) {
  validate_conv2d(desc);
  if (desc.n == 0) return;
  SE_CHECK(dy != nullptr && w != nullptr && dx != nullptr, "conv2d_backward_data: dy, w or dx is null");
  if (desc.layout == Conv2dLayout::nhwc) {
    conv2d_backward_data_channels_last(desc, dy, w, dx);
    return;
  }
  dispatch_floating(desc.dtype, "conv2d_backward_data", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (is_half<T>()) {
      const auto dy32 = widen<T>(dy, conv2d_y_elements(desc)), w32 = widen<T>(w, conv2d_w_elements(desc));
      std::vector<float> dx32(static_cast<size_t>(conv2d_x_elements(desc)));
      backward_data_typed<float>(desc, dy32.data(), w32.data(), dx32.data());
      narrow<T>(dx32, dx);
    } else {
      backward_data_typed<T>(desc, static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<T*>(dx));
    }
  });
}

void conv2d_backward_weight(const Conv2dDesc& desc, const void* x, const void* dy, void* dw, void* db,
                            void* /*workspace*/, Stream /*stream*/) {
  validate_conv2d(desc);
  SE_CHECK(dw != nullptr, "conv2d_backward_weight: dw is null");
  SE_CHECK(desc.n == 0 || (x != nullptr && dy != nullptr), "conv2d_backward_weight: x or dy is null");
  if (desc.layout == Conv2dLayout::nhwc && desc.n > 0) {
    conv2d_backward_weight_channels_last(desc, x, dy, dw, db);
    return;
  }
  dispatch_floating(desc.dtype, "conv2d_backward_weight", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (desc.n == 0) {  // no images: zero gradients
      std::fill_n(static_cast<T*>(dw), conv2d_w_elements(desc), T(0.0f));
      if (db != nullptr) std::fill_n(static_cast<T*>(db), desc.c_out, T(0.0f));
      return;
    }
    if constexpr (is_half<T>()) {
      const auto x32 = widen<T>(x, conv2d_x_elements(desc)), dy32 = widen<T>(dy, conv2d_y_elements(desc));
      std::vector<float> dw32(static_cast<size_t>(conv2d_w_elements(desc)));
      std::vector<float> db32(db != nullptr ? static_cast<size_t>(desc.c_out) : 0);
      backward_weight_typed<float>(desc, x32.data(), dy32.data(), dw32.data(), db ? db32.data() : nullptr);
      narrow<T>(dw32, dw);
      if (db != nullptr) narrow<T>(db32, db);
    } else {
      backward_weight_typed<T>(desc, static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dw),
                               static_cast<T*>(db));
    }
  });
}

}  // namespace se::kernels::cpu
