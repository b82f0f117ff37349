// Shared by the Conv2d kernel tests (test_conv.cpp, test_conv_channels_last.cpp): the shape table, a
// naive f64 reference convolution, and runners of the three passes on the CPU and on the device.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/conv.h"
#include "tests/kernels/kernel_test_util.h"

namespace se::kernels::conv_test {

using test::relative_error;

struct Case {
  const char* name;
  int64_t n, c_in, h, w, c_out;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  int64_t groups;
  bool bias;
};

// Small shapes (the emulator runs the CUDA tests ~100x slower than a GPU) covering every CPU path:
// chunked im2col with task- and GEMM-level threads, several small images per task, pointwise,
// depthwise, and the thread split of backward data by images or by channels.
inline const std::vector<Case> kCases = {
    {"3x3_pad1_bias", 2, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
    {"3x2_odd_nopad", 1, 4, 11, 6, 3, 3, 2, 1, 1, 0, 0, 1, 1, 1, false},
    {"stride2", 2, 6, 13, 10, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, true},
    {"dilation2", 1, 4, 12, 12, 6, 3, 3, 1, 1, 2, 2, 2, 2, 1, false},
    {"atrous6", 1, 3, 15, 14, 4, 3, 3, 1, 1, 6, 6, 6, 6, 1, true},
    {"groups2", 2, 6, 9, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2, true},
    {"depthwise", 2, 5, 10, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1, 5, true},
    {"depthwise_x2_stride2", 1, 4, 9, 11, 8, 3, 3, 2, 2, 1, 1, 1, 1, 4, false},
    // Rows of >= 16 outputs: depthwise backward weight's vectorized lanes, plus their tail.
    {"depthwise_wide_rows", 2, 3, 6, 53, 3, 3, 3, 1, 1, 1, 1, 1, 1, 3, true},
    {"depthwise_wide_stride2_dilation2", 1, 2, 7, 71, 4, 3, 3, 2, 2, 2, 2, 2, 2, 2, false},
    // Stride 1 takes the f32 tap loop (conv_depthwise.h): 16-output blocks, a last block that overlaps the
    // one before, and with 2 outputs per channel, backward data's second sum into dx.
    {"depthwise_x2_dilation2_wide", 2, 3, 6, 40, 6, 3, 3, 1, 1, 2, 2, 2, 2, 3, true},
    {"1x1", 2, 7, 5, 6, 9, 1, 1, 1, 1, 0, 0, 1, 1, 1, true},
    {"1x1_groups3", 1, 6, 4, 5, 9, 1, 1, 1, 1, 0, 0, 1, 1, 3, false},
    {"1x1_stride2", 1, 4, 7, 7, 3, 1, 1, 2, 2, 0, 0, 1, 1, 1, false},
    {"7x7_stride2_pad3_stem", 1, 3, 23, 20, 8, 7, 7, 2, 2, 3, 3, 1, 1, 1, true},
    {"mixed_hw", 2, 3, 10, 13, 4, 2, 3, 1, 2, 0, 2, 2, 1, 1, true},
    {"many_chunks", 1, 16, 40, 40, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
    {"wide_rows", 1, 2, 3, 700, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, false},
    {"many_channels", 1, 72, 5, 6, 80, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},  // more than one 64-row tile
    // 32 outputs per group: backward weight accumulates dW^T per group, transposed back in tiles
    {"groups2_wide_outputs", 2, 8, 6, 7, 80, 3, 3, 1, 1, 1, 1, 1, 1, 2, true},
    // K = 27: a shallow conv, whose chunks span many output rows and go through the output scratch
    {"shallow_rgb_chunks", 2, 3, 70, 90, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
    // Planes below a chunk go several images per task: 512 / 150 = 3 images, then a task of 2.
    {"images_per_task", 5, 6, 10, 15, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2, true},
    {"images_per_task_1x1", 5, 4, 10, 15, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1, false},
    // The direct kernel of stride-1 convs (conv_direct_avx512.cpp) on AVX-512 CPUs: its channel tiles
    // of 8 and then 5, 6 or 7 (each with its own vector count), whole strips and a masked last one,
    // a kernel width run as a loop (5), and a padding beyond the kernel's reach, which makes the
    // padding of backward data (run as a direct conv of dy) negative. Then deeper convs (K = 144) whose
    // rows are wide enough for the direct forward and backward data, and with fewer than 32 outputs per
    // group, backward weight (two groups of 12 outputs: each group's taps in its own lanes); one whose
    // rows (70) are direct only with K <= 288 (forward and backward data) or fewer than 32 outputs
    // (backward weight, in bands of 7 rows: 7, 7, 6); and a shallow conv whose backward weight goes by
    // bands of 12 rows, the last 11, through a 5x3 kernel dilated in height and padded by 2 in width.
    {"shallow_8_and_5_outputs", 1, 2, 5, 70, 13, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
    {"shallow_groups2_6_and_7_outputs", 2, 4, 4, 66, 26, 3, 3, 1, 1, 1, 1, 1, 1, 2, false},
    {"shallow_5x5", 1, 2, 8, 37, 4, 5, 5, 1, 1, 2, 2, 1, 1, 1, true},
    {"shallow_pad_beyond_reach", 1, 2, 6, 20, 3, 3, 3, 1, 1, 3, 3, 1, 1, 1, true},
    {"deep_wide_rows", 1, 16, 3, 130, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
    {"deep_wide_rows_groups2", 2, 32, 4, 140, 24, 3, 3, 1, 1, 1, 1, 1, 1, 2, true},
    {"deep_narrow_rows", 2, 16, 20, 70, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
    {"shallow_dilated_bands", 2, 3, 23, 40, 6, 5, 3, 1, 1, 4, 2, 2, 1, 1, true},
    // Deeper stride-1 convs over narrow rows, on the GEMM path: the forward's implicit GEMM (col packed
    // from x, never stored), and backward data as the forward of the dual conv (w flipped, channels
    // swapped): its padding negative (3 > the kernel's reach of 2), a 2x3 kernel with uneven padding and
    // dilation in two groups, and 8 images of 8 x 8, which share a task, then split between threads.
    {"dual_pad_beyond_reach", 1, 16, 6, 9, 5, 3, 3, 1, 1, 3, 3, 1, 1, 1, true},
    {"dual_2x3_groups2_dilated", 2, 48, 9, 11, 6, 2, 3, 1, 1, 1, 2, 2, 1, 2, false},
    {"small_maps_images_per_task", 8, 16, 8, 8, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
    // Deep convs whose chunk of im2col (K, 16 rows x 32) would pass 1 MB: backward weight goes by slices
    // of input channels (kChannelSlicedConvs), and so does backward data where it is not the dual's
    // forward (stride 2). K = 594 in slices of 16 or 17 channels, 8 outputs (dW not transposed); the
    // same strided; two groups of K = 576 with 40 outputs each (dW^T); a pointwise conv over 600 channels.
    {"deep_dilated_channel_slices", 2, 66, 20, 32, 8, 3, 3, 1, 1, 3, 3, 3, 3, 1, true},
    {"deep_strided_channel_slices", 1, 66, 64, 32, 8, 3, 3, 2, 2, 3, 3, 3, 3, 1, true},
    {"deep_groups2_channel_slices", 1, 128, 16, 32, 80, 3, 3, 1, 1, 1, 1, 1, 1, 2, true},
    {"deep_pointwise_channel_slices", 2, 600, 16, 32, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1, true},
};
inline constexpr size_t kChannelSlicedConvs = 4;  // the last cases

inline Conv2dDesc make_desc(const Case& c, DType dtype) {
  Conv2dDesc d;
  d.n = c.n;
  d.c_in = c.c_in;
  d.h = c.h;
  d.w = c.w;
  d.c_out = c.c_out;
  d.kernel_h = c.kh;
  d.kernel_w = c.kw;
  d.stride_h = c.sh;
  d.stride_w = c.sw;
  d.pad_h = c.ph;
  d.pad_w = c.pw;
  d.dilation_h = c.dh;
  d.dilation_w = c.dw;
  d.groups = c.groups;
  d.has_bias = c.bias;
  d.dtype = dtype;
  return d;
}

// Inputs and results of the three passes, in double.
struct Tensors {
  std::vector<double> x, w, b, dy;  // inputs
  std::vector<double> y, dx, dw, db;  // outputs
};

inline Tensors random_inputs(const Conv2dDesc& d, uint32_t seed) {
  Tensors t;
  t.x = test::random_values(conv2d_x_elements(d), seed);
  t.w = test::random_values(conv2d_w_elements(d), seed + 1);
  t.b = test::random_values(d.c_out, seed + 2);
  t.dy = test::random_values(conv2d_y_elements(d), seed + 3);
  return t;
}

// The definition, loop by loop.
inline void reference(const Conv2dDesc& d, Tensors& t) {
  const int64_t oh_size = conv2d_output_h(d), ow_size = conv2d_output_w(d);
  const int64_t cg = d.c_in / d.groups, og = d.c_out / d.groups;
  t.y.assign(static_cast<size_t>(conv2d_y_elements(d)), 0.0);
  t.dx.assign(static_cast<size_t>(conv2d_x_elements(d)), 0.0);
  t.dw.assign(static_cast<size_t>(conv2d_w_elements(d)), 0.0);
  t.db.assign(static_cast<size_t>(d.c_out), 0.0);
  for (int64_t n = 0; n < d.n; ++n) {
    for (int64_t co = 0; co < d.c_out; ++co) {
      for (int64_t oh = 0; oh < oh_size; ++oh) {
        for (int64_t ow = 0; ow < ow_size; ++ow) {
          const int64_t yi = ((n * d.c_out + co) * oh_size + oh) * ow_size + ow;
          double sum = d.has_bias ? t.b[co] : 0.0;
          t.db[co] += t.dy[yi];
          for (int64_t c = 0; c < cg; ++c) {
            for (int64_t i = 0; i < d.kernel_h; ++i) {
              for (int64_t j = 0; j < d.kernel_w; ++j) {
                const int64_t ih = oh * d.stride_h - d.pad_h + i * d.dilation_h;
                const int64_t iw = ow * d.stride_w - d.pad_w + j * d.dilation_w;
                if (ih < 0 || ih >= d.h || iw < 0 || iw >= d.w) continue;
                const int64_t xi = ((n * d.c_in + co / og * cg + c) * d.h + ih) * d.w + iw;
                const int64_t wi = ((co * cg + c) * d.kernel_h + i) * d.kernel_w + j;
                sum += t.w[wi] * t.x[xi];
                t.dx[xi] += t.w[wi] * t.dy[yi];
                t.dw[wi] += t.x[xi] * t.dy[yi];
              }
            }
          }
          t.y[yi] = sum;
        }
      }
    }
  }
}

// The kernels' outputs in T.
template <typename T>
struct Outputs {
  std::vector<T> y, dx, dw, db;
};

template <typename T>
Outputs<T> run_cpu(const Conv2dDesc& d, const Tensors& in) {
  const auto x = test::cast_to<T>(in.x), w = test::cast_to<T>(in.w), b = test::cast_to<T>(in.b);
  const auto dy = test::cast_to<T>(in.dy);
  Outputs<T> out;
  out.y.resize(static_cast<size_t>(conv2d_y_elements(d)));
  out.dx.resize(static_cast<size_t>(conv2d_x_elements(d)));
  out.dw.resize(static_cast<size_t>(conv2d_w_elements(d)));
  out.db.resize(static_cast<size_t>(d.c_out));
  cpu::conv2d_forward(d, x.data(), w.data(), b.data(), out.y.data(), nullptr);
  cpu::conv2d_backward_data(d, dy.data(), w.data(), out.dx.data(), nullptr);
  cpu::conv2d_backward_weight(d, x.data(), dy.data(), out.dw.data(), out.db.data(), nullptr, nullptr);
  return out;
}

// Inputs rounded to T, so that the reference sees exactly what the kernels see.
template <typename T>
Tensors rounded_reference(const Conv2dDesc& d, uint32_t seed) {
  Tensors t = random_inputs(d, seed);
  t.x = test::to_double(test::cast_to<T>(t.x));
  t.w = test::to_double(test::cast_to<T>(t.w));
  t.b = test::to_double(test::cast_to<T>(t.b));
  t.dy = test::to_double(test::cast_to<T>(t.dy));
  reference(d, t);
  return t;
}

// Channels-last copies: (A, B, C, D) stored as (A, C, D, B), for activations (N, C, H, W) and weights
// (C_out, Cg, KH, KW).
inline std::vector<double> channels_last(const std::vector<double>& v, int64_t a, int64_t b, int64_t c, int64_t d) {
  std::vector<double> out(v.size());
  for (int64_t i = 0; i < a; ++i) {
    for (int64_t j = 0; j < b; ++j) {
      for (int64_t k = 0; k < c * d; ++k)
        out[static_cast<size_t>((i * c * d + k) * b + j)] = v[static_cast<size_t>((i * b + j) * c * d + k)];
    }
  }
  return out;
}

// The reference's inputs and results in the nhwc layout (the bias and its gradient need no change).
inline Tensors channels_last(const Conv2dDesc& d, const Tensors& t) {
  const int64_t oh = conv2d_output_h(d), ow = conv2d_output_w(d), cg = d.c_in / d.groups;
  Tensors out = t;
  out.x = channels_last(t.x, d.n, d.c_in, d.h, d.w);
  out.dx = channels_last(t.dx, d.n, d.c_in, d.h, d.w);
  out.w = channels_last(t.w, d.c_out, cg, d.kernel_h, d.kernel_w);
  out.dw = channels_last(t.dw, d.c_out, cg, d.kernel_h, d.kernel_w);
  out.y = channels_last(t.y, d.n, d.c_out, oh, ow);
  out.dy = channels_last(t.dy, d.n, d.c_out, oh, ow);
  return out;
}

template <typename T>
void expect_matches_reference(const Outputs<T>& got, const Tensors& want, double tol, const std::string& what) {
  EXPECT_LE(relative_error(test::to_double(got.y), want.y), tol) << what << ": forward";
  EXPECT_LE(relative_error(test::to_double(got.dx), want.dx), tol) << what << ": backward data";
  EXPECT_LE(relative_error(test::to_double(got.dw), want.dw), tol) << what << ": backward weight";
  EXPECT_LE(relative_error(test::to_double(got.db), want.db), tol) << what << ": bias gradient";
}

// The fused epilogue: the activation applied to the reference output (in double).
inline void apply_activation(ConvActivation activation, std::vector<double>& y) {
  for (double& v : y) {
    if (activation == ConvActivation::relu) v = v < 0.0 ? 0.0 : v;
    if (activation == ConvActivation::gelu) v = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
  }
}

#ifdef SEGENGINE_HAS_CUDA
// The CUDA kernels have no channel-sliced path: the last cases, the largest, add only emulator time.
inline std::vector<Case> cuda_cases() { return {kCases.begin(), kCases.end() - kChannelSlicedConvs}; }

template <typename T>
Outputs<T> run_cuda(const Conv2dDesc& d, const Tensors& in) {
  test::DeviceBuffer<T> x(test::cast_to<T>(in.x)), w(test::cast_to<T>(in.w)), b(test::cast_to<T>(in.b));
  test::DeviceBuffer<T> dy(test::cast_to<T>(in.dy));
  test::DeviceBuffer<T> y(static_cast<size_t>(conv2d_y_elements(d))), dx(static_cast<size_t>(conv2d_x_elements(d)));
  test::DeviceBuffer<T> dw(static_cast<size_t>(conv2d_w_elements(d))), db(static_cast<size_t>(d.c_out));
  test::DeviceBuffer<unsigned char> workspace(conv2d_backward_weight_workspace_bytes(d));
  cuda::conv2d_forward(d, x.get(), w.get(), b.get(), y.get(), nullptr);
  cuda::conv2d_backward_data(d, dy.get(), w.get(), dx.get(), nullptr);
  cuda::conv2d_backward_weight(d, x.get(), dy.get(), dw.get(), db.get(), workspace.get(), nullptr);
  return {y.to_host(), dx.to_host(), dw.to_host(), db.to_host()};
}
#endif

}  // namespace se::kernels::conv_test
