// kernels/loss.h: cross-entropy on the CPU against a double-precision reference written from PyTorch's
// F.cross_entropy formulas (weights, label smoothing, ignore_index), gradients against central differences
// of that reference, a hand-computed case, bad targets; binary cross-entropy with logits likewise; CUDA
// against CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/loss.h"

namespace se::kernels {
namespace {

using test::cast_to;
using test::random_values;
using test::to_double;

struct Case {
  CrossEntropyDesc desc;
  bool weighted = false;
};

// The CPU works on blocks of 256 pixels of one sample: the last case spans two blocks per sample.
const Case kCases[] = {
    {{1, 1, 1, -100, 0.0}, false}, {{3, 5, 1, -100, 0.0}, false}, {{2, 4, 7, 255, 0.0}, true},
    {{2, 3, 5, 255, 0.2}, false},  {{1, 7, 33, -100, 0.1}, true}, {{2, 19, 3, 255, 1.0}, true},
    {{2, 3, 260, 255, 0.1}, true},
};

std::string describe(const Case& c) {
  const CrossEntropyDesc& d = c.desc;
  return "(N " + std::to_string(d.batch) + ", C " + std::to_string(d.classes) + ", S " + std::to_string(d.spatial) +
         ", smoothing " + std::to_string(d.label_smoothing) + (c.weighted ? ", weighted)" : ")");
}

// Targets in [0, C) with about one pixel in five set to ignore_index.
std::vector<int64_t> random_targets(const CrossEntropyDesc& d, uint32_t seed) {
  std::vector<double> u = random_values(d.batch * d.spatial, seed, 0, 1.25 * static_cast<double>(d.classes));
  std::vector<int64_t> t(u.size());
  for (size_t i = 0; i < u.size(); ++i) {
    auto v = static_cast<int64_t>(u[i]);
    t[i] = v < d.classes ? v : d.ignore_index;
  }
  return t;
}

// PyTorch's composition: (1 - eps) * nll + eps / C * smooth, per pixel; *weight_out gets w_y.
std::vector<double> reference_loss(const std::vector<double>& x, const std::vector<int64_t>& t,
                                   const std::vector<double>& w, const CrossEntropyDesc& d,
                                   std::vector<double>* weight_out = nullptr) {
  std::vector<double> loss(t.size(), 0.0);
  if (weight_out) weight_out->assign(t.size(), 0.0);
  for (int64_t n = 0; n < d.batch; ++n) {
    for (int64_t s = 0; s < d.spatial; ++s) {
      const int64_t i = n * d.spatial + s, y = t[i];
      if (y == d.ignore_index) continue;
      auto z = [&](int64_t c) { return x[(n * d.classes + c) * d.spatial + s]; };
      double max = -INFINITY, sum = 0;
      for (int64_t c = 0; c < d.classes; ++c) max = std::max(max, z(c));
      for (int64_t c = 0; c < d.classes; ++c) sum += std::exp(z(c) - max);
      const double lse = max + std::log(sum);
      const double w_y = w.empty() ? 1.0 : w[y];
      double smooth = 0;
      for (int64_t c = 0; c < d.classes; ++c) smooth += (w.empty() ? 1.0 : w[c]) * (lse - z(c));
      const double eps = d.label_smoothing;
      loss[i] = (1 - eps) * w_y * (lse - z(y)) + eps / static_cast<double>(d.classes) * smooth;
      if (weight_out) (*weight_out)[i] = w_y;
    }
  }
  return loss;
}

// d sum_i(g_i * loss_i) / d x by central differences of the reference.
std::vector<double> reference_grad(std::vector<double> x, const std::vector<int64_t>& t, const std::vector<double>& w,
                                   const std::vector<double>& g, const CrossEntropyDesc& d) {
  auto objective = [&]() {
    std::vector<double> loss = reference_loss(x, t, w, d);
    double total = 0;
    for (size_t i = 0; i < loss.size(); ++i) total += g[i] * loss[i];
    return total;
  };
  std::vector<double> grad(x.size());
  const double h = 1e-6;
  for (size_t k = 0; k < x.size(); ++k) {
    const double saved = x[k];
    x[k] = saved + h;
    const double plus = objective();
    x[k] = saved - h;
    const double minus = objective();
    x[k] = saved;
    grad[k] = (plus - minus) / (2 * h);
  }
  return grad;
}

template <typename T>
struct CpuRun {
  std::vector<T> loss, pixel_weight, grad;
  std::vector<loss_compute_t<T>> lse;
  int64_t bad_target = 0;
};

// Forward, then backward with per-pixel gradients `g` (stride 1).
template <typename T>
CpuRun<T> run_cpu(const std::vector<T>& x, const std::vector<int64_t>& t, const std::vector<T>& w,
                  const std::vector<T>& g, const CrossEntropyDesc& d) {
  const size_t pixels = t.size();
  CpuRun<T> r{std::vector<T>(pixels), std::vector<T>(pixels), std::vector<T>(x.size()),
              std::vector<loss_compute_t<T>>(pixels), d.ignore_index};
  const T* weight = w.empty() ? nullptr : w.data();
  cpu::cross_entropy_forward<T>(r.loss.data(), r.pixel_weight.data(), r.lse.data(), &r.bad_target, x.data(), t.data(),
                                weight, d, nullptr);
  cpu::cross_entropy_backward<T>(r.grad.data(), g.data(), 1, x.data(), r.lse.data(), t.data(), weight, d, nullptr);
  return r;
}

template <typename T>
void check_cpu(uint32_t seed, double tol) {
  for (const Case& c : kCases) {
    const CrossEntropyDesc& d = c.desc;
    std::vector<T> x = cast_to<T>(random_values(d.batch * d.classes * d.spatial, seed++, -4, 4));
    std::vector<T> w = c.weighted ? cast_to<T>(random_values(d.classes, seed++, 0.25, 2)) : std::vector<T>{};
    std::vector<T> g = cast_to<T>(random_values(d.batch * d.spatial, seed++));
    std::vector<int64_t> t = random_targets(d, seed++);
    CpuRun<T> r = run_cpu(x, t, w, g, d);
    EXPECT_EQ(r.bad_target, d.ignore_index) << describe(c);
    std::vector<double> ref_weight;
    std::vector<double> ref = reference_loss(to_double(x), t, to_double(w), d, &ref_weight);
    std::vector<double> loss = to_double(r.loss), weight = to_double(r.pixel_weight);
    for (size_t i = 0; i < ref.size(); ++i) {
      ASSERT_NEAR(loss[i], ref[i], tol * (1 + std::fabs(ref[i]))) << "loss " << describe(c) << " at " << i;
      ASSERT_EQ(weight[i], ref_weight[i]) << "pixel weight " << describe(c) << " at " << i;
    }
    std::vector<double> ref_grad = reference_grad(to_double(x), t, to_double(w), to_double(g), d);
    std::vector<double> grad = to_double(r.grad);
    for (size_t k = 0; k < ref_grad.size(); ++k) {
      ASSERT_NEAR(grad[k], ref_grad[k], std::max(tol, 1e-8) * 4) << "grad " << describe(c) << " at " << k;
    }
  }
}

TEST(CrossEntropy, F64MatchesReference) {
  check_cpu<double>(1, 1e-12);
}
TEST(CrossEntropy, F32MatchesReference) {
  check_cpu<float>(100, 2e-6);
}
TEST(CrossEntropy, F16MatchesReference) {
  check_cpu<f16>(200, 4e-3);
}
TEST(CrossEntropy, BF16MatchesReference) {
  check_cpu<bf16>(300, 3e-2);
}

// Written out by hand from PyTorch's formulas: logits (3, 3) rows [1, 2, 3], [0, 0, 0], [5, -5, 0], targets
// [2, 0, ignore], weight [1, 2, 3], label_smoothing 0.1.
TEST(CrossEntropy, HandComputedWeightedSmoothedIgnored) {
  const CrossEntropyDesc d{3, 3, 1, -100, 0.1};
  std::vector<double> x = {1, 2, 3, 0, 0, 0, 5, -5, 0}, w = {1, 2, 3}, g = {1, 1, 1};
  std::vector<int64_t> t = {2, 0, -100};
  CpuRun<double> r = run_cpu(x, t, w, g, d);
  const double lse_a = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)), lse_b = std::log(3.0);
  // nll = w_y * (lse - z_y); smooth = sum_c w_c * (lse - z_c)
  const double nll_a = 3 * (lse_a - 3), nll_b = 1 * lse_b;
  const double smooth_a = 1 * (lse_a - 1) + 2 * (lse_a - 2) + 3 * (lse_a - 3), smooth_b = 6 * lse_b;
  EXPECT_NEAR(r.loss[0], 0.9 * nll_a + 0.1 / 3 * smooth_a, 1e-14);
  EXPECT_NEAR(r.loss[1], 0.9 * nll_b + 0.1 / 3 * smooth_b, 1e-14);
  EXPECT_EQ(r.loss[2], 0.0);
  EXPECT_EQ(r.pixel_weight, (std::vector<double>{3, 1, 0}));
  // PyTorch's mean: 0.9 * sum(nll) / sum(w_y) + 0.1 / 3 * sum(smooth) / sum(w_y), sum(w_y) = 4.
  const double mean = (r.loss[0] + r.loss[1]) / (r.pixel_weight[0] + r.pixel_weight[1]);
  EXPECT_NEAR(mean, 0.9 * (nll_a + nll_b) / 4 + 0.1 / 3 * (smooth_a + smooth_b) / 4, 1e-14);
  EXPECT_NEAR(mean, 0.630966036939237, 1e-12);
  // Gradient of pixel b (uniform softmax 1/3): softmax_c * sum_k q_k - q_c,
  // q = 0.9 * [1, 0, 0] + 0.1 / 3 * w.
  const double q_total = 0.9 + 0.1 / 3 * 6;
  const double q[3] = {0.9 + 0.1 / 3, 0.2 / 3, 0.1};
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(r.grad[3 + c], q_total / 3 - q[c], 1e-14) << c;
  for (int c = 0; c < 3; ++c) EXPECT_EQ(r.grad[6 + c], 0.0) << "ignored pixel";
}

