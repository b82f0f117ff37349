// Emulator shim for <device_launch_parameters.h>: the emulator declares the builtins in kernels/emu/cuda_emu.h.
#pragma once
#include "kernels/emu/cuda_emu.h"
