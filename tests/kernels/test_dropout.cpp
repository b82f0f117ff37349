// kernels/dropout.h: the CPU mask against its definition (element i kept when
// philox::uniform_at(seed, offset + i) >= p), the scaling of kept values in all four dtypes, and CUDA
// against CPU bit for bit. The CPU draws Philox blocks in batches of 16 (64 stream positions), so the
// counts and offsets include batch and block boundaries and unaligned starts.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "core/philox.h"
#include "kernel_test_util.h"
#include "kernels/convert.h"
#include "kernels/dropout.h"

namespace se::kernels {
namespace {

using test::bits_of;
using test::cast_to;
using test::random_values;

struct DropoutCase {
  int64_t count;
  uint64_t offset;
};
const DropoutCase kCases[] = {{0, 0},  {1, 0},  {3, 1},    {4, 4},    {5, 2},    {63, 0},
                              {64, 0}, {65, 3}, {129, 61}, {1000, 8}, {4097, 5}, {40001, 4}};
constexpr float kProbabilities[] = {0.0f, 0.1f, 0.5f, 0.9f};

std::string describe(const DropoutDesc& d) {
  return "(count " + std::to_string(d.count) + ", offset " + std::to_string(d.offset) + ", p " + std::to_string(d.p) +
         ")";
}

template <typename T>
void check_cpu(const DropoutDesc& d, uint32_t seed) {
  using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
  std::vector<T> x = cast_to<T>(random_values(d.count, seed)), y(d.count),
                 g = cast_to<T>(random_values(d.count, ~seed)), gx(d.count);
  std::vector<uint8_t> mask(d.count, 7);
  cpu::dropout_forward(d, x.data(), y.data(), mask.data(), nullptr);
  cpu::dropout_backward(d, g.data(), mask.data(), gx.data(), nullptr);
  const S scale = S(1) / (S(1) - d.p);
  std::vector<T> want_y(d.count), want_gx(d.count);
  for (int64_t i = 0; i < d.count; ++i) {
    const bool keep = philox::uniform_at(d.seed, d.offset + static_cast<uint64_t>(i)) >= d.p;
    ASSERT_EQ(mask[i], keep ? 1 : 0) << describe(d) << " at " << i;
    want_y[i] = keep ? convert<T>(convert<S>(x[i]) * scale) : convert<T>(S(0));
    want_gx[i] = keep ? convert<T>(convert<S>(g[i]) * scale) : convert<T>(S(0));
  }
  ASSERT_EQ(bits_of(y), bits_of(want_y)) << describe(d);
  ASSERT_EQ(bits_of(gx), bits_of(want_gx)) << describe(d);
}

template <typename T>
class DropoutFloat : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double, f16, bf16>;
TYPED_TEST_SUITE(DropoutFloat, FloatTypes);

TYPED_TEST(DropoutFloat, MaskIsTheCounterBasedDefinition) {
  uint32_t seed = 1;
  for (const DropoutCase& c : kCases) {
    for (float p : kProbabilities) {
      check_cpu<TypeParam>({c.count, 0x1234567890abcdefULL + seed, c.offset, p, dtype_of<TypeParam>()}, seed);
      ++seed;
    }
  }
}

// A probability equal to an element's uniform keeps it (>=); the next float above drops it.
TEST(Dropout, ProbabilityEqualToTheUniformKeepsTheElement) {
  const uint64_t seed = 99, offset = 6;
  const float u = philox::uniform_at(seed, offset + 37);
  for (float p : {u, std::nextafter(u, 1.0f)}) {
    const DropoutDesc d{100, seed, offset, p, DType::f32};
    std::vector<float> x(100, 1.0f), y(100);
    std::vector<uint8_t> mask(100);
    cpu::dropout_forward(d, x.data(), y.data(), mask.data(), nullptr);
    EXPECT_EQ(mask[37], p == u ? 1 : 0) << "p " << p;
    check_cpu<float>(d, 5);
  }
}

// Philox's counter is the 64-bit block number: a batch of blocks whose low word wraps past 2^32 carries
// into the high word in every lane after the wrap (the AVX-512 path adds 16 block numbers at once).
TEST(Dropout, BlockCounterCarriesIntoItsHighWord) {
  for (const uint64_t first_block : {(uint64_t{1} << 32) - 8, (uint64_t{1} << 32) - 16, (uint64_t{3} << 32) - 1}) {
    check_cpu<float>({1024, 77, 4 * first_block, 0.5f, DType::f32}, 11);
    check_cpu<float>({1000, 78, 4 * first_block + 2, 0.3f, DType::f32}, 12);
  }
}

#ifdef SEGENGINE_HAS_CUDA
template <typename T>
void check_cuda_against_cpu(uint32_t seed) {
  using test::DeviceBuffer;
  for (const DropoutCase& c : kCases) {
    const DropoutDesc d{c.count, seed * 7919ULL, c.offset, 0.3f, dtype_of<T>()};
    std::vector<T> x = cast_to<T>(random_values(d.count, seed)), g = cast_to<T>(random_values(d.count, ~seed)),
                   y(d.count), gx(d.count);
    std::vector<uint8_t> mask(d.count);
    DeviceBuffer<T> dx(x), dg(g), dy(y.size()), dgx(gx.size());
    DeviceBuffer<uint8_t> dmask(mask.size());
    cpu::dropout_forward(d, x.data(), y.data(), mask.data(), nullptr);
    cpu::dropout_backward(d, g.data(), mask.data(), gx.data(), nullptr);
    cuda::dropout_forward(d, dx.get(), dy.get(), dmask.get(), nullptr);
    cuda::dropout_backward(d, dg.get(), dmask.get(), dgx.get(), nullptr);
    ASSERT_EQ(dmask.to_host(), mask) << describe(d);
    ASSERT_EQ(bits_of(dy.to_host()), bits_of(y)) << describe(d);
    ASSERT_EQ(bits_of(dgx.to_host()), bits_of(gx)) << describe(d);
    ++seed;
  }
}

TEST(DropoutCuda, F32MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<float>(1);
}
TEST(DropoutCuda, F64MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<double>(2);
}
TEST(DropoutCuda, F16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<f16>(3);
}
TEST(DropoutCuda, BF16MatchesCpu) {
  SE_SKIP_WITHOUT_CUDA();
  check_cuda_against_cpu<bf16>(4);
}
#endif

}  // namespace
}  // namespace se::kernels
