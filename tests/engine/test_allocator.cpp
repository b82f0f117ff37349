#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/sanitizer.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/host_allocator.h"
#include "engine/ops.h"
#include "engine/stream.h"
#include "tests/engine/test_util.h"

namespace se {
namespace {

TEST(CpuAllocator, IsAligned) {
  for (size_t bytes : {1, 3, 64, 1000, 1 << 20}) {
    void* p = cpu_allocate(bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
    cpu_free(p, bytes);
  }
}

TEST(CpuAllocator, TracksAllocatedAndPeakBytes) {
  cpu_reset_peak_stats();
  const AllocatorStats before = cpu_allocator_stats();
  void* p = cpu_allocate(100);  // rounded to 128
  const AllocatorStats during = cpu_allocator_stats();
  EXPECT_EQ(during.allocated_bytes, before.allocated_bytes + 128);
  EXPECT_GE(during.peak_allocated_bytes, during.allocated_bytes);
  EXPECT_EQ(during.allocations, before.allocations + 1);
  cpu_free(p, 100);
  const AllocatorStats after = cpu_allocator_stats();
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
  EXPECT_EQ(after.peak_allocated_bytes, during.peak_allocated_bytes);
  cpu_reset_peak_stats();
  EXPECT_EQ(cpu_allocator_stats().peak_allocated_bytes, after.allocated_bytes);
}

constexpr size_t kMiB = size_t{1} << 20;

TEST(CpuCachingAllocator, SizeClasses) {
  EXPECT_EQ(CpuCachingAllocator::round_size(0), 64u);
  EXPECT_EQ(CpuCachingAllocator::round_size(65), 128u);
  EXPECT_EQ(CpuCachingAllocator::round_size(kMiB - 1), kMiB);  // malloc's, 64-byte multiples
  EXPECT_EQ(CpuCachingAllocator::round_size(kMiB), 2 * kMiB);  // cached, 2 MiB multiples
  EXPECT_EQ(CpuCachingAllocator::round_size(2 * kMiB + 1), 4 * kMiB);
}

TEST(CpuCachingAllocator, ReusesAFreedLargeBlockWithoutAskingTheSystem) {
  CpuCachingAllocator allocator(true);
  void* first = allocator.allocate(3 * kMiB);
  static_cast<char*>(first)[3 * kMiB - 1] = 7;  // the whole block is usable
  allocator.free(first, 3 * kMiB);
  const AllocatorStats before = allocator.stats();
  EXPECT_EQ(before.allocated_bytes, 0u);
  EXPECT_EQ(before.reserved_bytes, 4 * kMiB);
  void* second = allocator.allocate(3 * kMiB + 5);  // the same 4 MiB class
  const AllocatorStats after = allocator.stats();
  EXPECT_EQ(second, first);
  EXPECT_EQ(after.cache_hits, before.cache_hits + 1);
  EXPECT_EQ(after.device_mallocs, before.device_mallocs);
  EXPECT_EQ(after.allocated_bytes, 4 * kMiB);
  EXPECT_EQ(after.reserved_bytes, 4 * kMiB);
  allocator.free(second, 3 * kMiB + 5);
}

TEST(CpuCachingAllocator, HandsOutTheSmallestFitAndNeverMoreThanTwiceTheSize) {
  CpuCachingAllocator allocator(true);
  void* eight = allocator.allocate(8 * kMiB);
  void* sixteen = allocator.allocate(16 * kMiB);
  void* thirty_two = allocator.allocate(32 * kMiB);
  allocator.free(thirty_two, 32 * kMiB);
  allocator.free(eight, 8 * kMiB);
  allocator.free(sixteen, 16 * kMiB);
  // 10 MiB: the 16 MiB block, not the older 32 MiB one; counted as the block's 16 MiB.
  void* ten = allocator.allocate(10 * kMiB);
  EXPECT_EQ(ten, sixteen);
  EXPECT_EQ(allocator.stats().allocated_bytes, 16 * kMiB);
  // 14 MiB: no cached block from 14 to 28 MiB (8 is too small, 32 more than twice): a new one.
  const uint64_t mallocs = allocator.stats().device_mallocs;
  void* fourteen = allocator.allocate(14 * kMiB);
  EXPECT_EQ(allocator.stats().device_mallocs, mallocs + 1);
  EXPECT_NE(fourteen, thirty_two);
  EXPECT_NE(fourteen, eight);
  allocator.free(ten, 10 * kMiB);
  allocator.free(fourteen, 14 * kMiB);
}

TEST(CpuCachingAllocator, AmongEqualBlocksReusesTheMostRecentlyFreed) {
  CpuCachingAllocator allocator(true);
  void* a = allocator.allocate(4 * kMiB);
  void* b = allocator.allocate(4 * kMiB);
  allocator.free(a, 4 * kMiB);
  allocator.free(b, 4 * kMiB);
  void* again = allocator.allocate(4 * kMiB);
  EXPECT_EQ(again, b);
  allocator.free(again, 4 * kMiB);
}

TEST(CpuCachingAllocator, KeepsReservedWithinHalfAgainTheLargestHeldEvictingTheOldestFirst) {
  CpuCachingAllocator allocator(true);
  // Peak held: 20 MiB, so at most 30 MiB reserved when a new block must be mapped.
  void* oldest = allocator.allocate(10 * kMiB);
  void* newer = allocator.allocate(10 * kMiB);
  allocator.free(oldest, 10 * kMiB);
  allocator.free(newer, 10 * kMiB);
  EXPECT_EQ(allocator.stats().reserved_bytes, 20 * kMiB);
  void* four = allocator.allocate(4 * kMiB);  // 10 MiB is more than twice 4: a miss; 4 + 20 <= 30
  EXPECT_EQ(allocator.stats().reserved_bytes, 24 * kMiB);
  void* sixteen = allocator.allocate(16 * kMiB);  // the newer 10 MiB block is too small: a miss
  // Held 20 (a new peak), cap 30: the cache may keep 10 MiB, so the oldest block went back.
  const AllocatorStats stats = allocator.stats();
  EXPECT_EQ(stats.allocated_bytes, 20 * kMiB);
  EXPECT_EQ(stats.reserved_bytes, 30 * kMiB);
  EXPECT_EQ(stats.device_frees, 1u);
  void* ten = allocator.allocate(10 * kMiB);  // the newer block is still cached
  EXPECT_EQ(ten, newer);
  EXPECT_EQ(allocator.stats().cache_hits, 1u);
  allocator.free(four, 4 * kMiB);
  allocator.free(sixteen, 16 * kMiB);
  allocator.free(ten, 10 * kMiB);
}

TEST(CpuCachingAllocator, EmptyCacheAndCachingOffGiveBlocksBackToTheSystem) {
  CpuCachingAllocator allocator(true);
  void* block = allocator.allocate(6 * kMiB);
  allocator.free(block, 6 * kMiB);
  EXPECT_EQ(allocator.stats().reserved_bytes, 6 * kMiB);
  allocator.empty_cache();
  EXPECT_EQ(allocator.stats().reserved_bytes, 0u);
  EXPECT_EQ(allocator.stats().device_frees, 1u);

  block = allocator.allocate(6 * kMiB);
  allocator.free(block, 6 * kMiB);
  allocator.set_caching(false);  // empties the cache
  EXPECT_EQ(allocator.stats().reserved_bytes, 0u);
  block = allocator.allocate(6 * kMiB);
  allocator.free(block, 6 * kMiB);  // straight back
  const AllocatorStats stats = allocator.stats();
  EXPECT_EQ(stats.reserved_bytes, 0u);
  EXPECT_EQ(stats.device_mallocs, 3u);
  EXPECT_EQ(stats.device_frees, 3u);
  EXPECT_EQ(stats.cache_hits, 0u);
}

TEST(CpuCachingAllocator, SmallBlocksAreMallocsAndAllAreAligned) {
  CpuCachingAllocator allocator(true);
  for (size_t bytes : {size_t{1}, size_t{100}, kMiB - 1, kMiB, 5 * kMiB + 3}) {
    void* p = allocator.allocate(bytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % CpuCachingAllocator::kAlignment, 0u) << bytes;
    allocator.free(p, bytes);
  }
  const AllocatorStats stats = allocator.stats();
  EXPECT_EQ(stats.allocated_bytes, 0u);
  EXPECT_EQ(stats.reserved_bytes, 8 * kMiB);  // the 2 and 6 MiB blocks stay cached
  EXPECT_EQ(stats.peak_allocated_bytes, 6 * kMiB);
}

TEST(CpuCachingAllocator, FreeOfAPointerItDidNotHandOutIsAnError) {
  CpuCachingAllocator allocator(true);
  alignas(64) static char not_a_block[64];
  EXPECT_THROW(allocator.free(not_a_block, 4 * kMiB), Error);
}

TEST(CpuCachingAllocator, ManyThreadsAllocatingAndFreeing) {
  CpuCachingAllocator allocator(true);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&allocator, t] {
      for (int i = 0; i < 200; ++i) {
        const size_t bytes = (i % 3 == 0 ? 1000 : (1 + (i + t) % 5) * kMiB);
        auto* p = static_cast<unsigned char*>(allocator.allocate(bytes));
        p[0] = p[bytes - 1] = static_cast<unsigned char>(t);
        EXPECT_EQ(p[0] + p[bytes - 1], 2 * t);
        allocator.free(p, bytes);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const AllocatorStats stats = allocator.stats();
  EXPECT_EQ(stats.allocated_bytes, 0u);
  EXPECT_EQ(stats.allocations, 800u);
  EXPECT_GT(stats.cache_hits, 0u);
  // Never more than 1.5x what was ever held at once (4 threads x at most 10 MiB).
  EXPECT_LE(stats.peak_reserved_bytes, 60 * kMiB);
}

TEST(CpuCachingAllocator, PoisonFillsEveryBlockHandedOutFreshOrCached) {
  CpuCachingAllocator allocator(true, true);
  for (size_t bytes : {size_t{100}, 3 * kMiB}) {
    for (int round = 0; round < 2; ++round) {  // the second large block comes from the cache
      auto* p = static_cast<unsigned char*>(allocator.allocate(bytes));
      size_t poisoned = 0;
      for (size_t i = 0; i < bytes; ++i) poisoned += p[i] == 0xFF;
      EXPECT_EQ(poisoned, bytes) << bytes << " round " << round;
      std::memset(p, 0, bytes);
      allocator.free(p, bytes);
    }
  }
  EXPECT_EQ(allocator.stats().cache_hits, 1u);
  float nan_bits;
  std::memset(&nan_bits, 0xFF, sizeof(nan_bits));
  EXPECT_TRUE(std::isnan(nan_bits));
}

// ASan builds (make sanitize): a block's rounding past the request, and a cached freed block, are
// unaddressable, so a kernel's overrun or use after free is reported at the access.
TEST(CpuCachingAllocator, UnderAsanTheRoundingAndCachedBlocksAreUnaddressable) {
  if (!asan::kEnabled) GTEST_SKIP() << "not an AddressSanitizer build";
  CpuCachingAllocator allocator(true, true);
  for (size_t bytes : {size_t{100}, 3 * kMiB + 4}) {
    for (int round = 0; round < 2; ++round) {  // the second large block comes from the cache
      auto* p = static_cast<unsigned char*>(allocator.allocate(bytes));
      EXPECT_FALSE(asan::is_poisoned(p)) << bytes;
      EXPECT_FALSE(asan::is_poisoned(p + bytes - 1)) << bytes;
      EXPECT_TRUE(asan::is_poisoned(p + bytes)) << bytes;
      std::memset(p, 0, bytes);
      allocator.free(p, bytes);
      if (bytes >= kMiB) {
        EXPECT_TRUE(asan::is_poisoned(p)) << "a cached block";
      }
    }
  }
  EXPECT_EQ(allocator.stats().cache_hits, 1u);
}

// Sets or unsets an environment variable for a test's scope, then restores it.
class ScopedEnvironment {
 public:
  explicit ScopedEnvironment(const char* name) : name_(name) {
    const char* value = std::getenv(name);
    if (value != nullptr) saved_ = value;
  }
  ~ScopedEnvironment() {
    if (saved_) {
      setenv(name_, saved_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  void set(const char* value) const { setenv(name_, value, 1); }
  void unset() const { unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> saved_;
};

TEST(CpuCachingAllocator, TheEnvironmentSwitch) {
  const ScopedEnvironment env("SEGENGINE_CPU_CACHE");
  env.unset();
  EXPECT_TRUE(cpu_caching_from_environment());
  env.set("0");
  EXPECT_FALSE(cpu_caching_from_environment());
  env.set("1");
  EXPECT_TRUE(cpu_caching_from_environment());
  env.set("yes");
  testing::expect_error([] { cpu_caching_from_environment(); }, "SEGENGINE_CPU_CACHE='yes': expected 1 (");
}

TEST(CpuCachingAllocator, ThePoisonSwitch) {
  const ScopedEnvironment env("SEGENGINE_POISON");
  env.unset();
  EXPECT_FALSE(poison_from_environment());
  env.set("1");
  EXPECT_TRUE(poison_from_environment());
  env.set("0");
  EXPECT_FALSE(poison_from_environment());
  env.set("on");
  testing::expect_error([] { poison_from_environment(); }, "SEGENGINE_POISON='on': expected 1 (");
}

TEST(CudaAllocatorRounding, SizeClasses) {
  EXPECT_EQ(CudaCachingAllocator::round_size(1), 512u);
  EXPECT_EQ(CudaCachingAllocator::round_size(513), 1024u);
  EXPECT_EQ(CudaCachingAllocator::round_size(1 << 20), size_t{2} << 20);
  EXPECT_EQ(CudaCachingAllocator::round_size((2 << 20) + 1), size_t{4} << 20);
}

class CudaAllocator : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    allocator_ = &cuda_allocator(0);
    synchronize(Device::cuda());
    allocator_->empty_cache();
    allocator_->reset_peak_stats();
  }
  CudaCachingAllocator* allocator_ = nullptr;
};

// Under SEGENGINE_POISON=1 (as make test runs the suites) a CUDA tensor's memory is NaN bytes until
// written, also when its block comes back from the cache.
TEST_F(CudaAllocator, PoisonFillsEveryBlockHandedOut) {
  if (!poison_from_environment()) GTEST_SKIP() << "SEGENGINE_POISON is not 1";
  for (int round = 0; round < 2; ++round) {
    Tensor t = empty({1000}, {DType::f32, Device::cuda()});
    const std::vector<float> values = t.to_vector<float>();
    size_t nans = 0;
    for (float v : values) nans += std::isnan(v);
    EXPECT_EQ(nans, values.size()) << "round " << round;
    t.fill_(1.0f);
  }
}

// ASan builds are emulated: device memory is host memory, poisoned as the CPU allocator's.
TEST_F(CudaAllocator, UnderAsanTheRoundingAndCachedBlocksAreUnaddressable) {
  if (!asan::kEnabled) GTEST_SKIP() << "not an AddressSanitizer build";
  for (int round = 0; round < 2; ++round) {  // the second block comes from the cache
    auto* p = static_cast<unsigned char*>(allocator_->allocate(1000, nullptr));
    EXPECT_FALSE(asan::is_poisoned(p));
    EXPECT_FALSE(asan::is_poisoned(p + 999));
    EXPECT_TRUE(asan::is_poisoned(p + 1000));
    allocator_->free(p);
    EXPECT_TRUE(asan::is_poisoned(p));
  }
}

TEST_F(CudaAllocator, ReusesFreedBlocksOnTheSameStream) {
  AllocatorStats before = allocator_->stats();
  void* first = allocator_->allocate(4000, nullptr);
  allocator_->free(first);
  void* second = allocator_->allocate(3000, nullptr);  // same 4 KiB class... best fit within 2x
  EXPECT_EQ(first, second);
  allocator_->free(second);
  AllocatorStats after = allocator_->stats();
  EXPECT_EQ(after.device_mallocs - before.device_mallocs, 1u);
  EXPECT_EQ(after.cache_hits - before.cache_hits, 1u);
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
  EXPECT_GE(after.reserved_bytes, 4096u);
}

TEST_F(CudaAllocator, TracksAllocatedAndPeak) {
  size_t base = allocator_->stats().allocated_bytes;
  {
    Tensor a = empty({1024}, {.device = Device::cuda()});  // 4 KiB
    Tensor b = empty({2048}, {.device = Device::cuda()});  // 8 KiB
    EXPECT_EQ(allocator_->stats().allocated_bytes, base + 4096 + 8192);
  }
  EXPECT_EQ(allocator_->stats().allocated_bytes, base);
  EXPECT_GE(allocator_->stats().peak_allocated_bytes, base + 4096 + 8192);
}

TEST_F(CudaAllocator, BlocksFreedOnAnotherStreamAreNotReusedAcrossStreams) {
  Stream side = Stream::create(Device::cuda());
  void* block = allocator_->allocate(1 << 16, nullptr);
  allocator_->free(block);
  // A different stream never gets a block that default-stream work may still be using.
  void* other = allocator_->allocate(1 << 16, side.handle());
  EXPECT_NE(block, other);
  allocator_->free(other);
  // record_stream: the block waits for the side stream before the default stream may reuse it.
  void* shared = allocator_->allocate(1 << 16, nullptr);
  allocator_->record_stream(shared, side.handle());
  allocator_->free(shared);
  side.synchronize();
  void* again = allocator_->allocate(1 << 16, nullptr);
  EXPECT_TRUE(again == shared || again == block);
  allocator_->free(again);
}

TEST_F(CudaAllocator, OutOfMemoryReportsTheStats) {
  allocator_->set_memory_limit(size_t{64} << 20);
  Tensor held = empty({8 << 20}, {.device = Device::cuda()});  // 32 MiB
  try {
    Tensor too_big = empty({16 << 20}, {.device = Device::cuda()});  // 64 MiB more
    FAIL() << "expected an out-of-memory error";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("out of memory on cuda:0: tried to allocate 64.00 MiB"), std::string::npos) << message;
    EXPECT_NE(message.find("allocated 32.00 MiB"), std::string::npos) << message;
    EXPECT_NE(message.find("limit 64.00 MiB"), std::string::npos) << message;
  }
  allocator_->set_memory_limit(0);
  Tensor fits = empty({16 << 20}, {.device = Device::cuda()});
  EXPECT_EQ(fits.numel(), 16 << 20);
}

TEST(PinnedHostAllocatorRounding, PowersOfTwoFromOnePage) {
  EXPECT_EQ(PinnedHostAllocator::round_size(0), 4096u);
  EXPECT_EQ(PinnedHostAllocator::round_size(4096), 4096u);
  EXPECT_EQ(PinnedHostAllocator::round_size(4097), 8192u);
  EXPECT_EQ(PinnedHostAllocator::round_size((3 << 20) + 5), size_t{4} << 20);
}

class PinnedHost : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(PinnedHost, CachesFreedBlocks) {
  PinnedHostAllocator allocator;
  void* first = allocator.allocate(5000);  // an 8 KiB block
  EXPECT_TRUE(allocator.owns(first));
  EXPECT_EQ(allocator.stats().allocated_bytes, 8192u);
  allocator.free(first);
  EXPECT_FALSE(allocator.owns(first));
  EXPECT_EQ(allocator.stats().allocated_bytes, 0u);
  void* second = allocator.allocate(7000);  // same size class: the cached block
  EXPECT_EQ(second, first);
  void* third = allocator.allocate(100);  // nothing cached fits: a new block
  EXPECT_NE(third, first);
  allocator.free(second);
  allocator.free(third);
  AllocatorStats stats = allocator.stats();
  EXPECT_EQ(stats.device_mallocs, 2u);
  EXPECT_EQ(stats.cache_hits, 1u);
  EXPECT_EQ(stats.reserved_bytes, 8192u + 4096u);
  EXPECT_EQ(stats.peak_allocated_bytes, 8192u + 4096u);
  allocator.empty_cache();
  EXPECT_EQ(allocator.stats().device_frees, 2u);
  EXPECT_EQ(allocator.stats().reserved_bytes, 0u);
}

TEST_F(PinnedHost, ABlockUsedByAStreamWaitsForItBeforeReuse) {
  PinnedHostAllocator allocator;
  Stream side = Stream::create(Device::cuda());
  void* block = allocator.allocate(1 << 16);
  allocator.record_stream(block, 0, side.handle());
  allocator.record_stream(block, 0, side.handle());  // recorded once
  allocator.free(block);
  side.synchronize();  // the stream has passed the free: the block is reusable
  EXPECT_EQ(allocator.allocate(1 << 16), block);
  allocator.free(block);
  testing::expect_error([&] { allocator.free(block); }, "pinned host allocator: free of pointer");
  testing::expect_error([&] { allocator.record_stream(block, 0, nullptr); }, "is not a live pinned block");
}

TEST_F(PinnedHost, PinnedTensorsKeepTheirValues) {
  Tensor x = arange(24.0).view({2, 3, 4}).transpose(1, 2);  // not contiguous
  EXPECT_FALSE(x.is_pinned());
  Tensor pinned = x.pin_memory();
  EXPECT_TRUE(pinned.is_pinned());
  EXPECT_TRUE(pinned.is_contiguous());
  EXPECT_TRUE(pinned_host_allocator().owns(pinned.storage()->data()));
  EXPECT_EQ(pinned.to_vector<float>(), x.to_vector<float>());
  EXPECT_TRUE(pinned.pin_memory().same(pinned));
  EXPECT_TRUE(pinned.narrow(0, 1, 1).is_pinned());  // views share the pinned storage
  testing::expect_error([] { ones({2}, {.device = Device::cuda()}).pin_memory(); },
                       "pin_memory: only CPU tensors can be pinned, this one is on cuda:0");
  // Differentiable, like the other copies.
  Tensor leaf = ones({3}, {.requires_grad = true});
  sum(mul(leaf.pin_memory(), 2.0)).backward();
  EXPECT_EQ(leaf.grad().to_vector<float>(), (std::vector<float>{2, 2, 2}));
}

TEST_F(PinnedHost, CopiesFromPinnedMemoryReachTheDevice) {
  Tensor values = randn({513, 1024});  // a size class (4 MiB) no other test here uses
  Tensor pinned = values.pin_memory();
  Stream side = Stream::create(Device::cuda());
  Tensor async, converted, window;
  {
    StreamGuard guard(side);
    async = pinned.to(Device::cuda(), /*non_blocking=*/true);
    converted = pinned.to(Device::cuda(), DType::f16, true);   // converted on the host first
    window = pinned.narrow(0, 2, 2).to(Device::cuda(), true);  // a view at an offset into the block
  }
  side.synchronize();
  EXPECT_EQ(async.to_vector<float>(), values.to_vector<float>());
  EXPECT_EQ(converted.to_vector<float>(), values.to(DType::f16).to_vector<float>());
  EXPECT_EQ(window.to_vector<float>(), values.narrow(0, 2, 2).to_vector<float>());
  // Without non_blocking the source may be overwritten as soon as to() returns.
  Tensor blocking = pinned.to(Device::cuda());
  pinned.fill_(0.0);
  EXPECT_EQ(blocking.to_vector<float>(), values.to_vector<float>());
  // A freed pinned tensor's block goes back to the cache once its copy has run.
  void* block = pinned.storage()->data();
  pinned = Tensor();
  synchronize(Device::cuda());
  const AllocatorStats before = pinned_host_allocator().stats();
  Tensor again = empty_pinned({513, 1024});
  EXPECT_EQ(again.storage()->data(), block);
  EXPECT_EQ(pinned_host_allocator().stats().device_mallocs, before.device_mallocs);
}

TEST_F(PinnedHost, RecordStreamCoversPinnedAndDeviceTensors) {
  Stream side = Stream::create(Device::cuda());
  Tensor pinned = empty_pinned({16});
  Tensor device = empty({16}, {.device = Device::cuda()});
  record_stream(pinned, side);
  record_stream(device, side);
  record_stream(ones({2}), side);  // pageable: nothing to do
  testing::expect_error([&] { record_stream(Tensor(), side); }, "record_stream: undefined tensor");
}

TEST(CudaStreams, EventsOrderAndTimeWork) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Stream side = Stream::create(Device::cuda());
  Event start(Device::cuda()), end(Device::cuda());
  Tensor x = ones({1 << 16}, {.device = Device::cuda()});
  Tensor y;
  {
    StreamGuard guard(side);
    EXPECT_EQ(current_stream(Device::cuda()).handle(), side.handle());
    start.record(side);
    y = mul(x, 3.0);
    end.record(side);
  }
  EXPECT_EQ(current_stream(Device::cuda()).handle(), nullptr);
  end.synchronize();
  EXPECT_TRUE(end.query());
  EXPECT_GE(start.elapsed_ms(end), 0.0f);
  end.block(Stream::default_stream(Device::cuda()));
  EXPECT_EQ(sum(y).item(), 3.0 * (1 << 16));
}

}  // namespace
}  // namespace se
