// kernels/resize.h: CPU against a straightforward reference written here (coordinates in the precision
// PyTorch uses, interpolation and gradient sums in double) and against values worked out by hand from
// torch.nn.functional.interpolate's formulas, CUDA against CPU (all four dtypes, forward and backward;
// the f32/f64 atomic scatter and the f16/bf16 gather), for the size and the scale_factor forms.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/resize.h"

namespace se::kernels {
namespace {

using test::cast_to;
using test::random_values;
using test::to_double;

struct ResizeCase {
  int64_t planes, in_h, in_w;
  int64_t out_h, out_w;  // size form; 0: out = floor(in * scale)
  double scale_h, scale_w;
  ResizeMode mode;
  bool align_corners;
};

constexpr ResizeMode kBilinear = ResizeMode::bilinear, kNearest = ResizeMode::nearest;
const ResizeCase kCases[] = {
    {2, 5, 7, 8, 3, 0, 0, kBilinear, false},     {1, 5, 6, 0, 0, 1.7, 0.5, kBilinear, false},
    {2, 4, 5, 7, 9, 0, 0, kBilinear, true},      {1, 1, 1, 3, 3, 0, 0, kBilinear, true},
    {1, 3, 4, 1, 1, 0, 0, kBilinear, true},      {1, 3, 3, 1, 1, 0, 0, kBilinear, false},
    {2, 4, 3, 0, 0, 2.0, 2.0, kBilinear, false}, {1, 2, 3, 13, 11, 0, 0, kBilinear, false},
    {1, 3, 5, 0, 0, 2.5, 1.3, kBilinear, true},  {2, 5, 7, 8, 3, 0, 0, kNearest, false},
    {1, 5, 6, 0, 0, 1.7, 2.5, kNearest, false},  {2, 9, 9, 4, 4, 0, 0, kNearest, false},
    {1, 10, 3, 0, 0, 0.3, 3.0, kNearest, false}, {1, 2, 3, 13, 11, 0, 0, kNearest, false},
    // Several of the CPU forward's 32-row tasks per plane, up and down.
    {3, 37, 45, 150, 170, 0, 0, kBilinear, false}, {2, 150, 170, 37, 45, 0, 0, kBilinear, true},
    {2, 40, 33, 0, 0, 3.3, 2.2, kNearest, false},
    // Planes of the same few rows in a row (the forward must not reuse the previous plane's rows).
    {3, 2, 5, 9, 7, 0, 0, kBilinear, false}, {3, 1, 4, 5, 6, 0, 0, kNearest, false},
};

ResizeDesc desc_of(const ResizeCase& c) {
  ResizeDesc d;
  d.planes = c.planes, d.in_h = c.in_h, d.in_w = c.in_w, d.mode = c.mode, d.align_corners = c.align_corners;
  if (c.out_h > 0) {
    d.out_h = c.out_h, d.out_w = c.out_w;
  } else {
    d.out_h = static_cast<int64_t>(std::floor(c.in_h * c.scale_h));
    d.out_w = static_cast<int64_t>(std::floor(c.in_w * c.scale_w));
    d.scale_h = c.scale_h, d.scale_w = c.scale_w;
  }
  return d;
}

std::string describe(const ResizeDesc& d) {
  return std::string(d.mode == kBilinear ? "bilinear" : "nearest") + (d.align_corners ? " align_corners" : "") +
         " (planes " + std::to_string(d.planes) + ", " + std::to_string(d.in_h) + "x" + std::to_string(d.in_w) +
         " -> " + std::to_string(d.out_h) + "x" + std::to_string(d.out_w) + ", scale_factor " +
         std::to_string(d.scale_h) + "x" + std::to_string(d.scale_w) + ")";
}

// One dim's taps of output dst, as PyTorch computes them: C is float (double for f64) for bilinear,
// always float for nearest.
template <typename C>
std::vector<std::pair<int64_t, double>> reference_taps(int64_t in, int64_t out, double scale_factor,
                                                       const ResizeDesc& d, int64_t dst) {
  if (d.mode == kNearest) {
    const float scale = scale_factor > 0 ? static_cast<float>(1.0 / scale_factor) : float(in) / float(out);
    return {{std::min<int64_t>(static_cast<int64_t>(std::floor(float(dst) * scale)), in - 1), 1.0}};
  }
  C scale;
  if (d.align_corners) {
    scale = out > 1 ? C(in - 1) / C(out - 1) : C(0);
  } else {
    scale = scale_factor > 0 ? C(1.0 / scale_factor) : C(in) / C(out);
  }
  C src = d.align_corners ? scale * C(dst) : std::max(scale * (C(dst) + C(0.5)) - C(0.5), C(0));
  const int64_t i0 = std::min(static_cast<int64_t>(src), in - 1);
  const double lambda = double(src) - double(i0);
  return {{i0, 1.0 - lambda}, {std::min(i0 + 1, in - 1), lambda}};
}

// Calls f(output index, input index, weight) for every term of every output.
template <typename C, typename F>
void for_each_term(const ResizeDesc& d, F f) {
  for (int64_t p = 0; p < d.planes; ++p) {
    for (int64_t oh = 0; oh < d.out_h; ++oh) {
      for (auto [ih, wh] : reference_taps<C>(d.in_h, d.out_h, d.scale_h, d, oh)) {
        for (int64_t ow = 0; ow < d.out_w; ++ow) {
          for (auto [iw, ww] : reference_taps<C>(d.in_w, d.out_w, d.scale_w, d, ow)) {
            f((p * d.out_h + oh) * d.out_w + ow, (p * d.in_h + ih) * d.in_w + iw, wh * ww);
          }
        }
      }
    }
  }
}

template <typename T>
void check_cpu(uint32_t seed) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const double u = std::max(test::unit_roundoff<T>(), 6e-8);
  for (const ResizeCase& c : kCases) {
    const ResizeDesc d = desc_of(c);
    const int64_t n_in = d.planes * d.in_h * d.in_w, n_out = d.planes * d.out_h * d.out_w;
    std::vector<T> x = cast_to<T>(random_values(n_in, seed++)), g = cast_to<T>(random_values(n_out, seed++));
    std::vector<T> y(n_out), gx(n_in);
    cpu::resize_forward(y.data(), x.data(), d, nullptr);
    cpu::resize_backward(gx.data(), g.data(), d, nullptr);
    std::vector<double> xd = to_double(x), gd = to_double(g), ref(n_out, 0), ref_gx(n_in, 0), scale(n_in, 0);
    for_each_term<C>(d, [&](int64_t o, int64_t i, double w) {
      ref[o] += w * xd[i];
      ref_gx[i] += w * gd[o];
      scale[i] += std::fabs(w * gd[o]);
    });
    std::vector<double> got = to_double(y);
    for (size_t k = 0; k < got.size(); ++k) {
      ASSERT_NEAR(got[k], ref[k], 4 * u + test::subnormal_step<T>()) << describe(d) << " at " << k;
    }
    got = to_double(gx);
    for (size_t k = 0; k < got.size(); ++k) {
      ASSERT_NEAR(got[k], ref_gx[k], 4 * u * (scale[k] + 1) + test::subnormal_step<T>())
          << "backward " << describe(d) << " at " << k;
    }
  }
}

template <typename T>
class ResizeFloat : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double, f16, bf16>;
TYPED_TEST_SUITE(ResizeFloat, FloatTypes);

TYPED_TEST(ResizeFloat, MatchesReference) {
  check_cpu<TypeParam>(1);
}

// Outputs over 32 MB (f32) leave through non-temporal stores: each plane has the bits it has when resized
// alone (a small output, stored normally).
TEST(Resize, LargeOutputStreamsTheSameValues) {
  for (const ResizeMode mode : {kBilinear, kNearest}) {
    ResizeDesc d;
    d.planes = 33, d.in_h = 61, d.in_w = 67, d.out_h = 512, d.out_w = 513, d.mode = mode;
    const int64_t plane_in = d.in_h * d.in_w, plane_out = d.out_h * d.out_w;
    ASSERT_GT(d.planes * plane_out * int64_t(sizeof(float)), int64_t(32) << 20);
    const std::vector<float> x = cast_to<float>(random_values(d.planes * plane_in, 77));
    std::vector<float> y(d.planes * plane_out);
    cpu::resize_forward(y.data(), x.data(), d, nullptr);
    ResizeDesc one = d;
    one.planes = 1;
    std::vector<float> y_one(plane_out);
    for (int64_t p : {int64_t(0), int64_t(17), d.planes - 1}) {
      cpu::resize_forward(y_one.data(), x.data() + p * plane_in, one, nullptr);
      const std::vector<float> plane(y.begin() + p * plane_out, y.begin() + (p + 1) * plane_out);
      EXPECT_EQ(test::bits_of(plane), test::bits_of(y_one)) << describe(d) << " plane " << p;
    }
  }
}

std::vector<float> resize_row(const std::vector<float>& x, int64_t out, double scale_factor, ResizeMode mode,
                              bool align_corners) {
  ResizeDesc d;
  d.in_w = static_cast<int64_t>(x.size()), d.out_w = out, d.scale_w = scale_factor, d.mode = mode;
  d.align_corners = align_corners;
  std::vector<float> y(static_cast<size_t>(out));
  cpu::resize_forward(y.data(), x.data(), d, nullptr);
  return y;
}

// Hand-computed on the ramp 0 1 2 3 4 (where bilinear returns the clamped source coordinate itself):
// size 8 maps with 5 / 8, src = 0.625 (dst + 0.5) - 0.5; scale_factor 1.7 (out floor(8.5) = 8) maps
// with 1 / 1.7, src = (dst + 0.5) / 1.7 - 0.5. Legacy nearest: floor(dst * 5 / 8) vs floor(dst / 1.7),
// which differ at dst = 5 (3.125 -> 3, 2.94 -> 2).
TEST(Resize, SizeAndScaleFactorFormsMapDifferently) {
  const std::vector<float> ramp = {0, 1, 2, 3, 4};
  EXPECT_EQ(resize_row(ramp, 8, 0, kBilinear, false),
            (std::vector<float>{0, 0.4375f, 1.0625f, 1.6875f, 2.3125f, 2.9375f, 3.5625f, 4}));
  std::vector<float> y = resize_row(ramp, 8, 1.7, kBilinear, false);
  EXPECT_EQ(y[0], 0.0f);  // src < 0 clamps to 0
  for (int dst = 1; dst < 8; ++dst) EXPECT_NEAR(y[dst], (dst + 0.5) / 1.7 - 0.5, 1e-6) << dst;
  EXPECT_EQ(resize_row(ramp, 8, 0, kNearest, false), (std::vector<float>{0, 0, 1, 1, 2, 3, 3, 4}));
  EXPECT_EQ(resize_row(ramp, 8, 1.7, kNearest, false), (std::vector<float>{0, 0, 1, 1, 2, 2, 3, 4}));
}

// Hand-computed: align_corners maps with (in - 1) / (out - 1) whatever the scale_factor: 3 -> 5 gives
// src 0, 0.5, 1, 1.5, 2; scale_factor 2 (3 -> 6) gives src = 0.4 dst. 1 -> 3 repeats the one value.
TEST(Resize, HandComputedAlignCorners) {
  const std::vector<float> x = {0, 10, 20};
  EXPECT_EQ(resize_row(x, 5, 0, kBilinear, true), (std::vector<float>{0, 5, 10, 15, 20}));
  std::vector<float> y = resize_row(x, 6, 2.0, kBilinear, true), want = {0, 4, 8, 12, 16, 20};
  for (int k = 0; k < 6; ++k) EXPECT_NEAR(y[k], want[k], 1e-5) << k;
  EXPECT_EQ(resize_row({7}, 3, 0, kBilinear, true), (std::vector<float>{7, 7, 7}));
  for (float v : resize_row({7}, 3, 0, kBilinear, false)) EXPECT_NEAR(v, 7.0f, 1e-6);  // weights (1 - w1) + w1
}

// Hand-computed backward of 2 -> 4 bilinear (src = 0.5 dst - 0.25 -> 0, 0.25, 0.75, 1.25): input 0
// gets 1 + 0.75 + 0.25 = 2, input 1 gets 0.25 + 0.75 + 1 (the last output clamps to input 1) = 2.
TEST(Resize, HandComputedBackward) {
  ResizeDesc d;
  d.in_w = 2, d.out_w = 4, d.mode = kBilinear;
  std::vector<float> g = {1, 1, 1, 1}, gx(2);
  cpu::resize_backward(gx.data(), g.data(), d, nullptr);
  EXPECT_EQ(gx, (std::vector<float>{2, 2}));
  g = {1, 2, 3, 4};
  cpu::resize_backward(gx.data(), g.data(), d, nullptr);
  EXPECT_EQ(gx, (std::vector<float>{1 + 2 * 0.75f + 3 * 0.25f, 2 * 0.25f + 3 * 0.75f + 4}));
}

#ifdef SEGENGINE_HAS_CUDA
template <typename T>
void check_cuda_against_cpu(uint32_t seed) {
  using test::DeviceBuffer;
  const double u = std::max(test::unit_roundoff<T>(), 6e-8);
  for (const ResizeCase& c : kCases) {
    const ResizeDesc d = desc_of(c);
    const int64_t n_in = d.planes * d.in_h * d.in_w, n_out = d.planes * d.out_h * d.out_w;
    std::vector<T> x = cast_to<T>(random_values(n_in, seed++)), g = cast_to<T>(random_values(n_out, seed++));
    std::vector<T> y(n_out), gx(n_in);
    cpu::resize_forward(y.data(), x.data(), d, nullptr);
    cpu::resize_backward(gx.data(), g.data(), d, nullptr);
    DeviceBuffer<T> dx(x), dg(g), dy(y.size()), dgx(gx.size());
    cuda::resize_forward(dy.get(), dx.get(), d, nullptr);
    cuda::resize_backward(dgx.get(), dg.get(), d, nullptr);
    std::vector<double> want = to_double(y), got = to_double(dy.to_host());
    for (size_t k = 0; k < want.size(); ++k) {
      // Same coordinates; the device may contract the weighted sums into FMAs.
      ASSERT_NEAR(got[k], want[k], 2 * u + test::subnormal_step<T>()) << describe(d) << " at " << k;
    }
    want = to_double(gx);
    got = to_double(dgx.to_host());
    for (size_t k = 0; k < want.size(); ++k) {
      // Different summation orders (atomics or gather vs the CPU's scatter); up to 7 x 6 terms of |g| <= 1.
      ASSERT_NEAR(got[k], want[k], 4 * u * (std::fabs(want[k]) + 42 * 4 * 6e-8 / u) + test::subnormal_step<T>())
          << "backward " << describe(d) << " at " << k;
    }
  }
}

// The backward is the same bits whatever order the blocks (and their threads) run in: a training run through
// resize layers repeats bit for bit on a GPU.
template <typename T>
void check_cuda_backward_in_several_block_orders(uint32_t seed) {
  for (const ResizeCase& c : kCases) {
    const ResizeDesc d = desc_of(c);
    const std::vector<T> g = cast_to<T>(random_values(d.planes * d.out_h * d.out_w, seed++));
    const auto results = test::results_in_several_block_orders([&] {
      test::DeviceBuffer<T> dg(g), dgx(static_cast<size_t>(d.planes * d.in_h * d.in_w));
      cuda::resize_backward(dgx.get(), dg.get(), d, nullptr);
      return test::bits_of(dgx.to_host());
    });
    for (size_t order = 1; order < results.size(); ++order) {
      EXPECT_EQ(results[order], results[0]) << describe(d) << ", block order " << order;
    }
  }
}

TEST(ResizeCuda, BackwardIsTheSameBitsInAnyBlockOrder) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_backward_in_several_block_orders<float>(5);
  check_cuda_backward_in_several_block_orders<double>(6);
}

TEST(ResizeCuda, F32MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<float>(1);
}
TEST(ResizeCuda, F64MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<double>(2);
}
TEST(ResizeCuda, F16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<f16>(3);
}
TEST(ResizeCuda, BF16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<bf16>(4);
}
#endif

}  // namespace
}  // namespace se::kernels
