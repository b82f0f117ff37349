// Engine attention: the fused scaled_dot_product_attention against attention_reference (forward and
// gradients), f64 finite-difference gradients on the CPU, errors, and CUDA against CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/gradcheck.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

using testing::expect_error;
using testing::expect_gradients_match;

struct Qkv {
  Tensor q, k, v;
};

Qkv random_qkv(const Shape& q_shape, int64_t lk, const TensorOptions& options) {
  Shape kv_shape = q_shape;
  kv_shape[2] = lk;
  return Qkv{randn(q_shape, options).requires_grad_(true), randn(kv_shape, options).requires_grad_(true),
             randn(kv_shape, options).requires_grad_(true)};
}

void expect_near(const Tensor& got, const Tensor& want, double tol, const char* what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  std::vector<double> a = got.to_vector<double>(), b = want.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tol * (1 + std::abs(b[i]))) << what << " at " << i;
}

// Fused and reference on the same inputs of `device`: outputs and the gradients of sum(out * w).
void expect_fused_matches_reference(const Shape& q_shape, int64_t lk, std::optional<double> scale, DType dtype,
                                    Device device, double tol) {
  Qkv fused = random_qkv(q_shape, lk, {dtype, device});
  Qkv ref{fused.q.detach().clone().requires_grad_(true), fused.k.detach().clone().requires_grad_(true),
          fused.v.detach().clone().requires_grad_(true)};
  Tensor out = scaled_dot_product_attention(fused.q, fused.k, fused.v, scale);
  Tensor want = attention_reference(ref.q, ref.k, ref.v, scale);
  expect_near(out, want, tol, "out");
  Tensor w = randn(out.shape(), {dtype, device});
  out.backward(w);
  want.backward(w);
  expect_near(fused.q.grad(), ref.q.grad(), tol, "grad q");
  expect_near(fused.k.grad(), ref.k.grad(), tol, "grad k");
  expect_near(fused.v.grad(), ref.v.grad(), tol, "grad v");
}

TEST(AttentionOps, GradientsMatchFiniteDifferences) {
  for (auto [q_shape, lk] : {std::pair{Shape{1, 1, 3, 4}, int64_t{5}}, std::pair{Shape{2, 2, 5, 8}, int64_t{3}}}) {
    Qkv in = random_qkv(q_shape, lk, {DType::f64});
    expect_gradients_match([](const std::vector<Tensor>& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); },
                           {in.q, in.k, in.v});
    expect_gradients_match(
        [](const std::vector<Tensor>& x) { return scaled_dot_product_attention(x[0], x[1], x[2], 0.7); },
        {in.q, in.k, in.v});
  }
}

TEST(AttentionOps, FusedMatchesReference) {
  expect_fused_matches_reference({2, 3, 33, 16}, 7, std::nullopt, DType::f64, Device::cpu(), 1e-12);
  expect_fused_matches_reference({1, 2, 7, 32}, 65, std::nullopt, DType::f32, Device::cpu(), 1e-5);
  expect_fused_matches_reference({1, 1, 17, 8}, 17, 0.3, DType::f32, Device::cpu(), 1e-5);
}

TEST(AttentionOps, NonContiguousInputsAndPartialGradients) {
  // (B, L, H, D) storage viewed as (B, H, L, D), as a model's head split produces it.
  Tensor q = randn({2, 5, 3, 8}).transpose(1, 2), k = randn({2, 4, 3, 8}).transpose(1, 2);
  Tensor v = randn({2, 3, 4, 8}).requires_grad_(true);
  Tensor out = scaled_dot_product_attention(q, k, v);
  expect_near(out, attention_reference(q, k, v), 1e-5, "out");
  sum(out).backward();
  EXPECT_EQ(v.grad().shape(), (Shape{2, 3, 4, 8}));
}

TEST(AttentionOps, BadInputsAreErrors) {
  Tensor q = zeros({1, 2, 3, 8});
  expect_error([&] { scaled_dot_product_attention(q, zeros({1, 2, 4, 4}), zeros({1, 2, 4, 4})); }, "do not match");
  expect_error([&] { scaled_dot_product_attention(q, zeros({1, 2, 4, 8}), zeros({1, 2, 5, 8})); }, "do not match");
  expect_error([&] { scaled_dot_product_attention(q, q, zeros({1, 2, 3, 8}, {DType::f64})); }, "different dtypes");
  expect_error([&] { scaled_dot_product_attention(zeros({2, 3, 8}), q, q); }, "4-d");
  expect_error([&] { scaled_dot_product_attention(q, zeros({1, 2, 0, 8}), zeros({1, 2, 0, 8})); }, "lk = 0");
  expect_error(
      [&] {
        scaled_dot_product_attention(zeros({1, 1, 2, 130}), zeros({1, 1, 2, 130}), zeros({1, 1, 2, 130}));
      },
      "head dim 130");
  expect_error(
      [&] {
        scaled_dot_product_attention(zeros({1, 1, 2, 8}, {DType::i32}), zeros({1, 1, 2, 8}, {DType::i32}),
                                     zeros({1, 1, 2, 8}, {DType::i32}));
      },
      "not supported");
}

#ifdef SEGENGINE_HAS_CUDA
TEST(AttentionOpsCuda, FusedMatchesReference) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  expect_fused_matches_reference({1, 2, 33, 16}, 7, std::nullopt, DType::f64, Device::cuda(), 1e-12);
  expect_fused_matches_reference({2, 1, 7, 32}, 33, std::nullopt, DType::f32, Device::cuda(), 1e-5);
}

TEST(AttentionOpsCuda, MatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dtype : {DType::f32, DType::f16}) {
    Qkv cpu = random_qkv({1, 2, 9, 64}, 17, {DType::f32});
    Qkv dev{cpu.q.detach().to(Device::cuda(), dtype).requires_grad_(true),
            cpu.k.detach().to(Device::cuda(), dtype).requires_grad_(true),
            cpu.v.detach().to(Device::cuda(), dtype).requires_grad_(true)};
    Tensor out = scaled_dot_product_attention(cpu.q, cpu.k, cpu.v);
    Tensor dev_out = scaled_dot_product_attention(dev.q, dev.k, dev.v);
    const double tol = dtype == DType::f32 ? 1e-5 : 1e-2;
    expect_near(dev_out.to(Device::cpu(), DType::f32), out, tol, "out");
    Tensor w = randn(out.shape());
    out.backward(w);
    dev_out.backward(w.to(Device::cuda(), dtype));
    expect_near(dev.q.grad().to(Device::cpu(), DType::f32), cpu.q.grad(), tol, "grad q");
    expect_near(dev.k.grad().to(Device::cpu(), DType::f32), cpu.k.grad(), tol, "grad k");
    expect_near(dev.v.grad().to(Device::cpu(), DType::f32), cpu.v.grad(), tol, "grad v");
  }
}
#endif

}  // namespace
}  // namespace se
