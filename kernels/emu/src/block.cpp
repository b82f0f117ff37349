// The block runner: the threads of one block are fibers on one OS thread. Every runnable fiber is resumed
// once per round, in the order the schedule picks; a fiber runs until it waits at a block barrier or warp
// collective (src/warp.cpp) or exits. When the last thread arrives at a barrier, all of them become runnable
// for the next round. A round with no runnable thread while some are alive is a deadlock.
// A fiber that stops picks the next one itself and jumps straight to it (one context switch, not two through
// a scheduler); it also starts the next round when the current one is done. Only the end of the block jumps
// back to run_block.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <sstream>

#include "core/sanitizer.h"
#include "kernels/emu/src/internal.h"

#if defined(SEGENGINE_ASAN)
#include <pthread.h>
#include <sanitizer/common_interface_defs.h>
#endif

thread_local constinit uint3 threadIdx{};
thread_local constinit uint3 blockIdx{};
thread_local constinit dim3 blockDim{};
thread_local constinit dim3 gridDim{};

namespace se::emu::detail {

thread_local constinit BlockRunner* tls_active_runner = nullptr;

std::string format_place(const std::source_location& where) {
  const char* file = where.file_name();
  if (const char* slash = std::strrchr(file, '/')) file = slash + 1;
  char text[256];
  std::snprintf(text, sizeof(text), "%s:%u", file, static_cast<unsigned>(where.line()));
  return text;
}

namespace {

std::string format_index(uint3 index) {
  char text[48];
  std::snprintf(text, sizeof(text), "(%u,%u,%u)", index.x, index.y, index.z);
  return text;
}

}  // namespace

const char* wait_kind_name(WaitKind kind) {
  switch (kind) {
    case WaitKind::kNone: return "nothing";
    case WaitKind::kSyncThreads: return "__syncthreads";
    case WaitKind::kSyncThreadsCount: return "__syncthreads_count";
    case WaitKind::kSyncThreadsAnd: return "__syncthreads_and";
    case WaitKind::kSyncThreadsOr: return "__syncthreads_or";
    case WaitKind::kSyncWarp: return "__syncwarp";
    case WaitKind::kShfl: return "__shfl_sync";
    case WaitKind::kShflUp: return "__shfl_up_sync";
    case WaitKind::kShflDown: return "__shfl_down_sync";
    case WaitKind::kShflXor: return "__shfl_xor_sync";
    case WaitKind::kVoteAll: return "__all_sync";
    case WaitKind::kVoteAny: return "__any_sync";
    case WaitKind::kBallot: return "__ballot_sync";
    case WaitKind::kReduceAdd: return "__reduce_add_sync";
    case WaitKind::kReduceMinSigned:
    case WaitKind::kReduceMinUnsigned: return "__reduce_min_sync";
    case WaitKind::kReduceMaxSigned:
    case WaitKind::kReduceMaxUnsigned: return "__reduce_max_sync";
    case WaitKind::kReduceAnd: return "__reduce_and_sync";
    case WaitKind::kReduceOr: return "__reduce_or_sync";
    case WaitKind::kReduceXor: return "__reduce_xor_sync";
    case WaitKind::kMatchAny: return "__match_any_sync";
  }
  return "?";
}

bool same_file(const char* a, const char* b) { return std::strcmp(a, b) == 0; }

BlockRunner& BlockRunner::for_this_thread() {
  thread_local BlockRunner runner;
  return runner;
}

BlockRunner::BlockRunner() {
#if defined(SEGENGINE_ASAN)
  // The bounds of this OS thread's stack, where run_block waits while fibers run (ASan's switch to it).
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    pthread_attr_getstack(&attr, &os_stack_bottom_, &os_stack_bytes_);
    pthread_attr_destroy(&attr);
  }
#endif
}

void BlockRunner::outside_kernel() {
  std::fprintf(stderr, "segengine-emu: a device function (barrier, collective, shared memory) was called outside a kernel\n");
  std::abort();
}

