// CPU Conv2d over NCHW (channels-last goes through conv_channels_last.cpp), as GEMMs on cpu::gemm:
//   forward          y_g (Og, P)       = W_g (Og, K) @ col (K, P)
//   backward data    dcol (K, P)       = W_g^T (K, Og) @ dy_g (Og, P), then col2im into dx
//   backward weight  dW_g (Og, K)     += dy_g (Og, P) @ col^T (P, K)
// with K = Cg * KH * KW and P the output pixels of one image. col (im2col) is built a few output rows
// at a time so that it stays in cache beside the GEMM's own packing; small planes (deep layers, small
// inputs) are instead taken several images at a time, side by side in col, so that one GEMM packs W
// once for them all and its n is wide enough to fill the micro-tiles. 1x1 stride-1 unpadded convs use
// x itself as col. Depthwise convs (groups == C_in) skip GEMM for a direct per-plane loop.
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
#include "kernels/cpu/conv_channels_last.h"
#include "kernels/cpu/conv_direct_avx512.h"
#include "kernels/cpu/elementwise_fast.h"
#include "kernels/cpu/vector_math.h"
#include "kernels/gemm.h"

namespace se::kernels::cpu {
namespace {

struct Geometry {
  int64_t n, c_in, h, w, c_out;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  int64_t groups, cg, og;  // cg, og: input and output channels per group
  int64_t oh, ow;
  int64_t k;         // cg * kh * kw, the depth of the forward GEMM
  int64_t hw, ohw;   // pixels per plane of x and of y
  int64_t images;    // images per task: > 1 only for planes smaller than a chunk, which then is the plane
  int64_t rows;      // output rows per im2col chunk
  int64_t chunks;    // chunks per image
  ConvActivation activation;  // the forward's fused epilogue
};

// About this many columns of col per task: enough to amortise packing W, few enough to stay in cache.
constexpr int64_t kChunkColumns = 512;
// Below this GEMM depth (K = Cg * KH * KW: the 3-channel first layer has 27) a conv does few FMAs per
// byte of x, y and dy, and memory traffic is what costs: chunks grow to about kChunkElements / K
// columns (at most kMaxChunkColumns), so that each of the Og planes is read or written in runs of
// several kilobytes, which the prefetchers follow, rather than one 2 KB row per plane at a time.
constexpr int64_t kShallowDepth = kShallowConvDepth;
constexpr int64_t kChunkElements = 512 * kShallowDepth;
constexpr int64_t kMaxChunkColumns = 2048;

Geometry geometry(const Conv2dDesc& d) {
  Geometry g{};
  g.n = d.n;
  g.c_in = d.c_in;
  g.h = d.h;
  g.w = d.w;
  g.c_out = d.c_out;
  g.kh = d.kernel_h;
  g.kw = d.kernel_w;
  g.sh = d.stride_h;
  g.sw = d.stride_w;
  g.ph = d.pad_h;
  g.pw = d.pad_w;
  g.dh = d.dilation_h;
  g.dw = d.dilation_w;
  g.groups = d.groups;
  g.cg = d.c_in / d.groups;
  g.og = d.c_out / d.groups;
  g.oh = conv2d_output_h(d);
  g.ow = conv2d_output_w(d);
  g.k = g.cg * g.kh * g.kw;
  g.hw = g.h * g.w;
  g.ohw = g.oh * g.ow;
  const int64_t columns = std::clamp(kChunkElements / g.k, kChunkColumns, kMaxChunkColumns);
  g.images = std::clamp<int64_t>(kChunkColumns / std::max<int64_t>(g.ohw, 1), 1, std::max<int64_t>(g.n, 1));
  g.rows = g.images > 1 ? g.oh : std::clamp<int64_t>(columns / g.ow, 1, g.oh);
  g.chunks = (g.oh + g.rows - 1) / g.rows;
  g.activation = d.activation;
  return g;
}

// x itself is the im2col matrix (Cg, H * W).
bool is_pointwise(const Geometry& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

int max_threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

// run(task, inner) for each task: the threads share the tasks, or with fewer tasks than threads they go
// to each task in turn (inner: the threads its GEMM and copies may use).
template <typename Run>
void run_tasks(int64_t tasks, const Run& run) {
  const int threads = max_threads();
  if (tasks >= threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t t = 0; t < tasks; ++t) run(t, 1);
  } else {
    for (int64_t t = 0; t < tasks; ++t) run(t, threads);
  }
}

// [lo, hi): the outputs o in [0, out) whose input o * stride + offset lies in [0, in).
void valid_range(int64_t offset, int64_t stride, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
  lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  hi = in - 1 - offset < 0 ? 0 : (in - 1 - offset) / stride + 1;
  lo = std::min(lo, out);
  hi = std::clamp(hi, lo, out);
}

// Channel c's KH * KW rows of col (K, (oh1 - oh0) * OW), rows ld apart, from x_g (Cg, H, W), the
// planes of one image's group.
template <typename T>
void im2col_channel(const Geometry& g, const T* x_g, int64_t c, int64_t oh0, int64_t oh1, T* col, int64_t ld) {
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      T* out = col + ((c * g.kh + i) * g.kw + j) * ld;
      const int64_t off_w = j * g.dw - g.pw;
      int64_t lo, hi;
      valid_range(off_w, g.sw, g.w, g.ow, lo, hi);
      for (int64_t oh = oh0; oh < oh1; ++oh, out += g.ow) {
        const int64_t ih = oh * g.sh - g.ph + i * g.dh;
        if (ih < 0 || ih >= g.h) {
          std::fill(out, out + g.ow, T(0));
          continue;
        }
        const T* in = x_g + (c * g.h + ih) * g.w + off_w;
        std::fill(out, out + lo, T(0));
        if (g.sw == 1) {
          std::copy(in + lo, in + hi, out + lo);
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) out[ow] = in[ow * g.sw];
        }
        std::fill(out + hi, out + g.ow, T(0));
      }
    }
  }
}

