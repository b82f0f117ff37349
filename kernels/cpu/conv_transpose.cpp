// CPU ConvTranspose2d on the Conv2d kernels (kernels/conv.h): the mirror conv2d's backward-data is the forward,
// its forward the backward-data, and its backward-weight with x and dy swapped the weight gradient. What the
// conv kernels do not cover is the transpose's own bias: added after the forward, and reduced from dy here.
// A transposed conv whose kernel equals its stride (U-Net's 2x2 up-sampling) has its own path below: no two
// input pixels reach the same output, so each pass is one GEMM per chunk of rows (or of several small
// images) and a pixel shuffle.
#include <omp.h>

#include <algorithm>
#include <type_traits>

#include "kernels/conv.h"
#include "kernels/cpu/channel_sum.h"
#include "kernels/cpu/conv_im2col.h"

namespace se::kernels::cpu {
namespace {

// y (N, C, P) += bias (C), computed in float for f16/bf16.
template <typename T>
void add_bias(T* y, const T* bias, int64_t n, int64_t c, int64_t p) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
#pragma omp parallel for schedule(static) if (n * c * p >= 16384)
  for (int64_t plane = 0; plane < n * c; ++plane) {
    const A b = static_cast<A>(bias[plane % c]);
    T* row = y + plane * p;
    for (int64_t i = 0; i < p; ++i) row[i] = static_cast<T>(static_cast<A>(row[i]) + b);
  }
}

int64_t output_pixels(const ConvTranspose2dDesc& d) {
  return conv_transpose2d_output_h(d) * conv_transpose2d_output_w(d);
}

// ---- kernel == stride: a GEMM and a pixel shuffle ----
// With kernel == stride, no padding, dilation or output padding and one group, input pixel (i, j) alone
// makes the KH x KW block of outputs at (i * KH, j * KW):
//   y[n, co, i * KH + a, j * KW + b] = bias[co] + sum_ci x[n, ci, i, j] * w[ci, co, a, b]
// so with W the weight as a (C_in, M = C_out * KH * KW) matrix, each chunk of input rows is
//   forward          t (M, cols) = W^T @ x[n][:, chunk], then t's rows interleaved into y's rows
//   backward data    dx[n][:, chunk] (C_in, cols) = W @ g, g (M, cols) dy's chunk de-interleaved
// The mirror conv2d instead ran col2im with strided scatters (the forward of U-Net's shallow up-sampling
// layers took 30-40 % longer) and im2col with strided reads. Backward weight stays on the mirror conv2d:
// the same GEMM on the same gathered dy (its im2col), and its channel slices keep deep layers' dW in cache.
struct Shuffle {
  int64_t n, c_in, c_out, h, w, kh, kw;
  int64_t m;       // C_out * KH * KW: the rows of t and g
  int64_t rows;    // input rows per chunk
  int64_t chunks;  // chunks per image
  int64_t images;  // images per task: > 1 only for images smaller than a chunk, which then is the image
};

// Chunks keep t or g (M, cols) within about 1 MB, but take at least 512 columns, which amortise packing
// W (C_in, M) over enough of them. Images of fewer than kShuffleSmallImage pixels go several to a
// task, side by side in t's or g's columns: the demo U-Net's 4x4 maps, one image per task, made GEMMs
// of 16 columns (forward at 11 % of peak). Measured (2 threads, 8 images, min of rounds): 256 -> 128
// ch at 4x4 forward 0.40 -> 0.15 ms, backward data 0.20 -> 0.11 ms; 128 -> 64 ch at 8x8 forward 0.14
// -> 0.11 ms; at 16x16 the copies in and out cost more than the wider GEMMs save (+6 %).
constexpr int64_t kShuffleChunkBytes = 1 << 20;
constexpr int64_t kShuffleMinColumns = 512;
constexpr int64_t kShuffleSmallImage = 128;

bool runs_as_shuffle(const ConvTranspose2dDesc& d) {
  return d.kernel_h == d.stride_h && d.kernel_w == d.stride_w && d.pad_h == 0 && d.pad_w == 0 &&
         d.output_padding_h == 0 && d.output_padding_w == 0 && d.dilation_h == 1 && d.dilation_w == 1 &&
         d.groups == 1 && (d.dtype == DType::f32 || d.dtype == DType::f64);
}

template <typename T>
Shuffle shuffle_of(const ConvTranspose2dDesc& d) {
  Shuffle s{d.n, d.c_in, d.c_out, d.h, d.w, d.kernel_h, d.kernel_w, d.c_out * d.kernel_h * d.kernel_w, 1, 1, 1};
  const int64_t budget = kShuffleChunkBytes / (s.m * s.w * static_cast<int64_t>(sizeof(T)));
  s.rows = std::clamp(std::max(budget, (kShuffleMinColumns + s.w - 1) / s.w), int64_t(1), s.h);
  s.chunks = (s.h + s.rows - 1) / s.rows;
  if (s.chunks == 1 && s.h * s.w < kShuffleSmallImage)
    s.images = std::clamp<int64_t>(kShuffleMinColumns / (s.h * s.w), 1, s.n);
  return s;
}

int64_t shuffle_tasks(const Shuffle& s) {
  return (s.n + s.images - 1) / s.images * s.chunks;
}

// As shuffle_of, with fewer images per task until every thread has a task of its own (as conv.cpp's
// forward: one task's GEMM split over the threads meets them at barriers, and the copies around it
// are short). Every output's sum is the same whichever task computes it: this changes no result.
template <typename T>
Shuffle shuffle_for_threads(const ConvTranspose2dDesc& d) {
  Shuffle s = shuffle_of<T>(d);
  while (s.images > 1 && shuffle_tasks(s) < conv_gemm::max_threads()) s.images = (s.images + 1) / 2;
  return s;
}

// Images [image, image + images) and input rows [i0, i1) of task t, its columns (the images' rows side
// by side) and its scratch row stride.
struct ShuffleTask {
  int64_t image, images, i0, i1, cols, ld;
};
ShuffleTask shuffle_task(const Shuffle& s, int64_t t) {
  const int64_t i0 = t % s.chunks * s.rows, i1 = std::min(s.h, i0 + s.rows);
  const int64_t image = t / s.chunks * s.images, images = std::min(s.images, s.n - image);
  const int64_t cols = images * (i1 - i0) * s.w;
  return {image, images, i0, i1, cols, conv_gemm::scratch_stride(cols)};
}

// Calls move(out_row, t_rows, co) for every output row of the task: out_row, output row i * KH + a of
// channel co of one of the task's images (y or dy), and t_rows, row (co, a, 0) of t or g at that image's
// input row i, whose KW rows (co, a, b), tk.ld apart, interleave into out_row. Channels split over
// `threads`.
template <typename T, typename U, typename Move>
void for_each_shuffled_row(const Shuffle& s, const ShuffleTask& tk, U* out, T* t, int threads, Move move) {
  const int64_t oh = s.h * s.kh, ow = s.w * s.kw, image_cols = (tk.i1 - tk.i0) * s.w;
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (int64_t co = 0; co < s.c_out; ++co) {
    for (int64_t j = 0; j < tk.images; ++j) {
      for (int64_t i = tk.i0; i < tk.i1; ++i) {
        for (int64_t a = 0; a < s.kh; ++a) {
          move(out + (((tk.image + j) * s.c_out + co) * oh + i * s.kh + a) * ow,
               t + (co * s.kh + a) * s.kw * tk.ld + j * image_cols + (i - tk.i0) * s.w, co);
        }
      }
    }
  }
}

// Copies between the task's planes of C channels in an (N, C, H * W) tensor and a (C, cols) scratch
// matrix of its images side by side (rows ld apart): from the planes into the matrix (gather), or from
// the matrix back into the planes, channels split over `threads`.
template <typename T>
void copy_images(const ShuffleTask& tk, int64_t channels, int64_t hw, const T* from, T* to, bool gather, int threads) {
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t j = 0; j < tk.images; ++j) {
      const int64_t plane = ((tk.image + j) * channels + c) * hw, row = c * tk.ld + j * hw;
      const T* source = from + (gather ? plane : row);
      std::copy(source, source + hw, to + (gather ? row : plane));
    }
  }
}

