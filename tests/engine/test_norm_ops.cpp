// Engine normalization ops: values and running-stat updates, f64 finite-difference gradients on the
// CPU (x, weight and bias), error messages, and CUDA against CPU when a device is present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/gradcheck.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

using testing::expect_error;
using testing::expect_gradients_match;

Tensor random_f64(const Shape& shape) {
  return randn(shape, {DType::f64}).requires_grad_(true);
}

TEST(NormOps, BatchNormTrainingNormalisesAndUpdatesRunningStats) {
  // Channel 0 holds {1, 3, 5, 7}: mean 4, biased var 5, unbiased 20/3.
  Tensor x = from_vector<float>({1, 3, 0, 0, 5, 7, 0, 0}, {2, 2, 2, 1});
  Tensor running_mean = zeros({2}), running_var = ones({2});
  Tensor y = batch_norm(x, running_mean, running_var, Tensor(), Tensor(), true, 0.1, 0.0);
  std::vector<float> v = y.to_vector<float>();
  EXPECT_NEAR(v[0], -3 / std::sqrt(5.0f), 1e-6);
  EXPECT_NEAR(v[5], 3 / std::sqrt(5.0f), 1e-6);
  EXPECT_NEAR(running_mean.to_vector<float>()[0], 0.4f, 1e-6);
  EXPECT_NEAR(running_var.to_vector<float>()[0], 0.9f + 0.1f * 20 / 3, 1e-6);
  EXPECT_NEAR(running_var.to_vector<float>()[1], 0.9f, 1e-6);

  Tensor w = full({2}, 2.0), b = full({2}, 1.0);
  Tensor eval = batch_norm(x, running_mean, running_var, w, b, false, 0.1, 0.0);
  const double rm = 0.4, rv = 0.9 + 0.1 * 20 / 3.0;
  EXPECT_NEAR(eval.to_vector<float>()[1], (3 - rm) / std::sqrt(rv) * 2 + 1, 1e-5);
  EXPECT_NEAR(running_mean.to_vector<float>()[0], 0.4f, 1e-6) << "eval must not update the running stats";
}

TEST(NormOps, LayerNormAndGroupNormValues) {
  Tensor x = from_vector<float>({1, 2, 3, 4, 10, 10, 10, 14}, {2, 4});
  std::vector<float> y = layer_norm(x, {4}, Tensor(), Tensor(), 0.0).to_vector<float>();
  EXPECT_NEAR(y[0], -1.5f / std::sqrt(1.25f), 1e-6);
  EXPECT_NEAR(y[7], 3 / std::sqrt(3.0f), 1e-6);
  // group_norm with one group per channel of a (1, 2, 4) input is layer_norm of each channel.
  std::vector<float> g = group_norm(x.view({1, 2, 4}), 2, Tensor(), Tensor(), 0.0).to_vector<float>();
  for (size_t k = 0; k < y.size(); ++k) EXPECT_NEAR(g[k], y[k], 1e-6) << k;
}

TEST(NormOps, BatchNormGradientsMatchFiniteDifferences) {
  for (bool training : {true, false}) {
    Tensor rm = randn({3}, {DType::f64}), rv = add(rand({3}, {DType::f64}), 0.5);
    expect_gradients_match(
        [&](const std::vector<Tensor>& in) {
          // Fresh copies: training updates the running stats on every call.
          return batch_norm(in[0], rm.clone(), rv.clone(), in[1], in[2], training, 0.1, 1e-5);
        },
        {random_f64({2, 3, 2, 3}), random_f64({3}), random_f64({3})});
  }
  expect_gradients_match(
      [](const std::vector<Tensor>& in) {
        return batch_norm(in[0], Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5);
      },
      {random_f64({4, 2, 3})});
}

TEST(NormOps, LayerNormGradientsMatchFiniteDifferences) {
  expect_gradients_match([](const std::vector<Tensor>& in) { return layer_norm(in[0], {5}, in[1], in[2]); },
                         {random_f64({3, 5}), random_f64({5}), random_f64({5})});
  expect_gradients_match(
      [](const std::vector<Tensor>& in) {
        return layer_norm(in[0], {2, 3}, in[1], in[2]);
      },
      {random_f64({2, 2, 3}), random_f64({2, 3}), random_f64({2, 3})});
  expect_gradients_match([](const std::vector<Tensor>& in) { return layer_norm(in[0], {4}); }, {random_f64({3, 4})});
}

