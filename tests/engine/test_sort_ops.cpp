// sort, topk, kthvalue and cumsum as engine ops: small hand-checked cases along every dim, f64 gradient checks
// (sort values, topk, kthvalue, cumsum), error messages, and CUDA against the CPU (multi-tile rows).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "tests/engine/gradcheck.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

using testing::expect_error;
using testing::expect_gradients_match;

TEST(SortOp, StableAscendingAndDescending) {
  const Tensor x = from_vector<float>({3, 1, 2, 1, NAN, -1}, {6});
  SortResult up = sort(x);
  EXPECT_EQ(up.indices.to_vector<int64_t>(), std::vector<int64_t>({5, 1, 3, 2, 0, 4}));
  const std::vector<float> v = up.values.to_vector<float>();
  EXPECT_EQ(std::vector<float>(v.begin(), v.end() - 1), std::vector<float>({-1, 1, 1, 2, 3}));
  EXPECT_TRUE(std::isnan(v.back()));
  SortResult down = sort(x, 0, true);
  EXPECT_EQ(down.indices.to_vector<int64_t>(), std::vector<int64_t>({4, 0, 2, 1, 3, 5}));  // ties keep order
}

TEST(SortOp, AlongEveryDim) {
  // x[i][j] = 10 * ((i + 2 * j) % 3) + j, shape (3, 4).
  std::vector<int64_t> values;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 4; ++j) values.push_back(10 * ((i + 2 * j) % 3) + j);
  }
  const Tensor x = from_vector<int64_t>(values, {3, 4});
  for (int64_t dim : {0, 1}) {
    SortResult r = sort(x, dim, dim == 1);
    ASSERT_EQ(r.values.shape(), x.shape());
    const std::vector<int64_t> v = r.values.to_vector<int64_t>(), idx = r.indices.to_vector<int64_t>();
    for (int64_t i = 0; i < 3; ++i) {
      for (int64_t j = 0; j < 4; ++j) {
        const int64_t k = i * 4 + j;
        // each value is x at its index along dim, and the run along dim is monotone
        const int64_t src = dim == 0 ? idx[k] * 4 + j : i * 4 + idx[k];
        EXPECT_EQ(v[k], values[src]);
        if (dim == 0 && i > 0) {
          EXPECT_LE(v[k - 4], v[k]);
        }
        if (dim == 1 && j > 0) {
          EXPECT_GE(v[k - 1], v[k]);
        }
      }
    }
  }
}

TEST(SortOp, TopkAndKthvalue) {
  const Tensor x = from_vector<double>({5, 1, 4, 1, 3, 9, 2, 6}, {2, 4});
  SortResult top = topk(x, 2, 1);
  EXPECT_EQ(top.values.to_vector<double>(), std::vector<double>({5, 4, 9, 6}));
  EXPECT_EQ(top.indices.to_vector<int64_t>(), std::vector<int64_t>({0, 2, 1, 3}));
  SortResult low = topk(x, 3, 1, false);
  EXPECT_EQ(low.values.to_vector<double>(), std::vector<double>({1, 1, 4, 2, 3, 6}));
  SortResult kth = kthvalue(x, 2, 1);
  EXPECT_EQ(kth.values.shape(), Shape({2}));
  EXPECT_EQ(kth.values.to_vector<double>(), std::vector<double>({1, 3}));
  EXPECT_EQ(kth.indices.to_vector<int64_t>(), std::vector<int64_t>({3, 0}));  // the second of the tied 1s
  EXPECT_EQ(kthvalue(x, 1, 0, true).values.shape(), Shape({1, 4}));
}

TEST(CumsumOp, ValuesAlongEveryDim) {
  const Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(cumsum(x, 0).to_vector<double>(), std::vector<double>({1, 2, 3, 5, 7, 9}));
  EXPECT_EQ(cumsum(x, -1).to_vector<double>(), std::vector<double>({1, 3, 6, 4, 9, 15}));
  EXPECT_EQ(cumsum(from_vector<int64_t>({1, 0, 1, 1}, {4}), 0).to_vector<int64_t>(),
            std::vector<int64_t>({1, 1, 2, 3}));
}

TEST(SortOp, GradientsMatchFiniteDifferences) {
  manual_seed(51);
  const Tensor x = randn({3, 5, 4}, {DType::f64}).requires_grad_(true);
  for (int64_t dim : {0, 1, 2}) {
    expect_gradients_match([&](const std::vector<Tensor>& in) { return sort(in[0], dim, dim == 1).values; }, {x});
    expect_gradients_match([&](const std::vector<Tensor>& in) { return topk(in[0], 2, dim).values; }, {x});
    expect_gradients_match([&](const std::vector<Tensor>& in) { return kthvalue(in[0], 2, dim).values; }, {x});
    expect_gradients_match([&](const std::vector<Tensor>& in) { return cumsum(in[0], dim); }, {x});
  }
  // Through a non-contiguous view.
  expect_gradients_match([&](const std::vector<Tensor>& in) { return cumsum(in[0].transpose(0, 2), 1); }, {x});
}

TEST(SortOp, ErrorsNameOpAndValue) {
  const Tensor x = randn({2, 3});
  expect_error([&] { topk(x, 4, 1); }, "topk: k = 4 is out of range for dim 1 of size 3");
  expect_error([&] { kthvalue(x, 0, 1); }, "kthvalue: k = 0 is out of range for dim 1 of size 3 (expected 1 <= k <= 3)");
  expect_error([&] { sort(x.to(DType::f16)); }, "sort: dtype f16 is not supported on cpu (expected f32, f64, i32 or i64)");
  expect_error([&] { cumsum(x.to(DType::u8), 0); }, "cumsum: dtype u8 is not supported");
  expect_error([&] { sort(x, 2); }, "sort");
}

TEST(SortOpCuda, MatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(52);
  // Rows of 1500 along dim 1 (two CUDA tiles) with ties: values and indices equal exactly.
  const Tensor x = mul(randn({2, 1500, 3}), 4.0).to(DType::i64).to(DType::f32);
  for (bool descending : {false, true}) {
    SortResult cpu = sort(x, 1, descending), gpu = sort(x.to(Device::cuda()), 1, descending);
    EXPECT_EQ(gpu.values.device(), Device::cuda());
    EXPECT_EQ(gpu.indices.to_vector<int64_t>(), cpu.indices.to_vector<int64_t>());
    EXPECT_EQ(gpu.values.to_vector<float>(), cpu.values.to_vector<float>());
  }
  SortResult k_cpu = kthvalue(x, 700, 1), k_gpu = kthvalue(x.to(Device::cuda()), 700, 1);
  EXPECT_EQ(k_gpu.indices.to_vector<int64_t>(), k_cpu.indices.to_vector<int64_t>());
}

TEST(SortOpCuda, GradientsMatchCpu) {
  testing::expect_cuda_matches_cpu([](const Tensor& x) { return sort(x, 1, true).values; }, {3, 40, 2});
  testing::expect_cuda_matches_cpu([](const Tensor& x) { return topk(x, 5, -1).values; }, {4, 30});
  testing::expect_cuda_matches_cpu([](const Tensor& x) { return cumsum(x, 0); }, {50, 3}, 1e-5);
  testing::expect_cuda_matches_cpu([](const Tensor& x) { return cumsum(x, 1); }, {3, 2000}, 1e-4);
}

}  // namespace
}  // namespace se
