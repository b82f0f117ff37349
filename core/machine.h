// What the host machine can do at most, for reporting measured throughput as a share of it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

namespace se::machine {

// The "cpu MHz" of /proc/cpuinfo: the base clock under a hypervisor (boost is not visible there); 0
// when unknown.
inline double cpuinfo_mhz() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("cpu MHz", 0) == 0) return std::stod(line.substr(line.find(':') + 1));
  }
  return 0.0;
}

// The clock a busy core runs at, turbo included, measured: a chain of dependent integer additions
// (one cycle each on every x86-64 core) timed after a warm-up that lets the clock ramp up; the best
// of a few runs, each about 5 ms. Measured once per process; 0 where there is no such chain (not x86).
inline double measured_cpu_mhz() {
  static const double mhz = [] {
#if defined(__x86_64__)
    auto chain = [](int64_t iterations) {  // 10 dependent additions per iteration
      uint64_t x = 0;
      for (int64_t i = 0; i < iterations; ++i) {
        asm volatile(
            "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
            "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
            : "+r"(x));
      }
      return x;
    };
    constexpr int64_t kIterations = 2'000'000;  // 20 M cycles: ~5 ms at 4 GHz
    chain(4 * kIterations);
    double best = 0.0;
    for (int run = 0; run < 5; ++run) {
      const auto begin = std::chrono::steady_clock::now();
      chain(kIterations);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
      best = std::max(best, 10.0 * kIterations / seconds * 1e-6);
    }
    return best;
#else
    return 0.0;
#endif
  }();
  return mhz;
}

// The clock the peak below assumes: the measured one, else /proc/cpuinfo's.
inline double cpu_mhz() {
  const double measured = measured_cpu_mhz();
  return measured > 0.0 ? measured : cpuinfo_mhz();
}

// f32 FLOP per cycle per core assuming two 256-bit FMA pipes (Zen 2-4, Haswell..Ice Lake client):
// 2 pipes x 8 lanes x 2 FLOP.
constexpr double kF32FlopPerCycle = 32.0;

// Peak f32 GFLOP/s = cores x clock x FLOP per cycle per core.
inline double cpu_f32_peak_gflops(int cores) { return cores * cpu_mhz() * 1e-3 * kF32FlopPerCycle; }

// "236.8 GFLOP/s = 2 cores x 3.700 GHz (measured; /proc/cpuinfo: 2.596) x 32 FLOP/cycle (2 x 256-bit FMA pipes)".
inline std::string cpu_f32_peak_description(int cores) {
  char clock[96];
  if (measured_cpu_mhz() > 0.0) {
    std::snprintf(clock, sizeof(clock), "%.3f GHz (measured; /proc/cpuinfo: %.3f)", cpu_mhz() * 1e-3,
                  cpuinfo_mhz() * 1e-3);
  } else {
    std::snprintf(clock, sizeof(clock), "%.3f GHz (/proc/cpuinfo)", cpu_mhz() * 1e-3);
  }
  char text[200];
  std::snprintf(text, sizeof(text), "%.1f GFLOP/s = %d cores x %s x %.0f FLOP/cycle (2 x 256-bit FMA pipes)",
                cpu_f32_peak_gflops(cores), cores, clock, kF32FlopPerCycle);
  return text;
}

}  // namespace se::machine
