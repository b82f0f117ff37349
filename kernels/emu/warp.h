// Warp collectives with explicit masks. Every lane named in `mask` must reach the same collective (same
// intrinsic, same source line, same mask); the scheduler (src/warp.cpp) parks each lane until all have
// arrived, then hands every lane its result. A lane in the mask that has exited, or lanes that meet at
// different collectives, abort the program with a message (a GPU would hang or return garbage).
#pragma once

#include <cstdint>
#include <cstring>
#include <source_location>
#include <type_traits>

#include "kernels/emu/device.h"

namespace se::emu::detail {

template <typename T>
inline uint64_t to_lane_bits(const T& value) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  return bits;
}

template <typename T>
inline T from_lane_bits(uint64_t bits) {
  T value;
  std::memcpy(static_cast<void*>(&value), &bits, sizeof(T));
  return value;
}

template <typename T>
inline T shuffle(WaitKind kind, unsigned mask, const T& var, int param, int width, const std::source_location& where) {
  return from_lane_bits<T>(warp_collective(kind, mask, to_lane_bits(var), param, width, where));
}

}  // namespace se::emu::detail

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,
                     const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::shuffle(se::emu::detail::WaitKind::kShfl, mask, var, src_lane, width, where);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                        const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::shuffle(se::emu::detail::WaitKind::kShflUp, mask, var, static_cast<int>(delta), width, where);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                          const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::shuffle(se::emu::detail::WaitKind::kShflDown, mask, var, static_cast<int>(delta), width,
                                  where);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                         const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::shuffle(se::emu::detail::WaitKind::kShflXor, mask, var, lane_mask, width, where);
}

inline void __syncwarp(unsigned mask = 0xffffffffu, const std::source_location& where = std::source_location::current()) {
  se::emu::detail::warp_collective(se::emu::detail::WaitKind::kSyncWarp, mask, 0, 0, warpSize, where);
}
inline unsigned __activemask() { return se::emu::detail::active_mask(); }

inline int __all_sync(unsigned mask, int predicate, const std::source_location& where = std::source_location::current()) {
  return static_cast<int>(
      se::emu::detail::warp_collective(se::emu::detail::WaitKind::kVoteAll, mask, predicate != 0, 0, warpSize, where));
}
inline int __any_sync(unsigned mask, int predicate, const std::source_location& where = std::source_location::current()) {
  return static_cast<int>(
      se::emu::detail::warp_collective(se::emu::detail::WaitKind::kVoteAny, mask, predicate != 0, 0, warpSize, where));
}
inline unsigned __ballot_sync(unsigned mask, int predicate,
                              const std::source_location& where = std::source_location::current()) {
  return static_cast<unsigned>(
      se::emu::detail::warp_collective(se::emu::detail::WaitKind::kBallot, mask, predicate != 0, 0, warpSize, where));
}

namespace se::emu::detail {
template <typename T>
inline T reduce(WaitKind kind, unsigned mask, T value, const std::source_location& where) {
  return static_cast<T>(warp_collective(kind, mask, static_cast<uint64_t>(static_cast<uint32_t>(value)), 0, warpSize, where));
}
}  // namespace se::emu::detail

inline int __reduce_add_sync(unsigned mask, int value, const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::reduce(se::emu::detail::WaitKind::kReduceAdd, mask, value, where);
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned value,
                                  const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::reduce(se::emu::detail::WaitKind::kReduceAdd, mask, value, where);
}
inline int __reduce_min_sync(unsigned mask, int value, const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::reduce(se::emu::detail::WaitKind::kReduceMinSigned, mask, value, where);
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned value,
                                  const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::reduce(se::emu::detail::WaitKind::kReduceMinUnsigned, mask, value, where);
}
inline int __reduce_max_sync(unsigned mask, int value, const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::reduce(se::emu::detail::WaitKind::kReduceMaxSigned, mask, value, where);
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned value,
                                  const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::reduce(se::emu::detail::WaitKind::kReduceMaxUnsigned, mask, value, where);
}
inline unsigned __reduce_and_sync(unsigned mask, unsigned value,
                                  const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::reduce(se::emu::detail::WaitKind::kReduceAnd, mask, value, where);
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned value,
                                 const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::reduce(se::emu::detail::WaitKind::kReduceOr, mask, value, where);
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned value,
                                  const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::reduce(se::emu::detail::WaitKind::kReduceXor, mask, value, where);
}

// Lanes in `mask` whose value equals this lane's (T up to 8 bytes, compared bitwise).
template <typename T>
inline unsigned __match_any_sync(unsigned mask, T value, const std::source_location& where = std::source_location::current()) {
  return static_cast<unsigned>(se::emu::detail::warp_collective(se::emu::detail::WaitKind::kMatchAny, mask,
                                                                 se::emu::detail::to_lane_bits(value), 0, warpSize,
                                                                 where));
}
