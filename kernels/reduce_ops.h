// The semantics of every reduction as small host/device structs, shared by kernels/cpu/reduce.cpp and
// kernels/cuda/reduce.cu so both backends agree on NaN handling, tie-breaking and accumulation types.
// Each op has a State, an identity, update(state, x, index) (per state, elements arrive in increasing
// index order) and combine(a, b) of two partial states. combine may see partial states whose index
// sets interleave: sums and extremes are order-free, Welford/Chan is symmetric, and the arg ops break
// ties by index, so every split gives the same answer up to floating-point rounding.
#pragma once

#include <cstdint>
#include <limits>

#include "core/half.h"

namespace se::kernels::reduce_ops {

// Accumulator type: f16/bf16 -> float, f32/f64 -> double, integers -> int64_t.
template <typename T> struct AccOf { using type = int64_t; };
template <> struct AccOf<float> { using type = double; };
template <> struct AccOf<double> { using type = double; };
template <> struct AccOf<f16> { using type = float; };
template <> struct AccOf<bf16> { using type = float; };
template <typename T> using acc_t = typename AccOf<T>::type;

template <typename A> SE_HOST_DEVICE inline bool is_nan(A x) { return x != x; }  // false for integers

template <typename A> SE_HOST_DEVICE inline A lowest() {
  return std::numeric_limits<A>::has_infinity ? -std::numeric_limits<A>::infinity() : std::numeric_limits<A>::lowest();
}
template <typename A> SE_HOST_DEVICE inline A highest() {
  return std::numeric_limits<A>::has_infinity ? std::numeric_limits<A>::infinity() : std::numeric_limits<A>::max();
}

template <typename A> struct SumOp {
  using State = A;
  SE_HOST_DEVICE static State identity() { return A(0); }
  SE_HOST_DEVICE static void update(State& s, A x, int64_t) { s += x; }
  SE_HOST_DEVICE static State combine(State a, State b) { return a + b; }
};

template <typename A> struct ProdOp {
  using State = A;
  SE_HOST_DEVICE static State identity() { return A(1); }
  SE_HOST_DEVICE static void update(State& s, A x, int64_t) { s *= x; }
  SE_HOST_DEVICE static State combine(State a, State b) { return a * b; }
};

// kMax: max, else min. A NaN wins over every number and stays.
template <typename A, bool kMax> struct ExtremeOp {
  using State = A;
  SE_HOST_DEVICE static bool better(A x, A than) { return is_nan(x) || (kMax ? x > than : x < than); }
  SE_HOST_DEVICE static State identity() { return kMax ? lowest<A>() : highest<A>(); }
  SE_HOST_DEVICE static void update(State& s, A x, int64_t) {
    if (better(x, s)) s = x;
  }
  SE_HOST_DEVICE static State combine(State a, State b) { return better(b, a) ? b : a; }
};

// Index of the first maximum (kMax) or minimum; the first NaN counts as the extreme.
template <typename A, bool kMax> struct ArgExtremeOp {
  struct State {
    A value;
    int64_t index;  // -1: no element seen yet
  };
  SE_HOST_DEVICE static bool better(A x, A than) {
    if (is_nan(than)) return false;
    return is_nan(x) || (kMax ? x > than : x < than);
  }
  SE_HOST_DEVICE static State identity() { return {A(0), -1}; }
  SE_HOST_DEVICE static void update(State& s, A x, int64_t index) {
    if (s.index < 0 || better(x, s.value)) s = {x, index};
  }
  SE_HOST_DEVICE static State combine(State a, State b) {
    if (a.index < 0) return b;
    if (b.index < 0) return a;
    if (better(b.value, a.value)) return b;
    if (better(a.value, b.value)) return a;
    return a.index <= b.index ? a : b;  // equal values (or both NaN): the first one
  }
};

// Welford's running mean and sum of squared deviations; Chan et al.'s formula combines partial states.
template <typename A> struct VarOp {
  struct State {
    int64_t count;
    A mean;
    A m2;
  };
  SE_HOST_DEVICE static State identity() { return {0, A(0), A(0)}; }
  SE_HOST_DEVICE static void update(State& s, A x, int64_t) {
    s.count += 1;
    A delta = x - s.mean;
    s.mean += delta / static_cast<A>(s.count);
    s.m2 += delta * (x - s.mean);
  }
  SE_HOST_DEVICE static State combine(State a, State b) {
    if (a.count == 0) return b;
    if (b.count == 0) return a;
    int64_t count = a.count + b.count;
    A delta = b.mean - a.mean;
    A nb_over_n = static_cast<A>(b.count) / static_cast<A>(count);
    return {count, a.mean + delta * nb_over_n, a.m2 + b.m2 + delta * delta * static_cast<A>(a.count) * nb_over_n};
  }
};

}  // namespace se::kernels::reduce_ops
