// kernels/reduce.h: CPU against a double-precision reference, CUDA against CPU, on a table of
// (outer, size, inner) shapes with odd sizes, inner == 1 and inner > 1.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/reduce.h"
#include "kernel_test_util.h"

namespace se::kernels {
namespace {

using test::cast_to;
using test::random_values;
using test::to_double;

const ReduceDesc kShapes[] = {
    {1, 1, 1},    {1, 3, 1},   {3, 17, 1},  {2, 255, 1}, {4, 1000, 1}, {1, 4097, 1}, {2, 40000, 1}, {1, 1, 7},
    {2, 3, 17},   {3, 17, 5},  {2, 255, 3}, {1, 1000, 2}, {1, 4097, 3}, {2, 5, 300},  {7, 2, 1},
    {2, 2500, 300}, {1, 1100, 2100},  // inner > 1 over a long axis: in chunks of rows (and column blocks)
};
const ReduceOp kFloatOps[] = {ReduceOp::sum, ReduceOp::mean, ReduceOp::max, ReduceOp::min, ReduceOp::var};

std::string describe(const ReduceDesc& d) {
  return "(outer " + std::to_string(d.outer) + ", size " + std::to_string(d.size) + ", inner " +
         std::to_string(d.inner) + ")";
}

// Reference value of one output element and the magnitude its rounding error scales with.
struct RefValue {
  double value;
  double scale;
};

RefValue reference(ReduceOp op, const std::vector<double>& x, const ReduceDesc& d, int64_t o, int64_t i) {
  auto at = [&](int64_t r) { return x[(o * d.size + r) * d.inner + i]; };
  const double n = static_cast<double>(d.size);
  double sum = 0, abs_sum = 0, prod = 1, mx = -INFINITY, mn = INFINITY;
  for (int64_t r = 0; r < d.size; ++r) {
    sum += at(r);
    abs_sum += std::fabs(at(r));
    prod *= at(r);
    mx = std::max(mx, at(r));
    mn = std::min(mn, at(r));
  }
  switch (op) {
    case ReduceOp::sum: return {sum, abs_sum};
    case ReduceOp::mean: return {sum / n, abs_sum / n};
    case ReduceOp::prod: return {prod, std::fabs(prod)};
    case ReduceOp::max: return {mx, 0};
    case ReduceOp::min: return {mn, 0};
    case ReduceOp::var: {
      double mean = sum / n, m2 = 0, sq = 0;
      for (int64_t r = 0; r < d.size; ++r) {
        m2 += (at(r) - mean) * (at(r) - mean);
        sq += at(r) * at(r);
      }
      double divisor = std::max(n - static_cast<double>(d.correction), 0.0);
      return {m2 / divisor, 4 * sq / divisor};
    }
  }
  return {0, 0};
}

// Error bound of an output of type T accumulated in acc_t<T> over `size` elements.
template <typename T>
double tolerance(const RefValue& ref, int64_t size) {
  const double acc_eps = sizeof(T) == 2 ? 6e-8 : 1.2e-16;
  return 2 * test::unit_roundoff<T>() * std::fabs(ref.value) + acc_eps * static_cast<double>(size) * ref.scale;
}

template <typename T>
void check_against_reference(ReduceOp op, const ReduceDesc& d, uint32_t seed) {
  const int64_t count = d.outer * d.size * d.inner;
  const double lo = op == ReduceOp::prod ? 0.5 : -1.0, hi = op == ReduceOp::prod ? 1.5 : 1.0;
  std::vector<T> in = cast_to<T>(random_values(count, seed, lo, hi));
  std::vector<double> x = to_double(in);
  std::vector<T> out(static_cast<size_t>(d.outer * d.inner));
  cpu::reduce(op, out.data(), in.data(), d, nullptr);
  std::vector<double> got = to_double(out);
  for (int64_t o = 0; o < d.outer; ++o) {
    for (int64_t i = 0; i < d.inner; ++i) {
      RefValue ref = reference(op, x, d, o, i);
      double value = got[o * d.inner + i];
      if (std::isnan(ref.value)) {
        EXPECT_TRUE(std::isnan(value)) << "op " << int(op) << " " << describe(d);
      } else {
        EXPECT_NEAR(value, ref.value, tolerance<T>(ref, d.size)) << "op " << int(op) << " " << describe(d) << " at ("
                                                                 << o << ", " << i << ")";
      }
    }
  }
}

template <typename T>
class ReduceFloat : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double, f16, bf16>;
TYPED_TEST_SUITE(ReduceFloat, FloatTypes);

TYPED_TEST(ReduceFloat, MatchesDoubleReference) {
  uint32_t seed = 1;
  for (const ReduceDesc& d : kShapes) {
    for (ReduceOp op : kFloatOps) check_against_reference<TypeParam>(op, d, seed++);
  }
  for (ReduceDesc d : {ReduceDesc{3, 17, 1}, ReduceDesc{2, 9, 4}}) check_against_reference<TypeParam>(ReduceOp::prod, d, seed++);
  for (ReduceDesc d : {ReduceDesc{3, 17, 1, 0}, ReduceDesc{2, 255, 3, 0}, ReduceDesc{2, 1, 1, 1}}) {
    check_against_reference<TypeParam>(ReduceOp::var, d, seed++);
  }
}

TYPED_TEST(ReduceFloat, ArgExtremesMatchReference) {
  using T = TypeParam;
  uint32_t seed = 100;
  for (const ReduceDesc& d : kShapes) {
    std::vector<T> in = cast_to<T>(random_values(d.outer * d.size * d.inner, seed++));
    std::vector<double> x = to_double(in);
    std::vector<int64_t> amax(static_cast<size_t>(d.outer * d.inner)), amin(amax.size());
    cpu::arg_reduce(ArgReduceOp::argmax, amax.data(), in.data(), d, nullptr);
    cpu::arg_reduce(ArgReduceOp::argmin, amin.data(), in.data(), d, nullptr);
    for (int64_t o = 0; o < d.outer; ++o) {
      for (int64_t i = 0; i < d.inner; ++i) {
        int64_t best_max = 0, best_min = 0;  // first extreme: strict comparisons
        for (int64_t r = 1; r < d.size; ++r) {
          double v = x[(o * d.size + r) * d.inner + i];
          if (v > x[(o * d.size + best_max) * d.inner + i]) best_max = r;
          if (v < x[(o * d.size + best_min) * d.inner + i]) best_min = r;
        }
        EXPECT_EQ(amax[o * d.inner + i], best_max) << describe(d);
        EXPECT_EQ(amin[o * d.inner + i], best_min) << describe(d);
      }
    }
  }
}

TEST(Reduce, TiesGoToTheFirstIndexAndNanWins) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> in = {1, 3, 3, 2,  /* */ 2, nan, 5, nan};  // (2, 4)
  ReduceDesc d{2, 4, 1};
  std::vector<int64_t> idx(2);
  std::vector<float> val(2);
  cpu::arg_reduce(ArgReduceOp::argmax, idx.data(), in.data(), d, nullptr);
  EXPECT_EQ(idx, (std::vector<int64_t>{1, 1}));
  cpu::arg_reduce(ArgReduceOp::argmin, idx.data(), in.data(), d, nullptr);
  EXPECT_EQ(idx, (std::vector<int64_t>{0, 1}));
  cpu::reduce(ReduceOp::max, val.data(), in.data(), d, nullptr);
  EXPECT_EQ(val[0], 3.0f);
  EXPECT_TRUE(std::isnan(val[1]));
  cpu::reduce(ReduceOp::sum, val.data(), in.data(), d, nullptr);
  EXPECT_TRUE(std::isnan(val[1]));
}

TEST(Reduce, TiesAcrossChunksOfALongAxisGoToTheFirstIndex) {
  // inner > 1 walks the reduced axis in chunks of rows; the first chunk's index must win a tie.
  const ReduceDesc d{1, 3000, 5};
  std::vector<float> in(static_cast<size_t>(d.size * d.inner), 1.0f);
  for (int64_t i = 0; i < d.inner; ++i) in[static_cast<size_t>((2999 - i * 500) * d.inner + i)] = 2.0f;
  in[static_cast<size_t>(2500 * d.inner + 4)] = 2.0f;  // column 4: 2 at rows 999 and 2500
  std::vector<int64_t> idx(5);
  cpu::arg_reduce(ArgReduceOp::argmax, idx.data(), in.data(), d, nullptr);
  EXPECT_EQ(idx, (std::vector<int64_t>{2999, 2499, 1999, 1499, 999}));
  cpu::arg_reduce(ArgReduceOp::argmin, idx.data(), in.data(), d, nullptr);
  EXPECT_EQ(idx, (std::vector<int64_t>{0, 0, 0, 0, 0}));
}

TEST(Reduce, ResultsDoNotDependOnTheThreadCount) {
  const int threads = omp_get_max_threads();
  for (const ReduceDesc& d : {ReduceDesc{1, 40000, 1}, ReduceDesc{2, 2500, 300}, ReduceDesc{1, 1100, 2100}}) {
    const std::vector<float> in = cast_to<float>(random_values(d.outer * d.size * d.inner, 7));
    std::vector<float> one(static_cast<size_t>(d.outer * d.inner)), many(one.size());
    for (ReduceOp op : kFloatOps) {
      omp_set_num_threads(1);
      cpu::reduce(op, one.data(), in.data(), d, nullptr);
      omp_set_num_threads(std::max(threads, 3));
      cpu::reduce(op, many.data(), in.data(), d, nullptr);
      EXPECT_EQ(one, many) << "op " << int(op) << " " << describe(d);
    }
  }
  omp_set_num_threads(threads);
}

TEST(Reduce, IntegersAreExact) {
  ReduceDesc d{3, 255, 2};
  std::vector<int32_t> in(static_cast<size_t>(d.outer * d.size * d.inner));
  for (size_t k = 0; k < in.size(); ++k) in[k] = static_cast<int32_t>((k * 7919) % 101) - 50;
  std::vector<int32_t> sum(6), mx(6);
  std::vector<int64_t> amax(6);
  cpu::reduce(ReduceOp::sum, sum.data(), in.data(), d, nullptr);
  cpu::reduce(ReduceOp::max, mx.data(), in.data(), d, nullptr);
  cpu::arg_reduce(ArgReduceOp::argmax, amax.data(), in.data(), d, nullptr);
  for (int64_t o = 0; o < d.outer; ++o) {
    for (int64_t i = 0; i < d.inner; ++i) {
      int32_t s = 0, m = std::numeric_limits<int32_t>::min();
      int64_t am = 0;
      for (int64_t r = 0; r < d.size; ++r) {
        int32_t v = in[(o * d.size + r) * d.inner + i];
        s += v;
        if (v > m) m = v, am = r;
      }
      EXPECT_EQ(sum[o * d.inner + i], s);
      EXPECT_EQ(mx[o * d.inner + i], m);
      EXPECT_EQ(amax[o * d.inner + i], am);
    }
  }
}

TEST(Reduce, EmptyAxes) {
  std::vector<float> out(2, 7.0f);
  float dummy = 0;
  cpu::reduce(ReduceOp::sum, out.data(), &dummy, ReduceDesc{2, 0, 1}, nullptr);
  EXPECT_EQ(out, (std::vector<float>{0, 0}));
  cpu::reduce(ReduceOp::prod, out.data(), &dummy, ReduceDesc{1, 0, 2}, nullptr);
  EXPECT_EQ(out, (std::vector<float>{1, 1}));
  EXPECT_THROW(cpu::reduce(ReduceOp::max, out.data(), &dummy, ReduceDesc{2, 0, 1}, nullptr), Error);
  int64_t idx = 0;
  EXPECT_THROW(cpu::arg_reduce(ArgReduceOp::argmin, &idx, &dummy, ReduceDesc{1, 0, 1}, nullptr), Error);
}

TEST(Reduce, MeanOfIntegersIsAnError) {
  std::vector<int32_t> in = {1, 2, 3};
  int32_t out = 0;
  try {
    cpu::reduce(ReduceOp::mean, &out, in.data(), ReduceDesc{1, 3, 1}, nullptr);
    FAIL() << "expected se::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs a floating dtype"), std::string::npos) << e.what();
  }
}

