// Channels-last depthwise Conv2d on the CPU without permutations (see conv_channels_last.h for when it
// runs). SegFormer's Mix-FFN hands its depthwise conv a token map, which is an NHWC image as it lies:
// the NCHW kernels needed a transposing copy of x, of y and of each gradient around every such conv.
// Here every loop runs along the channels, which are contiguous, in tiles of output pixels that stay
// in L1 across the taps.
//   forward and backward data: each output is its initial value (the bias, or 0) plus the taps'
//   products added in the NCHW loops' order (conv.cpp: forward i then j ascending, backward data i
//   descending then j ascending), each a multiply then an add (this file builds with
//   -ffp-contract=off): the same bits as the NCHW kernels, on every ISA.
//   backward weight and bias: tasks of kWeightTaskRows output rows of one image sum their products in
//   f32 (f64 for f64), row by row, pixel by pixel; the tasks' sums are added in task order in f64. The
//   order differs from the NCHW kernel's (so do the last bits) but not with the thread count.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "kernels/conv.h"
#include "kernels/cpu/conv_activation.h"
#include "kernels/cpu/conv_channels_last.h"
#include "kernels/cpu/per_isa.h"

namespace se::kernels::cpu {
namespace {

constexpr int64_t kTileBytes = 8192;    // outputs of a tile: all taps' passes stay in L1
constexpr int64_t kWeightTaskRows = 4;  // output rows per backward-weight task

int max_threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }
template <typename T> using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Output (r, q) of a plane reads input (r + row, q + col) with weights wt[weight * C ...].
struct Tap {
  int64_t row, col, weight;
};

// One pass (forward or backward data) over planes of `images` images: out (images, out_h, out_w, C) =
// init + the taps of in (images, in_h, in_w, C), then the activation. wt (taps, C) in compute type.
struct TapPass {
  const void* in;
  int64_t in_h, in_w;
  const void* wt;
  const Tap* taps;
  int64_t tap_count;
  const void* bias;  // (C) or nullptr: the initial value, else 0
  ConvActivation activation;
  void* out;
  int64_t out_h, out_w, channels;
};

// Output rows [row_begin, row_end) of the pass (rows count across images).
template <typename T>
inline void tap_rows(const TapPass& p, int64_t row_begin, int64_t row_end, compute_t<T>* tile) {
  using A = compute_t<T>;
  const int64_t c_count = p.channels;
  const int64_t tile_pixels = std::max<int64_t>(1, kTileBytes / static_cast<int64_t>(sizeof(A)) / c_count);
  const T* in = static_cast<const T*>(p.in);
  const A* wt = static_cast<const A*>(p.wt);
  const T* bias = static_cast<const T*>(p.bias);
  T* out = static_cast<T*>(p.out);
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t image = row / p.out_h, r = row % p.out_h;
    const T* in_image = in + image * p.in_h * p.in_w * c_count;
    T* out_row = out + row * p.out_w * c_count;
    for (int64_t q0 = 0; q0 < p.out_w; q0 += tile_pixels) {
      const int64_t q1 = std::min(p.out_w, q0 + tile_pixels);
      for (int64_t q = q0; q < q1; ++q) {
        A* acc = tile + (q - q0) * c_count;
        for (int64_t c = 0; c < c_count; ++c) acc[c] = bias != nullptr ? static_cast<A>(bias[c]) : A(0);
      }
      for (int64_t t = 0; t < p.tap_count; ++t) {
        const Tap tap = p.taps[t];
        const int64_t in_r = r + tap.row;
        if (in_r < 0 || in_r >= p.in_h) continue;
        // Outputs q of the tile whose input column q + tap.col lies inside the row.
        const int64_t lo = std::max(q0, -tap.col), hi = std::min(q1, p.in_w - tap.col);
        const A* w = wt + tap.weight * c_count;
        const T* in_row = in_image + (in_r * p.in_w + tap.col) * c_count;
        for (int64_t q = lo; q < hi; ++q) {
          A* acc = tile + (q - q0) * c_count;
          const T* x = in_row + q * c_count;
          for (int64_t c = 0; c < c_count; ++c) acc[c] += w[c] * static_cast<A>(x[c]);
        }
      }
      const int64_t count = (q1 - q0) * c_count;
      if (p.activation != ConvActivation::none) activate<A>(p.activation, A(0), tile, count, tile);
      T* dst = out_row + q0 * c_count;
      for (int64_t e = 0; e < count; ++e) dst[e] = static_cast<T>(tile[e]);
    }
  }
}

