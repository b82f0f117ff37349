// kernels/norm.h: CPU against double-precision references written here (BatchNorm training and eval,
// the running-stat update, LayerNorm, GroupNorm, forward and backward), f16/bf16 against the same
// reference within their rounding, and CUDA against CPU.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/norm.h"

namespace se::kernels {
namespace {

using test::cast_to;
using test::random_values;
using test::to_double;

// Relative precision of the computation in T (parameters of 16-bit data are float).
template <typename T>
double precision() {
  return std::is_same_v<T, double> ? 1e-14 : std::max(test::unit_roundoff<T>(), 1e-7);
}

template <typename T>
std::vector<norm_param_t<T>> params(const std::vector<double>& v) {
  return cast_to<norm_param_t<T>>(v);
}

// Normalisation groups as lists of element indices, with the affine parameter of every element:
// the reference is one routine for all three layers.
struct Groups {
  std::vector<std::vector<int64_t>> members;  // per group: element indices
  std::vector<int64_t> param;                 // per element: weight/bias index
  int64_t params = 0;
};

Groups batch_norm_groups(const BatchNormDesc& d) {
  Groups g{std::vector<std::vector<int64_t>>(d.c), std::vector<int64_t>(d.n * d.c * d.hw), d.c};
  for (int64_t i = 0; i < d.n * d.c * d.hw; ++i)
    g.members[(i / d.hw) % d.c].push_back(i), g.param[i] = (i / d.hw) % d.c;
  return g;
}
Groups layer_norm_groups(const LayerNormDesc& d) {
  Groups g{std::vector<std::vector<int64_t>>(d.rows), std::vector<int64_t>(d.rows * d.cols), d.cols};
  for (int64_t i = 0; i < d.rows * d.cols; ++i) g.members[i / d.cols].push_back(i), g.param[i] = i % d.cols;
  return g;
}
Groups group_norm_groups(const GroupNormDesc& d) {
  const int64_t per_group = d.c / d.groups * d.hw;
  Groups g{std::vector<std::vector<int64_t>>(d.n * d.groups), std::vector<int64_t>(d.n * d.c * d.hw), d.c};
  for (int64_t i = 0; i < d.n * d.c * d.hw; ++i) g.members[i / per_group].push_back(i), g.param[i] = (i / d.hw) % d.c;
  return g;
}

struct Reference {
  std::vector<double> mean, var, y;                          // forward (var biased)
  std::vector<double> dx, dweight, dbias;                    // backward
  std::vector<double> dx_scale, dweight_scale, dbias_scale;  // magnitudes the rounding errors scale with
};

Reference reference(const Groups& g, const std::vector<double>& x, const std::vector<double>& w,
                    const std::vector<double>& b, const std::vector<double>& dy, double eps) {
  Reference r;
  r.y.assign(x.size(), 0), r.dx.assign(x.size(), 0), r.dx_scale.assign(x.size(), 0);
  r.dweight.assign(g.params, 0), r.dbias.assign(g.params, 0), r.dweight_scale.assign(g.params, 0),
      r.dbias_scale.assign(g.params, 0);
  for (const auto& m : g.members) {
    const double n = static_cast<double>(m.size());
    double mean = 0, var = 0;
    for (int64_t i : m) mean += x[i] / n;
    for (int64_t i : m) var += (x[i] - mean) * (x[i] - mean) / n;
    const double inv = 1 / std::sqrt(var + eps);
    r.mean.push_back(mean), r.var.push_back(var);
    double sum_g = 0, sum_g_xhat = 0, abs_g = 0;
    for (int64_t i : m) {
      const double xhat = (x[i] - mean) * inv, gi = dy[i] * w[g.param[i]];
      r.y[i] = xhat * w[g.param[i]] + b[g.param[i]];
      sum_g += gi, sum_g_xhat += gi * xhat, abs_g += std::fabs(gi) * (1 + std::fabs(xhat));
      r.dweight[g.param[i]] += dy[i] * xhat, r.dbias[g.param[i]] += dy[i];
      r.dweight_scale[g.param[i]] += std::fabs(dy[i] * xhat), r.dbias_scale[g.param[i]] += std::fabs(dy[i]);
    }
    for (int64_t i : m) {
      const double xhat = (x[i] - mean) * inv, gi = dy[i] * w[g.param[i]];
      r.dx[i] = inv * (gi - sum_g / n - xhat * sum_g_xhat / n);
      r.dx_scale[i] = inv * (std::fabs(gi) + (1 + std::fabs(xhat)) * abs_g / n);
    }
  }
  return r;
}

template <typename T>
void expect_close(const std::vector<T>& got, const std::vector<double>& want, const std::vector<double>& scale,
                  double unit, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  std::vector<double> g = to_double(got);
  for (size_t k = 0; k < want.size(); ++k) {
    const double s = scale.empty() ? std::fabs(want[k]) : scale[k];
    ASSERT_NEAR(g[k], want[k], 64 * unit * (1 + s) + test::subnormal_step<T>()) << what << " at " << k;
  }
}

// Inputs of one case: x with a channel-dependent offset (so means differ from 0), weight, bias, dy.
struct Inputs {
  std::vector<double> x, w, b, dy;
};
Inputs make_inputs(int64_t numel, int64_t params, uint32_t seed) {
  Inputs in{random_values(numel, seed, -3, 3), random_values(params, seed + 1, 0.5, 1.5),
            random_values(params, seed + 2), random_values(numel, seed + 3)};
  for (size_t k = 0; k < in.x.size(); ++k) in.x[k] += static_cast<double>(k % 7) * 0.5;
  return in;
}

// The CPU statistics work in chunks of 2048 values and 8 lanes: the shapes include planes and rows
// shorter than a lane group, of exactly two chunks, and a few values past a chunk boundary.
const BatchNormDesc kBatchShapes[] = {{2, 3, 1},   {1, 3, 5}, {4, 5, 7},    {3, 2, 33},
                                      {2, 1, 300}, {5, 4, 1}, {2, 2, 2051}, {1, 1, 4096}};
const LayerNormDesc kLayerShapes[] = {{1, 1}, {3, 17}, {5, 64}, {2, 300}, {7, 5}, {2, 2053}, {300, 5}};
const GroupNormDesc kGroupShapes[] = {{2, 6, 5, 3}, {1, 4, 2, 1},    {3, 3, 7, 3},  {2, 8, 130, 4},
                                      {1, 2, 1, 2}, {1, 4, 1100, 2}, {300, 6, 1, 2}};

std::string describe(const BatchNormDesc& d) {
  return "batch_norm (" + std::to_string(d.n) + ", " + std::to_string(d.c) + ", " + std::to_string(d.hw) + ")";
}
std::string describe(const LayerNormDesc& d) {
  return "layer_norm (" + std::to_string(d.rows) + ", " + std::to_string(d.cols) + ")";
}
std::string describe(const GroupNormDesc& d) {
  return "group_norm (" + std::to_string(d.n) + ", " + std::to_string(d.c) + ", " + std::to_string(d.hw) + ") groups " +
         std::to_string(d.groups);
}

template <typename T>
class NormFloat : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double, f16, bf16>;
TYPED_TEST_SUITE(NormFloat, FloatTypes);

TYPED_TEST(NormFloat, BatchNormTrainingMatchesReference) {
  using T = TypeParam;
  using P = norm_param_t<T>;
  const double eps = 1e-5, u = precision<T>(), up = precision<P>();
  uint32_t seed = 1;
  for (const BatchNormDesc& d : kBatchShapes) {
    const int64_t count = d.n * d.hw;
    Inputs in = make_inputs(d.n * d.c * d.hw, d.c, seed += 10);
    std::vector<T> x = cast_to<T>(in.x), dy = cast_to<T>(in.dy);
    std::vector<P> w = params<T>(in.w), b = params<T>(in.b);
    Reference ref = reference(batch_norm_groups(d), to_double(x), to_double(w), to_double(b), to_double(dy), eps);
    std::vector<P> mean(d.c), var(d.c), invstd(d.c), sum_dy(d.c), sum_dy_xmu(d.c);
    std::vector<T> y(x.size()), dx(x.size());
    cpu::batch_norm_stats(mean.data(), var.data(), x.data(), d, nullptr);
    cpu::batch_norm_finalize<T>(invstd.data(), nullptr, nullptr, mean.data(), var.data(), d.c, count, 0.1, eps,
                                nullptr);
    cpu::batch_norm_elemt(y.data(), x.data(), mean.data(), invstd.data(), w.data(), b.data(), d, nullptr);
    expect_close(mean, ref.mean, {}, up, describe(d) + " mean");
    expect_close(var, ref.var, {}, up, describe(d) + " var");
    // y = x * scale + shift in P: the rounding scales with |x| * invstd.
    std::vector<double> y_scale(x.size());
    for (size_t k = 0; k < x.size(); ++k)
      y_scale[k] =
          std::fabs(ref.y[k]) +
          std::fabs(to_double(x)[k]) * std::min(1 / std::sqrt(eps), 1 / std::sqrt(ref.var[(k / d.hw) % d.c] + eps));
    expect_close(y, ref.y, y_scale, u, describe(d) + " y");

    cpu::batch_norm_backward_reduce(sum_dy.data(), sum_dy_xmu.data(), dy.data(), x.data(), nullptr, mean.data(), d,
                                    nullptr);
    cpu::batch_norm_backward_elemt(dx.data(), dy.data(), x.data(), nullptr, mean.data(), invstd.data(), w.data(),
                                   sum_dy.data(), sum_dy_xmu.data(), count, d, nullptr);
    std::vector<double> dweight(d.c);
    for (int64_t c = 0; c < d.c; ++c) dweight[c] = static_cast<double>(sum_dy_xmu[c]) * static_cast<double>(invstd[c]);
    expect_close(sum_dy, ref.dbias, ref.dbias_scale, up, describe(d) + " sum_dy");
    expect_close(dweight, ref.dweight, ref.dweight_scale, up, describe(d) + " grad_weight");
    expect_close(dx, ref.dx, ref.dx_scale, u, describe(d) + " dx");
  }
}

// The fused training passes give the building blocks' results, bits included: small shapes (which the
// CPU's fused passes hand to the building blocks) and larger ones that go channel by channel.
const BatchNormDesc kFusedShapes[] = {{2, 3, 1}, {4, 5, 7}, {2, 2, 2051}, {2, 4, 5000}, {3, 7, 4099}};

TYPED_TEST(NormFloat, BatchNormFusedPassesEqualTheBuildingBlocks) {
  using T = TypeParam;
  using P = norm_param_t<T>;
  uint32_t seed = 700;
  for (const BatchNormDesc& d : kFusedShapes) {
    const int64_t count = d.n * d.hw;
    Inputs in = make_inputs(d.n * d.c * d.hw, d.c, seed += 10);
    const std::vector<T> x = cast_to<T>(in.x), dy = cast_to<T>(in.dy);
    const std::vector<P> w = params<T>(in.w), b = params<T>(in.b);
    const std::vector<P> running_mean = params<T>(random_values(d.c, seed)),
                         running_var = params<T>(random_values(d.c, seed, 0.5, 2));
    std::vector<P> mean(d.c), var(d.c), invstd(d.c), sum_dy(d.c), sum_dy_xmu(d.c), rm = running_mean, rv = running_var;
    std::vector<T> y(x.size()), dx(x.size());
    cpu::batch_norm_stats(mean.data(), var.data(), x.data(), d, nullptr);
    cpu::batch_norm_finalize<T>(invstd.data(), rm.data(), rv.data(), mean.data(), var.data(), d.c, count, 0.1, 1e-5,
                                nullptr);
    cpu::batch_norm_elemt(y.data(), x.data(), mean.data(), invstd.data(), w.data(), b.data(), d, nullptr);
    cpu::batch_norm_backward_reduce(sum_dy.data(), sum_dy_xmu.data(), dy.data(), x.data(), nullptr, mean.data(), d,
                                    nullptr);
    cpu::batch_norm_backward_elemt(dx.data(), dy.data(), x.data(), nullptr, mean.data(), invstd.data(), w.data(),
                                   sum_dy.data(), sum_dy_xmu.data(), count, d, nullptr);

    std::vector<P> f_mean(d.c), f_invstd(d.c), f_sum_dy(d.c), f_sum_dy_xmu(d.c), f_rm = running_mean,
                                                                                 f_rv = running_var;
    std::vector<T> f_y(x.size()), f_dx(x.size());
    cpu::batch_norm_forward_training(f_y.data(), f_mean.data(), f_invstd.data(), f_rm.data(), f_rv.data(), x.data(),
                                     w.data(), b.data(), d, 0.1, 1e-5, nullptr);
    cpu::batch_norm_backward_training(f_dx.data(), f_sum_dy.data(), f_sum_dy_xmu.data(), dy.data(), x.data(), nullptr,
                                      f_mean.data(), f_invstd.data(), w.data(), d, nullptr);
    const std::string what = describe(d);
    EXPECT_EQ(to_double(f_y), to_double(y)) << what;
    EXPECT_EQ(f_mean, mean) << what;
    EXPECT_EQ(f_invstd, invstd) << what;
    EXPECT_EQ(f_rm, rm) << what;
    EXPECT_EQ(f_rv, rv) << what;
    EXPECT_EQ(f_sum_dy, sum_dy) << what;
    EXPECT_EQ(f_sum_dy_xmu, sum_dy_xmu) << what;
    EXPECT_EQ(to_double(f_dx), to_double(dx)) << what;
    // Without dx (the input needs no gradient): the sums alone.
    std::fill(f_sum_dy.begin(), f_sum_dy.end(), P(0));
    cpu::batch_norm_backward_training<T>(nullptr, f_sum_dy.data(), f_sum_dy_xmu.data(), dy.data(), x.data(), nullptr,
                                         f_mean.data(), f_invstd.data(), w.data(), d, nullptr);
    EXPECT_EQ(f_sum_dy, sum_dy) << what << " without dx";
  }
}

// A fused ReLU (desc.relu) gives the bits of the plain kernels followed by the ReLU and its backward, in the
// fused passes and the building blocks, for every shape (tails of the f32 vector loops included).
TYPED_TEST(NormFloat, BatchNormFusedReluIsTheKernelsThenTheRelu) {
  using T = TypeParam;
  using P = norm_param_t<T>;
  uint32_t seed = 900;
  for (BatchNormDesc d : kFusedShapes) {
    const int64_t count = d.n * d.hw;
    Inputs in = make_inputs(d.n * d.c * d.hw, d.c, seed += 10);
    const std::vector<T> x = cast_to<T>(in.x), dy = cast_to<T>(in.dy);
    const std::vector<P> w = params<T>(in.w), b = params<T>(in.b);
    std::vector<P> mean(d.c), invstd(d.c), sum_dy(d.c), sum_dy_xmu(d.c);
    std::vector<T> y(x.size()), dx(x.size()), g(x.size());
    d.relu = false;
    cpu::batch_norm_forward_training<T>(y.data(), mean.data(), invstd.data(), nullptr, nullptr, x.data(), w.data(),
                                        b.data(), d, 0.1, 1e-5, nullptr);
    for (size_t k = 0; k < y.size(); ++k) {
      if (static_cast<double>(y[k]) < 0) y[k] = static_cast<T>(0.0f);       // relu: x < 0 ? 0 : x
      g[k] = static_cast<double>(y[k]) > 0 ? dy[k] : static_cast<T>(0.0f);  // its backward
    }
    cpu::batch_norm_backward_training<T>(dx.data(), sum_dy.data(), sum_dy_xmu.data(), g.data(), x.data(), nullptr,
                                         mean.data(), invstd.data(), w.data(), d, nullptr);

    d.relu = true;
    std::vector<P> f_mean(d.c), f_invstd(d.c), f_sum_dy(d.c), f_sum_dy_xmu(d.c);
    std::vector<T> f_y(x.size()), f_dx(x.size()), e_y(x.size()), e_dx(x.size());
    cpu::batch_norm_forward_training<T>(f_y.data(), f_mean.data(), f_invstd.data(), nullptr, nullptr, x.data(),
                                        w.data(), b.data(), d, 0.1, 1e-5, nullptr);
    cpu::batch_norm_backward_training<T>(f_dx.data(), f_sum_dy.data(), f_sum_dy_xmu.data(), dy.data(), x.data(),
                                         f_y.data(), f_mean.data(), f_invstd.data(), w.data(), d, nullptr);
    const std::string what = describe(d);
    EXPECT_EQ(test::bits_of(f_y), test::bits_of(y)) << what;
    EXPECT_EQ(f_sum_dy, sum_dy) << what;
    EXPECT_EQ(f_sum_dy_xmu, sum_dy_xmu) << what;
    EXPECT_EQ(test::bits_of(f_dx), test::bits_of(dx)) << what;
    // The building blocks: elemt, then the sums and dx from the ReLU's output.
    cpu::batch_norm_elemt<T>(e_y.data(), x.data(), f_mean.data(), f_invstd.data(), w.data(), b.data(), d, nullptr);
    EXPECT_EQ(test::bits_of(e_y), test::bits_of(y)) << what << " elemt";
    cpu::batch_norm_backward_reduce<T>(f_sum_dy.data(), f_sum_dy_xmu.data(), dy.data(), x.data(), e_y.data(),
                                       f_mean.data(), d, nullptr);
    cpu::batch_norm_backward_elemt<T>(e_dx.data(), dy.data(), x.data(), e_y.data(), f_mean.data(), f_invstd.data(),
                                      w.data(), f_sum_dy.data(), f_sum_dy_xmu.data(), count, d, nullptr);
    EXPECT_EQ(f_sum_dy, sum_dy) << what << " building blocks";
    EXPECT_EQ(test::bits_of(e_dx), test::bits_of(dx)) << what << " building blocks";
  }
}

TYPED_TEST(NormFloat, LayerNormMatchesReference) {
  using T = TypeParam;
  using P = norm_param_t<T>;
  const double eps = 1e-5, u = precision<T>(), up = precision<P>();
  uint32_t seed = 500;
  for (const LayerNormDesc& d : kLayerShapes) {
    Inputs in = make_inputs(d.rows * d.cols, d.cols, seed += 10);
    std::vector<T> x = cast_to<T>(in.x), dy = cast_to<T>(in.dy), y(x.size()), dx(x.size());
    std::vector<P> w = params<T>(in.w), b = params<T>(in.b), mean(d.rows), invstd(d.rows), dw(d.cols), db(d.cols);
    Reference ref = reference(layer_norm_groups(d), to_double(x), to_double(w), to_double(b), to_double(dy), eps);
    cpu::layer_norm_forward(y.data(), mean.data(), invstd.data(), x.data(), w.data(), b.data(), d, eps, nullptr);
    cpu::layer_norm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(), invstd.data(), w.data(),
                             d, nullptr);
    expect_close(mean, ref.mean, {}, up, describe(d) + " mean");
    expect_close(y, ref.y, {}, u, describe(d) + " y");
    expect_close(dx, ref.dx, ref.dx_scale, u, describe(d) + " dx");
    expect_close(dw, ref.dweight, ref.dweight_scale, up, describe(d) + " grad_weight");
    expect_close(db, ref.dbias, ref.dbias_scale, up, describe(d) + " grad_bias");
  }
}

TYPED_TEST(NormFloat, GroupNormMatchesReference) {
  using T = TypeParam;
  using P = norm_param_t<T>;
  const double eps = 1e-5, u = precision<T>(), up = precision<P>();
  uint32_t seed = 900;
  for (const GroupNormDesc& d : kGroupShapes) {
    Inputs in = make_inputs(d.n * d.c * d.hw, d.c, seed += 10);
    std::vector<T> x = cast_to<T>(in.x), dy = cast_to<T>(in.dy), y(x.size()), dx(x.size());
    std::vector<P> w = params<T>(in.w), b = params<T>(in.b), mean(d.n * d.groups), invstd(d.n * d.groups), dw(d.c),
                   db(d.c);
    Reference ref = reference(group_norm_groups(d), to_double(x), to_double(w), to_double(b), to_double(dy), eps);
    cpu::group_norm_forward(y.data(), mean.data(), invstd.data(), x.data(), w.data(), b.data(), d, eps, nullptr);
    cpu::group_norm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(), invstd.data(), w.data(),
                             d, nullptr);
    expect_close(mean, ref.mean, {}, up, describe(d) + " mean");
    expect_close(y, ref.y, {}, u, describe(d) + " y");
    expect_close(dx, ref.dx, ref.dx_scale, u, describe(d) + " dx");
    expect_close(dw, ref.dweight, ref.dweight_scale, up, describe(d) + " grad_weight");
    expect_close(db, ref.dbias, ref.dbias_scale, up, describe(d) + " grad_bias");
  }
}

