// kernels/cpu/vector_math.h: fast_exp within 1 ulp of the correctly rounded e^x on a dense sample of every
// binade it produces (normal and subnormal results, saturation at both ends), fast_expm1 within 2 ulp of
// e^x - 1 on a dense sample from -1 to overflow, fast_erf within 1.32 ulp of
// erf on a dense sample of both of its pieces, their special values, select's bitwise choice, and the
// per-ISA elementwise loops (elementwise_fast.h) giving the baseline's bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/elementwise_fast.h"
#include "kernels/cpu/vector_math.h"

namespace se::kernels::cpu {
namespace {

// |got - want| in units of the last place of want as a float (2^-149 for subnormal results).
double ulp_error_of(float got, long double want) {
  int exponent = 0;
  std::frexp(want, &exponent);
  const long double ulp = std::ldexp(1.0L, std::max(exponent - 24, -149));
  return static_cast<double>(std::fabs(static_cast<long double>(got) - want) / ulp);
}

// The same for e^x.
double ulp_error(float got, float x) {
  const long double want = std::exp(static_cast<long double>(x));
  if (want > static_cast<long double>(std::numeric_limits<float>::max())) return std::isinf(got) && got > 0 ? 0 : 1e30;
  return ulp_error_of(got, want);
}

// The float `stride` floats above x, counting through -0 and +0 as one step.
float float_after(float x, uint32_t stride) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  bits = x < 0 ? (bits > stride + 0x80000000u ? bits - stride : 0u) : bits + stride;
  std::memcpy(&x, &bits, sizeof(bits));
  return x;
}

TEST(FastExp, WithinOneUlpFromUnderflowToOverflow) {
  double worst = 0;
  float worst_x = 0;
  // Every 997th float of [-110, 90] (about 2.3 million values): all of the reduction's k and offsets r.
  for (float x = -110.0f; x <= 90.0f;) {
    const double error = ulp_error(fast_exp(x), x);
    if (error > worst) worst = error, worst_x = x;
    x = float_after(x, 997);
  }
  EXPECT_LE(worst, 1.0) << "at x = " << worst_x;
}

TEST(FastExp, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(fast_exp(0.0f), 1.0f);
  EXPECT_EQ(fast_exp(-0.0f), 1.0f);
  EXPECT_EQ(fast_exp(-inf), 0.0f);
  EXPECT_EQ(fast_exp(-200.0f), 0.0f);
  EXPECT_EQ(fast_exp(inf), inf);
  EXPECT_EQ(fast_exp(100.0f), inf);
  EXPECT_TRUE(std::isnan(fast_exp(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_GT(fast_exp(-103.0f), 0.0f);       // subnormal, not flushed
  EXPECT_EQ(fast_exp(1.0), std::exp(1.0));  // double is libm's
}

TEST(FastExpm1, WithinTwoUlpFromMinusOneToOverflow) {
  double worst = 0;
  float worst_x = 0;
  // Every 997th float of [-25, 88.7] (about 2.2 million values: every reduction k, the tiny x where
  // e^x - 1 is x, and the range where it rounds to -1).
  for (float x = -25.0f; x <= 88.7f;) {
    const float got = fast_expm1(x);
    const double error = ulp_error_of(got, std::expm1(static_cast<long double>(x)));
    if (error > worst) worst = error, worst_x = x;
    x = float_after(x, 997);
  }
  EXPECT_LE(worst, 2.0) << "at x = " << worst_x;
}

TEST(FastExpm1, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(fast_expm1(0.0f), 0.0f);
  EXPECT_FALSE(std::signbit(fast_expm1(0.0f)));
  EXPECT_TRUE(std::signbit(fast_expm1(-0.0f)));
  EXPECT_EQ(fast_expm1(1e-30f), 1e-30f);  // e^x - 1 is x below half an ulp of x
  EXPECT_EQ(fast_expm1(-1e-30f), -1e-30f);
  EXPECT_EQ(fast_expm1(-inf), -1.0f);
  EXPECT_EQ(fast_expm1(-200.0f), -1.0f);
  EXPECT_EQ(fast_expm1(inf), inf);
  EXPECT_EQ(fast_expm1(89.0f), inf);
  EXPECT_LT(fast_expm1(88.5f), inf);
  EXPECT_TRUE(std::isnan(fast_expm1(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(fast_expm1(-0.5), std::expm1(-0.5));  // double is libm's
}

TEST(FastErf, WithinItsBoundOnBothPieces) {
  double worst = 0;
  float worst_x = 0;
  // Every 101st float from 0 to past 4, where erf rounds to 1 (about 10 million values: both pieces, the
  // switch at 1 and the clamp at 4), with the odd symmetry checked on each.
  for (uint32_t bits = 0; bits < 0x40A00000u; bits += 101) {  // 0x40A00000 is 5.0f
    float x;
    std::memcpy(&x, &bits, sizeof(x));
    const float got = fast_erf(x);
    const double error = ulp_error_of(got, std::erf(static_cast<long double>(x)));
    if (error > worst) worst = error, worst_x = x;
    ASSERT_EQ(fast_erf(-x), -got) << "at x = " << x;
  }
  EXPECT_LE(worst, 1.32) << "at x = " << worst_x;
}

TEST(FastErf, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(fast_erf(0.0f), 0.0f);
  EXPECT_TRUE(std::signbit(fast_erf(-0.0f)));
  EXPECT_EQ(fast_erf(inf), 1.0f);
  EXPECT_EQ(fast_erf(-inf), -1.0f);
  EXPECT_EQ(fast_erf(1e30f), 1.0f);
  EXPECT_FLOAT_EQ(fast_erf(1e-30f), static_cast<float>(std::erf(1e-30)));
  EXPECT_TRUE(std::isnan(fast_erf(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(fast_erf(0.5), std::erf(0.5));  // double is libm's
}

// Every ISA's loops give the baseline's bits (no FMA contraction, the same operations in the same order),
// on odd lengths (vector tails), both erf pieces, saturation and special values.
TEST(FastElementwiseLoops, EveryIsaGivesTheBaselineBits) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> wide(-12.0f, 12.0f);
  std::vector<float> x(1037), g(x.size());
  for (size_t k = 0; k < x.size(); ++k) x[k] = wide(rng), g[k] = wide(rng);
  const float inf = std::numeric_limits<float>::infinity();
  const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, 4.0f, -4.0f, 95.0f, -95.0f, inf, -inf,
                            std::numeric_limits<float>::quiet_NaN(), 1e-30f};
  std::copy(std::begin(specials), std::end(specials), x.begin() + 3);
  const std::vector<FastLoops> sets = fast_loops_of_this_cpu();
  ASSERT_STREQ(sets.back().isa, "baseline");
  const auto run = [&](const FastLoops& l) {
    std::vector<float> out(4 * x.size());
    const int64_t n = static_cast<int64_t>(x.size());
    l.exp(x.data(), out.data(), n);
    l.sigmoid(x.data(), out.data() + n, n);
    l.gelu(x.data(), out.data() + 2 * n, n);
    l.gelu_backward(g.data(), x.data(), out.data() + 3 * n, n);
    return out;
  };
  const std::vector<float> want = run(sets.back());
  for (const FastLoops& l : sets) {
    const std::vector<float> got = run(l);
    for (size_t k = 0; k < want.size(); ++k) {
      ASSERT_EQ(std::memcmp(&got[k], &want[k], sizeof(float)), 0)
          << l.isa << ": output " << k / x.size() << " (exp, sigmoid, gelu, gelu backward) at x = " << x[k % x.size()]
          << ": " << got[k] << " vs " << want[k];
    }
  }
}

TEST(Select, PicksBitsIncludingSignedZerosAndNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(select(true, 2.5f, -1.0f), 2.5f);
  EXPECT_EQ(select(false, 2.5f, -1.0f), -1.0f);
  EXPECT_TRUE(std::signbit(select(true, -0.0f, 0.0f)));
  EXPECT_FALSE(std::signbit(select(false, -0.0f, 0.0f)));
  EXPECT_TRUE(std::isnan(select(true, nan, 0.0f)));
  EXPECT_EQ(select(false, static_cast<double>(nan), 3.0), 3.0);
}

}  // namespace
}  // namespace se::kernels::cpu