// The products of output rows [r0, r1) of one image: sums (taps, C) += dy * x per tap, bias_sums (C)
// += dy; pixel by pixel in row order.
struct WeightTask {
  const void* x;   // (H, W, C) of the image
  const void* dy;  // (OH, OW, C) of the image
  int64_t h, w, oh, ow, channels;
  const Tap* taps;  // forward taps: output (r, q) reads x (r + row, q + col)
  int64_t tap_count;
};

template <typename T>
inline void weight_rows(const WeightTask& k, int64_t r0, int64_t r1, compute_t<T>* sums, compute_t<T>* bias_sums) {
  using A = compute_t<T>;
  const int64_t c_count = k.channels;
  const T* x = static_cast<const T*>(k.x);
  const T* dy = static_cast<const T*>(k.dy);
  for (int64_t r = r0; r < r1; ++r) {
    const T* dy_row = dy + r * k.ow * c_count;
    for (int64_t t = 0; t < k.tap_count; ++t) {
      const Tap tap = k.taps[t];
      const int64_t in_r = r + tap.row;
      if (in_r < 0 || in_r >= k.h) continue;
      const int64_t lo = std::max<int64_t>(0, -tap.col), hi = std::min(k.ow, k.w - tap.col);
      A* s = sums + tap.weight * c_count;
      const T* x_row = x + (in_r * k.w + tap.col) * c_count;
      for (int64_t q = lo; q < hi; ++q) {
        const T* d = dy_row + q * c_count;
        const T* xv = x_row + q * c_count;
        for (int64_t c = 0; c < c_count; ++c) s[c] += static_cast<A>(d[c]) * static_cast<A>(xv[c]);
      }
    }
    if (bias_sums != nullptr) {
      for (int64_t q = 0; q < k.ow; ++q) {
        const T* d = dy_row + q * c_count;
        for (int64_t c = 0; c < c_count; ++c) bias_sums[c] += static_cast<A>(d[c]);
      }
    }
  }
}

// f32: 16 channels at a time in a vector that holds an output across all its taps (or a weight's sums
// across a task's pixels), the same per-element order as the loops above. GCC's generic vectors: one
// AVX-512 register per vector where the CPU has it, split into narrower ones elsewhere.
// The vector helpers are always inlined into the per-ISA loops, so the ABI of passing a 64-byte vector
// (GCC's -Wpsabi note) never applies.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
constexpr int64_t kLanes = 16;
constexpr int kVectorTaps = 9;  // 3x3 kernels (SegFormer's); others take the loops above
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));

