// The emulator's warp collectives: shuffles (all forms and widths, 2- to 8-byte types), votes, reductions.
#include <gtest/gtest.h>

#include <numeric>

#include "kernels/emu/emu.h"
#include "tests/emu/emu_test_kernels.h"

namespace se::emu::test {
namespace {

class CudaEmuWarpSchedules : public ::testing::TestWithParam<Schedule> {
 protected:
  void SetUp() override { set_schedule(GetParam(), 99); }
  void TearDown() override { set_schedule(Schedule::kForward); }
};

INSTANTIATE_TEST_SUITE_P(AllSchedules, CudaEmuWarpSchedules,
                         ::testing::Values(Schedule::kForward, Schedule::kReverse, Schedule::kRandom));

TEST_P(CudaEmuWarpSchedules, ShuffleBlockReduction) {
  for (unsigned block : {32u, 256u, 1024u}) {
    std::vector<int> in(block * 3);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int>(i * 31 % 1001) - 500;
    const std::vector<long long> sums = run_shuffle_block_sum(in, block);
    for (size_t b = 0; b < 3; ++b) {
      const long long expected = std::accumulate(in.begin() + b * block, in.begin() + (b + 1) * block, 0ll);
      EXPECT_EQ(sums[b], expected) << "block size " << block;
    }
  }
}

TEST_P(CudaEmuWarpSchedules, ShufflePatternsAndWidths) {
  const std::vector<int> out = run_shuffle_patterns();
  for (int lane = 0; lane < 32; ++lane) {
    const int* o = out.data() + lane * 8;
    const int own = lane * 10;
    EXPECT_EQ(o[0], 30);
    EXPECT_EQ(o[1], (lane / 8 * 8 + (lane + 1) % 8) * 10);
    EXPECT_EQ(o[2], lane >= 1 ? own - 10 : own);
    EXPECT_EQ(o[3], lane % 8 >= 2 ? own - 20 : own);
    EXPECT_EQ(o[4], lane <= 30 ? own + 10 : own);
    EXPECT_EQ(o[5], lane % 16 + 4 < 16 ? own + 40 : own);
    EXPECT_EQ(o[6], (lane ^ 1) * 10);
    // xor 16 with width 16: a later segment is out of reach (own value), an earlier one is not.
    EXPECT_EQ(o[7], lane < 16 ? own : own - 160);
  }
}

TEST(CudaEmuWarp, ShufflesOfWideAndHalfTypes) {
  const std::vector<WideShuffle> out = run_wide_shuffles();
  for (int lane = 0; lane < 32; ++lane) {
    const int source = lane ^ 1;
    EXPECT_EQ(out[lane].d, source + 0.25);
    EXPECT_EQ(out[lane].ll, (1ll << 40) + source);
    EXPECT_EQ(out[lane].h, static_cast<float>(source));
    EXPECT_EQ(out[lane].bf, static_cast<float>(source) * 2.0f);
  }
}

TEST_P(CudaEmuWarpSchedules, VotesAndReductions) {
  std::vector<int> values(32);
  for (int lane = 0; lane < 32; ++lane) values[lane] = lane * 3 - 20;  // -20 .. 73
  const std::vector<unsigned> out = run_votes(values);
  unsigned odd = 0, bit_and = ~0u, bit_or = 0, bit_xor = 0;
  int sum = 0;
  for (int lane = 0; lane < 32; ++lane) {
    odd |= static_cast<unsigned>(values[lane] & 1) << lane;
    sum += values[lane];
    bit_and &= static_cast<unsigned>(values[lane]);
    bit_or |= static_cast<unsigned>(values[lane]);
    bit_xor ^= static_cast<unsigned>(values[lane]);
  }
  for (int lane = 0; lane < 32; ++lane) {
    const unsigned* o = out.data() + lane * 12;
    EXPECT_EQ(o[0], 0u);
    EXPECT_EQ(o[1], 0u);
    EXPECT_EQ(o[2], odd);
    EXPECT_EQ(static_cast<int>(o[3]), sum);
    EXPECT_EQ(static_cast<int>(o[4]), -20);
    EXPECT_EQ(static_cast<int>(o[5]), 73);
    EXPECT_EQ(o[6], 1u) << "unsigned min of -20..73 is 1";
    EXPECT_EQ(o[7], bit_and);
    EXPECT_EQ(o[8], bit_or);
    EXPECT_EQ(o[9], bit_xor);
    unsigned match = 0;
    for (int other = 0; other < 32; ++other) match |= static_cast<unsigned>(values[other] % 4 == values[lane] % 4) << other;
    EXPECT_EQ(o[10], match);
    unsigned even_positive = 0;
    for (int other = 0; other < 32; other += 2) even_positive |= static_cast<unsigned>(values[other] > 0) << other;
    EXPECT_EQ(o[11], lane % 2 == 0 ? even_positive : 0u);
  }
}

}  // namespace
}  // namespace se::emu::test
