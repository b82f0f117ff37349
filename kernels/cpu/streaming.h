// Internal to the CPU kernels: when to write an output with non-temporal (streaming) stores.
#pragma once

#include <cstdint>

namespace se::kernels::cpu {

// f32 outputs larger than this (bytes, the L3 of the 2-core development machine) are written with
// non-temporal stores: they leave the caches anyway, and a normal store first reads the line it fills
// (half of the memory traffic of writing a conv's y, a third of an upsampling's).
constexpr int64_t kStreamOutputBytes = int64_t(32) << 20;

}  // namespace se::kernels::cpu