__attribute__((always_inline)) inline Lanes load_lanes(const float* p) {
  Lanes v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
__attribute__((always_inline)) inline void store_lanes(float* p, Lanes v) { __builtin_memcpy(p, &v, sizeof(v)); }

// kTaps known at compile time keeps a vector's taps (or sums) in registers: 3x3 kernels.
template <int kTaps>
inline void tap_rows_vectors(const TapPass& p, int64_t row_begin, int64_t row_end) {
  const int64_t c_count = p.channels, blocks = c_count / kLanes;
  const float* in = static_cast<const float*>(p.in);
  const float* wt = static_cast<const float*>(p.wt);
  const float* bias = static_cast<const float*>(p.bias);
  float* out = static_cast<float*>(p.out);
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t image = row / p.out_h, r = row % p.out_h;
    const float* in_image = in + image * p.in_h * p.in_w * c_count;
    float* out_row = out + row * p.out_w * c_count;
    bool row_ok[kTaps];
    const float* tap_row[kTaps];  // the tap's input row, shifted by its column offset
    for (int t = 0; t < kTaps; ++t) {
      const int64_t in_r = r + p.taps[t].row;
      row_ok[t] = in_r >= 0 && in_r < p.in_h;
      tap_row[t] = in_image + ((row_ok[t] ? in_r : 0) * p.in_w + p.taps[t].col) * c_count;
    }
    for (int64_t q = 0; q < p.out_w; ++q) {
      bool ok[kTaps];
      for (int t = 0; t < kTaps; ++t) ok[t] = row_ok[t] && q + p.taps[t].col >= 0 && q + p.taps[t].col < p.in_w;
      float* y = out_row + q * c_count;
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t c0 = b * kLanes;
        Lanes acc = bias != nullptr ? load_lanes(bias + c0) : Lanes{};
        for (int t = 0; t < kTaps; ++t) {
          if (!ok[t]) continue;
          acc += load_lanes(wt + p.taps[t].weight * c_count + c0) * load_lanes(tap_row[t] + q * c_count + c0);
        }
        store_lanes(y + c0, acc);
      }
      for (int64_t c = blocks * kLanes; c < c_count; ++c) {  // channels past the last whole vector
        float acc = bias != nullptr ? bias[c] : 0.0f;
        for (int t = 0; t < kTaps; ++t) {
          if (ok[t]) acc += wt[p.taps[t].weight * c_count + c] * tap_row[t][q * c_count + c];
        }
        y[c] = acc;
      }
    }
    if (p.activation != ConvActivation::none) {
      activate<float>(p.activation, 0.0f, out_row, p.out_w * c_count, out_row);
    }
  }
}

template <int kTaps>
inline void weight_rows_vectors(const WeightTask& k, int64_t r0, int64_t r1, float* sums, float* bias_sums) {
  const int64_t c_count = k.channels, blocks = c_count / kLanes;
  const float* x = static_cast<const float*>(k.x);
  const float* dy = static_cast<const float*>(k.dy);
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t c0 = b * kLanes;
    Lanes acc[kTaps];
    for (int t = 0; t < kTaps; ++t) acc[t] = load_lanes(sums + k.taps[t].weight * c_count + c0);
    Lanes bias_acc = bias_sums != nullptr ? load_lanes(bias_sums + c0) : Lanes{};
    for (int64_t r = r0; r < r1; ++r) {
      bool row_ok[kTaps];
      const float* tap_row[kTaps];
      for (int t = 0; t < kTaps; ++t) {
        const int64_t in_r = r + k.taps[t].row;
        row_ok[t] = in_r >= 0 && in_r < k.h;
        tap_row[t] = x + ((row_ok[t] ? in_r : 0) * k.w + k.taps[t].col) * c_count + c0;
      }
      const float* dy_row = dy + r * k.ow * c_count + c0;
      for (int64_t q = 0; q < k.ow; ++q) {
        const Lanes d = load_lanes(dy_row + q * c_count);
        for (int t = 0; t < kTaps; ++t) {
          if (row_ok[t] && q + k.taps[t].col >= 0 && q + k.taps[t].col < k.w) {
            acc[t] += d * load_lanes(tap_row[t] + q * c_count);
          }
        }
        bias_acc += d;
      }
    }
    for (int t = 0; t < kTaps; ++t) store_lanes(sums + k.taps[t].weight * c_count + c0, acc[t]);
    if (bias_sums != nullptr) store_lanes(bias_sums + c0, bias_acc);
  }
  if (blocks * kLanes == c_count) return;
  // The channels past the last whole vector, in the same order.
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t q = 0; q < k.ow; ++q) {
      for (int64_t c = blocks * kLanes; c < c_count; ++c) {
        const float d = dy[(r * k.ow + q) * c_count + c];
        for (int t = 0; t < kTaps; ++t) {
          const int64_t in_r = r + k.taps[t].row, col = q + k.taps[t].col;
          if (in_r < 0 || in_r >= k.h || col < 0 || col >= k.w) continue;
          sums[k.taps[t].weight * c_count + c] += d * x[(in_r * k.w + col) * c_count + c];
        }
        if (bias_sums != nullptr) bias_sums[c] += d;
      }
    }
  }
}

