#include <gtest/gtest.h>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

using testing::expect_error;

TEST(Dropout, DropsTheRightFractionAndScalesTheRest) {
  manual_seed(5);
  Tensor x = ones({100000}, {.requires_grad = true});
  Tensor y = dropout(x, 0.3);
  std::vector<float> v = y.to_vector<float>();
  int64_t dropped = 0;
  for (float e : v) {
    if (e == 0.0f) {
      ++dropped;
    } else {
      ASSERT_FLOAT_EQ(e, 1.0f / 0.7f);
    }
  }
  EXPECT_NEAR(static_cast<double>(dropped) / v.size(), 0.3, 0.01);
  // The gradient is the same mask and scale.
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector<float>(), v);
}

TEST(Dropout, IdentityInEvalModeAndAtZero) {
  Tensor x = randn({4, 5});
  EXPECT_TRUE(dropout(x, 0.5, false).same(x));
  EXPECT_TRUE(dropout(x, 0.0).same(x));
  EXPECT_EQ(dropout(x, 1.0).to_vector<float>(), std::vector<float>(20, 0.0f));
  expect_error([&] { dropout(x, 1.5); }, "dropout: drop probability p = 1.5 is outside [0, 1]");
  expect_error([&] { dropout(zeros({3}, {DType::i32}), 0.5); }, "dropout: dtype i32 is not supported");
}

TEST(Dropout, HalfPrecisionKeepsTheMaskOfF32) {
  manual_seed(9);
  std::vector<float> f32 = dropout(ones({1000}), 0.5).to_vector<float>();
  manual_seed(9);
  std::vector<float> bf16 = dropout(ones({1000}, {DType::bf16}), 0.5).to_vector<float>();
  EXPECT_EQ(f32, bf16);  // 2 is exact in bf16
}

TEST(DropPath, DropsWholeSamples) {
  manual_seed(3);
  Tensor x = ones({2000, 3, 4});
  std::vector<float> v = drop_path(x, 0.25).to_vector<float>();
  int64_t dropped = 0;
  for (int64_t n = 0; n < 2000; ++n) {
    const float first = v[n * 12];
    for (int64_t i = 1; i < 12; ++i) ASSERT_EQ(v[n * 12 + i], first) << "sample " << n;
    if (first == 0.0f) {
      ++dropped;
    } else {
      ASSERT_FLOAT_EQ(first, 1.0f / 0.75f);
    }
  }
  EXPECT_NEAR(dropped / 2000.0, 0.25, 0.03);
  EXPECT_TRUE(drop_path(x, 0.25, false).same(x));
}

TEST(CudaDropout, SameMaskAsTheCpuForTheSameSeed) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Tensor x = randn({3, 1001});
  manual_seed(21);
  std::vector<float> cpu = dropout(x, 0.4).to_vector<float>();
  manual_seed(21);
  Tensor xc = x.to(Device::cuda()).detach().requires_grad_(true);
  Tensor yc = dropout(xc, 0.4);
  EXPECT_EQ(yc.to_vector<float>(), cpu);
  sum(mul(yc, 2.0)).backward();
  std::vector<float> grad = xc.grad().to_vector<float>();
  for (size_t i = 0; i < cpu.size(); ++i) ASSERT_FLOAT_EQ(grad[i], cpu[i] == 0.0f ? 0.0f : 2.0f / 0.6f);
}

}  // namespace
}  // namespace se