template <typename T>
void shuffle_forward(const Shuffle& s, const T* x, const T* w, const T* bias, T* y) {
  const int64_t hw = s.h * s.w;
  conv_gemm::run_tasks(shuffle_tasks(s), [&](int64_t task, int inner) {
    const ShuffleTask tk = shuffle_task(s, task);
    // x's columns for the task: in place for one image, else its images gathered side by side.
    const T* x_t = x + tk.image * s.c_in * hw + tk.i0 * s.w;
    int64_t ld_x = hw;
    if (tk.images > 1) {
      T* gathered = conv_gemm::scratch<T, 1>(static_cast<size_t>(s.c_in * tk.ld));
      copy_images(tk, s.c_in, hw, x, gathered, true, inner);
      x_t = gathered, ld_x = tk.ld;
    }
    T* t = conv_gemm::scratch<T>(static_cast<size_t>(s.m * tk.ld));
    gemm(conv_gemm::gemm_desc<T>(s.m, tk.cols, s.c_in, true, s.m, false, ld_x, tk.ld, 0.0f), w, x_t, t, nullptr);
    for_each_shuffled_row(s, tk, y, t, inner, [&](T* out, const T* rows, int64_t co) {
      const T add = bias != nullptr ? bias[co] : T(0);
      if (s.kw == 2) {  // U-Net's 2x2: a loop the compiler vectorizes with interleaving shuffles
        const T* even = rows;
        const T* odd = rows + tk.ld;
        for (int64_t j = 0; j < s.w; ++j) {
          out[2 * j] = even[j] + add;
          out[2 * j + 1] = odd[j] + add;
        }
        return;
      }
      for (int64_t b = 0; b < s.kw; ++b) {
        for (int64_t j = 0; j < s.w; ++j) out[j * s.kw + b] = rows[b * tk.ld + j] + add;
      }
    });
  });
}

