// CPU Conv2d over NCHW, the GEMM paths of the backward passes (conv.cpp has the forward, the depthwise
// convs, the entry points and the backward data of stride-1 convs as their dual's forward; conv_im2col.h
// the chunks and im2col they share):
//   backward data    dcol (K, P)       = W_g^T (K, Og) @ dy_g (Og, P), then col2im into dx
//   backward weight  dW_g (Og, K)     += dy_g (Og, P) @ col^T (P, K), col gathered by the GEMM as it
//                                        packs it (TaskColumns) unless the dot-product kernel takes it
// Most convs go by (image, group, row chunk) tasks like the forward. Deep ones, whose chunk of col or
// dcol would not stay in cache, go by slices of input channels (see channel_slices).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cpu/channel_sum.h"
#include "kernels/cpu/conv_im2col.h"
#include "kernels/cpu/gemm_sources.h"
#include "kernels/cpu/vector_math.h"
#include "kernels/gemm.h"

namespace se::kernels::cpu::conv_gemm {
namespace {

// Where a chunk's im2col or dcol (K, cols) would pass this size, the backward passes go by slices of
// input channels instead.
constexpr int64_t kMaxColBytes = 1 << 20;

// Slices of input channels per image and group, so that a slice's share of a chunk's col or dcol
// (channels * KH * KW, cols) stays within kMaxColBytes, in a multiple of 4 so that 2 or 4 threads share
// them evenly (the count must not depend on the thread count: it orders the sums); 0 when the whole
// matrix already fits or planes are so small that tasks hold several images, and the chunked paths keep
// the conv.
template <typename T>
int64_t channel_slices(const Geometry& g) {
  const int64_t row_bytes = scratch_stride(g.rows * g.ow) * static_cast<int64_t>(sizeof(T));
  if (g.images > 1 || g.k * row_bytes <= kMaxColBytes) return 0;
  const int64_t slices = (g.k * row_bytes + kMaxColBytes - 1) / kMaxColBytes;
  return std::min(g.cg, (slices + 3) / 4 * 4);
}

// Backward data of a deep conv, dx_g (Cg, H, W): each task takes an image, a group and a slice of its
// input channels, and for each chunk of output rows in turn computes that slice's rows of dcol =
// W_g^T @ dy_g[:, chunk] and adds their col2im into the slice's own planes of dx. Keeping a task's dcol
// to kMaxColBytes (DeepLab's ASPP, 2048 channels x 9 taps, made each chunk's dcol a 37 to 118 MB
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

// Output channels below this leave the GEMM's 32-column micro-tiles partly empty as its n.
constexpr int64_t kNarrowOutputs = 32;

// The slots of the chunked backward weight: the most, a power of two up to kMaxWeightSlots and at most one
// per task, whose accumulators of `w_bytes` each fit in kWeightSlotBytes (at least one).
constexpr int64_t kMaxWeightSlots = 8;
constexpr int64_t kWeightSlotBytes = 16 << 20;
inline int64_t weight_slots(int64_t tasks, int64_t w_bytes) {
  int64_t slots = 1;
  while (slots * 2 <= std::min(tasks, kMaxWeightSlots) && slots * 2 * w_bytes <= kWeightSlotBytes) slots *= 2;
  return slots;
}

// dw (groups, Og, K) from the transposed accumulator acc (groups, K, Og), in square tiles.
template <typename T>
void transpose_weight_gradient(const Geometry& g, const T* acc, T* dw) {
  constexpr int64_t kTile = 32;
  const int64_t tiles_k = (g.k + kTile - 1) / kTile, tiles_o = (g.og + kTile - 1) / kTile;
#pragma omp parallel for collapse(2) num_threads(max_threads()) schedule(static)
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

// Backward weight of a deep conv by (group, input-channel slice) tasks, the slices of channel_slices: each
// task owns its slice's columns of dW_g and sums into them every image's chunks in turn, the im2col of
// a chunk's slice (channels * KH * KW, cols) staying within kMaxColBytes. The chunked path's col was a
// (K, cols) matrix of up to 37 MB (DeepLab's ASPP), and each thread summed into a whole dW of its own
// (19 MB there) that were then added up. Every dW element sums its chunks in order, whatever the
// thread count; db comes from channel_sums.
template <typename T>
void backward_weight_by_channel_slices(const Geometry& g, const T* x, const T* dy, T* dw, T* db, int64_t slices) {
  const int64_t taps = g.kh * g.kw;
  const bool transposed = g.og >= kNarrowOutputs;
  const bool pointwise = is_pointwise(g);
  // acc: (groups, K, Og) when transposed, else dw (groups, Og, K) itself.
  std::unique_ptr<T[]> acc_t(transposed ? new T[static_cast<size_t>(g.c_out * g.k)] : nullptr);
  T* acc = transposed ? acc_t.get() : dw;
  run_tasks(g.groups * slices, [&](int64_t t, int inner) {
    const int64_t slice = t % slices, group = t / slices;
    const int64_t c0 = slice * g.cg / slices, c1 = (slice + 1) * g.cg / slices, slice_k = (c1 - c0) * taps;
    // The slice's block of the accumulator: slice_k rows of Og, or Og rows of slice_k (K apart).
    T* acc_slice = transposed ? acc + (group * g.k + c0 * taps) * g.og : acc + group * g.og * g.k + c0 * taps;
    if (transposed) {
      std::fill(acc_slice, acc_slice + slice_k * g.og, T(0));
    } else {
      for (int64_t o = 0; o < g.og; ++o) std::fill(acc_slice + o * g.k, acc_slice + o * g.k + slice_k, T(0));
    }
    for (int64_t image = 0; image < g.n; ++image) {
      const T* x_slice = x + (image * g.c_in + group * g.cg + c0) * g.hw;
      const T* dy_g = dy + (image * g.c_out + group * g.og) * g.ohw;
      for (int64_t oh0 = 0; oh0 < g.oh; oh0 += g.rows) {
        const int64_t oh1 = std::min(g.oh, oh0 + g.rows);
        const int64_t cols = (oh1 - oh0) * g.ow;
        const T* col = x_slice + oh0 * g.ow;  // a pointwise conv's x is its own col
        int64_t ld = g.hw;
        if (!pointwise) {
          ld = scratch_stride(cols);
          T* buf = scratch<T>(static_cast<size_t>(slice_k * ld));
#pragma omp parallel for num_threads(inner) if (inner > 1) schedule(static)
          for (int64_t c = 0; c < c1 - c0; ++c) im2col_channel(g, x_slice, c, oh0, oh1, buf, ld);
          col = buf;
        }
        const T* dy_chunk = dy_g + oh0 * g.ow;
        if (transposed) {
          gemm(gemm_desc<T>(slice_k, g.og, cols, false, ld, true, g.ohw, g.og, 1.0f), col, dy_chunk, acc_slice,
               nullptr);
        } else {
          gemm(gemm_desc<T>(g.og, slice_k, cols, false, g.ohw, true, ld, g.k, 1.0f), dy_chunk, col, acc_slice, nullptr);
        }
      }
    }
  });
  if (transposed) transpose_weight_gradient(g, acc, dw);
  if (db != nullptr) channel_sums(dy, g.n, g.c_out, g.ohw, db);
}

}  // namespace

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
  if (const int64_t slices = channel_slices<T>(g); slices > 0) {
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
    gemm(gemm_desc<T>(g.k, tk.cols, g.og, true, g.k, false, ld_dy, tk.ld, 0.0f), w + tk.group * g.og * g.k, dy_t, dcol,
         nullptr);
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

// Computed transposed, dW_g^T (K, Og) += col (K, cols) @ dy_g[:, chunk]^T (cols, Og): K, the long side,
// becomes the GEMM's rows and Og its columns. Fewer than kNarrowOutputs output channels would leave
// those columns' micro-tiles partly empty, so they are computed as dW_g (Og, K) += dy_g @ col^T instead.
// The bias gradient db (C_out), when asked for, is summed from each task's chunk of dy while the GEMM
// has just brought it into cache: a (task, channel) table of sums, added up in task order, so that the
// result does not depend on the thread count.
template <typename T>
void backward_weight_gemm(const Geometry& g, const T* x, const T* dy, T* dw, T* db) {
  if (const int64_t slices = channel_slices<T>(g); slices > 0) {
    return backward_weight_by_channel_slices(g, x, dy, dw, db, slices);
  }
  const int64_t w_elements = g.c_out * g.k;
  const bool transposed = g.og >= kNarrowOutputs;
  const int64_t tasks = task_count(g);
  std::vector<double> task_bias(db != nullptr ? static_cast<size_t>(tasks * g.og) : 0);
  // acc: (groups, K, Og) when transposed, else (groups, Og, K).
  // acc += task t's product (acc = it, when overwrite).
  auto accumulate = [&](int64_t t, T* acc, bool overwrite, int inner) {
    const Task tk = task_of(g, t);
    int64_t ld_dy = 0;
    const T* dy_t = gather_dy(g, dy, tk, &ld_dy, inner);
    T* acc_g = acc + tk.group * g.k * g.og;
    const float beta = overwrite ? 0.0f : 1.0f;
    const GemmDesc product = transposed ? gemm_desc<T>(g.k, g.og, tk.cols, false, tk.ld, true, ld_dy, g.og, beta)
                                        : gemm_desc<T>(g.og, g.k, tk.cols, false, ld_dy, true, tk.ld, g.k, beta);
    // col gathered by the GEMM as it packs it (TaskColumns), unless x is col (pointwise) or the product
    // goes to the dot-product kernel, which reads col as stored rows.
    if (!(is_pointwise(g) && tk.images == 1) && !gemm_takes_dot_kernel(product)) {
      const TaskColumns<T> col(g, x, tk);
      if (transposed) {
        gemm_rows_a<T>(product, col, dy_t, acc_g);
      } else {
        gemm_rows_b<T>(product, dy_t, col, acc_g);
      }
    } else {
      int64_t ld_col = 0;
      const T* col = task_col(g, x, tk, &ld_col, inner);
      if (transposed) {
        gemm(gemm_desc<T>(g.k, g.og, tk.cols, false, ld_col, true, ld_dy, g.og, beta), col, dy_t, acc_g, nullptr);
      } else {
        gemm(gemm_desc<T>(g.og, g.k, tk.cols, false, ld_dy, true, ld_col, g.k, beta), dy_t, col, acc_g, nullptr);
      }
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
  // Slots: contiguous ranges of tasks, each summed in task order into an accumulator of its own (with
  // one group, its first task's GEMM overwrites it), then the accumulators added in slot order. The slot
  // count is fixed by the shape, not by the threads, so dW does not depend on the thread count: the
  // threads take whole slots, or with fewer slots than threads they go to each slot's GEMMs in turn. The
  // accumulators live in the calling thread's scratch, which calls reuse (fresh pages cost more to
  // fault in than the slots' sums).
  const int64_t slots = weight_slots(tasks, w_elements * static_cast<int64_t>(sizeof(T)));
  T* partials = scratch<T, 2>(static_cast<size_t>(slots * w_elements));
  auto sum_slot = [&](int64_t slot, int inner) {
    const int64_t first = slot * tasks / slots, last = (slot + 1) * tasks / slots;
    T* acc = partials + slot * w_elements;
    // A slot's first task spans one group: the other groups' blocks start from zero.
    if (g.groups > 1) std::fill(acc, acc + w_elements, T(0));
    for (int64_t t = first; t < last; ++t) accumulate(t, acc, g.groups == 1 && t == first, inner);
  };
  run_tasks(slots, sum_slot);
  // The accumulators summed into the first, element by element in slot order, reading them as they
  // lie: going through them in dw's order instead read the transposed ones a cache line per element.
  T* acc = partials;
  if (slots > 1) {
#pragma omp parallel for num_threads(max_threads()) schedule(static)
    for (int64_t e = 0; e < w_elements; ++e) {
      T sum = acc[e];
      for (int64_t slot = 1; slot < slots; ++slot) sum += acc[slot * w_elements + e];
      acc[e] = sum;
    }
  }
  // dw (groups, Og, K): acc itself, or acc (groups, K, Og) transposed.
  if (!transposed) {
    std::copy(acc, acc + w_elements, dw);
  } else {
    transpose_weight_gradient(g, acc, dw);
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

template void backward_data_gemm<float>(const Geometry&, const float*, const float*, float*);
template void backward_data_gemm<double>(const Geometry&, const double*, const double*, double*);
template void backward_weight_gemm<float>(const Geometry&, const float*, const float*, float*, float*);
template void backward_weight_gemm<double>(const Geometry&, const double*, const double*, double*, double*);

}  // namespace se::kernels::cpu::conv_gemm
