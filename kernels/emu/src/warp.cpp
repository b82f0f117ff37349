// Warp collectives. A lane that calls one records what it contributes and waits; the lane that completes
// the set (every lane named in the mask waiting at the same intrinsic, source position and mask) computes
// every lane's result and makes them all runnable. Lanes of one warp may meet at other collectives in
// between (sub-warp masks), so lanes waiting elsewhere only delay completion; if they never come, the block
// deadlocks and the scheduler reports it. Definite errors abort at once: a mask without the calling lane,
// naming a lane that does not exist or has exited, or two lanes at one collective with different masks.
#include <string>

#include "kernels/emu/src/internal.h"

namespace se::emu::detail {
namespace {

std::string hex(unsigned value) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%08x", value);
  return text;
}

bool is_power_of_two_width(int width) { return width >= 1 && width <= 32 && (width & (width - 1)) == 0; }

// Source lane for the shuffles, or -1 when the lane keeps its own value (CUDA's rules for out-of-segment
// sources with width < 32).
int shuffle_source(WaitKind kind, int lane, int param, int width) {
  const int segment = lane / width * width;
  switch (kind) {
    case WaitKind::kShfl: return segment + ((param % width) + width) % width;
    case WaitKind::kShflUp: return lane - segment >= param ? lane - param : -1;
    case WaitKind::kShflDown: return lane - segment + param < width ? lane + param : -1;
    case WaitKind::kShflXor: {
      const int source = lane ^ param;
      return source >= 0 && source < 32 && source < segment + width ? source : -1;
    }
    default: return -1;
  }
}

}  // namespace

uint64_t BlockRunner::warp_collective(WaitKind kind, unsigned mask, uint64_t value, int param, int width,
                                      const std::source_location& where) {
  EmuThread& self = *running_;
  const unsigned lane = self.linear % 32;
  const unsigned base = self.linear - lane;
  const unsigned warp = base / 32;
  auto at = [&] {  // built only for an error message
    return std::string(wait_kind_name(kind)) + " in kernel '" + launch_->name + "' block " + block_name() + " warp " +
           std::to_string(warp);
  };
  if (((mask >> lane) & 1u) == 0) {
    die("segengine-emu: collective mismatch: " + at() + ": lane " + std::to_string(lane) + " calls it with mask " +
        hex(mask) + ", which does not name the calling lane");
  }
  if (!is_power_of_two_width(width)) die("segengine-emu: " + at() + ": width " + std::to_string(width) + " is not 1..32, a power of two");
  const unsigned lanes = std::min(32u, thread_count_ - base);
  const unsigned existing = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
  if ((mask & ~existing) != 0) {
    die("segengine-emu: collective mismatch: " + at() + ": mask " + hex(mask) + " names lanes the block (" +
        std::to_string(thread_count_) + " threads) does not have");
  }
  if ((mask & warp_exited_[warp]) != 0) {
    const unsigned gone = mask & warp_exited_[warp];
    die("segengine-emu: collective mismatch: " + at() + ": mask " + hex(mask) + " names lanes that have exited (" +
        hex(gone) + ", first lane " + std::to_string(__builtin_ctz(gone)) + ")");
  }
  self.state = ThreadState::kWaiting;
  self.kind = kind;
  self.where = where;
  self.mask = mask;
  self.param = param;
  self.width = width;
  self.value = value;
  warp_waiting_[warp] |= 1u << lane;
  if ((mask & ~warp_waiting_[warp]) == 0) {
    // Everyone named is parked at some collective; complete if it is this one.
    bool same = true;
    for (unsigned bits = mask; bits != 0; bits &= bits - 1) {
      const EmuThread& other = threads_[base + static_cast<unsigned>(__builtin_ctz(bits))];
      if (other.kind != kind || (kind != WaitKind::kSyncWarp && !same_place(other.where, where))) {
        same = false;
        break;
      }
      if (other.mask != mask) {
        die("segengine-emu: collective mismatch: " + at() + " (" + format_place(where) + "): lanes disagree on the mask (" + hex(other.mask) + " and " + hex(mask) + ")");
      }
    }
    if (same) release_warp(base, mask);
  }
  yield(&self);
  return self.result;
}