// dx_c (H, W) += the col2im of channel c's KH * KW rows of dcol (K, (oh1 - oh0) * OW), rows ld apart.
template <typename T>
void col2im_channel(const Geometry& g, const T* dcol, int64_t ld, int64_t c, int64_t oh0, int64_t oh1, T* dx_c) {
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      const T* in = dcol + ((c * g.kh + i) * g.kw + j) * ld;
      const int64_t off_w = j * g.dw - g.pw;
      int64_t lo, hi;
      valid_range(off_w, g.sw, g.w, g.ow, lo, hi);
      for (int64_t oh = oh0; oh < oh1; ++oh, in += g.ow) {
        const int64_t ih = oh * g.sh - g.ph + i * g.dh;
        if (ih < 0 || ih >= g.h) continue;
        T* out = dx_c + ih * g.w + off_w;
        if (g.sw == 1) {  // a unit stride the compiler can vectorize
          for (int64_t ow = lo; ow < hi; ++ow) out[ow] += in[ow];
        } else {
          for (int64_t ow = lo; ow < hi; ++ow) out[ow * g.sw] += in[ow];
        }
      }
    }
  }
}

// Scratch buffers per thread, grown on demand and kept across calls (cpu::gemm packs what it reads);
// Slot tells apart the buffers one task holds at once.
template <typename T, int Slot = 0>
T* scratch(size_t count) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

template <typename T>
GemmDesc gemm_desc(int64_t m, int64_t n, int64_t k, bool trans_a, int64_t lda, bool trans_b, int64_t ldb,
                   int64_t ldc, float beta) {
  GemmDesc d;
  d.m = m;
  d.n = n;
  d.k = k;
  d.trans_a = trans_a;
  d.trans_b = trans_b;
  d.lda = lda;
  d.ldb = ldb;
  d.ldc = ldc;
  d.beta = beta;
  d.dtype = dtype_of<T>();
  return d;
}

// One task of the chunked loops: images [image, image + images), a group, and the output rows
// [oh0, oh1) (all rows when images > 1). Its GEMMs are `cols` wide: the images' chunks side by side,
// in scratch matrices (col, dcol, gathered dy) whose rows are `ld` apart.
struct Task {
  int64_t image, images, group, oh0, oh1;
  int64_t cols, ld;
};

