// kernels/softmax.h: CPU against a double-precision reference (forward and backward), CUDA against
// CPU, on odd row lengths with inner == 1 and inner > 1.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/softmax.h"
#include "kernel_test_util.h"

namespace se::kernels {
namespace {

using test::cast_to;
using test::random_values;
using test::to_double;

// Rows (inner 1) shorter than, equal to and longer than the CPU's 8 lanes; inner > 1 in one or several
// (up to 64 wide) column blocks.
const SoftmaxDesc kShapes[] = {{1, 1, 1},  {3, 17, 1}, {2, 255, 1},  {2, 1000, 1}, {1, 4097, 1},
                               {2, 3, 17}, {3, 17, 5}, {1, 1000, 3}, {2, 1, 4},    {1, 255, 40},
                               {1, 7, 1},  {2, 8, 1},  {2, 5, 130}};

std::string describe(const SoftmaxDesc& d) {
  return "(outer " + std::to_string(d.outer) + ", size " + std::to_string(d.size) + ", inner " +
         std::to_string(d.inner) + ")";
}

int64_t numel(const SoftmaxDesc& d) { return d.outer * d.size * d.inner; }

// Applies f(indices of one softmax fiber) to every fiber.
template <typename F>
void for_each_fiber(const SoftmaxDesc& d, F f) {
  std::vector<int64_t> idx(static_cast<size_t>(d.size));
  for (int64_t o = 0; o < d.outer; ++o) {
    for (int64_t i = 0; i < d.inner; ++i) {
      for (int64_t r = 0; r < d.size; ++r) idx[r] = (o * d.size + r) * d.inner + i;
      f(idx);
    }
  }
}

std::vector<double> reference_forward(const std::vector<double>& x, const SoftmaxDesc& d, bool log) {
  std::vector<double> y(x.size());
  for_each_fiber(d, [&](const std::vector<int64_t>& idx) {
    double max = -INFINITY, sum = 0;
    for (int64_t k : idx) max = std::max(max, x[k]);
    for (int64_t k : idx) sum += std::exp(x[k] - max);
    for (int64_t k : idx) y[k] = log ? x[k] - max - std::log(sum) : std::exp(x[k] - max) / sum;
  });
  return y;
}

// Reference gradient and, per element, the magnitude its rounding error scales with.
void reference_backward(const std::vector<double>& g, const std::vector<double>& y, const SoftmaxDesc& d, bool log,
                        std::vector<double>* grad, std::vector<double>* scale) {
  grad->assign(g.size(), 0);
  scale->assign(g.size(), 0);
  for_each_fiber(d, [&](const std::vector<int64_t>& idx) {
    double sum = 0, abs_sum = 0;
    for (int64_t k : idx) {
      sum += log ? g[k] : g[k] * y[k];
      abs_sum += log ? std::fabs(g[k]) : std::fabs(g[k] * y[k]);
    }
    for (int64_t k : idx) {
      (*grad)[k] = log ? g[k] - std::exp(y[k]) * sum : y[k] * (g[k] - sum);
      (*scale)[k] = log ? std::fabs(g[k]) + std::exp(y[k]) * abs_sum : std::fabs(y[k]) * (std::fabs(g[k]) + abs_sum);
    }
  });
}

template <typename T>
void check_cpu(bool log, uint32_t seed) {
  const double u = test::unit_roundoff<T>();
  for (const SoftmaxDesc& d : kShapes) {
    std::vector<T> x = cast_to<T>(random_values(numel(d), seed++, -8, 8));
    std::vector<T> y(x.size());
    (log ? cpu::log_softmax_forward<T> : cpu::softmax_forward<T>)(y.data(), x.data(), d, nullptr);
    std::vector<double> ref = reference_forward(to_double(x), d, log), got = to_double(y);
    for (size_t k = 0; k < ref.size(); ++k) {
      // exp amplifies the rounding of (x - max), |x - max| <= 16 here.
      double tol = 2 * u * std::fabs(ref[k]) + test::subnormal_step<T>() + 16 * 6e-8 * (log ? 1.0 : std::fabs(ref[k])) * 16;
      ASSERT_NEAR(got[k], ref[k], tol) << (log ? "log_softmax " : "softmax ") << describe(d) << " at " << k;
    }
    std::vector<T> g = cast_to<T>(random_values(numel(d), seed++));
    std::vector<T> gx(x.size());
    (log ? cpu::log_softmax_backward<T> : cpu::softmax_backward<T>)(gx.data(), g.data(), y.data(), d, nullptr);
    std::vector<double> ref_grad, scale;
    reference_backward(to_double(g), to_double(y), d, log, &ref_grad, &scale);
    got = to_double(gx);
    for (size_t k = 0; k < ref_grad.size(); ++k) {
      ASSERT_NEAR(got[k], ref_grad[k], 4 * std::max(u, 6e-8) * scale[k] + test::subnormal_step<T>())
          << (log ? "log_softmax" : "softmax") << "_backward " << describe(d) << " at " << k;
    }
  }
}

template <typename T>
class SoftmaxFloat : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double, f16, bf16>;
TYPED_TEST_SUITE(SoftmaxFloat, FloatTypes);

TYPED_TEST(SoftmaxFloat, SoftmaxMatchesReference) { check_cpu<TypeParam>(false, 1); }
TYPED_TEST(SoftmaxFloat, LogSoftmaxMatchesReference) { check_cpu<TypeParam>(true, 100); }

TEST(Softmax, IsStableForLargeInputsAndMasksMinusInfinity) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x = {1000, 1001, -inf, /* */ 1, nan, 2};  // (2, 3)
  std::vector<float> y(6), log_y(6);
  cpu::softmax_forward(y.data(), x.data(), SoftmaxDesc{2, 3, 1}, nullptr);
  cpu::log_softmax_forward(log_y.data(), x.data(), SoftmaxDesc{2, 3, 1}, nullptr);
  EXPECT_NEAR(y[0], 1 / (1 + std::exp(1.0f)), 1e-6);
  EXPECT_NEAR(y[1], 1 / (1 + std::exp(-1.0f)), 1e-6);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_NEAR(log_y[1], -std::log1p(std::exp(-1.0f)), 1e-6);
  EXPECT_EQ(log_y[2], -inf);
  for (int k = 3; k < 6; ++k) EXPECT_TRUE(std::isnan(y[k])) << k;
}

// Rows long enough for the f32 row's 16-float vector loops: large values, -inf masked, and a NaN inside the
// vector part (not only in the scalar tail) still makes the whole row NaN.
TEST(Softmax, LongRowsAreStableAndPropagateNaN) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const int64_t n = 37;
  std::vector<float> x(2 * n);
  for (int64_t k = 0; k < n; ++k) x[k] = x[n + k] = 1000.0f + 0.5f * static_cast<float>(k);
  x[5] = -inf;
  x[n + 20] = nan;
  std::vector<float> y(x.size()), log_y(x.size());
  cpu::softmax_forward(y.data(), x.data(), SoftmaxDesc{2, n, 1}, nullptr);
  cpu::log_softmax_forward(log_y.data(), x.data(), SoftmaxDesc{2, n, 1}, nullptr);
  double total = 0;
  for (int64_t k = 0; k < n; ++k) total += k == 5 ? 0.0 : std::exp(0.5 * (k - (n - 1)));
  for (int64_t k = 0; k < n; ++k) {
    if (k == 5) {
      EXPECT_EQ(y[k], 0.0f);
      EXPECT_EQ(log_y[k], -inf);
      continue;
    }
    const double log_p = 0.5 * (k - (n - 1)) - std::log(total);
    EXPECT_NEAR(y[k], std::exp(log_p), 1e-6) << k;
    EXPECT_NEAR(log_y[k], log_p, 1e-4) << k;
  }
  for (int64_t k = n; k < 2 * n; ++k) {
    EXPECT_TRUE(std::isnan(y[k])) << k;
    EXPECT_TRUE(std::isnan(log_y[k])) << k;
  }
}