#ifdef SEGENGINE_HAS_CUDA
template <typename T>
void check_cuda_against_cpu(uint32_t seed) {
  using test::DeviceBuffer;
  for (const ReduceDesc& d : kShapes) {
    const int64_t count = d.outer * d.size * d.inner, outs = d.outer * d.inner;
    std::vector<T> in = cast_to<T>(random_values(count, seed++, -4, 4));
    DeviceBuffer<T> din(in);
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::mean, ReduceOp::max, ReduceOp::min, ReduceOp::var, ReduceOp::prod}) {
      if (op == ReduceOp::prod && d.size > 17) continue;  // overflows
      if constexpr (std::is_integral_v<T>) {
        if (op == ReduceOp::mean || op == ReduceOp::var) continue;
      }
      std::vector<T> expected(static_cast<size_t>(outs));
      cpu::reduce(op, expected.data(), in.data(), d, nullptr);
      DeviceBuffer<T> dout(static_cast<size_t>(outs));
      cuda::reduce(op, dout.get(), din.get(), d, nullptr);
      std::vector<double> got = to_double(dout.to_host()), want = to_double(expected);
      for (int64_t k = 0; k < outs; ++k) {
        // Both accumulate in acc_t<T> but in a different order: allow one rounding of the output and
        // the accumulator's reordering error relative to the values' magnitude (at most 4 here) or,
        // for sums, the partial sums' (each addition rounds relative to those: about the total).
        const double total = std::fabs(want[k]) * (op == ReduceOp::mean ? static_cast<double>(d.size) : 1.0);
        double scale = op == ReduceOp::var ? 16.0 : (op == ReduceOp::prod ? std::fabs(want[k]) : 4.0 + total);
        double tol = 2 * test::unit_roundoff<T>() * std::fabs(want[k]) +
                     (sizeof(T) == 2 ? 6e-8 : 1.2e-16) * static_cast<double>(d.size) * scale;
        if (op == ReduceOp::max || op == ReduceOp::min || std::is_integral_v<T>) tol = 0;
        if (std::isnan(want[k])) {
          EXPECT_TRUE(std::isnan(got[k])) << "op " << int(op) << " " << describe(d) << " output " << k;
        } else if (std::isinf(want[k])) {  // f16 products overflow on both sides
          EXPECT_EQ(got[k], want[k]) << "op " << int(op) << " " << describe(d) << " output " << k;
        } else {
          EXPECT_NEAR(got[k], want[k], tol) << "op " << int(op) << " " << describe(d) << " output " << k;
        }
      }
    }
    for (ArgReduceOp op : {ArgReduceOp::argmax, ArgReduceOp::argmin}) {
      std::vector<int64_t> expected(static_cast<size_t>(outs));
      cpu::arg_reduce(op, expected.data(), in.data(), d, nullptr);
      DeviceBuffer<int64_t> dout(static_cast<size_t>(outs));
      cuda::arg_reduce(op, dout.get(), din.get(), d, nullptr);
      EXPECT_EQ(dout.to_host(), expected) << "arg op " << int(op) << " " << describe(d);
    }
  }
}