// The row stride of a task's scratch matrices: cols rounded up to whole cache lines, and one line more
// where that is a multiple of 1 KB (2048 columns is common), so that the rows a GEMM kernel streams
// side by side do not all map to the same few L1 sets (with 4 KB strides the 8-way L1 evicts them).
int64_t scratch_stride(int64_t cols) {
  const int64_t ld = (cols + 15) / 16 * 16;
  return ld % 256 == 0 ? ld + 16 : ld;
}

int64_t task_count(const Geometry& g) {
  return (g.n + g.images - 1) / g.images * g.groups * g.chunks;
}

Task task_of(const Geometry& g, int64_t t) {
  const int64_t chunk = t % g.chunks;
  const int64_t ng = t / g.chunks;
  const int64_t oh0 = chunk * g.rows, oh1 = std::min(g.oh, oh0 + g.rows);
  const int64_t image = ng / g.groups * g.images, images = std::min(g.images, g.n - image);
  const int64_t cols = images * (oh1 - oh0) * g.ow;
  return {image, images, ng % g.groups, oh0, oh1, cols, scratch_stride(cols)};
}

// col (K, task.cols; rows task.ld apart): the im2col of each of the task's images, side by side.
// `threads` > 1 splits the (image, channel) pairs (a task that runs alone, its GEMM multi-threaded).
template <typename T>
void im2col_task(const Geometry& g, const T* x, const Task& tk, T* col, int threads) {
#pragma omp parallel for collapse(2) num_threads(threads) if (threads > 1) schedule(static)
  for (int64_t j = 0; j < tk.images; ++j) {
    for (int64_t c = 0; c < g.cg; ++c) {
      const T* x_g = x + ((tk.image + j) * g.c_in + tk.group * g.cg) * g.hw;
      im2col_channel(g, x_g, c, tk.oh0, tk.oh1, col + j * (tk.oh1 - tk.oh0) * g.ow, tk.ld);
    }
  }
}

// dy_t (Og, task.cols): the task's chunk of dy_g for each of its images, side by side. A task of one
// image reads dy in place (rows OH * OW apart) and returns it with *ld set; several are gathered.
template <typename T>
const T* gather_dy(const Geometry& g, const T* dy, const Task& tk, int64_t* ld, int threads) {
  const T* first = dy + (tk.image * g.c_out + tk.group * g.og) * g.ohw + tk.oh0 * g.ow;
  if (tk.images == 1) {
    *ld = g.ohw;
    return first;
  }
  T* out = scratch<T, 1>(static_cast<size_t>(g.og * tk.ld));
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (int64_t co = 0; co < g.og; ++co) {
    for (int64_t j = 0; j < tk.images; ++j) {
      const T* plane = first + (j * g.c_out + co) * g.ohw;
      std::copy(plane, plane + g.ohw, out + co * tk.ld + j * g.ohw);
    }
  }
  *ld = tk.ld;
  return out;
}

// ---- GEMM paths ----