// inner > 1: every column subtracts its own maximum. Column c holds 100 c + {0, 1, 2}; 70 columns make two
// column blocks on the CPU.
TEST(Softmax, ColumnsAreStableForLargeInputs) {
  const SoftmaxDesc d{1, 3, 70};
  std::vector<float> x(3 * 70), y(x.size()), log_y(x.size());
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 70; ++c) x[r * 70 + c] = static_cast<float>(100 * c + r);
  }
  cpu::softmax_forward(y.data(), x.data(), d, nullptr);
  cpu::log_softmax_forward(log_y.data(), x.data(), d, nullptr);
  const double total = 1 + std::exp(1.0) + std::exp(2.0);
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 70; ++c) {
      EXPECT_NEAR(y[r * 70 + c], std::exp(r) / total, 1e-6) << "row " << r << " column " << c;
      EXPECT_NEAR(log_y[r * 70 + c], r - std::log(total), 1e-5) << "row " << r << " column " << c;
    }
  }
}

#ifdef SEGENGINE_HAS_CUDA
template <typename T>
void check_cuda_against_cpu(bool log, uint32_t seed) {
  using test::DeviceBuffer;
  const double u = std::max(test::unit_roundoff<T>(), 6e-8);
  for (const SoftmaxDesc& d : kShapes) {
    std::vector<T> x = cast_to<T>(random_values(numel(d), seed++, -8, 8));
    std::vector<T> g = cast_to<T>(random_values(numel(d), seed++));
    std::vector<T> y(x.size()), gx(x.size());
    (log ? cpu::log_softmax_forward<T> : cpu::softmax_forward<T>)(y.data(), x.data(), d, nullptr);
    (log ? cpu::log_softmax_backward<T> : cpu::softmax_backward<T>)(gx.data(), g.data(), y.data(), d, nullptr);
    DeviceBuffer<T> dx(x), dg(g), dy(x.size()), dgx(x.size());
    (log ? cuda::log_softmax_forward<T> : cuda::softmax_forward<T>)(dy.get(), dx.get(), d, nullptr);
    std::vector<double> want = to_double(y), got = to_double(dy.to_host());
    for (size_t k = 0; k < want.size(); ++k) {
      // Device exp/log differ from the host's by a few ulp; both round the result to T.
      ASSERT_NEAR(got[k], want[k], 2 * u * std::fabs(want[k]) + test::subnormal_step<T>() + 64 * 6e-8 * (log ? 16.0 : std::fabs(want[k])))
          << (log ? "log_softmax " : "softmax ") << describe(d) << " at " << k;
    }
    DeviceBuffer<T> dy_cpu(y);  // backward from the same forward output on both sides
    (log ? cuda::log_softmax_backward<T> : cuda::softmax_backward<T>)(dgx.get(), dg.get(), dy_cpu.get(), d, nullptr);
    want = to_double(gx);
    got = to_double(dgx.to_host());
    for (size_t k = 0; k < want.size(); ++k) {
      ASSERT_NEAR(got[k], want[k], 4 * u * (std::fabs(want[k]) + 1.0) + test::subnormal_step<T>())
          << (log ? "log_softmax" : "softmax") << "_backward " << describe(d) << " at " << k;
    }
  }
}

