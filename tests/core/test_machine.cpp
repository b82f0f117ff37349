#include <gtest/gtest.h>

#include <cmath>

#include "core/machine.h"

namespace se {
namespace {

// The measured clock is a plausible core clock, and the peak is built from it.
TEST(Machine, MeasuredClockIsPlausible) {
#if defined(__x86_64__)
  const double mhz = machine::measured_cpu_mhz();
  EXPECT_GT(mhz, 500.0);
  EXPECT_LT(mhz, 8000.0);
  EXPECT_EQ(machine::cpu_mhz(), mhz);
  EXPECT_DOUBLE_EQ(machine::cpu_f32_peak_gflops(2), 2 * mhz * 1e-3 * machine::f32_flop_per_cycle());
  EXPECT_NE(machine::cpu_f32_peak_description(2).find("(measured; /proc/cpuinfo: "), std::string::npos);
#else
  GTEST_SKIP() << "the clock is measured on x86-64 only";
#endif
}

// The FMA throughput per cycle is measured where the CPU has FMAs: a power of two that its vectors and
// pipes allow (8 lanes x 2 FLOP x 1 pipe at the least, 16 lanes x 2 FLOP x 4 pipes at the most), and
// the peak's description says so.
TEST(Machine, MeasuredFlopPerCycleIsAPowerOfTwoTheVectorsAllow) {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("fma")) GTEST_SKIP() << "no FMA";
  const double flop_per_cycle = machine::measured_f32_flop_per_cycle();
  EXPECT_EQ(machine::f32_flop_per_cycle(), flop_per_cycle);
  EXPECT_GE(flop_per_cycle, 16.0);
  EXPECT_LE(flop_per_cycle, __builtin_cpu_supports("avx512f") ? 128.0 : 64.0);
  EXPECT_EQ(flop_per_cycle, std::exp2(std::round(std::log2(flop_per_cycle))));
  EXPECT_NE(machine::cpu_f32_peak_description(2).find(" FLOP/cycle (measured, "), std::string::npos);
#else
  GTEST_SKIP() << "the clock is measured on x86-64 only";
#endif
}

}  // namespace
}  // namespace se