void BlockRunner::release_warp(unsigned base, unsigned mask) {
  const EmuThread& first = threads_[base + static_cast<unsigned>(__builtin_ctz(mask))];
  const WaitKind kind = first.kind;
  // Warp-wide results (votes, reductions) first.
  uint64_t all = 1, any = 0, ballot = 0, sum = 0, bit_and = ~0ull, bit_or = 0, bit_xor = 0;
  int32_t min_signed = INT32_MAX, max_signed = INT32_MIN;
  uint32_t min_unsigned = UINT32_MAX, max_unsigned = 0;
  for (unsigned bits = mask; bits != 0; bits &= bits - 1) {
    const unsigned lane = static_cast<unsigned>(__builtin_ctz(bits));
    const uint64_t v = threads_[base + lane].value;
    const auto u32 = static_cast<uint32_t>(v);
    const auto s32 = static_cast<int32_t>(u32);
    all &= v != 0;
    any |= v != 0;
    ballot |= static_cast<uint64_t>(v != 0) << lane;
    sum += u32;
    bit_and &= u32;
    bit_or |= u32;
    bit_xor ^= u32;
    min_signed = std::min(min_signed, s32);
    max_signed = std::max(max_signed, s32);
    min_unsigned = std::min(min_unsigned, u32);
    max_unsigned = std::max(max_unsigned, u32);
  }
  for (unsigned bits = mask; bits != 0; bits &= bits - 1) {
    const unsigned lane = static_cast<unsigned>(__builtin_ctz(bits));
    EmuThread& t = threads_[base + lane];
    switch (kind) {
      case WaitKind::kShfl:
      case WaitKind::kShflUp:
      case WaitKind::kShflDown:
      case WaitKind::kShflXor: {
        // A source outside the mask did not contribute: CUDA leaves the result undefined; we return the
        // lane's own value.
        const int source = shuffle_source(kind, static_cast<int>(lane), t.param, t.width);
        const bool valid = source >= 0 && ((mask >> source) & 1u) != 0;
        t.result = valid ? threads_[base + static_cast<unsigned>(source)].value : t.value;
        break;
      }
      case WaitKind::kVoteAll: t.result = all; break;
      case WaitKind::kVoteAny: t.result = any; break;
      case WaitKind::kBallot: t.result = ballot; break;
      case WaitKind::kReduceAdd: t.result = static_cast<uint32_t>(sum); break;
      case WaitKind::kReduceMinSigned: t.result = static_cast<uint32_t>(min_signed); break;
      case WaitKind::kReduceMaxSigned: t.result = static_cast<uint32_t>(max_signed); break;
      case WaitKind::kReduceMinUnsigned: t.result = min_unsigned; break;
      case WaitKind::kReduceMaxUnsigned: t.result = max_unsigned; break;
      case WaitKind::kReduceAnd: t.result = static_cast<uint32_t>(bit_and); break;
      case WaitKind::kReduceOr: t.result = bit_or; break;
      case WaitKind::kReduceXor: t.result = bit_xor; break;
      case WaitKind::kMatchAny: {
        uint64_t matching = 0;
        for (unsigned others = mask; others != 0; others &= others - 1) {
          const unsigned other = static_cast<unsigned>(__builtin_ctz(others));
          if (threads_[base + other].value == t.value) matching |= 1ull << other;
        }
        t.result = matching;
        break;
      }
      default: t.result = 0; break;
    }
  }
  warp_waiting_[base / 32] &= ~mask;
  for (unsigned bits = mask; bits != 0; bits &= bits - 1) {
    make_runnable(threads_[base + static_cast<unsigned>(__builtin_ctz(bits))]);
  }
}

// A lane that exits while lanes of its warp wait for it at a collective can never satisfy them.
void BlockRunner::thread_exited(EmuThread& thread) {
  thread.state = ThreadState::kExited;
  thread.kind = WaitKind::kNone;
  ++exited_count_;
  const unsigned lane = thread.linear % 32;
  const unsigned base = thread.linear - lane;
  warp_exited_[base / 32] |= 1u << lane;
  for (unsigned bits = warp_waiting_[base / 32]; bits != 0; bits &= bits - 1) {
    const EmuThread& waiter = threads_[base + static_cast<unsigned>(__builtin_ctz(bits))];
    if ((waiter.mask >> lane) & 1u) {
      die("segengine-emu: collective mismatch: " + std::string(wait_kind_name(waiter.kind)) + " in kernel '" +
          launch_->name + "' block " + block_name() + " warp " + std::to_string(base / 32) + " (" +
          format_place(waiter.where) + "): lane " + std::to_string(lane) +
          " named in mask " + hex(waiter.mask) + " exited without arriving");
    }
  }
}

uint64_t warp_collective(WaitKind kind, unsigned mask, uint64_t value, int param, int width,
                         const std::source_location& where) {
  return BlockRunner::current().warp_collective(kind, mask, value, param, width, where);
}

}  // namespace se::emu::detail