// GroupNorm's backward sums each (row, parameter) run in its row's task and the rows of a parameter in
// sample order: dx and the parameter gradients are the same bits with one thread as with several (rows
// large enough to be split between threads; with and without dx).
TEST(GroupNorm, BackwardDoesNotDependOnTheThreadCount) {
  const GroupNormDesc d{3, 24, 700, 4};
  Inputs in = make_inputs(d.n * d.c * d.hw, d.c, 77);
  const std::vector<float> x = cast_to<float>(in.x), dy = cast_to<float>(in.dy), w = cast_to<float>(in.w),
                           b = cast_to<float>(in.b);
  std::vector<float> y(x.size()), mean(d.n * d.groups), invstd(d.n * d.groups);
  cpu::group_norm_forward(y.data(), mean.data(), invstd.data(), x.data(), w.data(), b.data(), d, 1e-5, nullptr);
  auto backward = [&](int threads, bool with_dx) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    std::vector<float> dx(with_dx ? x.size() : 0), dw(d.c), db(d.c);
    cpu::group_norm_backward(with_dx ? dx.data() : nullptr, dw.data(), db.data(), dy.data(), x.data(), mean.data(),
                             invstd.data(), w.data(), d, nullptr);
    omp_set_num_threads(saved);
    return std::vector<std::vector<float>>{dx, dw, db};
  };
  const auto one = backward(1, true);
  EXPECT_EQ(one, backward(3, true));
  const auto without_dx = backward(3, false);
  EXPECT_EQ(one[1], without_dx[1]);
  EXPECT_EQ(one[2], without_dx[2]);
}

