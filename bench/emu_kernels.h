// Host wrappers around the kernels that bench_emu.cpp times on the CUDA emulator (emu_kernels.cu).
// Plain C++: pointers are device pointers (cudaMalloc).
#pragma once

namespace se::bench {

// An empty kernel on a grid of `blocks` x `threads`.
void emu_launch_empty(unsigned blocks, unsigned threads);
// One block of `threads` threads, each doing `barriers` __syncthreads.
void emu_launch_barriers(unsigned threads, int barriers);
// C (n x n) = A (n x n) * B (n x n), row-major, 16x16 shared-memory tiles.
void emu_sgemm_tiled(const float* a, const float* b, float* c, int n);
// sums[block] = sum of in[block * threads, (block + 1) * threads): warp shuffles, then shared memory across
// warps; `threads` is a multiple of 32, at most 1024.
void emu_shuffle_block_sum(const float* in, float* sums, unsigned blocks, unsigned threads);

}  // namespace se::bench