TEST(NormOps, GroupNormGradientsMatchFiniteDifferences) {
  expect_gradients_match([](const std::vector<Tensor>& in) { return group_norm(in[0], 2, in[1], in[2]); },
                         {random_f64({2, 4, 2, 3}), random_f64({4}), random_f64({4})});
  expect_gradients_match([](const std::vector<Tensor>& in) { return group_norm(in[0], 3, in[1], Tensor()); },
                         {random_f64({2, 3, 5}), random_f64({3})});
}

TEST(NormOps, BadArgumentsAreErrors) {
  Tensor x = zeros({2, 3, 4, 4});
  expect_error(
      [&] {
        batch_norm(zeros({1, 3, 1, 1}), Tensor(), Tensor(), Tensor(), Tensor(), true);
      },
      "batch_norm: expected more than 1 value per channel when training, got input of shape (1, 3, 1, 1)");
  expect_error([&] { batch_norm(x, zeros({4}), ones({4}), Tensor(), Tensor(), true); },
               "batch_norm: running_mean has shape (4,), expected (3,)");
  expect_error([&] { batch_norm(x, zeros({3}), Tensor(), Tensor(), Tensor(), true); },
               "give both running_mean and running_var or neither");
  expect_error([&] { batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false); }, "eval mode needs running_mean");
  expect_error([&] { batch_norm(x, Tensor(), Tensor(), zeros({3}, {DType::f64}), Tensor(), true); },
               "batch_norm: weight is f64, expected f32 for a f32 input");
  expect_error(
      [&] {
        batch_norm(zeros({2, 3}, {DType::i32}), Tensor(), Tensor(), Tensor(), Tensor(), true);
      },
      "batch_norm: dtype i32 is not supported");
  expect_error([&] { layer_norm(x, {3}); }, "layer_norm: normalized_shape (3,) does not match the trailing dims");
  expect_error([&] { layer_norm(x, {4}, ones({3})); }, "layer_norm: weight has shape (3,), expected (4,)");
  expect_error([&] { group_norm(x, 2); }, "group_norm: 3 channels cannot be split into 2 groups");
}

// The same bits, element for element (-0 and +0 apart).
void expect_same_bits(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  ASSERT_EQ(a.dtype(), b.dtype()) << what;
  const Tensor ca = a.to(Device::cpu()).contiguous(), cb = b.to(Device::cpu()).contiguous();
  EXPECT_EQ(std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()), 0) << what;
}

// batch_norm's fused ReLU gives the bits of batch_norm then relu: the output, the running stats and the
// gradients of x, weight and bias, in training and eval, for every dtype, on the CPU's two paths (channel
// by channel, and the building blocks when channels are few) and on CUDA when a device is present.
void expect_fused_relu_matches_the_two_ops(Device device) {
  for (DType dtype : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    const DType param = dtype == DType::f64 ? DType::f64 : DType::f32;
    for (const Shape& shape : {Shape{2, 3, 5, 7}, Shape{2, 16, 40, 40}}) {
      const int64_t c = shape[1];
      const Tensor x0 = randn(shape).to(dtype).to(device), dy = randn(shape).to(dtype).to(device);
      const Tensor w0 = randn({c}, {param}).to(device), b0 = randn({c}, {param}).to(device);
      for (bool training : {true, false}) {
        struct Run {
          Tensor y, dx, dw, db, running_mean, running_var;
        };
        auto run = [&](bool fused) {
          Tensor x = x0.detach().requires_grad_(true), w = w0.detach().requires_grad_(true);
          Tensor b = b0.detach().requires_grad_(true);
          Tensor rm = full({c}, 0.25, {param, device}), rv = full({c}, 2.0, {param, device});
          Tensor y = fused ? batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5, true)
                           : relu(batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5));
          y.backward(dy);
          return Run{y.detach(), x.grad(), w.grad(), b.grad(), rm, rv};
        };
        const Run fused = run(true), apart = run(false);
        const std::string what = std::string(dtype_name(dtype)) + " " + shape_str(shape) +
                                 (training ? " training" : " eval") + " on " + device.str() + ": ";
        expect_same_bits(fused.y, apart.y, what + "y");
        expect_same_bits(fused.dx, apart.dx, what + "dx");
        expect_same_bits(fused.dw, apart.dw, what + "dweight");
        expect_same_bits(fused.db, apart.db, what + "dbias");
        expect_same_bits(fused.running_mean, apart.running_mean, what + "running_mean");
        expect_same_bits(fused.running_var, apart.running_var, what + "running_var");
      }
    }
  }
}

