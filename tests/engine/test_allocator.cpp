#include <gtest/gtest.h>

#include "engine/allocator.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/stream.h"

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
