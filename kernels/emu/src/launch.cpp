// Grid execution: a persistent pool of OS threads (plus the launching thread) takes blocks from a shared
// counter, in the order the schedule gives (BlockOrder); each runs its blocks whole with its own
// BlockRunner. Launches are synchronous and serialised, which is a valid in-order implementation of every
// stream.
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <thread>

#include "kernels/emu/src/internal.h"

namespace se::emu::detail {
namespace {

int configured_participants() {
  if (const char* env = std::getenv("SEGENGINE_EMU_THREADS")) {
    const long value = std::strtol(env, nullptr, 10);
    if (value >= 1 && value <= 1024) return static_cast<int>(value);
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// The order in which a launch's blocks are taken, as the schedule says: ascending linear index (forward),
// descending (reverse), or a permutation b -> (a * b + c) mod count with a coprime to count, from the
// launch's seed (random). A GPU promises no order, so a kernel whose result depends on it (floating-point
// atomics from several blocks into one address, say) gives different bits under different schedules.
class BlockOrder {
 public:
  BlockOrder(const Launch& launch, unsigned long long count) : schedule_(launch.schedule), count_(count) {
    if (schedule_ != Schedule::kRandom || count < 2) return;
    multiplier_ = launch.seed % count | 1;
    while (std::gcd(multiplier_, count) != 1) multiplier_ += 1;
    offset_ = (launch.seed >> 32) % count;
  }

  unsigned long long block(unsigned long long taken) const {
    switch (schedule_) {
      case Schedule::kForward: return taken;
      case Schedule::kReverse: return count_ - 1 - taken;
      case Schedule::kRandom: break;
    }
    if (count_ < 2) return taken;
    __extension__ using Wide = unsigned __int128;  // a * b overflows 64 bits for the largest grids
    return static_cast<unsigned long long>((static_cast<Wide>(multiplier_) * taken + offset_) % count_);
  }

 private:
  Schedule schedule_;
  unsigned long long count_;
  unsigned long long multiplier_ = 1, offset_ = 0;
};

class ThreadPool {
 public:
  // Never destroyed: workers sleep on the condition variable until the process exits.
  static ThreadPool& instance() {
    static ThreadPool* pool = new ThreadPool(configured_participants());
    return *pool;
  }

  int participants() const { return static_cast<int>(workers_.size()) + 1; }

  void run(Launch& launch, unsigned long long block_count) {
    block_count_ = block_count;
    next_block_.store(0);
    const bool parallel = block_count > 1 && !workers_.empty();
    if (parallel) {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &launch;
      busy_ = static_cast<int>(workers_.size());
      ++generation_;
      wake_.notify_all();
    }
    run_blocks(launch);
    if (parallel) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return busy_ == 0; });
      job_ = nullptr;
    }
  }

 private:
  explicit ThreadPool(int participants) {
    for (int i = 1; i < participants; ++i) workers_.emplace_back([this] { work(); });
    for (std::thread& worker : workers_) worker.detach();
  }