#define SE_DEFINE_NHWC_LOOPS(suffix, attribute)                                                           \
  attribute __attribute__((flatten)) void tap_rows_f32_##suffix(const TapPass& p, int64_t row_begin,        \
                                                                int64_t row_end) {                         \
    tap_rows_vectors<kVectorTaps>(p, row_begin, row_end);                                                 \
  }                                                                                                       \
  attribute __attribute__((flatten)) void weight_rows_f32_##suffix(const WeightTask& k, int64_t r0,         \
                                                                   int64_t r1, float* sums,                \
                                                                   float* bias_sums) {                     \
    weight_rows_vectors<kVectorTaps>(k, r0, r1, sums, bias_sums);                                         \
  }
SE_STAMP_PER_ISA(SE_DEFINE_NHWC_LOOPS)
#undef SE_DEFINE_NHWC_LOOPS
#pragma GCC diagnostic pop

template <typename T>
void run_tap_pass(const TapPass& p, int64_t images) {
  using A = compute_t<T>;
  const int64_t rows = images * p.out_h;
  const int64_t tile_elements = std::max<int64_t>(1, kTileBytes / static_cast<int64_t>(sizeof(A)) / p.channels) *
                                p.channels;
#pragma omp parallel num_threads(max_threads())
  {
    std::vector<A> tile(static_cast<size_t>(tile_elements));
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      if constexpr (std::is_same_v<T, float>) {
        if (p.tap_count == kVectorTaps) {
          static const auto rows_f32 = SE_PICK_PER_ISA(tap_rows_f32);
          rows_f32(p, row, row + 1);
          continue;
        }
      }
      tap_rows<T>(p, row, row + 1, tile.data());
    }
  }
}

// The weights (C, KH * KW) as (KH * KW, C) in the compute type.
template <typename T>
std::vector<compute_t<T>> taps_by_channel(const T* w, int64_t channels, int64_t taps) {
  std::vector<compute_t<T>> wt(static_cast<size_t>(channels * taps));
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t t = 0; t < taps; ++t) wt[t * channels + c] = static_cast<compute_t<T>>(w[c * taps + t]);
  }
  return wt;
}

std::vector<Tap> forward_taps(const Conv2dDesc& d) {
  std::vector<Tap> taps;
  for (int64_t i = 0; i < d.kernel_h; ++i) {
    for (int64_t j = 0; j < d.kernel_w; ++j) {
      taps.push_back({i * d.dilation_h - d.pad_h, j * d.dilation_w - d.pad_w, i * d.kernel_w + j});
    }
  }
  return taps;
}

// dx (r, q) += w[i][j] * dy (r + ph - i dh, q + pw - j dw), i descending then j ascending (conv.cpp's order).
std::vector<Tap> backward_data_taps(const Conv2dDesc& d) {
  std::vector<Tap> taps;
  for (int64_t i = d.kernel_h - 1; i >= 0; --i) {
    for (int64_t j = 0; j < d.kernel_w; ++j) {
      taps.push_back({d.pad_h - i * d.dilation_h, d.pad_w - j * d.dilation_w, i * d.kernel_w + j});
    }
  }
  return taps;
}

template <typename T>
void forward_typed(const Conv2dDesc& d, const T* x, const T* w, const T* bias, T* y) {
  const int64_t taps = d.kernel_h * d.kernel_w;
  const auto wt = taps_by_channel(w, d.c_in, taps);
  const std::vector<Tap> order = forward_taps(d);
  run_tap_pass<T>({x, d.h, d.w, wt.data(), order.data(), taps, bias, d.activation, y, conv2d_output_h(d),
                   conv2d_output_w(d), d.c_in},
                  d.n);
}

