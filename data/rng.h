// Random streams for the data pipeline, on the counter-based Philox generator of core/philox.h: a
// stream is a pure function of (seed, a, b) (e.g. seed, epoch, sample index), so every draw is
// reproducible whatever thread or worker makes it and in whatever order.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/philox.h"

namespace se {

class Rng {
 public:
  Rng(uint64_t seed, uint64_t a, uint64_t b = 0) {
    // Key of the stream: Philox of (a, b) under `seed`, so nearby (a, b) give unrelated streams.
    philox::Uint4 k = philox::philox4x32_10({static_cast<uint32_t>(a), static_cast<uint32_t>(a >> 32),
                                             static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32)},
                                            seed);
    key_ = (static_cast<uint64_t>(k.y) << 32) | k.x;
  }

  uint64_t key() const { return key_; }

  uint32_t next_u32() {
    if (used_ == 4) {
      block_value_ = philox::random_block(key_, block_++);
      used_ = 0;
    }
    return philox::word(block_value_, used_++);
  }
  uint64_t next_u64() { return (static_cast<uint64_t>(next_u32()) << 32) | next_u32(); }
  float uniform() { return philox::uniform01(next_u32()); }  // [0, 1)
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  // Integer in [lo, hi] (both included).
  int64_t uniform_int(int64_t lo, int64_t hi) {
    uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    return lo + static_cast<int64_t>(next_u64() % span);  // bias < span / 2^64: negligible
  }
  bool bernoulli(float p) { return uniform() < p; }
  float normal() {
    if (has_spare_normal_) {
      has_spare_normal_ = false;
      return spare_normal_;
    }
    // Box-Muller gives two: cos now, sin next time. u1 in (0, 1] so the log is finite.
    float u1 = 1.0f - uniform(), u2 = uniform();
    float radius = std::sqrt(-2.0f * std::log(u1)), angle = 6.2831853f * u2;
    spare_normal_ = radius * std::sin(angle);
    has_spare_normal_ = true;
    return radius * std::cos(angle);
  }

 private:
  uint64_t key_ = 0;
  uint64_t block_ = 0;
  philox::Uint4 block_value_{};
  int used_ = 4;
  float spare_normal_ = 0.f;
  bool has_spare_normal_ = false;
};

}  // namespace se