TEST(CrossEntropy, BadTargetIsReportedAndSkipped) {
  const CrossEntropyDesc d{1, 3, 4, 255, 0.0};
  std::vector<float> x(12, 0.5f), g(4, 1.0f);
  std::vector<int64_t> t = {0, 7, 255, 2};
  CpuRun<float> r = run_cpu<float>(x, t, {}, g, d);
  EXPECT_EQ(r.bad_target, 7);
  EXPECT_EQ(r.loss[1], 0.0f);
  EXPECT_NEAR(r.loss[3], std::log(3.0f), 1e-6);
  t[1] = -1;
  EXPECT_EQ(run_cpu<float>(x, t, {}, g, d).bad_target, -1);
}

// No classes: there are no logits to read, every target but ignore_index is bad, all gradients are empty.
TEST(CrossEntropy, NoClassesReadsNoLogits) {
  const CrossEntropyDesc d{1, 0, 3, 255, 0.0};
  const std::vector<int64_t> t = {255, 0, 255};
  CpuRun<float> r = run_cpu<float>({}, t, {}, {1.0f, 1.0f, 1.0f}, d);
  EXPECT_EQ(r.bad_target, 0);
  EXPECT_EQ(r.loss, std::vector<float>(3, 0.0f));
  EXPECT_TRUE(r.grad.empty());
}

