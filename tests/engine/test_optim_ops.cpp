#include <gtest/gtest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

using testing::expect_error;

// Several tensors of awkward sizes, one of them larger than a multi-tensor chunk.
std::vector<Shape> shapes() { return {{3}, {5, 7}, {kernels::kMultiTensorChunk + 17}, {1}}; }

std::vector<Tensor> random_list(Device device, double scale = 1.0) {
  std::vector<Tensor> list;
  for (const Shape& shape : shapes()) list.push_back(mul(randn(shape), scale).to(device));
  return list;
}

std::vector<Tensor> zeros_list(Device device) {
  std::vector<Tensor> list;
  for (const Shape& shape : shapes()) list.push_back(zeros(shape, {.device = device}));
  return list;
}

std::vector<std::vector<double>> to_double(const std::vector<Tensor>& list) {
  std::vector<std::vector<double>> out;
  for (const Tensor& t : list) out.push_back(t.to_vector<double>());
  return out;
}

void expect_close(const std::vector<Tensor>& actual, const std::vector<std::vector<double>>& expected, double tol) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t t = 0; t < actual.size(); ++t) {
    std::vector<double> a = actual[t].to_vector<double>();
    ASSERT_EQ(a.size(), expected[t].size());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_NEAR(a[i], expected[t][i], tol * (1 + std::abs(expected[t][i]))) << "tensor " << t << " element " << i;
    }
  }
}

// Three SGD steps with momentum, Nesterov and weight decay against PyTorch's formulas in double.
void check_sgd(Device device) {
  manual_seed(1);
  std::vector<Tensor> params = random_list(device), bufs = zeros_list(device);
  auto p = to_double(params);
  auto b = to_double(bufs);
  kernels::SgdDesc desc{0.1f, 0.9f, 0.1f, 0.01f, true, true};
  for (int step = 0; step < 3; ++step) {
    std::vector<Tensor> grads = random_list(device);
    auto g = to_double(grads);
    desc.first_step = step == 0;
    sgd_step_(params, grads, bufs, desc);
    for (size_t t = 0; t < p.size(); ++t) {
      for (size_t i = 0; i < p[t].size(); ++i) {
        double d = g[t][i] + 0.01 * p[t][i];
        b[t][i] = step == 0 ? d : 0.9 * b[t][i] + (1 - 0.1) * d;
        d = d + 0.9 * b[t][i];
        p[t][i] -= 0.1 * d;
      }
    }
  }
  expect_close(params, p, 1e-5);
  expect_close(bufs, b, 1e-5);
}

// Three AdamW steps against PyTorch's formulas in double.
void check_adamw(Device device, bool decoupled) {
  manual_seed(2);
  std::vector<Tensor> params = random_list(device), m = zeros_list(device), v = zeros_list(device);
  auto p = to_double(params);
  auto md = to_double(m), vd = to_double(v);
  kernels::AdamDesc desc{1e-2f, 0.9f, 0.999f, 1e-8f, 0.05f, decoupled, 1};
  for (int step = 1; step <= 3; ++step) {
    std::vector<Tensor> grads = random_list(device);
    auto g = to_double(grads);
    desc.step = step;
    adam_step_(params, grads, m, v, desc);
    const double bc1 = 1 - std::pow(0.9, step), bc2 = 1 - std::pow(0.999, step);
    for (size_t t = 0; t < p.size(); ++t) {
      for (size_t i = 0; i < p[t].size(); ++i) {
        double gi = g[t][i];
        if (decoupled) {
          p[t][i] *= 1 - 1e-2 * 0.05;
        } else {
          gi += 0.05 * p[t][i];
        }
        md[t][i] = 0.9 * md[t][i] + 0.1 * gi;
        vd[t][i] = 0.999 * vd[t][i] + 0.001 * gi * gi;
        p[t][i] -= (1e-2 / bc1) * md[t][i] / (std::sqrt(vd[t][i]) / std::sqrt(bc2) + 1e-8);
      }
    }
  }
  expect_close(params, p, 1e-5);
  expect_close(m, md, 1e-5);
  expect_close(v, vd, 1e-4);
}

void check_norm_and_unscale(Device device) {
  std::vector<Tensor> grads = {from_vector<float>({3, 4}, {2}).to(device), full({kernels::kMultiTensorChunk + 1}, 0.5,
                                                                              {.device = device})};
  const double expected = std::sqrt(25.0 + 0.25 * (kernels::kMultiTensorChunk + 1));
  EXPECT_NEAR(global_norm(grads).item(), expected, 1e-5 * expected);
  Tensor found = unscale_and_check_(grads, 0.5);
  EXPECT_EQ(found.item(), 0.0);
  EXPECT_EQ(grads[0].to_vector<float>(), (std::vector<float>{1.5f, 2.0f}));
  EXPECT_EQ(grads[1].to_vector<float>()[kernels::kMultiTensorChunk], 0.25f);
  std::vector<Tensor> bad = {from_vector<float>({1, INFINITY}, {2}).to(device),
                             from_vector<float>({NAN}, {1}).to(device)};
  EXPECT_EQ(unscale_and_check_(bad, 2.0).item(), 1.0);
  EXPECT_EQ(global_norm({}).item(), 0.0);
}

TEST(OptimOps, SgdMatchesPyTorchFormulas) { check_sgd(Device::cpu()); }
TEST(OptimOps, AdamWAndAdamMatchPyTorchFormulas) {
  check_adamw(Device::cpu(), true);
  check_adamw(Device::cpu(), false);
}
TEST(OptimOps, GlobalNormAndUnscale) { check_norm_and_unscale(Device::cpu()); }

TEST(OptimOps, RejectsMismatchedLists) {
  std::vector<Tensor> params = {zeros({2, 3})};
  expect_error([&] { sgd_step_(params, {zeros({3, 2})}, {}, {}); },
               "sgd_step_: tensor 0 of list 1 has shape (3, 2), expected (2, 3)");
  expect_error([&] { sgd_step_(params, {zeros({2, 3}, {DType::f64})}, {}, {}); }, "has dtype f64 (expected f32)");
  expect_error([&] { sgd_step_(params, {zeros({2, 3})}, {}, {0.1f, 0.9f}); }, "needs 1 momentum buffers, got 0");
  expect_error([&] { adam_step_(params, {zeros({2, 3})}, {}, {}, {}); }, "tensor list 2 has 0 tensors, expected 1");
}

TEST(OptimOps, StepsInvalidateSavedCopies) {
  Tensor w = ones({3}, {.requires_grad = true});
  Tensor y = sum(mul(w, w));  // saves w
  sgd_step_({w}, {ones({3})}, {}, {0.1f});
  expect_error([&] { y.backward(); }, "modified in place");
}

TEST(CudaOptimOps, MatchTheFormulas) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  check_sgd(Device::cuda());
  check_adamw(Device::cuda(), true);
  check_norm_and_unscale(Device::cuda());
}

}  // namespace
}  // namespace se