// dst (count) = the fused activation of src (count) + b; dst may be src. f32 GELU goes through the
// vectorized loop of the CPU's gelu op (elementwise_fast.h), so a fused conv + GELU gives the bits of conv
// then gelu; the other cases apply conv_epilogue's formula.
template <typename T>
void activate(ConvActivation activation, T b, const T* src, int64_t count, T* dst) {
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

// Outputs larger than this (bytes) are written with non-temporal stores: they leave the caches anyway, and
// a normal store first reads the line it fills (half of the memory traffic of writing y).
constexpr int64_t kStreamOutputBytes = int64_t(32) << 20;

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
void forward_gemm(const Geometry& g, const T* x, const T* w, const T* bias, T* y) {
  const int64_t tasks = task_count(g);
  const bool pointwise = is_pointwise(g);
  const bool stream = std::is_same_v<T, float> && streams_output(g, g.n * g.c_out * g.ohw);
  // inner: threads for the copies around the GEMM of a task that runs alone (its GEMM threads itself).
  auto run = [&](int64_t t, int inner) {
    const Task tk = task_of(g, t);
    const int64_t chunk_cols = (tk.oh1 - tk.oh0) * g.ow;  // of one image
    T* y_g = y + (tk.image * g.c_out + tk.group * g.og) * g.ohw + tk.oh0 * g.ow;
    const T* col = x + (tk.image * g.c_in + tk.group * g.cg) * g.hw + tk.oh0 * g.ow;
    int64_t ldb = g.hw;
    if (!pointwise || tk.images > 1) {
      T* buf = scratch<T>(static_cast<size_t>(g.k * tk.ld));
      im2col_task(g, x, tk, buf, inner);
      col = buf;
      ldb = tk.ld;
    }
    // One image's chunk is written in place; several go through a scratch and are spread out below, and
    // so does a shallow conv's chunk: its GEMM would store to Og planes at once, tile by tile, where the
    // epilogue writes one plane's run after another.
    const bool in_place = tk.images == 1 && g.k >= kShallowDepth;  // never when streaming
    T* out = in_place ? y_g : scratch<T, 1>(static_cast<size_t>(g.og * tk.ld));
    const int64_t ldc = in_place ? g.ohw : tk.ld;
    gemm(gemm_desc<T>(g.og, tk.cols, g.k, false, g.k, false, ldb, ldc, 0.0f), w + tk.group * g.og * g.k, col, out,
         nullptr);
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

// Where a chunk's dcol (K, cols) would pass this size, backward data goes by channel slices instead.
constexpr int64_t kMaxDcolBytes = 1 << 20;

// Slices of input channels per image and group, so that a slice's dcol (channels * KH * KW, the cols of
// a chunk) stays within kMaxDcolBytes, in a multiple of 4 so that 2 or 4 threads share them evenly (the
// count must not depend on the thread count: it orders dx's sums); 0 when the whole dcol already fits
// or planes are so small that tasks hold several images, and the chunked path below keeps it.
template <typename T>
int64_t dcol_slices(const Geometry& g) {
  const int64_t row_bytes = scratch_stride(g.rows * g.ow) * static_cast<int64_t>(sizeof(T));
  if (g.images > 1 || g.k * row_bytes <= kMaxDcolBytes) return 0;
  const int64_t slices = (g.k * row_bytes + kMaxDcolBytes - 1) / kMaxDcolBytes;
  return std::min(g.cg, (slices + 3) / 4 * 4);
}

// Backward data of a deep conv, dx_g (Cg, H, W): each task takes an image, a group and a slice of its
// input channels, and for each chunk of output rows in turn computes that slice's rows of dcol =
// W_g^T @ dy_g[:, chunk] and adds their col2im into the slice's own planes of dx. Keeping a task's dcol
// to kMaxDcolBytes (DeepLab's ASPP, 2048 channels x 9 taps, made each chunk's dcol a 37 to 118 MB
// matrix that went to memory and back); tasks own whole planes, so chunks need not be spread apart by
// the kernel's reach (a dilation of 12 made chunks of 25 rows, three per 64-row image, which two
// threads could not share evenly). Every dx element sums its chunks in order, whatever the thread count.
template <typename T>
void backward_data_by_channel_slices(const Geometry& g, const T* dy, const T* w, T* dx, int64_t slices) {
  const int64_t tasks = g.n * g.groups * slices;
  const int64_t taps = g.kh * g.kw;
  auto run = [&](int64_t t, int inner) {
    const int64_t slice = t % slices, image_group = t / slices;
    const int64_t image = image_group / g.groups, group = image_group % g.groups;
    const int64_t c0 = slice * g.cg / slices, c1 = (slice + 1) * g.cg / slices;
    T* dx_g = dx + (image * g.c_in + group * g.cg) * g.hw;
    std::fill(dx_g + c0 * g.hw, dx_g + c1 * g.hw, T(0));
    const T* dy_g = dy + (image * g.c_out + group * g.og) * g.ohw;
    const T* w_slice = w + group * g.og * g.k + c0 * taps;  // W_g (Og, K)'s columns of the slice
    for (int64_t oh0 = 0; oh0 < g.oh; oh0 += g.rows) {
      const int64_t oh1 = std::min(g.oh, oh0 + g.rows);
      const int64_t cols = (oh1 - oh0) * g.ow, ld = scratch_stride(cols);
      T* dcol = scratch<T>(static_cast<size_t>((c1 - c0) * taps * ld));
      gemm(gemm_desc<T>((c1 - c0) * taps, cols, g.og, true, g.k, false, g.ohw, ld, 0.0f), w_slice, dy_g + oh0 * g.ow,
           dcol, nullptr);
#pragma omp parallel for num_threads(inner) if (inner > 1) schedule(static)
      for (int64_t c = c0; c < c1; ++c) col2im_channel(g, dcol, ld, c - c0, oh0, oh1, dx_g + c * g.hw);
    }
  };
  run_tasks(tasks, run);
}

template <typename T>
void backward_data_gemm(const Geometry& g, const T* dy, const T* w, T* dx) {
  if (is_pointwise(g)) {  // dx_g (Cg, P) = W_g^T (Cg, Og) @ dy_g (Og, P), all images in one batched GEMM
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      GemmDesc d = gemm_desc<T>(g.cg, g.hw, g.og, true, g.cg, false, g.ohw, g.hw, 0.0f);
      d.batch = g.n;
      d.stride_b = g.c_out * g.ohw;
      d.stride_c = g.c_in * g.hw;
      gemm(d, w + grp * g.og * g.cg, dy + grp * g.og * g.ohw, dx + grp * g.cg * g.hw, nullptr);
    }
    return;
  }
  if (const int64_t slices = dcol_slices<T>(g); slices > 0) {
    return backward_data_by_channel_slices(g, dy, w, dx, slices);
  }
  const int threads = max_threads();
  const int64_t planes = g.n * g.c_in;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t p = 0; p < planes; ++p) std::fill(dx + p * g.hw, dx + (p + 1) * g.hw, T(0));

  // Chunks of one image overlap in dx, but once a chunk spans the kernel's reach ((KH - 1) * dilation
  // input rows), chunks two apart never do: even chunks run in parallel, then odd ones.
  Geometry gb = g;
  gb.rows = std::min(g.oh, std::max(g.rows, (g.kh - 1) * g.dh / g.sh + 1));
  gb.chunks = (g.oh + gb.rows - 1) / gb.rows;
  const int64_t pairs = (gb.chunks + 1) / 2;
  const int64_t tasks = task_count(gb) / gb.chunks * pairs;
  auto run = [&](int64_t t, int64_t parity, int inner) {
    const int64_t chunk = 2 * (t % pairs) + parity;
    if (chunk >= gb.chunks) return;
    const Task tk = task_of(gb, t / pairs * gb.chunks + chunk);
    int64_t ld_dy = 0;
    const T* dy_t = gather_dy(g, dy, tk, &ld_dy, inner);
    T* dcol = scratch<T>(static_cast<size_t>(g.k * tk.ld));
    gemm(gemm_desc<T>(g.k, tk.cols, g.og, true, g.k, false, ld_dy, tk.ld, 0.0f), w + tk.group * g.og * g.k, dy_t,
         dcol, nullptr);
    // Each (image, channel) writes its own plane of dx.
#pragma omp parallel for collapse(2) num_threads(inner) if (inner > 1) schedule(static)
    for (int64_t j = 0; j < tk.images; ++j) {
      for (int64_t c = 0; c < g.cg; ++c) {
        T* dx_g = dx + ((tk.image + j) * g.c_in + tk.group * g.cg) * g.hw;
        const T* dcol_j = dcol + j * (tk.oh1 - tk.oh0) * g.ow;
        col2im_channel(gb, dcol_j, tk.ld, c, tk.oh0, tk.oh1, dx_g + c * g.hw);
      }
    }
  };
  for (int64_t parity = 0; parity < 2; ++parity) {
    run_tasks(tasks, [&](int64_t t, int inner) { run(t, parity, inner); });
  }
}

// Output channels below this leave the GEMM's 32-column micro-tiles partly empty as its n.
constexpr int64_t kNarrowOutputs = 32;

// Computed transposed, dW_g^T (K, Og) += col (K, cols) @ dy_g[:, chunk]^T (cols, Og): K, the long side,
// becomes the GEMM's rows and Og its columns. Fewer than kNarrowOutputs output channels would leave
// those columns' micro-tiles partly empty, so they are computed as dW_g (Og, K) += dy_g @ col^T instead.
// The bias gradient db (C_out), when asked for, is summed from each task's chunk of dy while the GEMM
// has just brought it into cache: a (task, channel) table of sums, added up in task order, so that the
// result does not depend on the thread count.
template <typename T>
void backward_weight_gemm(const Geometry& g, const T* x, const T* dy, T* dw, T* db) {
  const int64_t w_elements = g.c_out * g.k;
  const bool pointwise = is_pointwise(g);
  const bool transposed = g.og >= kNarrowOutputs;
  const int64_t tasks = task_count(g);
  std::vector<double> task_bias(db != nullptr ? static_cast<size_t>(tasks * g.og) : 0);
  // acc: (groups, K, Og) when transposed, else (groups, Og, K); zeroed.
  auto accumulate = [&](int64_t t, T* acc, int inner) {
    const Task tk = task_of(g, t);
    const T* col = x + (tk.image * g.c_in + tk.group * g.cg) * g.hw + tk.oh0 * g.ow;
    int64_t lda = g.hw;
    if (!pointwise || tk.images > 1) {
      T* buf = scratch<T>(static_cast<size_t>(g.k * tk.ld));
      im2col_task(g, x, tk, buf, inner);
      col = buf;
      lda = tk.ld;
    }
    int64_t ld_dy = 0;
    const T* dy_t = gather_dy(g, dy, tk, &ld_dy, inner);
    T* acc_g = acc + tk.group * g.k * g.og;
    if (transposed) {
      gemm(gemm_desc<T>(g.k, g.og, tk.cols, false, lda, true, ld_dy, g.og, 1.0f), col, dy_t, acc_g, nullptr);
    } else {
      gemm(gemm_desc<T>(g.og, g.k, tk.cols, false, ld_dy, true, lda, g.k, 1.0f), dy_t, col, acc_g, nullptr);
    }
    if (db != nullptr) {
#pragma omp parallel for num_threads(inner) if (inner > 1) schedule(static)
      for (int64_t co = 0; co < g.og; ++co) {
        const T* row = dy_t + co * ld_dy;
        T lanes[kLanes] = {};
        for_each_lane(0, tk.cols, [&](int64_t p, int lane) { lanes[lane] += row[p]; });
        task_bias[t * g.og + co] = sum_lanes(lanes);
      }
    }
  };
  // Threads take tasks, each with its own accumulator; with fewer tasks than threads, one accumulator
  // and the threads go to each task's GEMM and copies.
  const int max_t = max_threads();
  const int threads = tasks >= max_t ? max_t : 1;
  std::unique_ptr<T[]> partials(new T[static_cast<size_t>(threads * w_elements)]);
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      T* acc = partials.get() + omp_get_thread_num() * w_elements;
      std::fill(acc, acc + w_elements, T(0));
#pragma omp for schedule(static)
      for (int64_t t = 0; t < tasks; ++t) accumulate(t, acc, 1);
    }
  } else {
    std::fill(partials.get(), partials.get() + w_elements, T(0));
    for (int64_t t = 0; t < tasks; ++t) accumulate(t, partials.get(), max_t);
  }
  // The accumulators summed into the first, element by element in thread order, reading them as they
  // lie: going through them in dw's order instead read the transposed ones a cache line per element.
  T* acc = partials.get();
  if (threads > 1) {
#pragma omp parallel for num_threads(max_t) schedule(static)
    for (int64_t e = 0; e < w_elements; ++e) {
      T sum = acc[e];
      for (int p = 1; p < threads; ++p) sum += acc[p * w_elements + e];
      acc[e] = sum;
    }
  }
  // dw (groups, Og, K): acc itself, or acc (groups, K, Og) transposed in square tiles.
  if (!transposed) {
    std::copy(acc, acc + w_elements, dw);
  } else {
    constexpr int64_t kTile = 32;
    const int64_t tiles_k = (g.k + kTile - 1) / kTile, tiles_o = (g.og + kTile - 1) / kTile;
#pragma omp parallel for collapse(2) num_threads(max_t) schedule(static)
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      for (int64_t tile = 0; tile < tiles_k * tiles_o; ++tile) {
        const int64_t k0 = tile / tiles_o * kTile, o0 = tile % tiles_o * kTile;
        const T* src = acc + grp * g.k * g.og;
        T* dst = dw + grp * g.og * g.k;
        for (int64_t o = o0; o < std::min(g.og, o0 + kTile); ++o) {
          for (int64_t kidx = k0; kidx < std::min(g.k, k0 + kTile); ++kidx) dst[o * g.k + kidx] = src[kidx * g.og + o];
        }
      }
    }
  }
  if (db != nullptr) {
    for (int64_t row = 0; row < g.c_out; ++row) {
      const int64_t grp = row / g.og, m = row % g.og;
      double sum = 0.0;
      for (int64_t t = 0; t < tasks; ++t) {
        if (task_of(g, t).group == grp) sum += task_bias[t * g.og + m];
      }
      db[row] = static_cast<T>(sum);
    }
  }
}