  void work() {
    uint64_t seen = 0;
    for (;;) {
      Launch* launch;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        launch = job_;
      }
      run_blocks(*launch);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_ == 0) done_.notify_one();
    }
  }

  void run_blocks(Launch& launch) {
    BlockRunner& runner = BlockRunner::for_this_thread();
    const unsigned long long per_plane = static_cast<unsigned long long>(launch.grid.x) * launch.grid.y;
    const BlockOrder order(launch, block_count_);
    for (;;) {
      const unsigned long long taken = next_block_.fetch_add(1);
      if (taken >= block_count_ || launch.failed.load(std::memory_order_relaxed)) break;
      const unsigned long long b = order.block(taken);
      const uint3 index{static_cast<unsigned>(b % launch.grid.x), static_cast<unsigned>(b / launch.grid.x % launch.grid.y),
                        static_cast<unsigned>(b / per_plane)};
      runner.run_block(launch, index);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  Launch* job_ = nullptr;
  uint64_t generation_ = 0;
  int busy_ = 0;
  std::atomic<unsigned long long> next_block_{0};
  unsigned long long block_count_ = 0;
};

// The schedule: SEGENGINE_EMU_SCHEDULE at first use, then whatever set_schedule says.
std::mutex schedule_mutex;
struct ScheduleConfig {
  Schedule schedule = Schedule::kForward;
  uint64_t seed = 0x5e9e5e9eull;
  uint64_t launches = 0;  // mixed into the random seed so successive launches differ
};

ScheduleConfig& schedule_config() {
  static ScheduleConfig config = [] {
    ScheduleConfig initial;
    if (const char* env = std::getenv("SEGENGINE_EMU_SCHEDULE")) {
      if (!parse_schedule(env, &initial.schedule, &initial.seed)) {
        std::fprintf(stderr, "segengine-emu: SEGENGINE_EMU_SCHEDULE='%s' is not forward, reverse or random[:seed]\n", env);
        std::abort();
      }
    }
    return initial;
  }();
  return config;
}

bool valid_block(dim3 b) {
  const unsigned long long threads = static_cast<unsigned long long>(b.x) * b.y * b.z;
  return b.x >= 1 && b.y >= 1 && b.z >= 1 && b.x <= 1024 && b.y <= 1024 && b.z <= 64 &&
         threads <= static_cast<unsigned long long>(kMaxThreadsPerBlock);
}

bool valid_grid(dim3 g) { return g.x >= 1 && g.y >= 1 && g.z >= 1 && g.x <= 0x7fffffffu && g.y <= 65535 && g.z <= 65535; }

}  // namespace

int worker_count() { return ThreadPool::instance().participants(); }

void launch(const char* name, const void* kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
            KernelBody body, const void* args) {
  if (!valid_block(block) || !valid_grid(grid)) {
    record(cudaErrorInvalidConfiguration);
    return;
  }
  if (shared_bytes > max_dynamic_shared(kernel)) {
    record(cudaErrorInvalidValue);
    return;
  }
  static std::mutex launch_mutex;  // one grid at a time: the pool and block runners serve one launch
  std::lock_guard<std::mutex> serial(launch_mutex);
  Launch launch;
  launch.name = name;
  launch.grid = grid;
  launch.block = block;
  launch.shared_bytes = shared_bytes;
  launch.body = body;
  launch.args = args;
  {
    ScheduleConfig& config = schedule_config();
    std::lock_guard<std::mutex> lock(schedule_mutex);
    launch.schedule = config.schedule;
    launch.seed = config.seed + 0x9e3779b97f4a7c15ull * ++config.launches;
  }
  const unsigned long long blocks = static_cast<unsigned long long>(grid.x) * grid.y * grid.z;
  ThreadPool::instance().run(launch, blocks);
  if (launch.failed.load()) {
    std::fprintf(stderr, "segengine-emu: %s\n", launch.failure.c_str());
    record(cudaErrorLaunchFailure);
  }
}

}  // namespace se::emu::detail

namespace se::emu {

bool parse_schedule(const std::string& text, Schedule* schedule, uint64_t* seed) {
  if (text == "forward") {
    *schedule = Schedule::kForward;
  } else if (text == "reverse") {
    *schedule = Schedule::kReverse;
  } else if (text.rfind("random", 0) == 0) {
    *schedule = Schedule::kRandom;
    if (text.size() > 6) {
      if (text[6] != ':' || text.size() == 7) return false;
      char* end = nullptr;
      const unsigned long long value = std::strtoull(text.c_str() + 7, &end, 10);
      if (*end != '\0') return false;
      *seed = value;
    }
  } else {
    return false;
  }
  return true;
}

void set_schedule(Schedule schedule, uint64_t seed) {
  detail::ScheduleConfig& config = detail::schedule_config();
  std::lock_guard<std::mutex> lock(detail::schedule_mutex);
  config.schedule = schedule;
  config.seed = seed;
  config.launches = 0;
}

Schedule schedule() {
  detail::ScheduleConfig& config = detail::schedule_config();
  std::lock_guard<std::mutex> lock(detail::schedule_mutex);
  return config.schedule;
}

}  // namespace se::emu