// PyTorch's formula: (1 - y) * x + (1 + (p - 1) * y) * log(1 + exp(-x)), in double (|x| <= 30 here).
double reference_bce(double x, double y, double p) {
  return (1 - y) * x + (1 + (p - 1) * y) * std::log1p(std::exp(-x));
}

const BinaryCrossEntropyDesc kBceShapes[] = {{1, 1, 1}, {2, 3, 5}, {3, 1, 7}, {1, 4, 33}};

template <typename T>
void check_bce_cpu(uint32_t seed, double tol) {
  for (const BinaryCrossEntropyDesc& d : kBceShapes) {
    const int64_t count = d.outer * d.channels * d.inner;
    std::vector<T> x = cast_to<T>(random_values(count, seed++, -30, 30));
    std::vector<T> y = cast_to<T>(random_values(count, seed++, 0, 1));
    std::vector<T> p = cast_to<T>(random_values(d.channels, seed++, 0.5, 3));
    std::vector<T> g = cast_to<T>(random_values(count, seed++));
    for (bool weighted : {false, true}) {
      std::vector<T> loss(count), grad(count);
      cpu::binary_cross_entropy_forward<T>(loss.data(), x.data(), y.data(), weighted ? p.data() : nullptr, d, nullptr);
      cpu::binary_cross_entropy_backward<T>(grad.data(), g.data(), 1, x.data(), y.data(), weighted ? p.data() : nullptr,
                                            d, nullptr);
      std::vector<double> xd = to_double(x), yd = to_double(y), pd = to_double(p), gd = to_double(g);
      std::vector<double> got = to_double(loss), got_grad = to_double(grad);
      for (int64_t i = 0; i < count; ++i) {
        const double pw = weighted ? pd[(i / d.inner) % d.channels] : 1.0;
        const double want = reference_bce(xd[i], yd[i], pw);
        ASSERT_NEAR(got[i], want, tol * (1 + std::fabs(want))) << "loss at " << i;
        const double h = 1e-6;
        const double want_grad =
            gd[i] * (reference_bce(xd[i] + h, yd[i], pw) - reference_bce(xd[i] - h, yd[i], pw)) / (2 * h);
        ASSERT_NEAR(got_grad[i], want_grad, std::max(tol, 1e-8) * 4) << "grad at " << i;
      }
    }
  }
}

