// Helpers shared by the benchmark programs.
#pragma once

#include <fstream>
#include <string>

namespace se::bench {

// Peak f32 FLOP/s = cores x clock x FLOP per cycle per core. The FLOP per cycle assumes two 256-bit FMA
// pipes per core (Zen 2-4, Haswell..Ice Lake client): 2 pipes x 8 lanes x 2 FLOP = 32. Clock: the
// "cpu MHz" of /proc/cpuinfo, the base clock under a hypervisor (boost is not visible there).
inline double cpu_mhz() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("cpu MHz", 0) == 0) return std::stod(line.substr(line.find(':') + 1));
  }
  return 0.0;
}

constexpr double kF32FlopPerCycle = 32.0;

inline double cpu_f32_peak_gflops(int threads) { return threads * cpu_mhz() * 1e-3 * kF32FlopPerCycle; }

// "166.2 = 2 cores x 2.596 GHz x 32 FLOP/cycle (2 x 256-bit FMA pipes)", for benchmark::AddCustomContext.
inline std::string cpu_f32_peak_description(int threads) {
  return std::to_string(cpu_f32_peak_gflops(threads)) + " = " + std::to_string(threads) + " cores x " +
         std::to_string(cpu_mhz() * 1e-3) + " GHz x 32 FLOP/cycle (2 x 256-bit FMA pipes)";
}

}  // namespace se::bench
