// The emulator's execution model: indexing, shared memory, barriers under every schedule, atomics, launch
// errors and exceptions in kernels.
#include <gtest/gtest.h>

#include <numeric>
#include <string>

#include "core/error.h"
#include "kernels/emu/emu.h"
#include "tests/emu/emu_test_kernels.h"

namespace se::emu::test {
namespace {

// Runs the body under each schedule and restores the default.
class CudaEmuSchedules : public ::testing::TestWithParam<Schedule> {
 protected:
  void SetUp() override { set_schedule(GetParam(), 1234); }
  void TearDown() override { set_schedule(Schedule::kForward); }
};

INSTANTIATE_TEST_SUITE_P(AllSchedules, CudaEmuSchedules,
                         ::testing::Values(Schedule::kForward, Schedule::kReverse, Schedule::kRandom));

TEST(CudaEmuIndexing, MultiDimensionalGridAndBlock) {
  const Dims grid{3, 2, 2}, block{4, 3, 2};
  const std::vector<int> out = run_indexing(grid, block);
  const int threads = 4 * 3 * 2;
  ASSERT_EQ(out.size(), 12u * threads);
  for (int b = 0; b < 12; ++b) {
    for (int t = 0; t < threads; ++t) EXPECT_EQ(out[b * threads + t], b * 10000 + t);
  }
}

TEST(CudaEmuIndexing, LargestBlock) {
  const std::vector<int> out = run_indexing({2, 1, 1}, {1024, 1, 1});
  for (int i = 0; i < 2048; ++i) ASSERT_EQ(out[i], (i / 1024) * 10000 + i % 1024);
}

TEST_P(CudaEmuSchedules, StaticSharedMemoryNeedsTheBarrier) {
  std::vector<float> in(256 * 5);
  std::iota(in.begin(), in.end(), 0.0f);
  const std::vector<float> out = run_static_shared_reverse(in);
  for (size_t i = 0; i < in.size(); ++i) ASSERT_EQ(out[i], in[i / 256 * 256 + 255 - i % 256]);
}

TEST_P(CudaEmuSchedules, DynamicSharedMemory) {
  std::vector<float> in(128 * 3);
  std::iota(in.begin(), in.end(), 1.0f);
  const std::vector<float> out = run_dynamic_shared_reverse(in, 128, 0, false);
  for (size_t i = 0; i < in.size(); ++i) ASSERT_EQ(out[i], in[i / 128 * 128 + 127 - i % 128]);
}

TEST(CudaEmuSharedMemory, DynamicBeyondDefaultNeedsOptIn) {
  std::vector<float> in(64 * 2, 1.0f);
  // 100 KiB: over the 48 KiB default, fine after cudaFuncSetAttribute (up to 227 KiB).
  EXPECT_THROW(run_dynamic_shared_reverse(in, 64, 100 * 1024, false), se::Error);
  const std::vector<float> out = run_dynamic_shared_reverse(in, 64, 100 * 1024, true);
  EXPECT_EQ(out, in);
}

TEST_P(CudaEmuSchedules, BarrierTreeReductionAndPredicates) {
  const unsigned block = 512;
  std::vector<int> in(block * 4);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int>(i % 97);  // zeros and positives, all < 1000
  std::vector<int> counts;
  const std::vector<long long> sums = run_block_tree_sum(in, block, &counts);
  for (size_t b = 0; b < 4; ++b) {
    long long expected = 0;
    int positive = 0;
    for (unsigned t = 0; t < block; ++t) {
      expected += in[b * block + t];
      positive += in[b * block + t] > 0;
    }
    EXPECT_EQ(sums[b], expected);
    EXPECT_EQ(counts[3 * b + 0], positive);
    EXPECT_EQ(counts[3 * b + 1], 1);
    EXPECT_EQ(counts[3 * b + 2], 1);
  }
}

TEST_P(CudaEmuSchedules, GlobalAtomicsUnderContention) {
  const unsigned blocks = 64;
  const int n = static_cast<int>(blocks * 256);
  const AtomicResults r = run_global_atomics(blocks);
  EXPECT_EQ(r.add_int, n);
  EXPECT_EQ(r.add_unsigned, 2u * n);
  EXPECT_EQ(r.add_u64, 3ull * n);
  EXPECT_EQ(r.add_float, static_cast<float>(n));  // integers below 2^24 add exactly in any order
  EXPECT_EQ(r.add_double, 0.5 * n);
  EXPECT_EQ(r.max_int, n - 1);
  EXPECT_EQ(r.min_int, -(n - 1));
  EXPECT_EQ(r.inc_wrapped, static_cast<unsigned>(n % 100));
  EXPECT_EQ(r.cas_sum, n);
  EXPECT_EQ(r.or_bits, 0xffffffffu);
  EXPECT_EQ(r.sub_int, -2 * n);
  EXPECT_EQ(r.half_sum, static_cast<float>(blocks));
}

TEST_P(CudaEmuSchedules, SharedMemoryAtomicsHistogram) {
  std::vector<int> values(10007);
  std::vector<unsigned> expected(37, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<int>((i * 2654435761u) % 37);
    ++expected[values[i]];
  }
  EXPECT_EQ(run_shared_histogram(values, 37), expected);
}

TEST(CudaEmuLaunch, InvalidConfigurationsAreReported) {
  constexpr int kInvalidConfiguration = 9;  // cudaErrorInvalidConfiguration
  constexpr int kInvalidValue = 1;          // cudaErrorInvalidValue
  EXPECT_EQ(launch_status({1, 1, 1}, {32, 1, 1}, 0), 0);
  EXPECT_EQ(launch_status({1, 1, 1}, {1025, 1, 1}, 0), kInvalidConfiguration);
  EXPECT_EQ(launch_status({1, 1, 1}, {64, 32, 1}, 0), kInvalidConfiguration);  // 2048 threads
  EXPECT_EQ(launch_status({1, 1, 1}, {1, 1, 65}, 0), kInvalidConfiguration);
  EXPECT_EQ(launch_status({0, 1, 1}, {32, 1, 1}, 0), kInvalidConfiguration);
  EXPECT_EQ(launch_status({1, 65536, 1}, {32, 1, 1}, 0), kInvalidConfiguration);
  EXPECT_EQ(launch_status({1, 1, 1}, {32, 1, 1}, 48 * 1024 + 1), kInvalidValue);
  try {
    launch_checked({1, 1, 1}, {2048, 1, 1});
    FAIL() << "SE_LAUNCH accepted 2048 threads per block";
  } catch (const se::Error& error) {
    EXPECT_NE(std::string(error.what()).find("cudaErrorInvalidConfiguration"), std::string::npos) << error.what();
  }
  EXPECT_EQ(launch_status({1, 1, 1}, {32, 1, 1}, 0), 0);  // the error is not sticky
}

TEST(CudaEmuLaunch, ExceptionInKernelIsALaunchFailureAndThePoolSurvives) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      run_throwing_kernel(5);
      FAIL() << "the kernel's exception was lost";
    } catch (const se::Error& error) {
      EXPECT_NE(std::string(error.what()).find("cudaErrorLaunchFailure"), std::string::npos) << error.what();
    }
  }
  run_throwing_kernel(-1);  // nobody throws: works
  const std::vector<int> out = run_indexing({8, 1, 1}, {64, 1, 1});
  EXPECT_EQ(out[511], 7 * 10000 + 63);
}

}  // namespace
}  // namespace se::emu::test
