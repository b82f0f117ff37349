// Host wrappers around the emulator's test kernels (kernels_*.cu). Plain C++: pointers are device
// pointers (from cudaMalloc) unless named host_*; wrappers that allocate do it themselves.
#pragma once

#include <cstdint>
#include <vector>

#include "core/half.h"
#include "kernels/stream.h"

namespace se::emu::test {

struct Dims {
  unsigned x = 1, y = 1, z = 1;
};

// kernels_basic.cu
// out[global thread] = block linear index * 10000 + thread linear index, for every thread of the grid.
std::vector<int> run_indexing(Dims grid, Dims block);
// Reverses each 256-element chunk through static shared memory.
std::vector<float> run_static_shared_reverse(const std::vector<float>& in);
// Reverses each blockDim-element chunk through dynamic shared memory of `block * 4 + extra_bytes` bytes
// (extra_bytes > 48 KiB needs opt_in, which calls cudaFuncSetAttribute first). Throws se::Error on failure.
std::vector<float> run_dynamic_shared_reverse(const std::vector<float>& in, unsigned block, size_t extra_bytes,
                                              bool opt_in);
// Tree reduction with one __syncthreads per step; per-block sums. Also checks __syncthreads_count/and/or
// and writes their results to counts[3 * block + {0,1,2}].
std::vector<long long> run_block_tree_sum(const std::vector<int>& in, unsigned block, std::vector<int>* counts);
struct AtomicResults {
  int add_int = 0;
  unsigned add_unsigned = 0;
  unsigned long long add_u64 = 0;
  float add_float = 0;
  double add_double = 0;
  int max_int = 0;
  int min_int = 0;
  unsigned inc_wrapped = 0;
  int cas_sum = 0;
  unsigned or_bits = 0;
  int sub_int = 0;
  float half_sum = 0;
};
// Every thread of `blocks` x 256 updates the same global counters.
AtomicResults run_global_atomics(unsigned blocks);
// Histogram of values in [0, bins) with shared-memory atomics per block, merged with global atomics.
std::vector<unsigned> run_shared_histogram(const std::vector<int>& values, int bins);
// Launch status of an empty kernel with this configuration (cudaGetLastError as int).
int launch_status(Dims grid, Dims block, size_t shared_bytes);
// Same launch through SE_LAUNCH (throws se::Error on a bad configuration).
void launch_checked(Dims grid, Dims block);
// A kernel that does `iterations` rounds of arithmetic per thread; returns a checksum (keeps it alive).
float run_busy_kernel(float* device_buffer, int n, int iterations, se::kernels::Stream stream);
// A kernel where thread `thrower` of block 0 throws std::runtime_error.
void run_throwing_kernel(int thrower);

// kernels_warp.cu
// Block reduction: warp shuffles then shared memory across warps; one sum per block.
std::vector<long long> run_shuffle_block_sum(const std::vector<int>& in, unsigned block);
// Per lane of one warp (32 threads): shfl idx/up/down/xor with several widths; see the kernel for layout.
std::vector<int> run_shuffle_patterns();
// Shuffles of 8- and 2-byte types: per lane {double, long long, half, bfloat16} from lane ^ 1.
struct WideShuffle {
  double d;
  long long ll;
  float h;
  float bf;
};
std::vector<WideShuffle> run_wide_shuffles();
// Votes and __reduce_*_sync over one warp; see the kernel for the layout of the per-lane outputs.
std::vector<unsigned> run_votes(const std::vector<int>& values);

// kernels_math.cu
// Elementwise f16/bf16 intrinsics on inputs a, b (same length); outputs listed in the kernel.
std::vector<float> run_half_ops(const std::vector<float>& a, const std::vector<float>& b, bool bf16);
// One 16x16x16 WMMA: D = A (row-major 16x16) * B (col-major if b_col_major) + C, f16 or bf16 inputs.
std::vector<float> run_wmma(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c,
                            bool bf16, bool b_col_major);
// Fast-math and integer intrinsics on x; see the kernel for the outputs.
std::vector<float> run_float_intrinsics(float x);
std::vector<long long> run_int_intrinsics(unsigned x);
// C (m x n) = A (m x k) * B (k x n), row-major, 16x16 shared-memory tiles. Device pointers.
void sgemm_tiled(const float* a, const float* b, float* c, int m, int n, int k);

// kernels_bugs.cu (the death tests abort the process)
void run_deadlock();                 // half the block exits before a __syncthreads
void run_divergent_barriers();       // threads meet at two different __syncthreads
void run_collective_lane_exited();   // lane 31 exits, the rest shuffle with the full mask
void run_collective_mask_mismatch(); // lanes disagree about the mask
// Planted overruns, reported by AddressSanitizer builds (make sanitize); elsewhere they run without a report.
void run_global_overrun();  // the last thread reads one float past a cudaMalloc'ed buffer
void run_shared_overrun();  // the last thread reads one float past the launch's dynamic shared memory
// Planted bug: thread t writes smem[t] and reads smem[t - 1] with no barrier in between. Returns
// true when the output is right (out[t] = in[t - 1], out[0] = in[0]).
bool run_missing_barrier(unsigned block, int salt);
// The order in which the blocks of a `blocks` x 32 grid ran: each block's index, in the order they started.
std::vector<unsigned> run_block_order(unsigned blocks);

}  // namespace se::emu::test