// g (M, cols): the task's chunk of dy, de-interleaved (by `threads`).
template <typename T>
T* gather_shuffled(const Shuffle& s, const ShuffleTask& tk, const T* dy, int threads) {
  T* g = conv_gemm::scratch<T>(static_cast<size_t>(s.m * tk.ld));
  for_each_shuffled_row(s, tk, dy, g, threads, [&](const T* dy_row, T* rows, int64_t) {
    if (s.kw == 2) {
      T* even = rows;
      T* odd = rows + tk.ld;
      for (int64_t j = 0; j < s.w; ++j) {
        even[j] = dy_row[2 * j];
        odd[j] = dy_row[2 * j + 1];
      }
      return;
    }
    for (int64_t b = 0; b < s.kw; ++b) {
      for (int64_t j = 0; j < s.w; ++j) rows[b * tk.ld + j] = dy_row[j * s.kw + b];
    }
  });
  return g;
}

template <typename T>
void shuffle_backward_data(const Shuffle& s, const T* dy, const T* w, T* dx) {
  const int64_t hw = s.h * s.w;
  conv_gemm::run_tasks(shuffle_tasks(s), [&](int64_t task, int inner) {
    const ShuffleTask tk = shuffle_task(s, task);
    const T* g = gather_shuffled(s, tk, dy, inner);
    if (tk.images == 1) {
      gemm(conv_gemm::gemm_desc<T>(s.c_in, tk.cols, s.m, false, s.m, false, tk.ld, hw, 0.0f), w, g,
           dx + tk.image * s.c_in * hw + tk.i0 * s.w, nullptr);
      return;
    }
    T* dx_t = conv_gemm::scratch<T, 1>(static_cast<size_t>(s.c_in * tk.ld));  // (C_in, cols), images side by side
    gemm(conv_gemm::gemm_desc<T>(s.c_in, tk.cols, s.m, false, s.m, false, tk.ld, tk.ld, 0.0f), w, g, dx_t, nullptr);
    copy_images(tk, s.c_in, hw, dx_t, dx, false, inner);
  });
}

}  // namespace

void conv_transpose2d_forward(const ConvTranspose2dDesc& desc, const void* x, const void* w, const void* bias, void* y,
                              Stream stream) {
  validate_conv_transpose2d(desc);
  SE_CHECK(!desc.has_bias || bias != nullptr, "conv_transpose2d_forward: has_bias is set but bias is null");
  if (runs_as_shuffle(desc) && desc.n > 0) {
    SE_CHECK(x != nullptr && w != nullptr && y != nullptr, "conv_transpose2d_forward: x, w or y is null");
    dispatch_floating(desc.dtype, "conv_transpose2d_forward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
        shuffle_forward(shuffle_for_threads<T>(desc), static_cast<const T*>(x), static_cast<const T*>(w),
                        desc.has_bias ? static_cast<const T*>(bias) : nullptr, static_cast<T*>(y));
      }
    });
    return;
  }
  conv2d_backward_data(conv2d_of_transpose(desc), x, w, y, stream);
  if (!desc.has_bias || desc.n == 0) return;
  dispatch_floating(desc.dtype, "conv_transpose2d_forward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    add_bias(static_cast<T*>(y), static_cast<const T*>(bias), desc.n, desc.c_out, output_pixels(desc));
  });
}

void conv_transpose2d_backward_data(const ConvTranspose2dDesc& desc, const void* dy, const void* w, void* dx,
                                    Stream stream) {
  validate_conv_transpose2d(desc);
  if (runs_as_shuffle(desc) && desc.n > 0) {
    SE_CHECK(dy != nullptr && w != nullptr && dx != nullptr, "conv_transpose2d_backward_data: dy, w or dx is null");
    dispatch_floating(desc.dtype, "conv_transpose2d_backward_data", [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
        shuffle_backward_data(shuffle_for_threads<T>(desc), static_cast<const T*>(dy), static_cast<const T*>(w),
                              static_cast<T*>(dx));
      }
    });
    return;
  }
  conv2d_forward(conv2d_of_transpose(desc), dy, w, nullptr, dx, stream);
}

void conv_transpose2d_backward_weight(const ConvTranspose2dDesc& desc, const void* x, const void* dy, void* dw,
                                      void* db, void* /*workspace*/, Stream stream) {
  validate_conv_transpose2d(desc);
  conv2d_backward_weight(conv2d_of_transpose(desc), dy, x, dw, nullptr, nullptr, stream);
  if (db == nullptr) return;
  dispatch_floating(desc.dtype, "conv_transpose2d_backward_weight", [&](auto tag) {
    using T = typename decltype(tag)::type;
    channel_sums(static_cast<const T*>(dy), desc.n, desc.c_out, output_pixels(desc), static_cast<T*>(db));
  });
}

}  // namespace se::kernels::cpu
