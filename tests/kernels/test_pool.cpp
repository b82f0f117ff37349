// kernels/pool.h: CPU against a straightforward double reference written here and against values worked
// out by hand from PyTorch's formulas, CUDA against CPU (all four dtypes, forward and backward), on odd
// sizes with padding, stride, dilation and ceil_mode.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/pool.h"

namespace se::kernels {
namespace {

using test::bits_of;
using test::cast_to;
using test::random_values;
using test::to_double;

struct PoolCase {
  int64_t planes, in_h, in_w, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  bool ceil_mode;
};

// Dilated cases are used by max_pool2d only. The wide ones give the CPU's row sweep many outputs whose
// window lies inside the input, beside outputs at a padded edge (ResNet's stem, U-Net's 2x2, dilated).
const PoolCase kCases[] = {
    {3, 7, 9, 3, 2, 2, 1, 1, 0, 1, 1, false},  {2, 8, 5, 3, 3, 2, 2, 1, 1, 1, 1, true},
    {2, 5, 5, 2, 2, 2, 2, 0, 0, 1, 1, true},   {1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, false},
    {2, 13, 7, 3, 3, 1, 1, 1, 1, 1, 1, false}, {1, 6, 10, 4, 3, 3, 3, 2, 1, 1, 1, true},
    {1, 11, 6, 2, 3, 3, 2, 1, 1, 2, 1, true},  {2, 9, 9, 3, 3, 2, 2, 2, 2, 2, 2, false},
    {2, 9, 37, 3, 3, 2, 2, 1, 1, 1, 1, false}, {1, 6, 40, 2, 2, 2, 2, 0, 0, 1, 1, false},
    {1, 8, 33, 3, 3, 2, 2, 2, 2, 2, 2, true},  {1, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, false},
    // Rows wide enough for the CPU's 16-output blocks: stride 1, 2 and 3 (a gather), dilated, a
    // partial last group of four blocks, ceil mode with a window hanging over the right edge.
    {2, 5, 50, 3, 3, 1, 1, 1, 1, 1, 1, false}, {1, 7, 70, 3, 3, 3, 3, 1, 1, 1, 2, true},
    {1, 5, 151, 3, 3, 2, 2, 1, 1, 1, 1, true}, {1, 4, 140, 2, 2, 1, 1, 0, 0, 1, 1, false},
    // Rows narrower than a block, every window inside the input: the CPU's f32 blocks of 16 outputs
    // across rows and planes (U-Net's 2x2 on 16 x 16 maps; a dilated 3x2 kernel, 20 outputs per plane;
    // one output per plane, a block over 16 planes), the last block overlapping the one before.
    {5, 16, 16, 2, 2, 2, 2, 0, 0, 1, 1, false}, {3, 9, 7, 3, 2, 2, 1, 0, 0, 1, 2, false},
    {20, 2, 3, 2, 2, 2, 2, 0, 0, 1, 1, false},
};

Pool2dDesc desc_of(const PoolCase& c, bool count_include_pad) {
  Pool2dDesc d;
  d.planes = c.planes, d.in_h = c.in_h, d.in_w = c.in_w, d.kernel_h = c.kernel_h, d.kernel_w = c.kernel_w;
  d.stride_h = c.stride_h, d.stride_w = c.stride_w, d.pad_h = c.pad_h, d.pad_w = c.pad_w;
  d.dilation_h = c.dilation_h, d.dilation_w = c.dilation_w, d.count_include_pad = count_include_pad;
  d.out_h = pool_output_size(c.in_h, c.kernel_h, c.stride_h, c.pad_h, c.dilation_h, c.ceil_mode);
  d.out_w = pool_output_size(c.in_w, c.kernel_w, c.stride_w, c.pad_w, c.dilation_w, c.ceil_mode);
  return d;
}

std::string describe(const Pool2dDesc& d) {
  return "(planes " + std::to_string(d.planes) + ", in " + std::to_string(d.in_h) + "x" + std::to_string(d.in_w) +
         ", out " + std::to_string(d.out_h) + "x" + std::to_string(d.out_w) + ", kernel " + std::to_string(d.kernel_h) +
         "x" + std::to_string(d.kernel_w) + ", stride " + std::to_string(d.stride_h) + "x" +
         std::to_string(d.stride_w) + ", pad " + std::to_string(d.pad_h) + "x" + std::to_string(d.pad_w) +
         ", dilation " + std::to_string(d.dilation_h) + "x" + std::to_string(d.dilation_w) +
         (d.count_include_pad ? ", count_include_pad)" : ")");
}

int64_t in_numel(const Pool2dDesc& d) {
  return d.planes * d.in_h * d.in_w;
}
int64_t out_numel(const Pool2dDesc& d) {
  return d.planes * d.out_h * d.out_w;
}

// The reference: every window cell (h, w) = (o * stride - pad + k * dilation), skipping cells outside
// the input; the first strict maximum wins, a NaN wins over everything, the first NaN over later ones,
// and an all -inf window names its first cell.
void reference_max(const std::vector<double>& x, const Pool2dDesc& d, std::vector<double>* y,
                   std::vector<int64_t>* index) {
  y->assign(out_numel(d), 0);
  index->assign(out_numel(d), -1);
  for (int64_t p = 0; p < d.planes; ++p) {
    for (int64_t oh = 0; oh < d.out_h; ++oh) {
      for (int64_t ow = 0; ow < d.out_w; ++ow) {
        const int64_t o = (p * d.out_h + oh) * d.out_w + ow;
        double best = -INFINITY;
        for (int64_t kh = 0; kh < d.kernel_h; ++kh) {
          for (int64_t kw = 0; kw < d.kernel_w; ++kw) {
            int64_t h = oh * d.stride_h - d.pad_h + kh * d.dilation_h,
                    w = ow * d.stride_w - d.pad_w + kw * d.dilation_w;
            if (h < 0 || h >= d.in_h || w < 0 || w >= d.in_w) continue;
            const double v = x[(p * d.in_h + h) * d.in_w + w];
            if ((*index)[o] < 0 || v > best || (std::isnan(v) && !std::isnan(best)))
              best = v, (*index)[o] = h * d.in_w + w;
          }
        }
        (*y)[o] = best;
      }
    }
  }
}

// PyTorch's avg_pool2d divisor: the window clipped to [-pad, in + pad), then (without
// count_include_pad) to the input.
double reference_divisor(const Pool2dDesc& d, int64_t oh, int64_t ow) {
  int64_t h0 = oh * d.stride_h - d.pad_h, w0 = ow * d.stride_w - d.pad_w;
  int64_t h1 = std::min(h0 + d.kernel_h, d.in_h + d.pad_h), w1 = std::min(w0 + d.kernel_w, d.in_w + d.pad_w);
  if (!d.count_include_pad)
    h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0), h1 = std::min(h1, d.in_h), w1 = std::min(w1, d.in_w);
  return static_cast<double>((h1 - h0) * (w1 - w0));
}

// Calls f(output index, input index, weight) for every input cell of every average window.
template <typename F>
void for_each_avg_term(const Pool2dDesc& d, F f) {
  for (int64_t p = 0; p < d.planes; ++p) {
    for (int64_t oh = 0; oh < d.out_h; ++oh) {
      for (int64_t ow = 0; ow < d.out_w; ++ow) {
        const double divisor = reference_divisor(d, oh, ow);
        for (int64_t kh = 0; kh < d.kernel_h; ++kh) {
          for (int64_t kw = 0; kw < d.kernel_w; ++kw) {
            int64_t h = oh * d.stride_h - d.pad_h + kh, w = ow * d.stride_w - d.pad_w + kw;
            if (h < 0 || h >= d.in_h || w < 0 || w >= d.in_w) continue;
            f((p * d.out_h + oh) * d.out_w + ow, (p * d.in_h + h) * d.in_w + w, 1.0 / divisor);
          }
        }
      }
    }
  }
}

template <typename F>
void for_each_adaptive_term(const AdaptivePool2dDesc& d, F f) {
  for (int64_t p = 0; p < d.planes; ++p) {
    for (int64_t oh = 0; oh < d.out_h; ++oh) {
      for (int64_t ow = 0; ow < d.out_w; ++ow) {
        // start = floor(i * in / out), end = ceil((i + 1) * in / out), in double
        int64_t h0 = static_cast<int64_t>(std::floor(double(oh) * d.in_h / d.out_h));
        int64_t h1 = static_cast<int64_t>(std::ceil(double(oh + 1) * d.in_h / d.out_h));
        int64_t w0 = static_cast<int64_t>(std::floor(double(ow) * d.in_w / d.out_w));
        int64_t w1 = static_cast<int64_t>(std::ceil(double(ow + 1) * d.in_w / d.out_w));
        for (int64_t h = h0; h < h1; ++h) {
          for (int64_t w = w0; w < w1; ++w) {
            f((p * d.out_h + oh) * d.out_w + ow, (p * d.in_h + h) * d.in_w + w, 1.0 / double((h1 - h0) * (w1 - w0)));
          }
        }
      }
    }
  }
}

// Tolerance for a value of magnitude <= 1 summed over small windows and rounded to T.
template <typename T>
double tolerance() {
  return 2 * test::unit_roundoff<T>() + 64 * 6e-8 + test::subnormal_step<T>();
}

template <typename T>
void check_max_cpu(uint32_t seed) {
  for (const PoolCase& c : kCases) {
    const Pool2dDesc d = desc_of(c, true);
    std::vector<T> x = cast_to<T>(random_values(in_numel(d), seed++));
    std::vector<T> y(out_numel(d));
    std::vector<int64_t> index(out_numel(d));
    cpu::max_pool2d_forward(y.data(), index.data(), x.data(), d, nullptr);
    std::vector<double> ref;
    std::vector<int64_t> ref_index;
    reference_max(to_double(x), d, &ref, &ref_index);
    ASSERT_EQ(to_double(y), ref) << describe(d);
    ASSERT_EQ(index, ref_index) << describe(d);

    std::vector<T> g = cast_to<T>(random_values(out_numel(d), seed++));
    std::vector<T> gx(in_numel(d));
    cpu::max_pool2d_backward(gx.data(), g.data(), index.data(), d, nullptr);
    std::vector<double> ref_gx(in_numel(d), 0), gd = to_double(g);
    for (int64_t o = 0; o < out_numel(d); ++o)
      ref_gx[o / (d.out_h * d.out_w) * d.in_h * d.in_w + ref_index[o]] += gd[o];
    std::vector<double> got = to_double(gx);
    for (size_t k = 0; k < got.size(); ++k)
      ASSERT_NEAR(got[k], ref_gx[k], 4 * tolerance<T>()) << describe(d) << " at " << k;
  }
}

// Values with ties, signed zeros, -inf and NaN: max_pool2d must pick the first of equal maxima, the
// first NaN, and the first cell of an all -inf window, wherever the window lies.
std::vector<double> special_values(int64_t n, uint32_t seed) {
  const double choices[] = {-INFINITY, -1.0, -0.0, 0.0, 1.0, 1.0, 0.5, std::numeric_limits<double>::quiet_NaN()};
  std::vector<double> v = random_values(n, seed, 0, 8);
  for (double& e : v) e = choices[static_cast<int>(e)];
  for (int64_t k = 0; k < n; k += 3) v[k] = std::isnan(v[k]) ? v[k] : -INFINITY;  // all -inf windows occur too
  return v;
}

template <typename T>
void check_max_special_values_cpu(uint32_t seed) {
  for (const PoolCase& c : kCases) {
    const Pool2dDesc d = desc_of(c, true);
    std::vector<T> x = cast_to<T>(special_values(in_numel(d), seed++)), y(out_numel(d));
    std::vector<int64_t> index(out_numel(d));
    cpu::max_pool2d_forward(y.data(), index.data(), x.data(), d, nullptr);
    std::vector<double> ref;
    std::vector<int64_t> ref_index;
    reference_max(to_double(x), d, &ref, &ref_index);
    ASSERT_EQ(index, ref_index) << describe(d);
    for (int64_t o = 0; o < out_numel(d); ++o) {  // y is the input cell the index names, bit for bit
      ASSERT_EQ(bits_of(std::vector<T>{y[o]}),
                bits_of(std::vector<T>{x[o / (d.out_h * d.out_w) * d.in_h * d.in_w + index[o]]}))
          << describe(d) << " at " << o;
    }
  }
}

// max_pool2d_backward's definition as a gather: input cell (h, w) sums the gradients of the outputs
// whose window span [o * stride - pad, o * stride - pad + dilation (kernel - 1)] holds it on both axes
// and whose index names it. Indices need not come from a forward: any value outside those windows adds
// nothing.
std::vector<double> reference_max_backward(const std::vector<double>& g, const std::vector<int64_t>& index,
                                           const Pool2dDesc& d) {
  std::vector<double> gx(in_numel(d), 0);
  const int64_t extent_h = (d.kernel_h - 1) * d.dilation_h + 1, extent_w = (d.kernel_w - 1) * d.dilation_w + 1;
  for (int64_t p = 0; p < d.planes; ++p) {
    for (int64_t h = 0; h < d.in_h; ++h) {
      for (int64_t w = 0; w < d.in_w; ++w) {
        for (int64_t oh = 0; oh < d.out_h; ++oh) {
          for (int64_t ow = 0; ow < d.out_w; ++ow) {
            const int64_t h0 = oh * d.stride_h - d.pad_h, w0 = ow * d.stride_w - d.pad_w;
            const int64_t o = (p * d.out_h + oh) * d.out_w + ow;
            if (h >= h0 && h < h0 + extent_h && w >= w0 && w < w0 + extent_w && index[o] == h * d.in_w + w)
              gx[(p * d.in_h + h) * d.in_w + w] += g[o];
          }
        }
      }
    }
  }
  return gx;
}

// Indices anywhere in (and a little around) the plane, not just inside their windows.
std::vector<int64_t> arbitrary_indices(const Pool2dDesc& d, uint32_t seed) {
  std::vector<int64_t> index(out_numel(d));
  std::vector<double> r = random_values(out_numel(d), seed, -3, static_cast<double>(d.in_h * d.in_w + 3));
  for (size_t k = 0; k < index.size(); ++k) index[k] = static_cast<int64_t>(std::floor(r[k]));
  return index;
}

template <typename T>
void check_max_backward_arbitrary_indices_cpu(uint32_t seed) {
  for (const PoolCase& c : kCases) {
    const Pool2dDesc d = desc_of(c, true);
    const std::vector<int64_t> index = arbitrary_indices(d, seed++);
    std::vector<T> g = cast_to<T>(random_values(out_numel(d), seed++)), gx(in_numel(d));
    cpu::max_pool2d_backward(gx.data(), g.data(), index.data(), d, nullptr);
    const std::vector<double> ref = reference_max_backward(to_double(g), index, d), got = to_double(gx);
    for (size_t k = 0; k < got.size(); ++k)
      ASSERT_NEAR(got[k], ref[k], 4 * tolerance<T>()) << describe(d) << " at " << k;
  }
}

template <typename T>
void check_avg_cpu(uint32_t seed) {
  for (const PoolCase& c : kCases) {
    if (c.dilation_h != 1 || c.dilation_w != 1) continue;
    for (bool include_pad : {true, false}) {
      const Pool2dDesc d = desc_of(c, include_pad);
      std::vector<T> x = cast_to<T>(random_values(in_numel(d), seed++)),
                     g = cast_to<T>(random_values(out_numel(d), seed++));
      std::vector<T> y(out_numel(d)), gx(in_numel(d));
      cpu::avg_pool2d_forward(y.data(), x.data(), d, nullptr);
      cpu::avg_pool2d_backward(gx.data(), g.data(), d, nullptr);
      std::vector<double> xd = to_double(x), gd = to_double(g), ref(out_numel(d), 0), ref_gx(in_numel(d), 0);
      for_each_avg_term(d, [&](int64_t o, int64_t i, double weight) {
        ref[o] += weight * xd[i];
        ref_gx[i] += weight * gd[o];
      });
      std::vector<double> got = to_double(y);
      for (size_t k = 0; k < got.size(); ++k) ASSERT_NEAR(got[k], ref[k], tolerance<T>()) << describe(d) << " at " << k;
      got = to_double(gx);
      for (size_t k = 0; k < got.size(); ++k)
        ASSERT_NEAR(got[k], ref_gx[k], 4 * tolerance<T>()) << describe(d) << " at " << k;
    }
  }
}

// The last two have bins of 16 columns and more (pool_ops::adaptive_avg_window's lane blocks, then a tail).
const AdaptivePool2dDesc kAdaptiveCases[] = {{2, 7, 9, 1, 1},   {2, 7, 9, 2, 2},  {1, 7, 9, 3, 3},
                                             {1, 13, 11, 6, 6}, {1, 6, 6, 6, 6},  {3, 5, 13, 3, 6},
                                             {1, 2, 3, 6, 6},   {2, 1, 1, 1, 1},  {2, 19, 45, 1, 1},
                                             {1, 20, 70, 2, 3}};

template <typename T>
void check_adaptive_cpu(uint32_t seed) {
  for (const AdaptivePool2dDesc& d : kAdaptiveCases) {
    const int64_t n_in = d.planes * d.in_h * d.in_w, n_out = d.planes * d.out_h * d.out_w;
    std::vector<T> x = cast_to<T>(random_values(n_in, seed++)), g = cast_to<T>(random_values(n_out, seed++));
    std::vector<T> y(n_out), gx(n_in);
    cpu::adaptive_avg_pool2d_forward(y.data(), x.data(), d, nullptr);
    cpu::adaptive_avg_pool2d_backward(gx.data(), g.data(), d, nullptr);
    std::vector<double> xd = to_double(x), gd = to_double(g), ref(n_out, 0), ref_gx(n_in, 0);
    for_each_adaptive_term(d, [&](int64_t o, int64_t i, double weight) {
      ref[o] += weight * xd[i];
      ref_gx[i] += weight * gd[o];
    });
    std::vector<double> got = to_double(y);
    for (size_t k = 0; k < got.size(); ++k)
      ASSERT_NEAR(got[k], ref[k], tolerance<T>()) << "adaptive out " << d.out_h << " at " << k;
    got = to_double(gx);
    for (size_t k = 0; k < got.size(); ++k)
      ASSERT_NEAR(got[k], ref_gx[k], 4 * tolerance<T>()) << "adaptive out " << d.out_h << " at " << k;
  }
}

template <typename T>
class PoolFloat : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double, f16, bf16>;
TYPED_TEST_SUITE(PoolFloat, FloatTypes);

TYPED_TEST(PoolFloat, MaxPoolMatchesReference) {
  check_max_cpu<TypeParam>(1);
}
TYPED_TEST(PoolFloat, MaxPoolPicksTiesNaNAndInfinityLikeTheReference) {
  check_max_special_values_cpu<TypeParam>(50);
}
TYPED_TEST(PoolFloat, MaxPoolBackwardCountsOnlyIndicesInsideTheirWindow) {
  check_max_backward_arbitrary_indices_cpu<TypeParam>(70);
}
TYPED_TEST(PoolFloat, AvgPoolMatchesReference) {
  check_avg_cpu<TypeParam>(100);
}
TYPED_TEST(PoolFloat, AdaptiveAvgPoolMatchesReference) {
  check_adaptive_cpu<TypeParam>(200);
}

TEST(Pool, OutputSizeFollowsPyTorch) {
  EXPECT_EQ(pool_output_size(5, 2, 2, 0, 1, false), 2);     // floor((5 - 2) / 2) + 1
  EXPECT_EQ(pool_output_size(5, 2, 2, 0, 1, true), 3);      // ceil((5 - 2) / 2) + 1: a last window of one cell
  EXPECT_EQ(pool_output_size(2, 1, 2, 0, 1, true), 1);      // ceil gives 2, but window 1 would start at 2 >= in + pad
  EXPECT_EQ(pool_output_size(112, 3, 2, 1, 1, false), 56);  // ResNet's stem pool
  EXPECT_EQ(pool_output_size(11, 2, 3, 1, 2, true), 4);     // ceil((11 + 2 - 2 - 1) / 3) + 1, start 9 < 12
  EXPECT_EQ(pool_output_size(1, 3, 1, 0, 1, false), -1);    // too small: the caller reports it
}

// Hand-computed: x[h][w] = 5 h + w on a 5x5 plane, kernel 2, stride 2, ceil_mode: windows rows/cols
// {0,1}, {2,3}, {4}.
TEST(Pool, HandComputedCeilModeValues) {
  std::vector<float> x(25);
  for (int k = 0; k < 25; ++k) x[k] = static_cast<float>(k);
  const Pool2dDesc d = desc_of({1, 5, 5, 2, 2, 2, 2, 0, 0, 1, 1, true}, true);
  ASSERT_EQ(d.out_h, 3);
  std::vector<float> y(9);
  std::vector<int64_t> index(9);
  cpu::max_pool2d_forward(y.data(), index.data(), x.data(), d, nullptr);
  EXPECT_EQ(y, (std::vector<float>{6, 8, 9, 16, 18, 19, 21, 23, 24}));
  EXPECT_EQ(index, (std::vector<int64_t>{6, 8, 9, 16, 18, 19, 21, 23, 24}));
  // avg, count_include_pad: the ragged windows are clipped at in + pad = 5, so (0, 2) = (4 + 9) / 2,
  // (2, 2) = 24 / 1, (2, 0) = (20 + 21) / 2.
  cpu::avg_pool2d_forward(y.data(), x.data(), d, nullptr);
  EXPECT_EQ(y, (std::vector<float>{3, 5, 6.5f, 13, 15, 16.5f, 20.5f, 22.5f, 24}));
}

// Hand-computed: 3x3 ones, kernel 3, stride 1, pad 1. Counting padding, a corner window holds 4 of 9
// cells and an edge window 6; without it every average is 1.
TEST(Pool, HandComputedCountIncludePad) {
  std::vector<float> x(9, 1.0f), y(9);
  Pool2dDesc d = desc_of({1, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, false}, true);
  cpu::avg_pool2d_forward(y.data(), x.data(), d, nullptr);
  const float c = 4.0f / 9, e = 6.0f / 9;
  EXPECT_EQ(y, (std::vector<float>{c, e, c, e, 1, e, c, e, c}));
  d.count_include_pad = false;
  cpu::avg_pool2d_forward(y.data(), x.data(), d, nullptr);
  EXPECT_EQ(y, std::vector<float>(9, 1.0f));
}

// Hand-computed: in 5 -> out 3 gives the overlapping bins [0, 2), [1, 4), [3, 5) (floor(i * 5 / 3),
// ceil((i + 1) * 5 / 3)); on the row 0 1 2 3 4 the means are 0.5, 2, 3.5.
TEST(Pool, HandComputedAdaptiveBins) {
  std::vector<float> x = {0, 1, 2, 3, 4}, y(3), g = {1, 1, 1}, gx(5);
  const AdaptivePool2dDesc d{1, 1, 5, 1, 3};
  cpu::adaptive_avg_pool2d_forward(y.data(), x.data(), d, nullptr);
  EXPECT_EQ(y, (std::vector<float>{0.5f, 2, 3.5f}));
  cpu::adaptive_avg_pool2d_backward(gx.data(), g.data(), d, nullptr);
  EXPECT_EQ(gx, (std::vector<float>{0.5f, 0.5f + 1.0f / 3, 1.0f / 3, 1.0f / 3 + 0.5f, 0.5f}));
}

TEST(Pool, MaxPoolPropagatesNaNAndPadsWithMinusInfinity) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x = {-5, nan, -7, -8};  // 2x2; kernel 2, stride 1, pad 1 -> 3x3
  std::vector<int64_t> index(9);
  std::vector<float> out(9);
  const Pool2dDesc d = desc_of({1, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, false}, true);
  ASSERT_EQ(d.out_h, 3);
  cpu::max_pool2d_forward(out.data(), index.data(), x.data(), d, nullptr);
  EXPECT_EQ(out[0], -5.0f);  // the padding never wins, even against negative values
  EXPECT_EQ(index[0], 0);
  EXPECT_TRUE(std::isnan(out[1]) && index[1] == 1);
  EXPECT_EQ(out[6], -7.0f);
  EXPECT_EQ(out[8], -8.0f);
}