// Values around a large mean (1e3 .. 1e4 for f32/f64, 1e3 for 16-bit data) with a small spread: a sum of
// squares minus the squared mean would cancel almost every digit of the variance. Checked relative to
// the mean and the variance themselves, with bounds the former per-element Welford update missed by
// 5-25x for f64 data (1.3e-10 on the variance: its running mean carries the rounding error of a large
// number into every deviation) and for 16-bit data (float accumulators: 5e-6 on the mean, 1e-4 on the
// variance). For f32 data the rounding of the result dominates.
template <typename T>
class NormLargeMean : public ::testing::Test {};
TYPED_TEST_SUITE(NormLargeMean, FloatTypes);

TYPED_TEST(NormLargeMean, VarianceKeepsItsDigits) {
  using T = TypeParam;
  using P = norm_param_t<T>;
  constexpr bool kHalf = sizeof(T) == 2;
  const double mean_tolerance = std::is_same_v<T, double> ? 1e-14 : kHalf ? 1e-7 : 16 * test::unit_roundoff<P>();
  const double var_tolerance = std::is_same_v<T, double> ? 2e-11 : kHalf ? 4e-6 : 16 * test::unit_roundoff<P>();
  const double spread = std::is_same_v<T, f16> ? 2 : std::is_same_v<T, bf16> ? 16 : 0.01;  // distinct values in T
  const int64_t n = 2, c = 2, hw = 5003;  // chunks of 2048, 2048 and 907 values: lane tails too
  std::vector<double> values = random_values(n * c * hw, 7, -spread, spread);
  for (int64_t i = 0; i < n * c * hw; ++i) values[i] += (i / hw % c == 0 || kHalf) ? 1e3 : 1e4;
  std::vector<T> x = cast_to<T>(values);
  const std::vector<double> xd = to_double(x);
  // Per group of indices: the exact-enough two-pass mean and biased variance in double.
  auto expect_stats = [&](const std::vector<std::vector<int64_t>>& groups, const std::vector<P>& mean,
                          const std::vector<P>& var, const std::string& what) {
    for (size_t g = 0; g < groups.size(); ++g) {
      double m = 0, v = 0;
      for (int64_t i : groups[g]) m += xd[i];
      m /= static_cast<double>(groups[g].size());
      for (int64_t i : groups[g]) v += (xd[i] - m) * (xd[i] - m);
      v /= static_cast<double>(groups[g].size());
      EXPECT_NEAR(mean[g], m, mean_tolerance * m) << what << " mean of group " << g;
      EXPECT_NEAR(var[g], v, var_tolerance * v) << what << " variance of group " << g;
    }
  };
  const BatchNormDesc bn{n, c, hw};
  std::vector<P> mean(c), var(c);
  cpu::batch_norm_stats(mean.data(), var.data(), x.data(), bn, nullptr);
  expect_stats(batch_norm_groups(bn).members, mean, var, "batch_norm");
  // LayerNorm and GroupNorm return invstd = 1 / sqrt(var + eps); with eps 0 the variance is 1 / invstd^2.
  auto variance_of = [](const std::vector<P>& invstd) {
    std::vector<P> v;
    for (P inv : invstd) v.push_back(static_cast<P>(1 / (static_cast<double>(inv) * inv)));
    return v;
  };
  const LayerNormDesc ln{n * c, hw};
  std::vector<T> y(x.size());
  std::vector<P> row_mean(ln.rows), row_invstd(ln.rows);
  cpu::layer_norm_forward<T>(y.data(), row_mean.data(), row_invstd.data(), x.data(), nullptr, nullptr, ln, 0.0,
                             nullptr);
  expect_stats(layer_norm_groups(ln).members, row_mean, variance_of(row_invstd), "layer_norm");
  const GroupNormDesc gn{n * c, 1, hw, 1};
  std::vector<P> group_mean(n * c), group_invstd(n * c);
  cpu::group_norm_forward<T>(y.data(), group_mean.data(), group_invstd.data(), x.data(), nullptr, nullptr, gn, 0.0,
                             nullptr);
  expect_stats(group_norm_groups(gn).members, group_mean, variance_of(group_invstd), "group_norm");
}

