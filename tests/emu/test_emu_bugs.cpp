// The emulator catches synchronisation bugs: deadlocks and mismatched barriers or warp collectives abort
// with a message (death tests), a missing barrier shows up under a non-default schedule, and the blocks of
// a grid run in the schedule's order.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "core/sanitizer.h"
#include "kernels/emu/emu.h"
#include "tests/emu/emu_test_kernels.h"

namespace se::emu::test {
namespace {

class CudaEmuDeathTest : public ::testing::Test {
 protected:
  // The emulator's worker threads do not survive fork(); re-execute the test binary instead.
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(CudaEmuDeathTest, DeadlockWhenThreadsExitBeforeABarrier) {
  EXPECT_DEATH(run_deadlock(),
               "deadlock in kernel 'deadlock_kernel' block \\(0,0,0\\): 64 of 128 threads wait at __syncthreads "
               "\\(kernels_bugs.cu:[0-9]+\\), 64 exited");
}

TEST_F(CudaEmuDeathTest, ThreadsAtDifferentBarriers) {
  EXPECT_DEATH(run_divergent_barriers(), "barrier mismatch in kernel 'divergent_barriers_kernel'");
}

TEST_F(CudaEmuDeathTest, CollectiveWithAnExitedLane) {
  EXPECT_DEATH(run_collective_lane_exited(), "collective mismatch: __shfl_xor_sync in kernel 'lane_exited_kernel'.*lane 31");
}

TEST_F(CudaEmuDeathTest, CollectiveWithDisagreeingMasks) {
  EXPECT_DEATH(run_collective_mask_mismatch(), "collective mismatch: __shfl_xor_sync in kernel 'mask_mismatch_kernel'");
}

// ASan builds: an overrun in a kernel is reported at the access, also where the emulator's allocation is
// larger than the request (cudaMalloc's 256-byte rounding, a shared buffer an earlier launch grew).
TEST_F(CudaEmuDeathTest, AsanReportsAKernelReadingPastAGlobalBuffer) {
  if (!asan::kEnabled) GTEST_SKIP() << "not an AddressSanitizer build";
  EXPECT_DEATH(run_global_overrun(), "AddressSanitizer: (use-after-poison|heap-buffer-overflow)");
}

TEST_F(CudaEmuDeathTest, AsanReportsAKernelReadingPastItsDynamicSharedMemory) {
  if (!asan::kEnabled) GTEST_SKIP() << "not an AddressSanitizer build";
  EXPECT_DEATH(run_shared_overrun(), "AddressSanitizer: (use-after-poison|heap-buffer-overflow)");
}

TEST(CudaEmuSchedule, MissingBarrierIsCaughtByReverseAndRandomSchedules) {
  int salt = 0;
  set_schedule(Schedule::kForward);
  EXPECT_TRUE(run_missing_barrier(256, ++salt)) << "forward order happens to hide the bug";
  set_schedule(Schedule::kReverse);
  EXPECT_FALSE(run_missing_barrier(256, ++salt));
  set_schedule(Schedule::kRandom, 7);
  EXPECT_FALSE(run_missing_barrier(256, ++salt));
  set_schedule(Schedule::kForward);
}

// Fraction of the recorded blocks within 64 places of where `expected(i)` puts them: the pool's threads
// take blocks concurrently, so the recorded order is the schedule's up to small displacements.
template <typename Expected>
double near_fraction(const std::vector<unsigned>& order, Expected expected) {
  int near = 0;
  for (size_t i = 0; i < order.size(); ++i) near += std::abs(static_cast<long>(order[i]) - expected(i)) <= 64;
  return static_cast<double>(near) / static_cast<double>(order.size());
}

TEST(CudaEmuSchedule, BlocksRunInTheScheduleOrder) {
  constexpr unsigned kBlocks = 2048;
  const auto ascending = [](size_t i) { return static_cast<long>(i); };
  const auto descending = [](size_t i) { return static_cast<long>(kBlocks - 1 - i); };
  set_schedule(Schedule::kForward);
  const std::vector<unsigned> forward = run_block_order(kBlocks);
  EXPECT_GT(near_fraction(forward, ascending), 0.9);
  set_schedule(Schedule::kReverse);
  const std::vector<unsigned> reverse = run_block_order(kBlocks);
  EXPECT_GT(near_fraction(reverse, descending), 0.9);
  set_schedule(Schedule::kRandom, 11);
  const std::vector<unsigned> random = run_block_order(kBlocks);
  EXPECT_LT(near_fraction(random, ascending), 0.5);
  EXPECT_LT(near_fraction(random, descending), 0.5);
  set_schedule(Schedule::kForward);
  // Every block ran exactly once in each.
  for (const std::vector<unsigned>* order : {&forward, &reverse, &random}) {
    std::vector<unsigned> sorted = *order;
    std::sort(sorted.begin(), sorted.end());
    for (unsigned b = 0; b < kBlocks; ++b) ASSERT_EQ(sorted[b], b);
  }
}

TEST(CudaEmuSchedule, ParsesTheEnvironmentSyntax) {
  Schedule s;
  uint64_t seed = 0;
  EXPECT_TRUE(parse_schedule("reverse", &s, &seed));
  EXPECT_EQ(s, Schedule::kReverse);
  EXPECT_TRUE(parse_schedule("random:42", &s, &seed));
  EXPECT_EQ(s, Schedule::kRandom);
  EXPECT_EQ(seed, 42u);
  EXPECT_FALSE(parse_schedule("random:", &s, &seed));
  EXPECT_FALSE(parse_schedule("sideways", &s, &seed));
}

}  // namespace
}  // namespace se::emu::test
