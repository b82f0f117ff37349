// The stream handle every kernel entry point takes, CPU ones included (they ignore it), so that
// se::kernels::cpu::f and se::kernels::cuda::f have the same signature.
#pragma once

struct CUstream_st;  // cudaStream_t is CUstream_st*, in CUDA and in the emulator alike

namespace se::kernels {
using Stream = CUstream_st*;  // nullptr: the default stream
}  // namespace se::kernels