// ---- depthwise: groups == C_in, Og = C_out / C_in outputs per input channel ----

template <typename T>
void forward_depthwise(const Geometry& g, const T* x, const T* w, const T* bias, T* y) {
  const int64_t planes = g.n * g.c_out;
#pragma omp parallel for num_threads(max_threads()) schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t co = p % g.c_out;
    const T* x_c = x + (p / g.c_out * g.c_in + co / g.og) * g.hw;
    const T* w_c = w + co * g.kh * g.kw;
    T* y_p = y + p * g.ohw;
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
template <typename T>
void backward_weight_depthwise(const Geometry& g, const T* x, const T* dy, T* dw) {
  constexpr int64_t kLanes = 16, kProductsPerLane = 256;
  const int64_t taps = g.kh * g.kw;
  const int64_t rows_per_fold = std::max<int64_t>(1, kProductsPerLane * kLanes / std::max<int64_t>(1, g.ow));
#pragma omp parallel num_threads(max_threads())
  {
    std::vector<double> sums(static_cast<size_t>(taps));
    std::vector<T> tap_lanes(static_cast<size_t>(taps * kLanes));  // (KH * KW, kLanes)
#pragma omp for schedule(static)
    for (int64_t co = 0; co < g.c_out; ++co) {
      std::fill(sums.begin(), sums.end(), 0.0);
      for (int64_t n = 0; n < g.n; ++n) {
        const T* x_c = x + (n * g.c_in + co / g.og) * g.hw;
        const T* dy_p = dy + (n * g.c_out + co) * g.ohw;
        for (int64_t oh0 = 0; oh0 < g.oh; oh0 += rows_per_fold) {
          std::fill(tap_lanes.begin(), tap_lanes.end(), T(0));
          for (int64_t oh = oh0; oh < std::min(g.oh, oh0 + rows_per_fold); ++oh) {
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
          for (int64_t tap = 0; tap < taps; ++tap) {
            for (int64_t l = 0; l < kLanes; ++l) sums[static_cast<size_t>(tap)] += tap_lanes[tap * kLanes + l];
          }
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

template <typename T>
void backward_data_typed(const Conv2dDesc& d, const T* dy, const T* w, T* dx) {
  const Geometry g = geometry(d);
  if (conv2d_is_depthwise(d)) return backward_data_depthwise(g, dy, w, dx);
  if constexpr (std::is_same_v<T, float>) {
    if (conv2d_runs_direct(d, DirectPass::backward_data))
      return conv2d_backward_data_direct(d, dy, w, streams_output(g, g.n * g.c_in * g.hw), dx);
  }
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
                            Stream /*stream*/) {
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