#ifdef SEGENGINE_HAS_CUDA
// Both backends run the same arithmetic in the same order (kernels/pool_ops.h), so the results agree bit
// for bit; only the payload of a NaN may differ on a GPU.
template <typename T>
void expect_same(const std::vector<T>& got, const std::vector<T>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  const std::vector<double> a = to_double(got), b = to_double(want);
  const std::vector<uint64_t> got_bits = bits_of(got), want_bits = bits_of(want);
  for (size_t k = 0; k < a.size(); ++k) {
    if (std::isnan(a[k]) && std::isnan(b[k])) continue;
    ASSERT_EQ(got_bits[k], want_bits[k]) << what << " at " << k << ": " << a[k] << " vs " << b[k];
  }
}

// With `special`, x holds ties, signed zeros, -inf and NaN (special_values).
template <typename T>
void check_cuda_against_cpu(uint32_t seed, bool special) {
  using test::DeviceBuffer;
  for (const PoolCase& c : kCases) {
    const Pool2dDesc d = desc_of(c, seed % 2 == 0);
    std::vector<T> x = cast_to<T>(special ? special_values(in_numel(d), seed++) : random_values(in_numel(d), seed++)),
                   g = cast_to<T>(random_values(out_numel(d), seed++));
    std::vector<T> y(out_numel(d)), gx(in_numel(d));
    std::vector<int64_t> index(out_numel(d));
    DeviceBuffer<T> dx(x), dg(g), dy(y.size()), dgx(gx.size());
    DeviceBuffer<int64_t> dindex(index.size());
    cpu::max_pool2d_forward(y.data(), index.data(), x.data(), d, nullptr);
    cuda::max_pool2d_forward(dy.get(), dindex.get(), dx.get(), d, nullptr);
    expect_same(dy.to_host(), y, "max " + describe(d));
    ASSERT_EQ(dindex.to_host(), index) << "max " << describe(d);
    cpu::max_pool2d_backward(gx.data(), g.data(), index.data(), d, nullptr);
    cuda::max_pool2d_backward(dgx.get(), dg.get(), dindex.get(), d, nullptr);
    expect_same(dgx.to_host(), gx, "max backward " + describe(d));
    const std::vector<int64_t> arbitrary = arbitrary_indices(d, seed++);
    DeviceBuffer<int64_t> darbitrary(arbitrary);
    cpu::max_pool2d_backward(gx.data(), g.data(), arbitrary.data(), d, nullptr);
    cuda::max_pool2d_backward(dgx.get(), dg.get(), darbitrary.get(), d, nullptr);
    expect_same(dgx.to_host(), gx, "max backward, arbitrary indices " + describe(d));
    if (c.dilation_h != 1 || c.dilation_w != 1) continue;
    cpu::avg_pool2d_forward(y.data(), x.data(), d, nullptr);
    cuda::avg_pool2d_forward(dy.get(), dx.get(), d, nullptr);
    expect_same(dy.to_host(), y, "avg " + describe(d));
    cpu::avg_pool2d_backward(gx.data(), g.data(), d, nullptr);
    cuda::avg_pool2d_backward(dgx.get(), dg.get(), d, nullptr);
    expect_same(dgx.to_host(), gx, "avg backward " + describe(d));
  }
  {  // kernel 1 with padding 1 (beyond half the kernel: the engine refuses it): windows of padding only
    const Pool2dDesc d = desc_of({2, 4, 6, 1, 1, 1, 1, 1, 1, 1, 1, false}, true);
    std::vector<T> x = cast_to<T>(random_values(in_numel(d), seed++)), y(out_numel(d));
    std::vector<int64_t> index(out_numel(d));
    DeviceBuffer<T> dx(x), dy(y.size());
    DeviceBuffer<int64_t> dindex(index.size());
    cpu::max_pool2d_forward(y.data(), index.data(), x.data(), d, nullptr);
    cuda::max_pool2d_forward(dy.get(), dindex.get(), dx.get(), d, nullptr);
    expect_same(dy.to_host(), y, "max, padding-only windows " + describe(d));
    ASSERT_EQ(dindex.to_host(), index) << "max, padding-only windows " << describe(d);
  }
  for (const AdaptivePool2dDesc& d : kAdaptiveCases) {
    const int64_t n_in = d.planes * d.in_h * d.in_w, n_out = d.planes * d.out_h * d.out_w;
    std::vector<T> x = cast_to<T>(random_values(n_in, seed++)), g = cast_to<T>(random_values(n_out, seed++));
    std::vector<T> y(n_out), gx(n_in);
    DeviceBuffer<T> dx(x), dg(g), dy(y.size()), dgx(gx.size());
    cpu::adaptive_avg_pool2d_forward(y.data(), x.data(), d, nullptr);
    cuda::adaptive_avg_pool2d_forward(dy.get(), dx.get(), d, nullptr);
    expect_same(dy.to_host(), y, "adaptive out " + std::to_string(d.out_h));
    cpu::adaptive_avg_pool2d_backward(gx.data(), g.data(), d, nullptr);
    cuda::adaptive_avg_pool2d_backward(dgx.get(), dg.get(), d, nullptr);
    expect_same(dgx.to_host(), gx, "adaptive backward out " + std::to_string(d.out_h));
  }
}

TEST(PoolCuda, F32MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<float>(1, false);
  check_cuda_against_cpu<float>(101, true);
}
TEST(PoolCuda, F64MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<double>(2, false);
  check_cuda_against_cpu<double>(102, true);
}
TEST(PoolCuda, F16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<f16>(3, false);
  check_cuda_against_cpu<f16>(103, true);
}
TEST(PoolCuda, BF16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<bf16>(4, false);
  check_cuda_against_cpu<bf16>(104, true);
}
#endif

}  // namespace
}  // namespace se::kernels