TEST(BatchNorm, RunningStatsMoveTowardsTheUnbiasedBatchVariance) {
  // Channel 0: {1, 3, 5, 7}: mean 4, biased var 5, unbiased 20/3. Channel 1: {2, 2, 2, 2}.
  const BatchNormDesc d{2, 2, 2};
  std::vector<float> x = {1, 3, 2, 2, /* */ 5, 7, 2, 2};
  std::vector<float> mean(2), var(2), invstd(2), running_mean = {1, 0}, running_var = {2, 1};
  cpu::batch_norm_stats(mean.data(), var.data(), x.data(), d, nullptr);
  cpu::batch_norm_finalize<float>(invstd.data(), running_mean.data(), running_var.data(), mean.data(), var.data(), 2, 4,
                                  0.1, 1e-5, nullptr);
  EXPECT_FLOAT_EQ(mean[0], 4);
  EXPECT_FLOAT_EQ(var[0], 5);
  EXPECT_FLOAT_EQ(var[1], 0);
  EXPECT_FLOAT_EQ(invstd[0], 1 / std::sqrt(5 + 1e-5f));
  EXPECT_FLOAT_EQ(running_mean[0], 0.9f * 1 + 0.1f * 4);
  EXPECT_FLOAT_EQ(running_var[0], 0.9f * 2 + 0.1f * 20 / 3.0f);
  EXPECT_FLOAT_EQ(running_mean[1], 0.1f * 2);
  EXPECT_FLOAT_EQ(running_var[1], 0.9f);
}

