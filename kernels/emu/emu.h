// Emulator controls usable from plain C++ (no CUDA headers): the thread schedule and the limits of the
// emulated device. Tests and tools use it; kernels never need it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace se::emu {

// Order in which the scheduler resumes the runnable threads of a block in each scheduling round:
// forward (thread 0 first), reverse, or a fresh random permutation every round; and the order in which
// the pool takes a grid's blocks: ascending, descending, or a permutation per launch. Code that is correct
// only under one thread order lacks a barrier; a result whose bits change with the block order depends on
// the order of floating-point atomics (not reproducible run to run on a GPU).
// Environment: SEGENGINE_EMU_SCHEDULE=forward|reverse|random[:seed].
enum class Schedule { kForward, kReverse, kRandom };

void set_schedule(Schedule schedule, uint64_t seed = 0);
Schedule schedule();
// Parses "forward", "reverse", "random" or "random:<seed>"; returns false for anything else.
bool parse_schedule(const std::string& text, Schedule* schedule, uint64_t* seed);

// Limits of the emulated device.
constexpr size_t kDefaultSharedMemoryPerBlock = 48 * 1024;
constexpr size_t kMaxSharedMemoryPerBlockOptin = 227 * 1024;
constexpr int kMaxThreadsPerBlock = 1024;

// Device memory now allocated through cudaMalloc (bytes) and the number of live allocations.
size_t device_bytes_in_use();
size_t device_allocation_count();

}  // namespace se::emu
