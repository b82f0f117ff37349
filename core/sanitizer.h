// AddressSanitizer hooks for our own allocators (`make sanitize` builds with -fsanitize=address).
// An allocator that rounds sizes up or caches freed blocks hides overruns from ASan: the bytes past a
// tensor's end, or a freed tensor's whole block, are still memory ASan handed out. These mark them
// unaddressable so a kernel that reads past its tensor or uses a freed one is reported at the access.
// Without ASan every function is an empty inline.
#pragma once

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SEGENGINE_ASAN 1
#endif

// For a function whose speed is what it measures (core/machine.h's FMA probes): ASan would keep its
// register arrays in instrumented stack memory.
#if defined(__GNUC__)
#define SE_NO_SANITIZE __attribute__((no_sanitize("address", "undefined")))
#else
#define SE_NO_SANITIZE
#endif

namespace se::asan {

#if defined(SEGENGINE_ASAN)
inline constexpr bool kEnabled = true;
#else
inline constexpr bool kEnabled = false;
#endif

// [ptr, ptr + bytes) becomes unaddressable / addressable. Memory we map ourselves must be made
// addressable again before munmap: a later mapping at the same address would inherit the poison.
inline void poison(const void* ptr, size_t bytes) {
#if defined(SEGENGINE_ASAN)
  if (ptr != nullptr && bytes > 0) ASAN_POISON_MEMORY_REGION(ptr, bytes);
#else
  (void)ptr;
  (void)bytes;
#endif
}

inline void unpoison(const void* ptr, size_t bytes) {
#if defined(SEGENGINE_ASAN)
  if (ptr != nullptr && bytes > 0) ASAN_UNPOISON_MEMORY_REGION(ptr, bytes);
#else
  (void)ptr;
  (void)bytes;
#endif
}

// Whether an access to the byte at `ptr` would be reported (tests of the hooks); false without ASan.
inline bool is_poisoned(const void* ptr) {
#if defined(SEGENGINE_ASAN)
  return __asan_address_is_poisoned(ptr) != 0;
#else
  (void)ptr;
  return false;
#endif
}

// A block of `block_bytes` handed out for a request of `used_bytes`: the request addressable, the
// rounding after it not.
inline void hand_out(const void* ptr, size_t used_bytes, size_t block_bytes) {
  unpoison(ptr, used_bytes);
  if (block_bytes > used_bytes) poison(static_cast<const char*>(ptr) + used_bytes, block_bytes - used_bytes);
}

}  // namespace se::asan