TEST(BatchNorm, EvalUsesGivenStatisticsAndTheirGradientIsConstant) {
  const BatchNormDesc d{2, 3, 2};
  std::vector<double> x = random_values(12, 3), dy = random_values(12, 4);
  std::vector<double> running_mean = {0.5, -1, 2}, running_var = {1, 4, 0.25}, w = {1, 2, 3}, b = {0, 1, -1};
  std::vector<double> invstd(3), y(12), dx(12);
  for (int c = 0; c < 3; ++c) invstd[c] = 1 / std::sqrt(running_var[c] + 1e-5);
  cpu::batch_norm_elemt(y.data(), x.data(), running_mean.data(), invstd.data(), w.data(), b.data(), d, nullptr);
  cpu::batch_norm_backward_elemt(dx.data(), dy.data(), x.data(), nullptr, running_mean.data(), invstd.data(), w.data(),
                                 nullptr, nullptr, 4, d, nullptr);
  for (int64_t k = 0; k < 12; ++k) {
    const int64_t c = (k / 2) % 3;
    EXPECT_NEAR(y[k], (x[k] - running_mean[c]) * invstd[c] * w[c] + b[c], 1e-12) << k;
    EXPECT_NEAR(dx[k], dy[k] * w[c] * invstd[c], 1e-12) << k;
  }
}

