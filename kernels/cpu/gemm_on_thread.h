// Internal to the CPU kernels: the CPU GEMM (kernels/gemm.h) for a kernel whose tasks already run one per
// OpenMP thread and that needs products inside a task (attention's tiles). It runs on the calling thread
// without opening a parallel region, and its results do not depend on the thread count.
#pragma once

#include "kernels/gemm.h"

namespace se::kernels::cpu {

// C = alpha * op(A) @ op(B) + beta * C for one batch item; desc.dtype must match T (f32 or f64).
template <typename T>
void gemm_on_this_thread(const GemmDesc& desc,
                         const T* a,  // (m, k), or (k, m) when trans_a
                         const T* b,  // (k, n), or (n, k) when trans_b
                         T* c);       // (m, n)

}  // namespace se::kernels::cpu
