// What the host machine can do at most, for reporting measured throughput as a share of it.
#pragma once

#include <cstdio>
#include <fstream>
#include <string>

namespace se::machine {

// The "cpu MHz" of /proc/cpuinfo: the base clock under a hypervisor (boost is not visible there); 0
// when unknown.
inline double cpu_mhz() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("cpu MHz", 0) == 0) return std::stod(line.substr(line.find(':') + 1));
  }
  return 0.0;
}

// f32 FLOP per cycle per core assuming two 256-bit FMA pipes (Zen 2-4, Haswell..Ice Lake client):
// 2 pipes x 8 lanes x 2 FLOP.
constexpr double kF32FlopPerCycle = 32.0;

// Peak f32 GFLOP/s = cores x clock x FLOP per cycle per core.
inline double cpu_f32_peak_gflops(int cores) { return cores * cpu_mhz() * 1e-3 * kF32FlopPerCycle; }

// "166.2 GFLOP/s = 2 cores x 2.596 GHz x 32 FLOP/cycle (2 x 256-bit FMA pipes)".
inline std::string cpu_f32_peak_description(int cores) {
  char text[160];
  std::snprintf(text, sizeof(text), "%.1f GFLOP/s = %d cores x %.3f GHz x %.0f FLOP/cycle (2 x 256-bit FMA pipes)",
                cpu_f32_peak_gflops(cores), cores, cpu_mhz() * 1e-3, kF32FlopPerCycle);
  return text;
}

}  // namespace se::machine