TEST(BatchNorm, OneValuePerChannelNormalisesToTheBias) {
  // N * HW == 1: variance 0, so y = bias (the engine refuses this in training, as PyTorch does).
  const BatchNormDesc d{1, 3, 1};
  std::vector<float> x = {1, -2, 3}, w = {2, 2, 2}, b = {0.5f, -1, 0}, mean(3), var(3), invstd(3), y(3);
  cpu::batch_norm_stats(mean.data(), var.data(), x.data(), d, nullptr);
  cpu::batch_norm_finalize<float>(invstd.data(), nullptr, nullptr, mean.data(), var.data(), 3, 1, 0.1, 1e-5, nullptr);
  cpu::batch_norm_elemt(y.data(), x.data(), mean.data(), invstd.data(), w.data(), b.data(), d, nullptr);
  EXPECT_EQ(y, b);
  EXPECT_EQ(var, (std::vector<float>{0, 0, 0}));
}

TEST(Norm, WithoutAffineParametersWeightIsOneAndBiasZero) {
  const LayerNormDesc d{2, 4};
  std::vector<float> x = {1, 2, 3, 4, -1, 0, 1, 5}, y(8), y_affine(8), mean(2), invstd(2), w(4, 1.0f), b(4, 0.0f);
  cpu::layer_norm_forward<float>(y.data(), mean.data(), invstd.data(), x.data(), nullptr, nullptr, d, 1e-5, nullptr);
  cpu::layer_norm_forward(y_affine.data(), mean.data(), invstd.data(), x.data(), w.data(), b.data(), d, 1e-5, nullptr);
  EXPECT_EQ(y, y_affine);
}

