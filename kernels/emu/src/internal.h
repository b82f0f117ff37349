// Internals of the emulator shared by its source files: fiber stacks, the per-OS-thread block runner that
// schedules a block's threads as fibers, the launch record and the runtime's error state.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <random>
#include <source_location>
#include <string>
#include <vector>

#include <boost/context/detail/fcontext.hpp>

#include "kernels/emu/cuda_emu.h"
#include "kernels/emu/emu.h"

namespace se::emu::detail {

namespace fctx = boost::context::detail;

// ---- fiber.cpp ----------------------------------------------------------------------------------------

// Fiber stacks, mmap'ed with a guard page below each so an overflow faults instead of corrupting a
// neighbour. Kept for the life of the OS thread, so launches after the first allocate nothing.
// Size: SEGENGINE_EMU_STACK_KB (default 64 KiB: a few KiB of kernel locals plus printf's needs).
class StackPool {
 public:
  StackPool();
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  void reserve(size_t count);  // makes stacks [0, count) exist
  void* top(size_t index) const { return tops_[index]; }
  size_t stack_bytes() const { return stack_bytes_ - kMaxColour; }  // usable below top(i)
  static constexpr size_t kMaxColour = 61 * 64;

 private:
  struct Region {
    void* base;
    size_t bytes;
  };
  size_t stack_bytes_;
  std::vector<Region> regions_;
  std::vector<void*> tops_;
};

// ---- launch.cpp ---------------------------------------------------------------------------------------

// One kernel launch, shared by every OS thread that runs its blocks.
struct Launch {
  const char* name;
  dim3 grid;
  dim3 block;
  size_t shared_bytes;
  KernelBody body;
  const void* args;
  Schedule schedule;
  uint64_t seed;  // random schedule: mixed with the block index, so results do not depend on the pool

  std::atomic<bool> failed{false};
  std::mutex failure_mutex;
  std::string failure;  // the first failure's message
};

// ---- block.cpp ----------------------------------------------------------------------------------------

enum class ThreadState : uint8_t { kRunnable, kWaiting, kExited };

// One CUDA thread of the running block: a fiber plus what it waits for.
struct EmuThread {
  fctx::fcontext_t context = nullptr;
  uint3 index{};
  unsigned linear = 0;
  ThreadState state = ThreadState::kRunnable;
  WaitKind kind = WaitKind::kNone;
  std::source_location where;
  unsigned mask = 0;
  int param = 0;
  int width = 0;
  uint64_t value = 0;
  uint64_t result = 0;
};

// Runs blocks on the calling OS thread, one at a time: each thread of the block is a fiber, resumed in
// rounds (in the order the schedule picks) until it waits at a barrier or collective or exits. A fiber that
// stops switches straight to the next fiber of the round (starting the next round itself when this one is
// done); only the end of the block (all exited, or a kernel threw) switches back to run_block.
class BlockRunner {
 public:
  BlockRunner();
  static BlockRunner& for_this_thread();
  // The runner whose block is executing on this OS thread; aborts when called outside a kernel.
  static BlockRunner& current();
  [[noreturn]] static void outside_kernel();

  void run_block(Launch& launch, uint3 block_index);

  // Called from the running fiber (device.h, warp.h).
  int block_barrier(WaitKind kind, int predicate, const std::source_location& where);
  uint64_t warp_collective(WaitKind kind, unsigned mask, uint64_t value, int param, int width,
                           const std::source_location& where);
  unsigned active_mask() const;
  void* dynamic_shared() { return shared_.data(); }

 private:
  static void fiber_entry(fctx::transfer_t transfer);
  EmuThread* next_to_run();
  void yield(EmuThread* self);
  void switch_to(EmuThread* next);
  void* stack_bottom(unsigned thread) const;  // the lowest address of the fiber stack of `thread`
  void arrived(fctx::transfer_t transfer);
  void thread_exited(EmuThread& thread);
  void release_warp(unsigned base, unsigned mask);
  void make_runnable(EmuThread& thread);
  void fail(const EmuThread& thread, const std::string& what);
  [[noreturn]] void die(const std::string& what) const;
  std::string block_name() const;
  std::string describe_waits() const;

  Launch* launch_ = nullptr;
  uint3 block_index_{};
  unsigned thread_count_ = 0;
  unsigned exited_count_ = 0;
  std::vector<EmuThread> threads_;
  std::vector<unsigned> runnable_;  // resumed in the next round
  std::vector<unsigned> round_;     // this round's order; round_[round_next_] runs next
  size_t round_next_ = 0;
  std::vector<unsigned> warp_exited_;   // per warp: lanes that exited
  std::vector<unsigned> warp_waiting_;  // per warp: lanes waiting at a warp collective
  StackPool stacks_;
  fctx::fcontext_t scheduler_ = nullptr;  // run_block's context while fibers run
  EmuThread* running_ = nullptr;
  EmuThread* switched_from_ = nullptr;    // the fiber that made the last switch; nullptr: run_block
  std::mt19937_64 rng_;

  // Block barrier in progress.
  unsigned barrier_arrived_ = 0;
  int barrier_count_ = 0;
  WaitKind barrier_kind_ = WaitKind::kNone;
  std::source_location barrier_where_;

  std::vector<unsigned char> shared_;  // dynamic shared memory; operator new aligns it to 16 bytes
  bool failed_ = false;
  bool in_block_ = false;
  void* os_stack_bottom_ = nullptr;  // ASan builds: the OS thread's stack, for switches back to run_block
  size_t os_stack_bytes_ = 0;
};

const char* wait_kind_name(WaitKind kind);
bool same_file(const char* a, const char* b);  // strcmp
// Inline: every barrier and collective compares places.
inline bool same_place(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() && a.column() == b.column() &&
         (a.file_name() == b.file_name() || same_file(a.file_name(), b.file_name()));
}

// The runner of the block executing on this OS thread (block.cpp), nullptr outside a kernel.
extern thread_local constinit BlockRunner* tls_active_runner;
inline BlockRunner& BlockRunner::current() {
  if (tls_active_runner == nullptr) outside_kernel();
  return *tls_active_runner;
}
std::string format_place(const std::source_location& where);  // "file.cu:12"

// ---- runtime.cpp --------------------------------------------------------------------------------------

// Records `error` as the calling host thread's last error (cudaGetLastError) and returns it.
cudaError_t record(cudaError_t error);
// The largest dynamic shared memory `kernel` may launch with (cudaFuncSetAttribute).
size_t max_dynamic_shared(const void* kernel);
int worker_count();

}  // namespace se::emu::detail