TEST(ReduceCuda, F32MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<float>(1000); }
TEST(ReduceCuda, F64MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<double>(2000); }
TEST(ReduceCuda, F16MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<f16>(3000); }
TEST(ReduceCuda, BF16MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<bf16>(4000); }
TEST(ReduceCuda, I32MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<int32_t>(5000); }
TEST(ReduceCuda, I64MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<int64_t>(6000); }

TEST(ReduceCuda, TiesAndNanMatchCpu) {
  SE_SKIP_WITHOUT_CUDA();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> in(2 * 3000, 1.0f);  // long rows take the block-per-row kernel
  in[2999] = 2.0f;
  in[1500] = 2.0f;
  in[3000 + 2000] = nan;
  in[3000 + 2500] = nan;
  ReduceDesc d{2, 3000, 1};
  test::DeviceBuffer<float> din(in);
  test::DeviceBuffer<int64_t> idx(2);
  test::DeviceBuffer<float> val(2);
  cuda::arg_reduce(ArgReduceOp::argmax, idx.get(), din.get(), d, nullptr);
  EXPECT_EQ(idx.to_host(), (std::vector<int64_t>{1500, 2000}));
  cuda::reduce(ReduceOp::max, val.get(), din.get(), d, nullptr);
  std::vector<float> v = val.to_host();
  EXPECT_EQ(v[0], 2.0f);
  EXPECT_TRUE(std::isnan(v[1]));
}
#endif

}  // namespace
}  // namespace se::kernels