#ifdef SEGENGINE_HAS_CUDA
template <typename T>
void check_batch_norm_cuda(uint32_t seed) {
  using P = norm_param_t<T>;
  using test::DeviceBuffer;
  const double u = precision<T>(), up = precision<P>();
  for (const BatchNormDesc& d : kBatchShapes) {
    const int64_t count = d.n * d.hw;
    Inputs in = make_inputs(d.n * d.c * d.hw, d.c, seed += 10);
    std::vector<T> x = cast_to<T>(in.x), dy = cast_to<T>(in.dy), y(x.size()), dx(x.size());
    std::vector<P> w = params<T>(in.w), b = params<T>(in.b), mean(d.c), var(d.c), invstd(d.c), sum_dy(d.c),
                   sum_dy_xmu(d.c);
    std::vector<P> running_mean = params<T>(random_values(d.c, seed)),
                   running_var = params<T>(random_values(d.c, seed, 0.5, 2));
    const std::vector<P> running_mean0 = running_mean, running_var0 = running_var;
    DeviceBuffer<T> gx(x), gdy(dy), gy(x.size()), gdx(x.size());
    DeviceBuffer<P> gw(w), gb(b), gmean(d.c), gvar(d.c), ginvstd(d.c), gsum_dy(d.c), gsum_dy_xmu(d.c),
        grm(running_mean), grv(running_var);
    cpu::batch_norm_stats(mean.data(), var.data(), x.data(), d, nullptr);
    cuda::batch_norm_stats(gmean.get(), gvar.get(), gx.get(), d, nullptr);
    cpu::batch_norm_finalize<T>(invstd.data(), running_mean.data(), running_var.data(), mean.data(), var.data(), d.c,
                                count, 0.1, 1e-5, nullptr);
    cuda::batch_norm_finalize<T>(ginvstd.get(), grm.get(), grv.get(), gmean.get(), gvar.get(), d.c, count, 0.1, 1e-5,
                                 nullptr);
    cpu::batch_norm_elemt(y.data(), x.data(), mean.data(), invstd.data(), w.data(), b.data(), d, nullptr);
    cuda::batch_norm_elemt(gy.get(), gx.get(), gmean.get(), ginvstd.get(), gw.get(), gb.get(), d, nullptr);
    cpu::batch_norm_backward_reduce(sum_dy.data(), sum_dy_xmu.data(), dy.data(), x.data(), nullptr, mean.data(), d,
                                    nullptr);
    cuda::batch_norm_backward_reduce(gsum_dy.get(), gsum_dy_xmu.get(), gdy.get(), gx.get(), nullptr, gmean.get(), d,
                                     nullptr);
    cpu::batch_norm_backward_elemt(dx.data(), dy.data(), x.data(), nullptr, mean.data(), invstd.data(), w.data(),
                                   sum_dy.data(), sum_dy_xmu.data(), count, d, nullptr);
    cuda::batch_norm_backward_elemt(gdx.get(), gdy.get(), gx.get(), nullptr, gmean.get(), ginvstd.get(), gw.get(),
                                    gsum_dy.get(), gsum_dy_xmu.get(), count, d, nullptr);
    const double sum_scale = static_cast<double>(count) * 8;  // |dy * (x - mean)| <= 8 here
    expect_close(gmean.to_host(), to_double(mean), {}, up, describe(d) + " mean");
    expect_close(gvar.to_host(), to_double(var), {}, up, describe(d) + " var");
    expect_close(ginvstd.to_host(), to_double(invstd), {}, up, describe(d) + " invstd");
    expect_close(grm.to_host(), to_double(running_mean), {}, up, describe(d) + " running_mean");
    expect_close(grv.to_host(), to_double(running_var), {}, up, describe(d) + " running_var");
    expect_close(gy.to_host(), to_double(y), {}, u, describe(d) + " y");
    expect_close(gsum_dy.to_host(), to_double(sum_dy), std::vector<double>(d.c, sum_scale), up,
                 describe(d) + " sum_dy");
    expect_close(gsum_dy_xmu.to_host(), to_double(sum_dy_xmu), std::vector<double>(d.c, sum_scale), up,
                 describe(d) + " sum_dy_xmu");
    expect_close(gdx.to_host(), to_double(dx), std::vector<double>(dx.size(), 8.0), u, describe(d) + " dx");

    // The fused passes on the device: the device building blocks' bits.
    DeviceBuffer<T> fy(x.size()), fdx(x.size());
    DeviceBuffer<P> fmean(d.c), finvstd(d.c), fsum_dy(d.c), fsum_dy_xmu(d.c), frm(running_mean0), frv(running_var0);
    cuda::batch_norm_forward_training(fy.get(), fmean.get(), finvstd.get(), frm.get(), frv.get(), gx.get(), gw.get(),
                                      gb.get(), d, 0.1, 1e-5, nullptr);
    cuda::batch_norm_backward_training(fdx.get(), fsum_dy.get(), fsum_dy_xmu.get(), gdy.get(), gx.get(), nullptr,
                                       fmean.get(), finvstd.get(), gw.get(), d, nullptr);
    EXPECT_EQ(to_double(fy.to_host()), to_double(gy.to_host())) << describe(d) << " fused y";
    EXPECT_EQ(finvstd.to_host(), ginvstd.to_host()) << describe(d) << " fused invstd";
    EXPECT_EQ(frm.to_host(), grm.to_host()) << describe(d) << " fused running_mean";
    EXPECT_EQ(frv.to_host(), grv.to_host()) << describe(d) << " fused running_var";
    EXPECT_EQ(fsum_dy_xmu.to_host(), gsum_dy_xmu.to_host()) << describe(d) << " fused sum_dy_xmu";
    EXPECT_EQ(to_double(fdx.to_host()), to_double(gdx.to_host())) << describe(d) << " fused dx";
  }
}

