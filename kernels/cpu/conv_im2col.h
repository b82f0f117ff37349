// Internal to the CPU Conv2d's GEMM paths (conv.cpp: forward and depthwise; conv_backward.cpp: backward
// data and backward weight): the geometry of a conv, its row-chunk tasks, im2col/col2im of one channel,
// the per-thread scratch matrices they fill, and TaskColumns, which gives a task's im2col matrix to the
// GEMM block by block without storing it (implicit GEMM).
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cpu/conv_direct_avx512.h"
#include "kernels/cpu/gemm_sources.h"
#include "kernels/gemm.h"

namespace se::kernels::cpu::conv_gemm {

struct Geometry {
  int64_t n, c_in, h, w, c_out;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  int64_t groups, cg, og;  // cg, og: input and output channels per group
  int64_t oh, ow;
  int64_t k;                  // cg * kh * kw, the depth of the forward GEMM
  int64_t hw, ohw;            // pixels per plane of x and of y
  int64_t images;             // images per task: > 1 only for planes smaller than a chunk, which then is the plane
  int64_t rows;               // output rows per im2col chunk
  int64_t chunks;             // chunks per image
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

inline Geometry geometry(const Conv2dDesc& d) {
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
inline bool is_pointwise(const Geometry& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

inline int max_threads() {
  return omp_in_parallel() ? 1 : omp_get_max_threads();
}

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
inline void valid_range(int64_t offset, int64_t stride, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
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
GemmDesc gemm_desc(int64_t m, int64_t n, int64_t k, bool trans_a, int64_t lda, bool trans_b, int64_t ldb, int64_t ldc,
                   float beta) {
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
inline int64_t scratch_stride(int64_t cols) {
  const int64_t ld = (cols + 15) / 16 * 16;
  return ld % 256 == 0 ? ld + 16 : ld;
}

inline int64_t task_count(const Geometry& g) {
  return (g.n + g.images - 1) / g.images * g.groups * g.chunks;
}

inline Task task_of(const Geometry& g, int64_t t) {
  const int64_t chunk = t % g.chunks;
  const int64_t ng = t / g.chunks;
  const int64_t oh0 = chunk * g.rows, oh1 = std::min(g.oh, oh0 + g.rows);
  const int64_t image = ng / g.groups * g.images, images = std::min(g.images, g.n - image);
  const int64_t cols = images * (oh1 - oh0) * g.ow;
  return {image, images, ng % g.groups, oh0, oh1, cols, scratch_stride(cols)};
}

// A stretch of values of a row of col: dst from the row's start in its destination, src from an input
// plane (-1: zeros), len values (in steps of the conv's stride in the plane).
struct ColumnRun {
  int64_t dst, src, len;
};

// dst[run.dst + v] = run.src < 0 ? 0 : plane[run.src + v] for v < run.len, for every run of [run, end)
// of a stride-1 conv:
// in AVX-512 where the CPU has it, masked loads and stores taking a run of up to 16 values in one
// (conv_column_runs.cpp), else copies of 4 and 8 values.
void copy_column_runs(const ColumnRun* run, const ColumnRun* end, const float* plane, float* dst);
void copy_column_runs(const ColumnRun* run, const ColumnRun* end, const double* plane, double* dst);

// A task's col (K, task.cols), never stored: gathered from x by the GEMM as it packs col (gemm_sources.h),
// a block of rows and columns at a time, either straight into the B panels of the forward's product
// (GemmBPacker) or as rows (GemmRowSource) for backward weight's, whose col is A, or B transposed. Row r
// of col is the tap (c, i, j) = (r / (KH * KW), r / KW % KH, r % KW); column q the output pixel
// (oh0 + q % chunk / OW, q % OW) of the task's image q / chunk (chunk = (oh1 - oh0) * OW): the values
// im2col_channel writes for each of the task's images and channels, so that each product gives the same
// bits.
//
// Where a value comes from depends on the tap (i, j) and not on the channel c: for each tap, a block
// first lists the runs of its columns (stretches of one output row, within one panel, copied from one
// input row or zero), then copies every row of the block by its tap's list. Small maps make runs short
// (8 x 8 maps: 8 values), so that per-run work is most of the cost.
template <typename T>
class TaskColumns final : public GemmBPacker<T>, public GemmRowSource<T> {
 public:
  TaskColumns(const Geometry& g, const T* x, const Task& tk) : g_(g), x_(x), tk_(tk), id_(next_id()) {}

  void pack(int64_t p0, int64_t kb, int64_t j0, int64_t j1, int nr, T* out) const override {
    list_tap_runs(j0, j1, nr, nr * kb);
    for (int64_t p = 0; p < kb; ++p) copy_row(p0 + p, out + p * nr);
  }

  void rows(int64_t r0, int64_t count, int64_t c0, int64_t c1, T* out, int64_t ld) const override {
    list_tap_runs(c0, c1, c1 - c0, 0);  // one panel as wide as the block: runs cut only at row ends
    for (int64_t r = 0; r < count; ++r) copy_row(r0 + r, out + r * ld);
  }

 private:
  // A run's src is from the plane of the task's first image and the row's channel.
  using Run = ColumnRun;
  struct TapRuns {
    std::vector<Run> runs;
    std::vector<int64_t> first;  // tap t's runs: [first[t], first[t + 1])
    // What they were listed for: a GEMM asks for the same columns of many blocks of rows in turn.
    uint64_t id = 0;
    int64_t j0 = 0, j1 = 0, nr = 0, panel = 0;
  };
  static uint64_t next_id() {
    static std::atomic<uint64_t> ids{0};
    return ++ids;
  }
  static TapRuns& tap_runs() {
    thread_local TapRuns lists;
    return lists;
  }

  // Every tap's runs over columns [j0, j1), into panels of nr columns that lie `panel` apart.
  void list_tap_runs(int64_t j0, int64_t j1, int64_t nr, int64_t panel) const {
    TapRuns& lists = tap_runs();
    if (lists.id == id_ && lists.j0 == j0 && lists.j1 == j1 && lists.nr == nr && lists.panel == panel) return;
    lists.id = id_, lists.j0 = j0, lists.j1 = j1, lists.nr = nr, lists.panel = panel;
    const int64_t taps = g_.kh * g_.kw;
    lists.runs.clear();
    lists.first.resize(static_cast<size_t>(taps + 1));
    for (int64_t t = 0; t < taps; ++t) {
      lists.first[static_cast<size_t>(t)] = static_cast<int64_t>(lists.runs.size());
      list_runs(t, j0, j1, nr, panel, lists.runs);
    }
    lists.first[static_cast<size_t>(taps)] = static_cast<int64_t>(lists.runs.size());
  }

  // Tap t's runs over columns [j0, j1), the last panel's padding a zero run.
  void list_runs(int64_t t, int64_t j0, int64_t j1, int64_t nr, int64_t panel, std::vector<Run>& runs) const {
    const int64_t i = t / g_.kw, j = t % g_.kw, chunk = (tk_.oh1 - tk_.oh0) * g_.ow;
    const int64_t off_w = j * g_.dw - g_.pw;
    int64_t lo, hi;
    valid_range(off_w, g_.sw, g_.w, g_.ow, lo, hi);
    // Column q walks output rows: image q / chunk, row oh, from column ow; its place in the panels is
    // panel_start + lane.
    int64_t q = j0, image = q / chunk, oh = tk_.oh0 + q % chunk / g_.ow, ow = q % g_.ow;
    int64_t panel_start = 0, lane = 0;
    auto add = [&](int64_t src, int64_t len) {  // len values of one output row, cut at panel ends
      while (len > 0) {
        const int64_t piece = std::min(len, nr - lane);
        runs.push_back({panel_start + lane, src, piece});
        if (src >= 0) src += piece * g_.sw;
        len -= piece;
        lane += piece;
        if (lane == nr) lane = 0, panel_start += panel;
      }
    };
    while (q < j1) {
      const int64_t ih = oh * g_.sh - g_.ph + i * g_.dh;
      const int64_t row_end = std::min(g_.ow, ow + (j1 - q));
      if (ih < 0 || ih >= g_.h) {
        add(-1, row_end - ow);
      } else {
        const int64_t a = std::clamp(lo, ow, row_end), b = std::clamp(hi, a, row_end);
        const int64_t row = image * g_.c_in * g_.hw + ih * g_.w + off_w;
        add(-1, a - ow);
        add(row + a * g_.sw, b - a);
        add(-1, row_end - b);
      }
      q += row_end - ow;
      ow = 0;
      if (++oh == tk_.oh1) oh = tk_.oh0, ++image;
    }
    if (lane > 0) add(-1, nr - lane);
  }

  // Row r of col by its tap's runs (list_tap_runs), into dst.
  void copy_row(int64_t r, T* dst) const {
    const TapRuns& lists = tap_runs();
    const int64_t taps = g_.kh * g_.kw, c = r / taps, t = r % taps, sw = g_.sw;
    const T* plane = x_ + (tk_.image * g_.c_in + tk_.group * g_.cg + c) * g_.hw;
    const Run* run = lists.runs.data() + lists.first[static_cast<size_t>(t)];
    const Run* end = lists.runs.data() + lists.first[static_cast<size_t>(t + 1)];
    if (sw == 1) return copy_column_runs(run, end, plane, dst);
    for (; run != end; ++run) {
      T* d = dst + run->dst;
      if (run->src < 0) {
        std::fill(d, d + run->len, T(0));
      } else {
        for (int64_t v = 0; v < run->len; ++v) d[v] = plane[run->src + v * sw];
      }
    }
  }

  const Geometry& g_;
  const T* x_;  // (N, C_in, H, W)
  Task tk_;
  uint64_t id_;  // tells this task's lists from another's
};

// col (K, task.cols): a pointwise conv's x read in place (rows H * W apart) for a task of one image,
// else the task's im2col in scratch (rows task.ld apart), for the products that read col as stored rows
// (the dot-product kernel's); *ld is set to the row stride. `threads` > 1 split the rows (a task that
// runs alone, its GEMM multi-threaded).
template <typename T>
const T* task_col(const Geometry& g, const T* x, const Task& tk, int64_t* ld, int threads) {
  if (is_pointwise(g) && tk.images == 1) {
    *ld = g.hw;
    return x + (tk.image * g.c_in + tk.group * g.cg) * g.hw + tk.oh0 * g.ow;
  }
  T* col = scratch<T>(static_cast<size_t>(g.k * tk.ld));
  const TaskColumns<T> columns(g, x, tk);
  const int64_t blocks = std::min<int64_t>(threads, g.k);
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t r0 = b * g.k / blocks, r1 = (b + 1) * g.k / blocks;
    columns.rows(r0, r1 - r0, 0, tk.cols, col + r0 * tk.ld, tk.ld);
  }
  *ld = tk.ld;
  return col;
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

// The GEMM paths of the backward passes (conv_backward.cpp; T is float or double).
template <typename T>
void backward_data_gemm(const Geometry& g,
                        const T* dy,  // (N, C_out, OH, OW)
                        const T* w,   // (C_out, Cg, KH, KW)
                        T* dx);       // (N, C_in, H, W)
template <typename T>
void backward_weight_gemm(const Geometry& g,
                          const T* x,   // (N, C_in, H, W)
                          const T* dy,  // (N, C_out, OH, OW)
                          T* dw,        // (C_out, Cg, KH, KW)
                          T* db);       // (C_out) or null

}  // namespace se::kernels::cpu::conv_gemm
