// kernels/index.h: gather and scatter_add against a direct reference, incl. the broadcast-index
// (index_select / index_add) form and a strided indexed side; CUDA against CPU.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/index.h"
#include "kernel_test_util.h"

namespace se::kernels {
namespace {

using test::cast_to;
using test::random_values;
using test::to_double;

// One test case: the index/dense shape, the indexed side's shape along dim, and whether the index
// broadcasts (index_select form: a 1-d index expanded along the other dims).
struct Case {
  std::vector<int64_t> sizes;
  int dim;
  int64_t dim_size;
  bool broadcast_index;
};

const Case kCases[] = {
    {{5}, 0, 7, false},          {{3, 17}, 1, 20, false},    {{4, 6, 5}, 1, 3, false}, {{2, 3, 255}, 2, 300, false},
    {{1000, 3}, 0, 17, false},   {{2, 5, 7}, 0, 4, false},   {{3, 9, 4}, 1, 5, true},  {{17, 2}, 0, 1000, true},
    {{2, 3, 4, 5}, 3, 6, true},
};

struct Prepared {
  GatherDesc desc;
  int64_t indexed_numel = 0;
  std::vector<int64_t> index;  // storage of the index (smaller than sizes when it broadcasts)
};

// The indexed side is contiguous with the case's shape, except for a padded last dim (stride + 1) to
// exercise strided access.
Prepared prepare(const Case& c, uint32_t seed) {
  Prepared p;
  GatherDesc& d = p.desc;
  d.ndim = static_cast<int>(c.sizes.size());
  d.dim = c.dim;
  d.dim_size = c.dim_size;
  int64_t stride = 1, index_stride = 1;
  for (int k = d.ndim - 1; k >= 0; --k) {
    d.sizes[k] = c.sizes[k];
    int64_t indexed_size = k == c.dim ? c.dim_size : c.sizes[k];
    d.strides[k] = stride;
    stride *= k == d.ndim - 1 ? indexed_size + 1 : indexed_size;
    if (c.broadcast_index) {
      d.index_strides[k] = k == c.dim ? 1 : 0;
    } else {
      d.index_strides[k] = index_stride;
      index_stride *= c.sizes[k];
    }
  }
  p.indexed_numel = stride;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, c.dim_size - 1);
  p.index.resize(static_cast<size_t>(c.broadcast_index ? c.sizes[c.dim] : d.numel()));
  for (auto& i : p.index) i = pick(rng);
  return p;
}

// Calls f(dense offset, index offset, indexed offset without dim) for every position.
template <typename F>
void for_each_position(const GatherDesc& d, F f) {
  for (int64_t p = 0; p < d.numel(); ++p) {
    int64_t rest = p, index = 0, indexed = 0;
    for (int k = d.ndim - 1; k >= 0; --k) {
      int64_t i = rest % d.sizes[k];
      rest /= d.sizes[k];
      index += i * d.index_strides[k];
      if (k != d.dim) indexed += i * d.strides[k];
    }
    f(p, index, indexed);
  }
}

template <typename T>
class IndexTyped : public ::testing::Test {};
using Types = ::testing::Types<float, double, f16, bf16, int32_t, int64_t>;
TYPED_TEST_SUITE(IndexTyped, Types);

TYPED_TEST(IndexTyped, GatherAndScatterAddMatchReference) {
  using T = TypeParam;
  uint32_t seed = 7;
  for (const Case& c : kCases) {
    Prepared p = prepare(c, seed++);
    const GatherDesc& d = p.desc;
    std::vector<T> src = cast_to<T>(random_values(p.indexed_numel, seed++, -8, 8));
    std::vector<T> out(static_cast<size_t>(d.numel()));
    cpu::gather(out.data(), src.data(), p.index.data(), d, nullptr);
    for_each_position(d, [&](int64_t dense, int64_t index, int64_t indexed) {
      int64_t at = indexed + p.index[index] * d.strides[d.dim];
      EXPECT_EQ(to_double(std::vector<T>{out[dense]})[0], to_double(std::vector<T>{src[at]})[0]);
    });

    std::vector<T> grad = cast_to<T>(random_values(d.numel(), seed++, -8, 8));
    std::vector<T> dst(static_cast<size_t>(p.indexed_numel), T(0));
    cpu::scatter_add(dst.data(), grad.data(), p.index.data(), d, nullptr);
    std::vector<double> expected(dst.size(), 0.0), g = to_double(grad);
    for_each_position(d, [&](int64_t dense, int64_t index, int64_t indexed) {
      expected[indexed + p.index[index] * d.strides[d.dim]] += g[dense];
    });
    std::vector<double> got = to_double(dst);
    // Up to ~60 additions into one element, each rounded to T, of partial sums up to ~60 in magnitude.
    const double tol = 4000 * test::unit_roundoff<T>();
    for (size_t k = 0; k < got.size(); ++k) ASSERT_NEAR(got[k], expected[k], tol) << "scatter_add at " << k;
  }
}

TEST(Index, OutOfRangeIndexIsAnErrorAndLeavesScatterTargetUntouched) {
  GatherDesc d;
  d.ndim = 1;
  d.sizes[0] = 3;
  d.index_strides[0] = 1;
  d.strides[0] = 1;
  d.dim_size = 4;
  std::vector<float> src = {1, 2, 3, 4}, out(3), dst(4, 0.0f);
  std::vector<int64_t> index = {0, 4, 1};
  try {
    cpu::gather(out.data(), src.data(), index.data(), d, nullptr);
    FAIL() << "expected se::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gather: index 4 is out of range for size 4 of dim 0"), std::string::npos)
        << e.what();
  }
  index[1] = -1;
  EXPECT_THROW(cpu::scatter_add(dst.data(), src.data(), index.data(), d, nullptr), Error);
  EXPECT_EQ(dst, std::vector<float>(4, 0.0f));
}