// LayerNorm (kGroup false) or GroupNorm, every output of forward and backward, CUDA against CPU.
template <typename T, bool kGroup, typename Desc>
void check_row_norm_cuda(const Desc& d, int64_t rows, int64_t numel, int64_t params_count, uint32_t seed) {
  using P = norm_param_t<T>;
  using test::DeviceBuffer;
  const double u = precision<T>(), up = precision<P>();
  Inputs in = make_inputs(numel, params_count, seed);
  std::vector<T> x = cast_to<T>(in.x), dy = cast_to<T>(in.dy), y(numel), dx(numel);
  std::vector<P> w = params<T>(in.w), b = params<T>(in.b), mean(rows), invstd(rows), dw(params_count), db(params_count);
  DeviceBuffer<T> gx(x), gdy(dy), gy(numel), gdx(numel);
  DeviceBuffer<P> gw(w), gb(b), gmean(rows), ginvstd(rows), gdw(params_count), gdb(params_count);
  if constexpr (kGroup) {
    cpu::group_norm_forward(y.data(), mean.data(), invstd.data(), x.data(), w.data(), b.data(), d, 1e-5, nullptr);
    cpu::group_norm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(), invstd.data(), w.data(),
                             d, nullptr);
    cuda::group_norm_forward(gy.get(), gmean.get(), ginvstd.get(), gx.get(), gw.get(), gb.get(), d, 1e-5, nullptr);
    cuda::group_norm_backward(gdx.get(), gdw.get(), gdb.get(), gdy.get(), gx.get(), gmean.get(), ginvstd.get(),
                              gw.get(), d, nullptr);
  } else {
    cpu::layer_norm_forward(y.data(), mean.data(), invstd.data(), x.data(), w.data(), b.data(), d, 1e-5, nullptr);
    cpu::layer_norm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), mean.data(), invstd.data(), w.data(),
                             d, nullptr);
    cuda::layer_norm_forward(gy.get(), gmean.get(), ginvstd.get(), gx.get(), gw.get(), gb.get(), d, 1e-5, nullptr);
    cuda::layer_norm_backward(gdx.get(), gdw.get(), gdb.get(), gdy.get(), gx.get(), gmean.get(), ginvstd.get(),
                              gw.get(), d, nullptr);
  }
  const double sum_scale = static_cast<double>(numel / params_count) * 8;
  expect_close(gmean.to_host(), to_double(mean), {}, up, describe(d) + " mean");
  expect_close(ginvstd.to_host(), to_double(invstd), {}, up, describe(d) + " invstd");
  expect_close(gy.to_host(), to_double(y), {}, u, describe(d) + " y");
  expect_close(gdx.to_host(), to_double(dx), std::vector<double>(numel, 8.0), u, describe(d) + " dx");
  expect_close(gdw.to_host(), to_double(dw), std::vector<double>(params_count, sum_scale), up,
               describe(d) + " grad_weight");
  expect_close(gdb.to_host(), to_double(db), std::vector<double>(params_count, sum_scale), up,
               describe(d) + " grad_bias");
}

template <typename T>
void check_cuda(uint32_t seed) {
  check_batch_norm_cuda<T>(seed);
  for (const LayerNormDesc& d : kLayerShapes)
    check_row_norm_cuda<T, false>(d, d.rows, d.rows * d.cols, d.cols, seed += 10);
  for (const GroupNormDesc& d : kGroupShapes)
    check_row_norm_cuda<T, true>(d, d.n * d.groups, d.n * d.c * d.hw, d.c, seed += 10);
}

TEST(NormCuda, F32MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda<float>(1);
}
TEST(NormCuda, F64MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda<double>(2);
}
TEST(NormCuda, F16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda<f16>(3);
}
TEST(NormCuda, BF16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda<bf16>(4);
}
#endif

}  // namespace
}  // namespace se::kernels