void BlockRunner::run_block(Launch& launch, uint3 block_index) {
  launch_ = &launch;
  block_index_ = block_index;
  thread_count_ = launch.block.x * launch.block.y * launch.block.z;
  if (threads_.size() < thread_count_) threads_.resize(thread_count_);
  stacks_.reserve(thread_count_);
  const unsigned warps = (thread_count_ + 31) / 32;
  warp_exited_.assign(warps, 0);
  warp_waiting_.assign(warps, 0);
  runnable_.clear();
  runnable_.reserve(thread_count_);  // switches never allocate
  round_.reserve(thread_count_);
  if (asan::kEnabled && failed_) {
    // The failed block's waiting fibers never returned: their frames' redzones are still poisoned.
    for (unsigned i = 0; i < threads_.size(); ++i) asan::unpoison(stack_bottom(i), stacks_.stack_bytes());
  }
  for (unsigned i = 0; i < thread_count_; ++i) {
    EmuThread& t = threads_[i];
    t.context = fctx::make_fcontext(stacks_.top(i), stacks_.stack_bytes(), &BlockRunner::fiber_entry);
    t.index = {i % launch.block.x, (i / launch.block.x) % launch.block.y, i / (launch.block.x * launch.block.y)};
    t.linear = i;
    t.state = ThreadState::kRunnable;
    t.kind = WaitKind::kNone;
    runnable_.push_back(i);
  }
  barrier_arrived_ = 0;
  barrier_count_ = 0;
  exited_count_ = 0;
  failed_ = false;
  asan::unpoison(shared_.data(), shared_.size());  // the last block's tail, before resize copies it
  if (shared_.size() < launch.shared_bytes) shared_.resize(launch.shared_bytes);
  // Fresh dynamic shared memory holds garbage on a GPU; all-ones bytes (NaN floats, -1 ints) make reads of
  // never-written shared memory show up in results instead of silently reading zeros.
  if (launch.shared_bytes > 0) std::memset(shared_.data(), 0xff, launch.shared_bytes);  // data() may be null
  // ASan: past the launch's dynamic shared memory is out of bounds, though earlier launches made it exist.
  asan::hand_out(shared_.data(), launch.shared_bytes, shared_.size());
  const unsigned long long block_linear =
      block_index.x + static_cast<unsigned long long>(launch.grid.x) * (block_index.y + launch.grid.y * block_index.z);
  rng_.seed(launch.seed ^ (block_linear * 0x9e3779b97f4a7c15ull));

  blockIdx = block_index;
  blockDim = launch.block;
  gridDim = launch.grid;
  tls_active_runner = this;
  round_.clear();
  round_next_ = 0;
  running_ = nullptr;        // run_block is the running context
  switch_to(next_to_run());  // returns when the block is done
  tls_active_runner = nullptr;
  launch_ = nullptr;
}

// The fiber to run after the current one stops, nullptr when the block is done (all exited, or a kernel threw).
// Starts the next round, in the schedule's order, when this one is exhausted.
EmuThread* BlockRunner::next_to_run() {
  if (failed_ || exited_count_ == thread_count_) return nullptr;
  if (round_next_ == round_.size()) {
    if (runnable_.empty()) {
      die("segengine-emu: deadlock in kernel '" + std::string(launch_->name) + "' block " + block_name() + ": " +
          describe_waits());
    }
    round_.swap(runnable_);
    runnable_.clear();
    round_next_ = 0;
    if (launch_->schedule == Schedule::kReverse) {
      std::reverse(round_.begin(), round_.end());
    } else if (launch_->schedule == Schedule::kRandom) {
      std::shuffle(round_.begin(), round_.end(), rng_);
    }
  }
  return &threads_[round_[round_next_++]];
}

// Jumps from the running context (a fiber, or run_block when running_ is nullptr) to `next`, or back to
// run_block when `next` is nullptr.
void BlockRunner::switch_to(EmuThread* next) {
  switched_from_ = running_;
  running_ = next;
  fctx::fcontext_t target = scheduler_;
  if (next != nullptr) {
    threadIdx = next->index;
    target = next->context;
  }
#if defined(SEGENGINE_ASAN)
  // ASan must know which stack runs (fiber annotations), or it reports the fibers' frames as overflows of the
  // OS thread's stack. An exiting fiber is never resumed: its frames are unpoisoned (their redzones would
  // otherwise outlive it into the next block's use of the stack) and its fake stack freed (nullptr save).
  const bool exiting = switched_from_ != nullptr && switched_from_->state == ThreadState::kExited;
  if (exiting) __asan_handle_no_return();
  void* fake_stack = nullptr;
  if (next != nullptr) {
    __sanitizer_start_switch_fiber(exiting ? nullptr : &fake_stack, stack_bottom(next->linear), stacks_.stack_bytes());
  } else {
    __sanitizer_start_switch_fiber(exiting ? nullptr : &fake_stack, os_stack_bottom_, os_stack_bytes_);
  }
  const fctx::transfer_t transfer = fctx::jump_fcontext(target, this);
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
  arrived(transfer);
#else
  arrived(fctx::jump_fcontext(target, this));
#endif
}

void* BlockRunner::stack_bottom(unsigned thread) const {
  return static_cast<char*>(stacks_.top(thread)) - stacks_.stack_bytes();
}

// Back on a context after a switch: remember where the switching context stopped, so it can be resumed.
void BlockRunner::arrived(fctx::transfer_t transfer) {
  if (switched_from_ == nullptr) {
    scheduler_ = transfer.fctx;
  } else {
    switched_from_->context = transfer.fctx;
  }
}

// The running fiber `self` stopped (it waits or exited): run the next one.
void BlockRunner::yield(EmuThread* self) {
  EmuThread* next = next_to_run();
  if (next != self) switch_to(next);  // a fiber released by its own arrival just continues
}