#ifdef SEGENGINE_HAS_CUDA
template <typename T>
void check_cuda_against_cpu(uint32_t seed) {
  using test::DeviceBuffer;
  for (const Case& c : kCases) {
    Prepared p = prepare(c, seed++);
    const GatherDesc& d = p.desc;
    std::vector<T> src = cast_to<T>(random_values(p.indexed_numel, seed++, -8, 8));
    std::vector<T> grad = cast_to<T>(random_values(d.numel(), seed++, -8, 8));
    std::vector<T> out(static_cast<size_t>(d.numel())), dst(static_cast<size_t>(p.indexed_numel), T(0));
    cpu::gather(out.data(), src.data(), p.index.data(), d, nullptr);
    cpu::scatter_add(dst.data(), grad.data(), p.index.data(), d, nullptr);
    DeviceBuffer<T> dsrc(src), dgrad(grad), dout(out.size());
    DeviceBuffer<T> ddst(std::vector<T>(dst.size(), T(0)));
    DeviceBuffer<int64_t> dindex(p.index);
    cuda::gather(dout.get(), dsrc.get(), dindex.get(), d, nullptr);
    cuda::scatter_add(ddst.get(), dgrad.get(), dindex.get(), d, nullptr);
    EXPECT_EQ(to_double(dout.to_host()), to_double(out));
    std::vector<double> got = to_double(ddst.to_host()), want = to_double(dst);
    // float/double atomics add in a different order than the CPU; the other types add in the same order.
    const double tol = std::is_same_v<T, float> ? 1e-4 : (std::is_same_v<T, double> ? 1e-12 : 0.0);
    for (size_t k = 0; k < got.size(); ++k) ASSERT_NEAR(got[k], want[k], tol) << "scatter_add at " << k;
  }
}

TEST(IndexCuda, F32MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<float>(1); }
TEST(IndexCuda, F64MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<double>(2); }
TEST(IndexCuda, F16MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<f16>(3); }
TEST(IndexCuda, BF16MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<bf16>(4); }
TEST(IndexCuda, I64MatchesCpu) { SE_SKIP_WITHOUT_CUDA(); check_cuda_against_cpu<int64_t>(5); }
#endif

}  // namespace
}  // namespace se::kernels
