// Emulator shim for <cuda_bf16.h>: the real CUDA header (found after this folder on the include path) plus the
// emulator's device-side definitions. See kernels/emu/cuda_emu.h.
#pragma once
#pragma GCC system_header  // quiets -Wpedantic about #include_next, a GCC extension
#include_next <cuda_bf16.h>
#include "kernels/emu/cuda_emu.h"