template <typename T>
void backward_data_typed(const Conv2dDesc& d, const T* dy, const T* w, T* dx) {
  const int64_t taps = d.kernel_h * d.kernel_w;
  const auto wt = taps_by_channel(w, d.c_in, taps);
  const std::vector<Tap> order = backward_data_taps(d);
  run_tap_pass<T>({dy, conv2d_output_h(d), conv2d_output_w(d), wt.data(), order.data(), taps, nullptr,
                   ConvActivation::none, dx, d.h, d.w, d.c_in},
                  d.n);
}

template <typename T>
void backward_weight_typed(const Conv2dDesc& d, const T* x, const T* dy, T* dw, T* db) {
  using A = compute_t<T>;
  const int64_t c_count = d.c_in, taps = d.kernel_h * d.kernel_w;
  const int64_t oh = conv2d_output_h(d), ow = conv2d_output_w(d);
  const int64_t chunks = (oh + kWeightTaskRows - 1) / kWeightTaskRows, tasks = d.n * chunks;
  const int64_t stride = (taps + 1) * c_count;  // a task's sums: (taps, C), then the bias's (C)
  std::vector<A> partial(static_cast<size_t>(tasks * stride), A(0));
  const std::vector<Tap> order = forward_taps(d);
#pragma omp parallel for num_threads(max_threads()) schedule(static)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t image = task / chunks, r0 = task % chunks * kWeightTaskRows, r1 = std::min(oh, r0 + kWeightTaskRows);
    const WeightTask k{x + image * d.h * d.w * c_count, dy + image * oh * ow * c_count, d.h, d.w, oh, ow,
                       c_count, order.data(), taps};
    A* sums = partial.data() + task * stride;
    A* bias_sums = db != nullptr ? sums + taps * c_count : nullptr;
    if constexpr (std::is_same_v<T, float>) {
      if (taps == kVectorTaps) {
        static const auto rows_f32 = SE_PICK_PER_ISA(weight_rows_f32);
        rows_f32(k, r0, r1, sums, bias_sums);
        continue;
      }
    }
    weight_rows<T>(k, r0, r1, sums, bias_sums);
  }
  // Tasks in order, in f64: (taps, C) sums into dw (C, taps); the bias's into db.
  const int64_t outputs = db != nullptr ? stride : taps * c_count;
#pragma omp parallel for num_threads(max_threads()) schedule(static)
  for (int64_t e = 0; e < outputs; ++e) {
    double total = 0;
    for (int64_t task = 0; task < tasks; ++task) total += static_cast<double>(partial[task * stride + e]);
    const int64_t t = e / c_count, c = e % c_count;
    if (t < taps) {
      dw[c * taps + t] = static_cast<T>(total);
    } else {
      db[c] = static_cast<T>(total);
    }
  }
}

template <typename F>
void dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::f16: return f(f16{});
    case DType::bf16: return f(bf16{});
    default: SE_THROW("conv2d (channels-last depthwise): dtype ", dtype_name(dtype), " is not supported");
  }
}

}  // namespace

bool conv2d_runs_nhwc_natively(const Conv2dDesc& d) {
  return d.layout == Conv2dLayout::nhwc && d.groups == d.c_in && d.c_out == d.c_in && d.groups > 1 &&
         d.stride_h == 1 && d.stride_w == 1;
}

void depthwise_nhwc_forward(const Conv2dDesc& d, const void* x, const void* w, const void* bias, void* y) {
  dispatch(d.dtype, [&](auto zero) {
    using T = decltype(zero);
    forward_typed<T>(d, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias),
                     static_cast<T*>(y));
  });
}

void depthwise_nhwc_backward_data(const Conv2dDesc& d, const void* dy, const void* w, void* dx) {
  dispatch(d.dtype, [&](auto zero) {
    using T = decltype(zero);
    backward_data_typed<T>(d, static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<T*>(dx));
  });
}

void depthwise_nhwc_backward_weight(const Conv2dDesc& d, const void* x, const void* dy, void* dw, void* db) {
  dispatch(d.dtype, [&](auto zero) {
    using T = decltype(zero);
    backward_weight_typed<T>(d, static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dw),
                             static_cast<T*>(db));
  });
}

}  // namespace se::kernels::cpu
