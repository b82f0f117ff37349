// CPU reductions over (outer, size, inner). inner == 1: each row is cut into fixed chunks whose
// partial states are combined in order, and inside a chunk 8 interleaved lanes break the dependency
// chain (and let the compiler vectorize) before a pairwise combine. inner > 1: columns are processed
// in blocks of kColumnBlock, walking chunks of the reduced axis in order, then the chunks' states are
// combined in order. The split never depends on the number of OpenMP threads, so results are
// reproducible.
#include "kernels/reduce.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/per_isa.h"
#include "kernels/reduce_ops.h"

namespace se::kernels::cpu {
namespace {

using namespace se::kernels::reduce_ops;

constexpr int64_t kRowChunk = 16384;   // elements per task along a reduced row (inner == 1)
constexpr int64_t kColumnBlock = 2048;      // columns per task (inner > 1); any width gives the same bits
constexpr int64_t kColumnChunkRows = 1024;  // rows of the reduced axis per task (inner > 1)
constexpr int kLanes = 8;
constexpr int64_t kParallelWork = 32768;  // below this many input elements, stay on one thread

template <typename Op, typename T>
typename Op::State reduce_chunk(const T* x,  // (size,)
                                int64_t begin, int64_t end) {
  using A = acc_t<T>;
  typename Op::State lanes[kLanes];
  for (auto& lane : lanes) lane = Op::identity();
  int64_t i = begin;
  for (; i + kLanes <= end; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) Op::update(lanes[l], static_cast<A>(x[i + l]), i + l);
  }
  for (int l = 0; i < end; ++i, ++l) Op::update(lanes[l], static_cast<A>(x[i]), i);
  // Pairwise: lane l always holds lower indices than lane l + step within each pair.
  for (int step = 1; step < kLanes; step *= 2) {
    for (int l = 0; l + step < kLanes; l += 2 * step) lanes[l] = Op::combine(lanes[l], lanes[l + step]);
  }
  return lanes[0];
}

// states[c] accumulates column c0 + c of rows [r0, r1) of a (rows, inner) matrix, rows in order.
template <typename Op, typename T>
inline void reduce_column_chunk(typename Op::State* states,  // (width,)
                                const T* in,                  // (rows, inner)
                                int64_t inner, int64_t r0, int64_t r1, int64_t c0, int64_t width) {
  using A = acc_t<T>;
  for (int64_t r = r0; r < r1; ++r) {
    const T* row = in + r * inner + c0;
    for (int64_t c = 0; c < width; ++c) Op::update(states[c], static_cast<A>(row[c]), r);
  }
}

// The f32 sum's column loop (every bias gradient) at the CPU's vector width; additions only, so the
// same bits on every ISA.
#define SE_DEFINE_SUM_COLUMNS_F32(suffix, attribute)                                                       \
  attribute __attribute__((flatten)) void sum_columns_f32_##suffix(double* states, const float* in,         \
                                                                   int64_t inner, int64_t r0, int64_t r1,   \
                                                                   int64_t c0, int64_t width) {             \
    reduce_column_chunk<SumOp<double>, float>(states, in, inner, r0, r1, c0, width);                       \
  }
SE_STAMP_PER_ISA(SE_DEFINE_SUM_COLUMNS_F32)
#undef SE_DEFINE_SUM_COLUMNS_F32

