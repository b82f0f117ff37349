// Fiber stacks for the block runner: mmap'ed, with a PROT_NONE guard page below each stack.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "kernels/emu/src/internal.h"

namespace se::emu::detail {
namespace {

size_t page_size() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

size_t configured_stack_bytes() {
  size_t kib = 64;
  if (const char* env = std::getenv("SEGENGINE_EMU_STACK_KB")) {
    long value = std::strtol(env, nullptr, 10);
    if (value >= 16) kib = static_cast<size_t>(value);
  }
  const size_t page = page_size();
  return (kib * 1024 + page - 1) / page * page;
}

}  // namespace

StackPool::StackPool() : stack_bytes_(configured_stack_bytes()) {}

StackPool::~StackPool() {
  for (const Region& region : regions_) munmap(region.base, region.bytes);
}

void StackPool::reserve(size_t count) {
  if (count <= tops_.size()) return;
  // Grow at least geometrically so a mix of block sizes costs few mmap calls.
  const size_t add = std::max(count - tops_.size(), tops_.size());
  const size_t page = page_size();
  const size_t slot = stack_bytes_ + page;
  const size_t bytes = slot * add;
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    std::fprintf(stderr, "segengine-emu: cannot map %zu bytes of fiber stacks\n", bytes);
    std::abort();
  }
  regions_.push_back({base, bytes});
  auto* bottom = static_cast<char*>(base);
  for (size_t i = 0; i < add; ++i) {
    char* slot_base = bottom + i * slot;
    mprotect(slot_base, page, PROT_NONE);  // stacks grow down into this page
    // Stagger the tops: equally spaced stacks would put every fiber's hot frames in the same cache sets.
    const size_t colour = tops_.size() % 61 * 64;  // < kMaxColour
    tops_.push_back(slot_base + slot - colour);
  }
}

}  // namespace se::emu::detail
