#include <gtest/gtest.h>

#include <cmath>

#include "engine/random.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

TEST(RandomSeeded, SameSeedSameValuesAndTheGlobalGeneratorIsUntouched) {
  manual_seed(7);
  const std::vector<float> expected_global = rand({16}).to_vector<float>();
  manual_seed(7);
  const std::vector<float> a = rand_seeded({1000}, 42).to_vector<float>();
  const std::vector<float> b = rand_seeded({1000}, 42).to_vector<float>();
  EXPECT_EQ(a, b);
  EXPECT_NE(a, rand_seeded({1000}, 43).to_vector<float>());
  EXPECT_EQ(rand({16}).to_vector<float>(), expected_global);  // the seeded calls drew nothing globally
  // The first elements do not depend on the shape asked for.
  EXPECT_EQ(rand_seeded({2, 5}, 42).to_vector<float>(), std::vector<float>(a.begin(), a.begin() + 10));
}

TEST(RandomSeeded, UniformAndNormalHaveTheirMoments) {
  const std::vector<double> u = rand_seeded({20000}, 1, {.dtype = DType::f64}).to_vector<double>();
  const std::vector<double> g = randn_seeded({20000}, 1, {.dtype = DType::f64}).to_vector<double>();
  double u_min = 1, u_max = 0, u_sum = 0, g_sum = 0, g_sq = 0;
  for (double v : u) u_min = std::min(u_min, v), u_max = std::max(u_max, v), u_sum += v;
  for (double v : g) g_sum += v, g_sq += v * v;
  EXPECT_GE(u_min, 0.0);
  EXPECT_LT(u_max, 1.0);
  EXPECT_NEAR(u_sum / 20000, 0.5, 0.01);
  EXPECT_NEAR(g_sum / 20000, 0.0, 0.03);
  EXPECT_NEAR(g_sq / 20000, 1.0, 0.03);
  EXPECT_TRUE(randn_seeded({3}, 1, {.requires_grad = true}).requires_grad());
  testing::expect_error([] { rand_seeded({3}, 1, {.dtype = DType::i32}); }, "rand_seeded: dtype i32 is not supported");
}

TEST(GlobalRandomState, RestoringTheStateRepeatsTheNumbersThatFollow) {
  manual_seed(5);
  rand({37});  // advance past a partial Philox block
  const RandomState saved = random_state();
  EXPECT_EQ(saved.seed, 5u);
  EXPECT_GT(saved.offset, 0u);
  const std::vector<float> first = randn({50}).to_vector<float>();
  manual_seed(99);
  rand({3});
  set_random_state(saved);
  EXPECT_EQ(randn({50}).to_vector<float>(), first);
}

TEST(RandomSeededCuda, SameValuesAsTheCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  EXPECT_EQ(rand_seeded({333}, 9, {.device = Device::cuda()}).to_vector<float>(),
            rand_seeded({333}, 9).to_vector<float>());
  const std::vector<float> cpu = randn_seeded({333}, 9).to_vector<float>();
  const std::vector<float> cuda = randn_seeded({333}, 9, {.device = Device::cuda()}).to_vector<float>();
  for (size_t i = 0; i < cpu.size(); ++i) EXPECT_NEAR(cuda[i], cpu[i], 1e-5 * (1 + std::abs(cpu[i]))) << i;
}

}  // namespace
}  // namespace se