// Elements are widened to acc_t<T> before the op sees them; widening is exact, so comparisons are too.
template <typename Op, typename T, typename Out, typename Finish>
void reduce_with(Out* out,      // (outer, inner)
                 const T* in,   // (outer, size, inner)
                 const ReduceDesc& d, Finish finish) {
  using State = typename Op::State;
  const int64_t outer = d.outer, n = d.size, inner = d.inner;
  if (outer * inner == 0) return;
  const bool parallel = outer * n * inner >= kParallelWork;
  if (inner == 1) {
    const int64_t chunks = std::max<int64_t>(1, (n + kRowChunk - 1) / kRowChunk);
    std::vector<State> partial(static_cast<size_t>(outer * chunks));
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t task = 0; task < outer * chunks; ++task) {
      int64_t row = task / chunks, chunk = task % chunks;
      int64_t begin = chunk * kRowChunk, end = std::min(n, begin + kRowChunk);
      partial[task] = reduce_chunk<Op>(in + row * n, begin, end);
    }
    for (int64_t row = 0; row < outer; ++row) {
      State s = partial[row * chunks];
      for (int64_t c = 1; c < chunks; ++c) s = Op::combine(s, partial[row * chunks + c]);
      out[row] = finish(s);
    }
    return;
  }
  // Columns in blocks; a long reduced axis also in chunks of kColumnChunkRows rows, whose partial
  // states are combined in order (a sum over all rows of a (rows, features) gradient, a bias's,
  // would otherwise be one task: one thread and one long chain per column).
  const int64_t blocks = (inner + kColumnBlock - 1) / kColumnBlock;
  const int64_t chunks = std::max<int64_t>(1, (n + kColumnChunkRows - 1) / kColumnChunkRows);
  const int64_t width = std::min(inner, kColumnBlock);
  std::vector<State> partial(chunks > 1 ? static_cast<size_t>(outer * blocks * chunks * width) : 0);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t task = 0; task < outer * blocks * chunks; ++task) {
    const int64_t o = task / (blocks * chunks), block = task / chunks % blocks, chunk = task % chunks;
    const int64_t c0 = block * kColumnBlock, c1 = std::min(inner, c0 + kColumnBlock);
    const int64_t r0 = chunk * kColumnChunkRows, r1 = std::min(n, r0 + kColumnChunkRows);
    State states[kColumnBlock];
    for (int64_t c = c0; c < c1; ++c) states[c - c0] = Op::identity();
    if constexpr (std::is_same_v<Op, SumOp<double>> && std::is_same_v<T, float>) {
      static const auto sum_columns = SE_PICK_PER_ISA(sum_columns_f32);
      sum_columns(states, in + o * n * inner, inner, r0, r1, c0, c1 - c0);
    } else {
      reduce_column_chunk<Op>(states, in + o * n * inner, inner, r0, r1, c0, c1 - c0);
    }
    if (chunks == 1) {
      for (int64_t c = c0; c < c1; ++c) out[o * inner + c] = finish(states[c - c0]);
    } else {
      std::copy(states, states + (c1 - c0), partial.begin() + task * width);
    }
  }
  if (chunks == 1) return;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t column = 0; column < outer * inner; ++column) {
    const int64_t o = column / inner, c = column % inner, block = c / kColumnBlock;
    const State* first = partial.data() + ((o * blocks + block) * chunks) * width + (c - block * kColumnBlock);
    State s = first[0];
    for (int64_t chunk = 1; chunk < chunks; ++chunk) s = Op::combine(s, first[chunk * width]);
    out[column] = finish(s);
  }
}

}  // namespace

template <typename T>
void reduce(ReduceOp op, T* out, const T* in, const ReduceDesc& d, Stream) {
  using A = acc_t<T>;
  constexpr bool floating = std::is_floating_point_v<A>;
  auto to_t = [](auto value) { return static_cast<T>(value); };
  switch (op) {
    case ReduceOp::sum:
      reduce_with<SumOp<A>>(out, in, d, to_t);
      return;
    case ReduceOp::prod:
      reduce_with<ProdOp<A>>(out, in, d, to_t);
      return;
    case ReduceOp::max:
      SE_CHECK(d.size > 0, "reduce: max of an empty axis (outer ", d.outer, ", size 0, inner ", d.inner, ")");
      reduce_with<ExtremeOp<A, true>>(out, in, d, to_t);
      return;
    case ReduceOp::min:
      SE_CHECK(d.size > 0, "reduce: min of an empty axis (outer ", d.outer, ", size 0, inner ", d.inner, ")");
      reduce_with<ExtremeOp<A, false>>(out, in, d, to_t);
      return;
    case ReduceOp::mean:
      if constexpr (floating) {
        const A n = static_cast<A>(d.size);
        reduce_with<SumOp<A>>(out, in, d, [n](A s) { return static_cast<T>(s / n); });
        return;
      }
      break;
    case ReduceOp::var:
      if constexpr (floating) {
        const A divisor = static_cast<A>(std::max<int64_t>(d.size - d.correction, 0));
        reduce_with<VarOp<A>>(out, in, d, [divisor](typename VarOp<A>::State s) { return static_cast<T>(s.m2 / divisor); });
        return;
      }
      break;
  }
  SE_THROW("reduce: op ", static_cast<int>(op), " needs a floating dtype");
}