// Rows of one element, one warp each: 8 * (2^32 + 1) rows need 2^32 + 1 blocks, which a 32-bit grid
// dimension would wrap to 1 (a launch that silently skips all but 8 rows, here reading through null).
// The launch must refuse the shape before touching memory.
TEST(SoftmaxCuda, GridBeyondItsLimitThrows) {
  SE_SKIP_WITHOUT_CUDA();
  SoftmaxDesc d;
  d.outer = 8 * ((int64_t{1} << 32) + 1);
  EXPECT_THROW(cuda::softmax_forward<float>(nullptr, nullptr, d, nullptr), Error);
  EXPECT_THROW(cuda::log_softmax_backward<float>(nullptr, nullptr, nullptr, d, nullptr), Error);
}

TEST(SoftmaxCuda, F32MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<float>(false, 1); check_cuda_against_cpu<float>(true, 2); }
TEST(SoftmaxCuda, F64MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<double>(false, 3); check_cuda_against_cpu<double>(true, 4); }
TEST(SoftmaxCuda, F16MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<f16>(false, 5); check_cuda_against_cpu<f16>(true, 6); }
TEST(SoftmaxCuda, BF16MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<bf16>(false, 7); check_cuda_against_cpu<bf16>(true, 8); }
#endif

}  // namespace
}  // namespace se::kernels
