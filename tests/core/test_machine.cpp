#include <gtest/gtest.h>

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
  EXPECT_DOUBLE_EQ(machine::cpu_f32_peak_gflops(2), 2 * mhz * 1e-3 * machine::kF32FlopPerCycle);
  EXPECT_NE(machine::cpu_f32_peak_description(2).find("(measured; /proc/cpuinfo: "), std::string::npos);
#else
  GTEST_SKIP() << "the clock is measured on x86-64 only";
#endif
}

}  // namespace
}  // namespace se