template <typename T>
void arg_reduce(ArgReduceOp op, int64_t* out, const T* in, const ReduceDesc& d, Stream) {
  using A = acc_t<T>;
  SE_CHECK(d.size > 0, "arg_reduce: ", op == ArgReduceOp::argmax ? "argmax" : "argmin", " of an empty axis (outer ",
           d.outer, ", size 0, inner ", d.inner, ")");
  auto index = [](auto s) { return s.index; };
  if (op == ArgReduceOp::argmax) {
    reduce_with<ArgExtremeOp<A, true>>(out, in, d, index);
  } else {
    reduce_with<ArgExtremeOp<A, false>>(out, in, d, index);
  }
}

template <typename T>
void reduce_backward(ReduceOp op, T* grad_in, const T* grad_out, const T* in, const T* mean, const ReduceDesc& d,
                     Stream) {
  using A = acc_t<T>;
  SE_CHECK(op == ReduceOp::sum || op == ReduceOp::mean || op == ReduceOp::var, "reduce_backward: op ",
           static_cast<int>(op), " has no broadcast backward (max/min route through their indices)");
  const int64_t n = d.outer * d.size * d.inner;
  const A scale = op == ReduceOp::sum    ? A(1)
                  : op == ReduceOp::mean ? A(1) / static_cast<A>(d.size)
                                         : A(2) / static_cast<A>(std::max<int64_t>(d.size - d.correction, 0));
#pragma omp parallel for schedule(static) if (n >= kParallelWork)
  for (int64_t k = 0; k < n; ++k) {
    const int64_t j = (k / (d.size * d.inner)) * d.inner + k % d.inner;  // (outer, inner) position
    A g = static_cast<A>(grad_out[j]) * scale;
    if (op == ReduceOp::var) g *= static_cast<A>(in[k]) - static_cast<A>(mean[j]);
    grad_in[k] = static_cast<T>(g);
  }
}

#define SE_INSTANTIATE(T)                                                            \
  template void reduce<T>(ReduceOp, T*, const T*, const ReduceDesc&, Stream);        \
  template void arg_reduce<T>(ArgReduceOp, int64_t*, const T*, const ReduceDesc&, Stream);
SE_INSTANTIATE(float)
SE_INSTANTIATE(double)
SE_INSTANTIATE(f16)
SE_INSTANTIATE(bf16)
SE_INSTANTIATE(int32_t)
SE_INSTANTIATE(int64_t)
SE_INSTANTIATE(uint8_t)
#undef SE_INSTANTIATE
template void reduce_backward<float>(ReduceOp, float*, const float*, const float*, const float*, const ReduceDesc&, Stream);
template void reduce_backward<double>(ReduceOp, double*, const double*, const double*, const double*, const ReduceDesc&,
                                      Stream);
template void reduce_backward<f16>(ReduceOp, f16*, const f16*, const f16*, const f16*, const ReduceDesc&, Stream);
template void reduce_backward<bf16>(ReduceOp, bf16*, const bf16*, const bf16*, const bf16*, const ReduceDesc&, Stream);

}  // namespace se::kernels::cpu
