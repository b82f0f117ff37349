// Internal to the CPU kernels: GEMMs with an operand that is not a stored matrix but produced on demand
// by the caller, block by block as the GEMM packs it. Implicit GEMM: a conv's im2col matrix (K, pixels)
// is gathered from the image while the GEMM needs each block, instead of written out whole and read
// back by the packing (for the demo U-Net's 8 x 8 maps that matrix was 4.7 MB, out of L2).
#pragma once

#include <cstdint>

#include "kernels/gemm.h"

namespace se::kernels::cpu {

// op(B) (k, n) packed straight into the GEMM's panels.
template <typename T>
class GemmBPacker {
 public:
  // Writes op(B)[p0 : p0 + kb, j0 : j1] into panels of nr columns: element (p, j) at
  //   out[(j - j0) / nr * (nr * kb) + (p - p0) * nr + (j - j0) % nr]
  // with the last panel's columns past j1 set to zero. j0 is a multiple of nr. Called by several
  // threads at once, for disjoint column ranges.
  virtual void pack(int64_t p0, int64_t kb, int64_t j0, int64_t j1, int nr, T* out) const = 0;

 protected:
  ~GemmBPacker() = default;
};

// A matrix S given a block of rows at a time, which the GEMM then packs as it packs a stored one.
template <typename T>
class GemmRowSource {
 public:
  // Writes S[r0 : r0 + count, c0 : c1] into out, rows ld apart. Called by several threads at once.
  virtual void rows(int64_t r0, int64_t count, int64_t c0, int64_t c1, T* out, int64_t ld) const = 0;

 protected:
  ~GemmRowSource() = default;
};

// C = alpha * op(A) @ op(B) + beta * C for one item, T float or double, threaded like cpu::gemm (one
// thread inside a parallel region); the fields of desc for the operand given otherwise (its ld, its
// transpose) are not used. The sums are cpu::gemm's with the operand stored, in the same order: the
// same bits (except for a product cpu::gemm gives its dot-product kernel, gemm_takes_dot_kernel below:
// here it is packed like any other).
//   gemm_packing_b: op(B) (k, n) from a packer.
//   gemm_rows_a:    op(A) = S (m, k), S from a row source.
//   gemm_rows_b:    op(B) = S^T, S (n, k) from a row source.
template <typename T>
void gemm_packing_b(const GemmDesc& desc, const T* a,  // (m, k), or (k, m) when trans_a
                    const GemmBPacker<T>& b, T* c);    // c (m, n)
template <typename T>
void gemm_rows_a(const GemmDesc& desc, const GemmRowSource<T>& a,
                 const T* b,  // (k, n), or (n, k) when trans_b
                 T* c);       // (m, n)
template <typename T>
void gemm_rows_b(const GemmDesc& desc, const T* a,  // (m, k), or (k, m) when trans_a
                 const GemmRowSource<T>& b, T* c);  // c (m, n)

// Whether cpu::gemm computes this product with its dot-product kernel, which reads A and B as stored
// rows (A @ B^T with few outputs over a long k): a row source would first have to be stored for it.
bool gemm_takes_dot_kernel(const GemmDesc& desc);

}  // namespace se::kernels::cpu