TEST(NormOps, BatchNormFusedReluIsBitwiseBatchNormThenRelu) {
  expect_fused_relu_matches_the_two_ops(Device::cpu());
}

#ifdef SEGENGINE_HAS_CUDA
TEST(NormOpsCuda, BatchNormFusedReluIsBitwiseBatchNormThenRelu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  expect_fused_relu_matches_the_two_ops(Device::cuda());
}

// Runs f in f32 on the CPU and on cuda:0 and compares outputs and the gradients of x, weight, bias.
void expect_cuda_matches_cpu(const std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>& f,
                             const Shape& shape, const Shape& param_shape) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  std::vector<Tensor> cpu_in = {randn(shape), randn(param_shape), randn(param_shape)}, cuda_in;
  for (Tensor& t : cpu_in) {
    t.requires_grad_(true);
    cuda_in.push_back(t.detach().to(Device::cuda()).requires_grad_(true));
  }
  Tensor cpu_y = f(cpu_in[0], cpu_in[1], cpu_in[2]), cuda_y = f(cuda_in[0], cuda_in[1], cuda_in[2]);
  Tensor w = randn(cpu_y.shape());
  cpu_y.backward(w);
  cuda_y.backward(w.to(Device::cuda()));
  std::vector<float> a = cpu_y.to_vector<float>(), b = cuda_y.to_vector<float>();
  for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-4 * (1 + std::abs(a[k]))) << "output " << k;
  for (size_t i = 0; i < cpu_in.size(); ++i) {
    a = cpu_in[i].grad().to_vector<float>();
    b = cuda_in[i].grad().to_vector<float>();
    for (size_t k = 0; k < a.size(); ++k)
      EXPECT_NEAR(a[k], b[k], 1e-4 * (1 + std::abs(a[k]))) << "input " << i << " grad " << k;
  }
}

TEST(NormOpsCuda, MatchCpu) {
  for (bool training : {true, false}) {
    expect_cuda_matches_cpu(
        [&](const Tensor& x, const Tensor& w, const Tensor& b) {
          Tensor rm = full({3}, 0.5, {DType::f32, x.device()}), rv = full({3}, 2.0, {DType::f32, x.device()});
          return batch_norm(x, rm, rv, w, b, training);
        },
        {2, 3, 5, 4}, {3});
  }
  expect_cuda_matches_cpu([](const Tensor& x, const Tensor& w, const Tensor& b) { return layer_norm(x, {6}, w, b); },
                          {3, 4, 6}, {6});
  expect_cuda_matches_cpu([](const Tensor& x, const Tensor& w, const Tensor& b) { return group_norm(x, 2, w, b); },
                          {2, 4, 3, 3}, {4});
}

TEST(NormOpsCuda, RunningStatsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Tensor x = randn({3, 2, 4, 5});
  Tensor rm = zeros({2}), rv = ones({2});
  Tensor cuda_rm = rm.to(Device::cuda()), cuda_rv = rv.to(Device::cuda());
  batch_norm(x, rm, rv, Tensor(), Tensor(), true);
  batch_norm(x.to(Device::cuda()), cuda_rm, cuda_rv, Tensor(), Tensor(), true);
  std::vector<float> a = rm.to_vector<float>(), b = cuda_rm.to_vector<float>();
  for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-6) << k;
  a = rv.to_vector<float>(), b = cuda_rv.to_vector<float>();
  for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-6) << k;
}
#endif

}  // namespace
}  // namespace se
