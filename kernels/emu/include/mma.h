// Emulator shim for <mma.h>: nvcuda::wmma on the CPU. See kernels/emu/wmma.h.
#pragma once
#include "kernels/emu/cuda_emu.h"
#include "kernels/emu/wmma.h"
