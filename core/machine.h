// What the host machine can do at most, for reporting measured throughput as a share of it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include "core/sanitizer.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

// f32 FLOP per cycle per core where it cannot be measured (not x86-64, or no FMA): two 256-bit FMA pipes
// (Zen 2-4, Haswell .. Ice Lake client), 2 pipes x 8 lanes x 2 FLOP.
constexpr double kAssumedF32FlopPerCycle = 32.0;

#if defined(__x86_64__)
// The FMA probes below: kFmaChains independent chains, more than the FMA pipes x their latency (2 x 4 on
// current cores), so that the pipes, not the chains, set the pace; acc = acc * m + c stays near 1 (no
// overflow, no denormals). Each returns f32 FLOP per second of the calling core.
constexpr int kFmaChains = 12;

inline double fma_flops(int64_t iterations, int lanes, std::chrono::steady_clock::time_point begin, float result) {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  volatile float sink = result;  // the FMAs' results are used
  (void)sink;
  return static_cast<double>(iterations) * kFmaChains * lanes * 2.0 / seconds;
}

__attribute__((target("avx512f"))) SE_NO_SANITIZE inline double avx512_fma_flops(int64_t iterations) {
  __m512 acc[kFmaChains];
  for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm512_set1_ps(1.0f + 0.01f * static_cast<float>(i));
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
  const auto begin = std::chrono::steady_clock::now();
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], m, c);
  }
  __m512 total = acc[0];
  for (int i = 1; i < kFmaChains; ++i) total = _mm512_add_ps(total, acc[i]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, total);
  return fma_flops(iterations, 16, begin, lanes[0] + lanes[15]);
}

__attribute__((target("avx2,fma"))) SE_NO_SANITIZE inline double avx2_fma_flops(int64_t iterations) {
  __m256 acc[kFmaChains];
  for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm256_set1_ps(1.0f + 0.01f * static_cast<float>(i));
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
  const auto begin = std::chrono::steady_clock::now();
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], m, c);
  }
  __m256 total = acc[0];
  for (int i = 1; i < kFmaChains; ++i) total = _mm256_add_ps(total, acc[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, total);
  return fma_flops(iterations, 8, begin, lanes[0] + lanes[7]);
}
#endif

// f32 FLOP per cycle per core, measured: the FMA throughput of one core in the widest vectors it has
// (AVX-512, else AVX2), divided by the measured clock and rounded to a power of two (the pipes' lanes
// x 2 x their count: 32 on Zen 4, whose AVX-512 FMAs take both 256-bit pipes, 64 on Zen 5 and on
// Xeons with two 512-bit FMA units). The best of a few runs of about 5 ms, once per process; 0 where
// it cannot be measured.
inline double measured_f32_flop_per_cycle() {
  static const double flop_per_cycle = [] {
#if defined(__x86_64__)
    const bool avx512 = __builtin_cpu_supports("avx512f");
    if (!avx512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0.0;
    const double mhz = measured_cpu_mhz();
    if (mhz <= 0.0) return 0.0;
    constexpr int64_t kIterations = 1'000'000;  // 12 M FMAs: ~3-6 ms
    auto run = [&] { return avx512 ? avx512_fma_flops(kIterations) : avx2_fma_flops(kIterations); };
    run();  // warm-up: the clock ramps up, and wide units power on
    double best = 0.0;
    for (int r = 0; r < 5; ++r) best = std::max(best, run());
    return std::exp2(std::round(std::log2(best / (mhz * 1e6))));
#else
    return 0.0;
#endif
  }();
  return flop_per_cycle;
}

// The FLOP per cycle per core the peak below assumes: the measured one, else kAssumedF32FlopPerCycle.
inline double f32_flop_per_cycle() {
  const double measured = measured_f32_flop_per_cycle();
  return measured > 0.0 ? measured : kAssumedF32FlopPerCycle;
}

// Peak f32 GFLOP/s = cores x clock x FLOP per cycle per core.
inline double cpu_f32_peak_gflops(int cores) {
  return cores * cpu_mhz() * 1e-3 * f32_flop_per_cycle();
}

// "460.8 GFLOP/s = 2 cores x 3.600 GHz (measured; /proc/cpuinfo: 2.596) x 64 FLOP/cycle (measured, AVX-512 FMAs)".
inline std::string cpu_f32_peak_description(int cores) {
  char clock[96];
  if (measured_cpu_mhz() > 0.0) {
    std::snprintf(clock, sizeof(clock), "%.3f GHz (measured; /proc/cpuinfo: %.3f)", cpu_mhz() * 1e-3,
                  cpuinfo_mhz() * 1e-3);
  } else {
    std::snprintf(clock, sizeof(clock), "%.3f GHz (/proc/cpuinfo)", cpu_mhz() * 1e-3);
  }
  const char* how = "assumed: 2 x 256-bit FMA pipes";
#if defined(__x86_64__)
  if (measured_f32_flop_per_cycle() > 0.0)
    how = __builtin_cpu_supports("avx512f") ? "measured, AVX-512 FMAs" : "measured, AVX2 FMAs";
#endif
  char text[240];
  std::snprintf(text, sizeof(text), "%.1f GFLOP/s = %d cores x %s x %.0f FLOP/cycle (%s)", cpu_f32_peak_gflops(cores),
                cores, clock, f32_flop_per_cycle(), how);
  return text;
}

}  // namespace se::machine
