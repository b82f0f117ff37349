// Helpers for kernel tests: deterministic random data, dtype conversions through double, and (in
// builds with CUDA) a device buffer that copies to and from host vectors.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/half.h"
#ifdef SEGENGINE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif
#ifdef SEGENGINE_CUDA_EMU
#include "kernels/emu/emu.h"
#endif

namespace se::test {

inline std::vector<double> random_values(int64_t n, uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

// Values rounded to T (through float for the 16-bit types).
template <typename T>
std::vector<T> cast_to(const std::vector<double>& v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if constexpr (sizeof(T) == 2 && !std::is_integral_v<T>) {
      out[i] = T(static_cast<float>(v[i]));
    } else {
      out[i] = static_cast<T>(v[i]);
    }
  }
  return out;
}

template <typename T>
std::vector<double> to_double(const std::vector<T>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if constexpr (sizeof(T) == 2 && !std::is_integral_v<T>) {
      out[i] = static_cast<float>(v[i]);
    } else {
      out[i] = static_cast<double>(v[i]);
    }
  }
  return out;
}

// The bits of every element, so that -0 differs from +0 and NaNs compare equal to themselves.
template <typename T>
std::vector<uint64_t> bits_of(const std::vector<T>& v) {
  std::vector<uint64_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) std::memcpy(&out[i], &v[i], sizeof(T));
  return out;
}

// max |got - want| / max |want| (max |got - want| when want is all zeros); infinite when got has a NaN.
inline double relative_error(const std::vector<double>& got, const std::vector<double>& want) {
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(got[i])) return INFINITY;
    max_diff = std::max(max_diff, std::abs(got[i] - want[i]));
    max_ref = std::max(max_ref, std::abs(want[i]));
  }
  return max_ref == 0.0 ? max_diff : max_diff / max_ref;
}

// Relative precision of one rounding to T.
template <typename T> constexpr double unit_roundoff() {
  if constexpr (std::is_same_v<T, f16>) return 1.0 / 2048;
  if constexpr (std::is_same_v<T, bf16>) return 1.0 / 256;
  if constexpr (std::is_same_v<T, float>) return 6e-8;
  return 1.2e-16;
}

// Absolute rounding step of T near zero (f16 subnormals are 2^-24 apart; the others are negligible).
template <typename T> constexpr double subnormal_step() { return std::is_same_v<T, f16> ? 5.9604644775390625e-8 : 0.0; }

#ifdef SEGENGINE_HAS_CUDA
// GTEST_SKIP works only in the test body itself, so this is a macro.
#define SE_SKIP_WITHOUT_CUDA()                                                        \
  do {                                                                                \
    if (::se::kernels::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";  \
  } while (0)

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count) : count_(count) {
    ptr_ = static_cast<T*>(kernels::cuda::device_malloc(std::max<size_t>(count, 1) * sizeof(T)));
    if (ptr_ == nullptr) throw std::bad_alloc();
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    if (count_ > 0) kernels::cuda::copy_host_to_device(ptr_, host.data(), count_ * sizeof(T), nullptr);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { kernels::cuda::device_free(ptr_); }

  T* get() { return ptr_; }
  std::vector<T> to_host() const {
    std::vector<T> host(count_);
    if (count_ > 0) kernels::cuda::copy_device_to_host(host.data(), ptr_, count_ * sizeof(T), nullptr);
    return host;
  }

 private:
  size_t count_;
  T* ptr_ = nullptr;
};

// Runs `run` once per block order, `orders` times (at most 4), and returns its results: under the emulator
// the forward, a random, the reverse and another random schedule, in that order (kernels/emu/emu.h; the
// schedule is restored after), on a GPU plain runs (its block order varies by itself). A kernel whose bits
// depend on the order of floating-point atomics gives different results.
template <typename Run>
auto results_in_several_block_orders(Run run, int orders = 4) {
  std::vector<decltype(run())> results;
#ifdef SEGENGINE_CUDA_EMU
  const emu::Schedule before = emu::schedule();
  for (int order = 0; order < orders; ++order) {
    emu::set_schedule(order == 0   ? emu::Schedule::kForward
                      : order == 2 ? emu::Schedule::kReverse
                                   : emu::Schedule::kRandom,
                      static_cast<uint64_t>(order));
    results.push_back(run());
  }
  emu::set_schedule(before);
#else
  for (int order = 0; order < orders; ++order) results.push_back(run());
#endif
  return results;
}
#endif

}  // namespace se::test
