// Philox4x32-10 counter-based random numbers (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC'11). Element i of a random tensor depends only on (seed, offset + i), so the CPU and
// every CUDA thread produce identical streams without sharing state.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/half.h"

namespace se::philox {

struct Uint4 {
  uint32_t x, y, z, w;
};

SE_HOST_DEVICE inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
}

// One Philox4x32 round on the counter words (x, y, z, w) with round key (k0, k1).
SE_HOST_DEVICE inline void philox_round(uint32_t& x, uint32_t& y, uint32_t& z, uint32_t& w, uint32_t k0, uint32_t k1) {
  uint32_t hi0, hi1;
  const uint32_t lo0 = mulhilo(0xD2511F53u, x, &hi0);
  const uint32_t lo1 = mulhilo(0xCD9E8D57u, z, &hi1);
  x = hi1 ^ y ^ k0;
  y = lo1;
  z = hi0 ^ w ^ k1;
  w = lo0;
}
constexpr uint32_t kPhiloxKeyStep0 = 0x9E3779B9u, kPhiloxKeyStep1 = 0xBB67AE85u;

// Ten rounds of Philox4x32 on counter `ctr` with 64-bit key `seed`.
SE_HOST_DEVICE inline Uint4 philox4x32_10(Uint4 ctr, uint64_t seed) {
  uint32_t k0 = static_cast<uint32_t>(seed);
  uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    philox_round(ctr.x, ctr.y, ctr.z, ctr.w, k0, k1);
    k0 += kPhiloxKeyStep0;
    k1 += kPhiloxKeyStep1;
  }
  return ctr;
}

// Four 32-bit random words for block number `block` (= element index / 4) of stream `seed`.
SE_HOST_DEVICE inline Uint4 random_block(uint64_t seed, uint64_t block) {
  return philox4x32_10(Uint4{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}, seed);
}

SE_HOST_DEVICE inline uint32_t word(const Uint4& r, int i) {
  return i == 0 ? r.x : i == 1 ? r.y : i == 2 ? r.z : r.w;
}

// Uniform float in [0, 1) from the top 24 bits: every value is exactly representable.
SE_HOST_DEVICE inline float uniform01(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// The uniform [0, 1) value of element `index` of stream (seed, offset).
SE_HOST_DEVICE inline float uniform_at(uint64_t seed, uint64_t index) {
  Uint4 r = random_block(seed, index >> 2);
  return uniform01(word(r, static_cast<int>(index & 3u)));
}

// The standard normal value of element `index`: Box-Muller on the word pair of its half-block, so
// elements 2k and 2k+1 share one pair (cos and sin branches). Computed in double so the CPU and the
// GPU agree to the last float bit.
SE_HOST_DEVICE inline float normal_at(uint64_t seed, uint64_t index) {
  Uint4 r = random_block(seed, index >> 2);
  int pair = static_cast<int>((index >> 1) & 1u);
  uint32_t a = pair == 0 ? r.x : r.z;
  uint32_t b = pair == 0 ? r.y : r.w;
  // u1 in (0, 1] so log(u1) is finite.
  double u1 = (static_cast<double>(a >> 8) + 1.0) * (1.0 / 16777216.0);
  double u2 = static_cast<double>(b >> 8) * (1.0 / 16777216.0);
  double radius = std::sqrt(-2.0 * std::log(u1));
  double angle = 6.283185307179586 * u2;
  return static_cast<float>((index & 1u) ? radius * std::sin(angle) : radius * std::cos(angle));
}

}  // namespace se::philox
