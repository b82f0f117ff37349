// Device-side builtins of the emulator: thread/block indices, block barriers, memory fences, clocks.
// Included by kernels/emu/cuda_emu.h after the CUDA headers (dim3, uint3).
#pragma once

#include <cstdint>
#include <source_location>

#include <cuda_runtime.h>

// The scheduler stores the running fiber's indices here before it resumes the fiber. Fibers of one block
// share an OS thread, so these are thread_local; `constinit` spares every access a TLS init wrapper.
extern thread_local constinit uint3 threadIdx;
extern thread_local constinit uint3 blockIdx;
extern thread_local constinit dim3 blockDim;
extern thread_local constinit dim3 gridDim;
constexpr int warpSize = 32;

namespace se::emu::detail {

// What a fiber waits for when it yields to the scheduler. Block barriers first, then warp collectives.
enum class WaitKind : uint8_t {
  kNone,
  kSyncThreads,
  kSyncThreadsCount,
  kSyncThreadsAnd,
  kSyncThreadsOr,
  kSyncWarp,
  kShfl,
  kShflUp,
  kShflDown,
  kShflXor,
  kVoteAll,
  kVoteAny,
  kBallot,
  kReduceAdd,
  kReduceMinSigned,
  kReduceMaxSigned,
  kReduceMinUnsigned,
  kReduceMaxUnsigned,
  kReduceAnd,
  kReduceOr,
  kReduceXor,
  kMatchAny,
};

// Waits at a block barrier; returns the combined predicate (count of non-zero predicates for the _count
// form, 0/1 for _and/_or, 0 for the plain barrier).
int block_barrier(WaitKind kind, int predicate, const std::source_location& where);

// Waits until every lane in `mask` of the calling warp arrives at the same collective, then returns this
// lane's result. `value` carries up to 8 bytes; `param` is the source lane, delta or xor mask of a shuffle.
uint64_t warp_collective(WaitKind kind, unsigned mask, uint64_t value, int param, int width,
                         const std::source_location& where);

// Mask of the lanes of the calling warp that exist and have not exited.
unsigned active_mask();

// Cycles-like counter for clock()/clock64() (nanoseconds of a steady clock).
long long clock_ticks();

}  // namespace se::emu::detail

namespace se::emu {
// The current block's dynamic shared memory (16-byte aligned); DYN_SHARED in kernels/cuda/common.cuh.
void* dynamic_shared_memory();
}  // namespace se::emu

inline void __syncthreads(const std::source_location& where = std::source_location::current()) {
  se::emu::detail::block_barrier(se::emu::detail::WaitKind::kSyncThreads, 0, where);
}
inline int __syncthreads_count(int predicate, const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::block_barrier(se::emu::detail::WaitKind::kSyncThreadsCount, predicate != 0, where);
}
inline int __syncthreads_and(int predicate, const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::block_barrier(se::emu::detail::WaitKind::kSyncThreadsAnd, predicate != 0, where);
}
inline int __syncthreads_or(int predicate, const std::source_location& where = std::source_location::current()) {
  return se::emu::detail::block_barrier(se::emu::detail::WaitKind::kSyncThreadsOr, predicate != 0, where);
}

// Fibers switch only at barriers and collectives, so fences need only stop the compiler (and, for
// blocks on other OS threads, the CPU) from reordering memory accesses.
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

inline long long clock64() { return se::emu::detail::clock_ticks(); }
