// CUDA atomics on global and shared memory. Blocks run concurrently on several OS threads, so every atomic
// is a real one (std::atomic_ref, sequentially consistent is stronger than CUDA's relaxed atomics).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace se::emu::detail {

template <typename T>
inline std::atomic_ref<T> atomic_at(T* address) {
  return std::atomic_ref<T>(*address);
}

// Read-modify-write through compare-exchange for the operations std::atomic_ref lacks.
template <typename T, typename Op>
inline T atomic_update(T* address, Op op) {
  std::atomic_ref<T> ref(*address);
  T old = ref.load(std::memory_order_relaxed);
  while (!ref.compare_exchange_weak(old, op(old))) {
  }
  return old;
}

// 16-bit floats: compare-exchange on the raw bits, arithmetic in float.
template <typename Half>
inline Half atomic_add_16(Half* address, Half value) {
  auto* bits = reinterpret_cast<unsigned short*>(address);
  std::atomic_ref<unsigned short> ref(*bits);
  unsigned short old = ref.load(std::memory_order_relaxed);
  for (;;) {
    Half old_value;
    std::memcpy(static_cast<void*>(&old_value), &old, sizeof(old));
    Half sum = Half(static_cast<float>(old_value) + static_cast<float>(value));
    unsigned short desired;
    std::memcpy(&desired, &sum, sizeof(desired));
    if (ref.compare_exchange_weak(old, desired)) return old_value;
  }
}

template <typename T>
inline T atomic_cas(T* address, T compare, T value) {
  std::atomic_ref<T>(*address).compare_exchange_strong(compare, value);
  return compare;  // holds the old value whether or not the exchange happened
}

}  // namespace se::emu::detail

#define SE_EMU_ATOMIC_FETCH(name, fetch, T) \
  inline T name(T* address, T value) { return se::emu::detail::atomic_at(address).fetch(value); }

SE_EMU_ATOMIC_FETCH(atomicAdd, fetch_add, int)
SE_EMU_ATOMIC_FETCH(atomicAdd, fetch_add, unsigned)
SE_EMU_ATOMIC_FETCH(atomicAdd, fetch_add, unsigned long long)
SE_EMU_ATOMIC_FETCH(atomicAdd, fetch_add, float)
SE_EMU_ATOMIC_FETCH(atomicAdd, fetch_add, double)
SE_EMU_ATOMIC_FETCH(atomicSub, fetch_sub, int)
SE_EMU_ATOMIC_FETCH(atomicSub, fetch_sub, unsigned)
SE_EMU_ATOMIC_FETCH(atomicAnd, fetch_and, int)
SE_EMU_ATOMIC_FETCH(atomicAnd, fetch_and, unsigned)
SE_EMU_ATOMIC_FETCH(atomicAnd, fetch_and, unsigned long long)
SE_EMU_ATOMIC_FETCH(atomicOr, fetch_or, int)
SE_EMU_ATOMIC_FETCH(atomicOr, fetch_or, unsigned)
SE_EMU_ATOMIC_FETCH(atomicOr, fetch_or, unsigned long long)
SE_EMU_ATOMIC_FETCH(atomicXor, fetch_xor, int)
SE_EMU_ATOMIC_FETCH(atomicXor, fetch_xor, unsigned)
SE_EMU_ATOMIC_FETCH(atomicXor, fetch_xor, unsigned long long)
SE_EMU_ATOMIC_FETCH(atomicExch, exchange, int)
SE_EMU_ATOMIC_FETCH(atomicExch, exchange, unsigned)
SE_EMU_ATOMIC_FETCH(atomicExch, exchange, unsigned long long)
SE_EMU_ATOMIC_FETCH(atomicExch, exchange, float)
#undef SE_EMU_ATOMIC_FETCH

inline __half atomicAdd(__half* address, __half value) { return se::emu::detail::atomic_add_16(address, value); }
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* address, __nv_bfloat16 value) {
  return se::emu::detail::atomic_add_16(address, value);
}

#define SE_EMU_ATOMIC_MINMAX(T)                                                                           \
  inline T atomicMin(T* address, T value) {                                                               \
    return se::emu::detail::atomic_update(address, [value](T old) { return value < old ? value : old; }); \
  }                                                                                                       \
  inline T atomicMax(T* address, T value) {                                                               \
    return se::emu::detail::atomic_update(address, [value](T old) { return value > old ? value : old; }); \
  }
SE_EMU_ATOMIC_MINMAX(int)
SE_EMU_ATOMIC_MINMAX(unsigned)
SE_EMU_ATOMIC_MINMAX(long long)
SE_EMU_ATOMIC_MINMAX(unsigned long long)
#undef SE_EMU_ATOMIC_MINMAX

// ((old >= limit) ? 0 : old + 1) and (((old == 0) || (old > limit)) ? limit : old - 1), as in CUDA.
inline unsigned atomicInc(unsigned* address, unsigned limit) {
  return se::emu::detail::atomic_update(address, [limit](unsigned old) { return old >= limit ? 0u : old + 1u; });
}
inline unsigned atomicDec(unsigned* address, unsigned limit) {
  return se::emu::detail::atomic_update(address,
                                        [limit](unsigned old) { return (old == 0 || old > limit) ? limit : old - 1u; });
}

inline int atomicCAS(int* address, int compare, int value) { return se::emu::detail::atomic_cas(address, compare, value); }
inline unsigned atomicCAS(unsigned* address, unsigned compare, unsigned value) {
  return se::emu::detail::atomic_cas(address, compare, value);
}
inline unsigned long long atomicCAS(unsigned long long* address, unsigned long long compare, unsigned long long value) {
  return se::emu::detail::atomic_cas(address, compare, value);
}
inline unsigned short atomicCAS(unsigned short* address, unsigned short compare, unsigned short value) {
  return se::emu::detail::atomic_cas(address, compare, value);
}

// Scope-qualified forms: every atomic is device- and system-wide here.
template <typename T, typename... Rest>
inline auto atomicAdd_block(T* address, Rest... rest) {
  return atomicAdd(address, rest...);
}
template <typename T, typename... Rest>
inline auto atomicAdd_system(T* address, Rest... rest) {
  return atomicAdd(address, rest...);
}