TEST(BinaryCrossEntropy, F64MatchesReference) {
  check_bce_cpu<double>(1, 1e-12);
}
TEST(BinaryCrossEntropy, F32MatchesReference) {
  check_bce_cpu<float>(50, 2e-6);
}
TEST(BinaryCrossEntropy, BF16MatchesReference) {
  check_bce_cpu<bf16>(90, 3e-2);
}

TEST(BinaryCrossEntropy, ExtremeLogitsStayFinite) {
  std::vector<float> x = {-1000, 1000, 0}, y = {1, 0, 0.5f}, loss(3), grad(3), g(3, 1.0f);
  const BinaryCrossEntropyDesc d{3, 1, 1};
  cpu::binary_cross_entropy_forward<float>(loss.data(), x.data(), y.data(), nullptr, d, nullptr);
  cpu::binary_cross_entropy_backward<float>(grad.data(), g.data(), 1, x.data(), y.data(), nullptr, d, nullptr);
  EXPECT_EQ(loss[0], 1000.0f);
  EXPECT_EQ(loss[1], 1000.0f);
  EXPECT_NEAR(loss[2], std::log(2.0f), 1e-7);
  EXPECT_EQ(grad[0], -1.0f);  // sigmoid(x) - y
  EXPECT_EQ(grad[1], 1.0f);
  EXPECT_EQ(grad[2], 0.0f);
}

#ifdef SEGENGINE_HAS_CUDA
template <typename T>
void check_bce_cuda_against_cpu(uint32_t seed, double tol) {
  using test::DeviceBuffer;
  for (const BinaryCrossEntropyDesc& d : kBceShapes) {
    const int64_t count = d.outer * d.channels * d.inner;
    std::vector<T> x = cast_to<T>(random_values(count, seed++, -30, 30));
    std::vector<T> y = cast_to<T>(random_values(count, seed++, 0, 1));
    std::vector<T> p = cast_to<T>(random_values(d.channels, seed++, 0.5, 3));
    std::vector<T> g = cast_to<T>(random_values(count, seed++));
    std::vector<T> loss(count), grad(count);
    cpu::binary_cross_entropy_forward<T>(loss.data(), x.data(), y.data(), p.data(), d, nullptr);
    cpu::binary_cross_entropy_backward<T>(grad.data(), g.data(), 0, x.data(), y.data(), p.data(), d, nullptr);
    DeviceBuffer<T> dx(x), dy(y), dp(p), dg(g), dloss(count), dgrad(count);
    cuda::binary_cross_entropy_forward<T>(dloss.get(), dx.get(), dy.get(), dp.get(), d, nullptr);
    cuda::binary_cross_entropy_backward<T>(dgrad.get(), dg.get(), 0, dx.get(), dy.get(), dp.get(), d, nullptr);
    std::vector<double> a = to_double(loss), b = to_double(dloss.to_host());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(b[i], a[i], tol * (1 + std::fabs(a[i]))) << "loss " << i;
    a = to_double(grad);
    b = to_double(dgrad.to_host());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(b[i], a[i], tol * (1 + std::fabs(a[i]))) << "grad " << i;
  }
}

TEST(BinaryCrossEntropyCuda, MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_bce_cuda_against_cpu<float>(1, 1e-5);
  check_bce_cuda_against_cpu<double>(2, 1e-12);
  check_bce_cuda_against_cpu<f16>(3, 2e-3);
}

