// Focal loss kernels: CPU forward (loss, valid mask) and backward against an f64 loop of the formulas in
// kernels/loss.h (gradients by central differences of that loop), for several gamma, with alpha and
// ignore_index, odd class counts and spatial sizes; CUDA against the CPU; bad targets reported.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/loss.h"
#include "tests/kernels/kernel_test_util.h"

namespace se::kernels {
namespace {

struct Case {
  int64_t n, c, s;
  double gamma;
  bool alpha;
};
// The CPU works on blocks of 256 pixels of one sample: the last case spans two blocks per sample.
const std::vector<Case> kCases = {{2, 3, 7, 2.0, false},   {1, 5, 33, 0.5, true}, {3, 2, 1, 0.0, true},
                                  {1, 19, 65, 1.0, false}, {2, 4, 9, 3.5, true},  {2, 3, 300, 2.0, true}};
constexpr int64_t kIgnore = 255;

// -alpha_y (1 - p)^gamma log p of one pixel, in f64 from scratch.
double focal_reference(const std::vector<double>& z, const FocalLossDesc& d, int64_t n, int64_t s, int64_t y,
                       const std::vector<double>& alpha) {
  double max = -INFINITY, sum = 0;
  for (int64_t c = 0; c < d.classes; ++c) max = std::max(max, z[(n * d.classes + c) * d.spatial + s]);
  for (int64_t c = 0; c < d.classes; ++c) sum += std::exp(z[(n * d.classes + c) * d.spatial + s] - max);
  const double log_p = z[(n * d.classes + y) * d.spatial + s] - max - std::log(sum);
  const double a = alpha.empty() ? 1.0 : alpha[y];
  return -a * std::pow(1 - std::exp(log_p), d.gamma) * log_p;
}

struct Inputs {
  std::vector<double> logits, alpha, grad;
  std::vector<int64_t> target;
};

Inputs make_inputs(const FocalLossDesc& d, bool alpha, uint32_t seed) {
  Inputs in;
  in.logits = test::random_values(d.batch * d.classes * d.spatial, seed, -4, 4);
  if (alpha) in.alpha = test::random_values(d.classes, seed + 1, 0.2, 1.5);
  in.grad = test::random_values(d.batch * d.spatial, seed + 2);
  std::mt19937 rng(seed + 3);
  for (int64_t i = 0; i < d.batch * d.spatial; ++i) {
    const int64_t y = static_cast<int64_t>(rng() % (d.classes + 1));
    in.target.push_back(y == d.classes ? kIgnore : y);
  }
  return in;
}

template <typename T>
struct Outputs {
  std::vector<T> loss, valid, grad_logits;
};

template <typename T>
Outputs<T> run_cpu(const FocalLossDesc& d, const Inputs& in, int64_t& bad) {
  const auto logits = test::cast_to<T>(in.logits), alpha = test::cast_to<T>(in.alpha), grad = test::cast_to<T>(in.grad);
  const size_t pixels = in.target.size();
  Outputs<T> out{std::vector<T>(pixels), std::vector<T>(pixels), std::vector<T>(logits.size())};
  std::vector<loss_compute_t<T>> lse(pixels);
  bad = d.ignore_index;
  const T* a = alpha.empty() ? nullptr : alpha.data();
  cpu::focal_loss_forward<T>(out.loss.data(), out.valid.data(), lse.data(), &bad, logits.data(), in.target.data(), a, d,
                             nullptr);
  cpu::focal_loss_backward<T>(out.grad_logits.data(), grad.data(), 1, logits.data(), lse.data(), in.target.data(), a, d,
                              nullptr);
  return out;
}

FocalLossDesc make_desc(const Case& c) {
  FocalLossDesc d;
  d.batch = c.n;
  d.classes = c.c;
  d.spatial = c.s;
  d.ignore_index = kIgnore;
  d.gamma = c.gamma;
  return d;
}

// Loss within loss_tol * (1 + |loss|) of the f64 reference, gradients within grad_tol of its central
// differences.
template <typename T>
void check_cpu(double loss_tol, double grad_tol) {
  uint32_t seed = 1;
  for (const Case& c : kCases) {
    const FocalLossDesc d = make_desc(c);
    Inputs in = make_inputs(d, c.alpha, seed += 7);
    in.logits = test::to_double(test::cast_to<T>(in.logits));  // the reference sees the rounded inputs
    if (!in.alpha.empty()) in.alpha = test::to_double(test::cast_to<T>(in.alpha));
    in.grad = test::to_double(test::cast_to<T>(in.grad));
    int64_t bad = 0;
    const Outputs<T> out = run_cpu<T>(d, in, bad);
    const std::vector<double> loss = test::to_double(out.loss), valid = test::to_double(out.valid),
                              grad_logits = test::to_double(out.grad_logits);
    EXPECT_EQ(bad, kIgnore);
    for (int64_t n = 0; n < d.batch; ++n) {
      for (int64_t s = 0; s < d.spatial; ++s) {
        const int64_t i = n * d.spatial + s, y = in.target[i];
        const std::string where = "gamma " + std::to_string(c.gamma) + " pixel " + std::to_string(i);
        if (y == kIgnore) {
          EXPECT_EQ(loss[i], 0.0) << where;
          EXPECT_EQ(valid[i], 0.0) << where;
          for (int64_t k = 0; k < d.classes; ++k) EXPECT_EQ(grad_logits[(n * d.classes + k) * d.spatial + s], 0.0);
          continue;
        }
        EXPECT_EQ(valid[i], 1.0) << where;
        const double want = focal_reference(in.logits, d, n, s, y, in.alpha);
        EXPECT_NEAR(loss[i], want, loss_tol * (1 + std::abs(want))) << where;
        for (int64_t k = 0; k < d.classes; ++k) {  // central differences of the reference, times grad_loss
          const size_t zi = static_cast<size_t>((n * d.classes + k) * d.spatial + s);
          const double h = 1e-6, saved = in.logits[zi];
          in.logits[zi] = saved + h;
          const double plus = focal_reference(in.logits, d, n, s, y, in.alpha);
          in.logits[zi] = saved - h;
          const double minus = focal_reference(in.logits, d, n, s, y, in.alpha);
          in.logits[zi] = saved;
          EXPECT_NEAR(grad_logits[zi], in.grad[i] * (plus - minus) / (2 * h), grad_tol) << where << " class " << k;
        }
      }
    }
  }
}

TEST(FocalLossCpu, F64MatchesReference) {
  check_cpu<double>(1e-13, 1e-7);
}
TEST(FocalLossCpu, F32MatchesReference) {
  check_cpu<float>(2e-6, 2e-6);
}
TEST(FocalLossCpu, BF16MatchesReference) {
  check_cpu<bf16>(2e-2, 2e-2);
}

TEST(FocalLossCpu, NearCertainPixelsStayFinite) {  // p == 1 in f32: (1 - p)^(gamma - 1) must not make inf * 0
  FocalLossDesc d;
  d.classes = 2;
  d.gamma = 0.5;
  const std::vector<float> logits = {60.0f, -60.0f}, grad = {1.0f};
  const std::vector<int64_t> target = {0};
  float loss = 0, valid = 0, g[2];
  float lse = 0;
  int64_t bad = d.ignore_index;
  cpu::focal_loss_forward<float>(&loss, &valid, &lse, &bad, logits.data(), target.data(), nullptr, d, nullptr);
  cpu::focal_loss_backward<float>(g, grad.data(), 1, logits.data(), &lse, target.data(), nullptr, d, nullptr);
  EXPECT_EQ(loss, 0.0f);
  EXPECT_TRUE(std::isfinite(g[0]) && std::isfinite(g[1]));
  EXPECT_NEAR(g[0], 0.0f, 1e-12f);
}

// Confident pixels, 1 - p from 3e-7 to 2e-6, keep their relative accuracy given log p = z_y - lse (which
// carries lse's rounding), for gamma on both the product path (1, 2) and the pow path (0.5, 3.5), loss and
// gradient. The target class's gradient holds 1 - p_y computed as such, so it gets a looser bound.
TEST(FocalLossCpu, ConfidentPixelsKeepRelativeAccuracy) {
  constexpr int64_t kPixels = 64;
  std::vector<float> logits(3 * kPixels, -17.0f);  // (3, S): class 0 wins by 13 to 15 over class 1
  for (int64_t s = 0; s < kPixels; ++s) logits[s] = 0.0f, logits[kPixels + s] = -13.0f - 2.0f * s / kPixels;
  const std::vector<int64_t> target(kPixels, 0);
  const std::vector<float> grad = {1.0f};
  for (const double gamma : {0.5, 1.0, 2.0, 3.5}) {
    FocalLossDesc d;
    d.classes = 3;
    d.spatial = kPixels;
    d.gamma = gamma;
    std::vector<float> loss(kPixels), valid(kPixels), lse(kPixels), g(3 * kPixels);
    int64_t bad = d.ignore_index;
    cpu::focal_loss_forward<float>(loss.data(), valid.data(), lse.data(), &bad, logits.data(), target.data(), nullptr,
                                   d, nullptr);
    cpu::focal_loss_backward<float>(g.data(), grad.data(), 0, logits.data(), lse.data(), target.data(), nullptr, d,
                                    nullptr);
    for (int64_t s = 0; s < kPixels; ++s) {
      const double log_p = -static_cast<double>(lse[s]), p = std::exp(log_p), one_minus_p = -std::expm1(log_p);
      ASSERT_LT(one_minus_p, 3e-6);
      ASSERT_GT(one_minus_p, 1e-7);
      const double want_loss = -std::pow(one_minus_p, gamma) * log_p;
      EXPECT_NEAR(loss[s], want_loss, 1e-5 * want_loss) << "gamma " << gamma << " pixel " << s;
      const double factor = gamma * std::pow(one_minus_p, gamma - 1) * p * log_p - std::pow(one_minus_p, gamma);
      for (int64_t c = 0; c < 3; ++c) {
        const double p_c = std::exp(logits[c * kPixels + s] - static_cast<double>(lse[s]));
        const double want = factor * ((c == 0 ? 1.0 : 0.0) - p_c);
        EXPECT_NEAR(g[c * kPixels + s], want, (c == 0 ? 0.2 : 1e-4) * std::abs(want))
            << "gamma " << gamma << " pixel " << s << " class " << c;
      }
    }
  }
}

TEST(FocalLossCpu, ReportsBadTargets) {
  FocalLossDesc d;
  d.classes = 3;
  d.spatial = 2;
  d.ignore_index = -1;
  const std::vector<float> logits(6, 0.0f);
  const std::vector<int64_t> target = {1, 7};
  std::vector<float> loss(2), valid(2), lse(2);
  int64_t bad = d.ignore_index;
  cpu::focal_loss_forward<float>(loss.data(), valid.data(), lse.data(), &bad, logits.data(), target.data(), nullptr, d,
                                 nullptr);
  EXPECT_EQ(bad, 7);
  EXPECT_EQ(valid[1], 0.0f);
}

#ifdef SEGENGINE_HAS_CUDA
template <typename T>
Outputs<T> run_cuda(const FocalLossDesc& d, const Inputs& in) {
  const size_t pixels = in.target.size();
  test::DeviceBuffer<T> logits(test::cast_to<T>(in.logits)), grad(test::cast_to<T>(in.grad));
  test::DeviceBuffer<T> alpha(in.alpha.empty() ? std::vector<T>(1) : test::cast_to<T>(in.alpha));
  test::DeviceBuffer<int64_t> target(in.target), bad(std::vector<int64_t>{d.ignore_index});
  test::DeviceBuffer<T> loss(pixels), valid(pixels), grad_logits(in.logits.size());
  test::DeviceBuffer<loss_compute_t<T>> lse(pixels);
  const T* a = in.alpha.empty() ? nullptr : alpha.get();
  cuda::focal_loss_forward<T>(loss.get(), valid.get(), lse.get(), bad.get(), logits.get(), target.get(), a, d, nullptr);
  cuda::focal_loss_backward<T>(grad_logits.get(), grad.get(), 1, logits.get(), lse.get(), target.get(), a, d, nullptr);
  EXPECT_EQ(bad.to_host()[0], d.ignore_index);
  return {loss.to_host(), valid.to_host(), grad_logits.to_host()};
}

template <typename T>
void expect_cuda_matches_cpu(double tol) {
  uint32_t seed = 100;
  for (const Case& c : kCases) {
    const FocalLossDesc d = make_desc(c);
    const Inputs in = make_inputs(d, c.alpha, seed += 7);
    int64_t bad = 0;
    const Outputs<T> want = run_cpu<T>(d, in, bad), got = run_cuda<T>(d, in);
    auto close = [&](const std::vector<T>& a, const std::vector<T>& b, const char* what) {
      const std::vector<double> x = test::to_double(a), y = test::to_double(b);
      for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], y[i], tol * (1 + std::abs(y[i]))) << what << " " << i;
    };
    close(got.loss, want.loss, "loss");
    close(got.valid, want.valid, "valid");
    close(got.grad_logits, want.grad_logits, "grad");
  }
}

TEST(FocalLossCuda, F32MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  expect_cuda_matches_cpu<float>(2e-6);
}
TEST(FocalLossCuda, F64MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  expect_cuda_matches_cpu<double>(1e-13);
}
TEST(FocalLossCuda, Bf16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  expect_cuda_matches_cpu<bf16>(1.01 / 128);  // one bf16 rounding of the same f32 value, at most an ulp apart
}
#endif

}  // namespace
}  // namespace se::kernels