void BlockRunner::fiber_entry(fctx::transfer_t transfer) {
#if defined(SEGENGINE_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);  // a new fiber has no fake stack to restore
#endif
  auto* runner = static_cast<BlockRunner*>(transfer.data);
  runner->arrived(transfer);
  EmuThread& self = *runner->running_;
  // An exception cannot cross the fiber boundary: record it; the launch reports cudaErrorLaunchFailure.
  try {
    runner->launch_->body(runner->launch_->args);
  } catch (const std::exception& error) {
    runner->fail(self, error.what());
  } catch (...) {
    runner->fail(self, "unknown exception");
  }
  runner->thread_exited(self);
  runner->yield(&self);  // never resumed: the entry function of a fiber must not return
  std::abort();
}

void BlockRunner::fail(const EmuThread& thread, const std::string& what) {
  failed_ = true;
  std::lock_guard<std::mutex> lock(launch_->failure_mutex);
  if (!launch_->failed.exchange(true)) {
    launch_->failure = "kernel '" + std::string(launch_->name) + "' block " + block_name() + " thread " +
                       format_index(thread.index) + " threw: " + what;
  }
}

void BlockRunner::make_runnable(EmuThread& thread) {
  thread.state = ThreadState::kRunnable;
  thread.kind = WaitKind::kNone;
  runnable_.push_back(thread.linear);
}

int BlockRunner::block_barrier(WaitKind kind, int predicate, const std::source_location& where) {
  EmuThread& self = *running_;
  if (barrier_arrived_ == 0) {
    barrier_kind_ = kind;
    barrier_where_ = where;
    barrier_count_ = 0;
  } else if (kind != barrier_kind_ || !same_place(where, barrier_where_)) {
    die("segengine-emu: barrier mismatch in kernel '" + std::string(launch_->name) + "' block " + block_name() +
        ": thread " + format_index(self.index) + " waits at " + wait_kind_name(kind) + " (" + format_place(where) +
        ") while " + std::to_string(barrier_arrived_) + " threads wait at " + wait_kind_name(barrier_kind_) + " (" +
        format_place(barrier_where_) + ")");
  }
  self.state = ThreadState::kWaiting;
  self.kind = kind;
  self.where = where;
  barrier_count_ += predicate;
  if (++barrier_arrived_ == thread_count_) {
    int result = 0;
    if (kind == WaitKind::kSyncThreadsCount) result = barrier_count_;
    if (kind == WaitKind::kSyncThreadsAnd) result = barrier_count_ == static_cast<int>(thread_count_);
    if (kind == WaitKind::kSyncThreadsOr) result = barrier_count_ > 0;
    for (unsigned i = 0; i < thread_count_; ++i) {
      threads_[i].result = static_cast<uint64_t>(result);
      make_runnable(threads_[i]);
    }
    barrier_arrived_ = 0;
  }
  yield(&self);
  return static_cast<int>(self.result);
}

unsigned BlockRunner::active_mask() const {
  const unsigned base = running_->linear & ~31u;
  const unsigned lanes = std::min(32u, thread_count_ - base);
  const unsigned existing = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
  return existing & ~warp_exited_[base / 32];
}

std::string BlockRunner::block_name() const { return format_index(block_index_); }

// "64 of 128 threads wait at __syncthreads (k.cu:12), 64 exited": waiting threads grouped by what and
// where they wait, in thread order.
std::string BlockRunner::describe_waits() const {
  std::vector<std::pair<std::string, unsigned>> groups;
  unsigned exited = 0;
  for (unsigned i = 0; i < thread_count_; ++i) {
    const EmuThread& t = threads_[i];
    if (t.state == ThreadState::kExited) {
      ++exited;
      continue;
    }
    std::string what = std::string(wait_kind_name(t.kind)) + " (" + format_place(t.where) + ")";
    if (t.kind >= WaitKind::kSyncWarp) {
      std::ostringstream mask;
      mask << " of warp " << i / 32 << " with mask 0x" << std::hex << t.mask;
      what += mask.str();
    }
    auto found = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == what; });
    if (found == groups.end()) {
      groups.emplace_back(what, 1);
    } else {
      ++found->second;
    }
  }
  std::string text;
  for (const auto& [what, count] : groups) {
    if (!text.empty()) text += ", ";
    text += std::to_string(count) + " of " + std::to_string(thread_count_) + " threads wait at " + what;
  }
  if (exited > 0) text += ", " + std::to_string(exited) + " exited";
  return text;
}

void BlockRunner::die(const std::string& what) const {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// ---- device functions (device.h) ----------------------------------------------------------------------

int block_barrier(WaitKind kind, int predicate, const std::source_location& where) {
  return BlockRunner::current().block_barrier(kind, predicate, where);
}

unsigned active_mask() { return BlockRunner::current().active_mask(); }

long long clock_ticks() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace se::emu::detail

void* se::emu::dynamic_shared_memory() { return detail::BlockRunner::current().dynamic_shared(); }