template <typename T>
void check_cuda_against_cpu(uint32_t seed, double tol) {
  using test::DeviceBuffer;
  for (const Case& c : kCases) {
    const CrossEntropyDesc& d = c.desc;
    std::vector<T> x = cast_to<T>(random_values(d.batch * d.classes * d.spatial, seed++, -4, 4));
    std::vector<T> w = c.weighted ? cast_to<T>(random_values(d.classes, seed++, 0.25, 2)) : std::vector<T>{};
    std::vector<T> g = cast_to<T>(random_values(d.batch * d.spatial, seed++));
    std::vector<int64_t> t = random_targets(d, seed++);
    CpuRun<T> want = run_cpu(x, t, w, g, d);
    const size_t pixels = t.size();
    DeviceBuffer<T> dx(x), dg(g), dloss(pixels), dweight(pixels), dgrad(x.size()), dscalar(std::vector<T>{g[0]});
    DeviceBuffer<T> dw(w.empty() ? std::vector<T>{T(0.0f)} : w);
    DeviceBuffer<loss_compute_t<T>> dlse(pixels);
    DeviceBuffer<int64_t> dt(t), dbad(std::vector<int64_t>{d.ignore_index});
    T* weight = w.empty() ? nullptr : dw.get();
    cuda::cross_entropy_forward<T>(dloss.get(), dweight.get(), dlse.get(), dbad.get(), dx.get(), dt.get(), weight, d,
                                   nullptr);
    cuda::cross_entropy_backward<T>(dgrad.get(), dg.get(), 1, dx.get(), dlse.get(), dt.get(), weight, d, nullptr);
    EXPECT_EQ(dbad.to_host()[0], d.ignore_index) << describe(c);
    std::vector<double> a = to_double(want.loss), b = to_double(dloss.to_host());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(b[i], a[i], tol * (1 + std::fabs(a[i]))) << describe(c) << i;
    EXPECT_EQ(to_double(dweight.to_host()), to_double(want.pixel_weight)) << describe(c);
    a = to_double(want.grad);
    b = to_double(dgrad.to_host());
    for (size_t k = 0; k < a.size(); ++k) ASSERT_NEAR(b[k], a[k], tol * (1 + std::fabs(a[k]))) << describe(c) << k;
    // One gradient for all pixels (reduction sum or mean): stride 0.
    cuda::cross_entropy_backward<T>(dgrad.get(), dscalar.get(), 0, dx.get(), dlse.get(), dt.get(), weight, d, nullptr);
    std::vector<T> scalar_grad(x.size());
    cpu::cross_entropy_backward<T>(scalar_grad.data(), g.data(), 0, x.data(), want.lse.data(), t.data(),
                                   w.empty() ? nullptr : w.data(), d, nullptr);
    a = to_double(scalar_grad);
    b = to_double(dgrad.to_host());
    for (size_t k = 0; k < a.size(); ++k) ASSERT_NEAR(b[k], a[k], tol * (1 + std::fabs(a[k]))) << describe(c) << k;
  }
}

TEST(CrossEntropyCuda, F32MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<float>(1, 1e-5);
}
TEST(CrossEntropyCuda, F64MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<double>(2, 1e-12);
}
TEST(CrossEntropyCuda, F16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<f16>(3, 2e-3);
}
TEST(CrossEntropyCuda, BF16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<bf16>(4, 1.6e-2);
}

TEST(CrossEntropyCuda, BadTargetSetsTheDeviceFlag) {
  SE_SKIP_WITHOUT_CUDA();
  using test::DeviceBuffer;
  const CrossEntropyDesc d{2, 3, 33, 255, 0.0};
  std::vector<int64_t> t(66, 1);
  t[40] = 3;
  DeviceBuffer<float> dx(std::vector<float>(198, 0.0f)), dloss(66), dweight(66);
  DeviceBuffer<float> dlse(66);
  DeviceBuffer<int64_t> dt(t), dbad(std::vector<int64_t>{255});
  cuda::cross_entropy_forward<float>(dloss.get(), dweight.get(), dlse.get(), dbad.get(), dx.get(), dt.get(), nullptr, d,
                                     nullptr);
  EXPECT_EQ(dbad.to_host()[0], 3);
}
#endif

}  // namespace
}  // namespace se::kernels
