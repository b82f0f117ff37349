// Internal to the CPU kernels: element functions and loop helpers written so that GCC vectorizes the loops
// that use them (without -ffast-math and without -march flags).
//
// fast_exp: e^x. libm's expf is a call, which keeps every loop around it scalar; this one is
// straight-line float arithmetic and bit operations.
//   x = k ln2 + r, k = round(x / ln2) (by adding 1.5 * 2^23), r reduced with ln2 split in two parts so
//   that k * kLn2High is exact; e^r on [-ln2 / 2, ln2 / 2] by a degree-7 polynomial (SLEEF's expf
//   coefficients); 2^k applied as two factors, so results down to the subnormal range round once.
// Max error 1 ulp against the correctly rounded e^x over all floats (checked exhaustively when this was
// written; tests/kernels/test_vector_math.cpp samples it), e^-inf = 0, e^+inf = inf, NaN stays NaN.
// double keeps libm's exp: f64 exists for gradient checks.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace se::kernels::cpu {

// pick ? a : b through bit masks. GCC (without -ffast-math) turns a select whose arms feed or come from
// floating-point arithmetic into a branch, and a loop with a branch does not vectorize.
template <typename S>
S select(bool pick, S a, S b) {
  using Bits = std::conditional_t<sizeof(S) == 4, uint32_t, uint64_t>;
  static_assert(sizeof(S) == sizeof(Bits));
  Bits a_bits, b_bits;
  std::memcpy(&a_bits, &a, sizeof(a_bits));
  std::memcpy(&b_bits, &b, sizeof(b_bits));
  const Bits mask = Bits(0) - static_cast<Bits>(pick);
  const Bits bits = (a_bits & mask) | (b_bits & ~mask);
  S out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// e^r - 1 of the reduction x = k ln2 + r, k = round(x / ln2), |r| <= ln2 / 2, for x (already clamped to
// [-104, 89]), and k. The shared core of fast_exp and fast_expm1.
inline float exp_reduced_minus_one(float x, int32_t* k_out) {
  constexpr float kRoundShift = 12582912.0f;  // 1.5 * 2^23: adding it rounds |v| < 2^22 to an integer
  const float shifted = x * 1.44269504088896341f + kRoundShift;
  const float k = shifted - kRoundShift;
  float r = x - k * 0.693145751953125f;  // ln2's high part: 16 significant bits, k * it is exact
  r = r - k * 1.428606765330187045e-06f;
  float p = 0.000198527617612853646278381f;
  p = p * r + 0.00139304355252534151077271f;
  p = p * r + 0.00833336077630519866943359f;
  p = p * r + 0.0416664853692054748535156f;
  p = p * r + 0.166666671633720397949219f;
  p = p * r + 0.5f;
  // k from the low bits of `shifted` (a NaN gives some k, and the result is NaN anyway).
  uint32_t shifted_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(shifted_bits));
  *k_out = static_cast<int32_t>(shifted_bits - 0x4B400000u);
  return (r * r) * p + r;
}

// 2^k as two float factors (each a normal number for k in [-252, 254]), for results that round once down to
// the subnormal range or reach 2^128.
inline void power_of_two_factors(int32_t k, float* low_scale, float* high_scale) {
  const int32_t k_low = k >> 1, k_high = k - k_low;
  const uint32_t low_bits = static_cast<uint32_t>(k_low + 127) << 23;
  const uint32_t high_bits = static_cast<uint32_t>(k_high + 127) << 23;
  std::memcpy(low_scale, &low_bits, sizeof(*low_scale));
  std::memcpy(high_scale, &high_bits, sizeof(*high_scale));
}

inline float fast_exp(float x) {
  // e^x is 0 below -104 and inf above 89 in float; clamping keeps k in [-150, 128].
  x = select(x < -104.0f, -104.0f, x);
  x = select(x > 89.0f, 89.0f, x);
  int32_t k;
  const float e = 1.0f + exp_reduced_minus_one(x, &k);
  float low_scale, high_scale;
  power_of_two_factors(k, &low_scale, &high_scale);
  return e * low_scale * high_scale;
}

inline double fast_exp(double x) {
  return std::exp(x);
}

// fast_expm1: e^x - 1 without the cancellation of fast_exp(x) - 1 near 0, vectorizable the same way
// (libm's expm1f is a call). With fast_exp's x = k ln2 + r and q = e^r - 1 = r + r^2 P(r) (its
// polynomial without the leading 1, so q keeps r's relative accuracy), e^x - 1 = (q + (1 - 2^-k)) 2^k:
// for k = 0 that is q itself; 1 - 2^-k is exact for |k| <= 24 and rounds to 1 beyond (k <= 24 is
// taken for it), 2^k applied as two factors. x is clamped to [-20, 89]: below -17.4 the result rounds
// to -1, above 88.73 it overflows.
// Max error 2 ulp against the correctly rounded e^x - 1 (tests/kernels/test_vector_math.cpp samples it
// densely); +-0 stays +-0, -inf gives -1, +inf gives inf, NaN stays NaN. double keeps libm's expm1.
inline float fast_expm1(float x) {
  float c = select(x < -20.0f, -20.0f, x);
  c = select(c > 89.0f, 89.0f, c);
  int32_t k;  // in [-29, 128]
  const float q = exp_reduced_minus_one(c, &k);
  const int32_t k_small = k < 24 ? k : 24;
  const uint32_t inverse_bits = static_cast<uint32_t>(127 - k_small) << 23;  // 2^-k
  float inverse, low_scale, high_scale;
  std::memcpy(&inverse, &inverse_bits, sizeof(inverse));
  power_of_two_factors(k, &low_scale, &high_scale);
  const float y = (q + (1.0f - inverse)) * low_scale * high_scale;
  return select(x == 0.0f, x, y);  // keeps the sign of zero
}

inline double fast_expm1(double x) {
  return std::expm1(x);
}

// fast_erf: erf(x), vectorizable like fast_exp (libm's erff is a call). With t = |x|:
//   t < 1:  t + t * A(t^2), A a degree-6 polynomial (t + t * A rather than t * (1 + A): the leading term
//           stays exact, so the constant's rounding does not cost half an ulp);
//   t >= 1: 1 - e^(B(t) - t^2), B a degree-7 polynomial fitted to log(erfc(t)) + t^2 on [1, 4]; t is
//           clamped to 4, past which erf rounds to 1.
// Both are computed and one is selected, so the loop stays branch-free. The coefficients are Lawson-
// iterated least-squares fits (near minimax) in double, rounded to float, for relative error (A) and for
// erf's error through erfc (B). Max error 1.32 ulp against the correctly rounded erf over all floats
// (checked exhaustively when this was written; tests/kernels/test_vector_math.cpp samples it).
// erf(+-0) = +-0, erf(+-inf) = +-1, NaN stays NaN. double keeps libm's erf.
inline float fast_erf(float x) {
  const float t = std::fabs(x);
  const float s = t * t;
  float a = 7.853861461626366e-05f;
  a = a * s - 0.0008010193705558777f;
  a = a * s + 0.005188327748328447f;
  a = a * s - 0.026853812858462334f;
  a = a * s + 0.1128358542919159f;
  a = a * s - 0.3761262595653534f;
  a = a * s + 0.12837916612625122f;
  const float small = t + t * a;
  const float u = select(t > 4.0f, 4.0f, t);
  float b = -2.1697602278436534e-05f;
  b = b * u + 0.0004414724826347083f;
  b = b * u - 0.004205283708870411f;
  b = b * u + 0.025210337713360786f;
  b = b * u - 0.10842209309339523f;
  b = b * u + 0.36678358912467957f;
  b = b * u - 1.1295802593231201f;
  b = b * u + 0.00018846728198695928f;
  const float large = 1.0f - fast_exp(b - u * u);
  return std::copysign(select(t < 1.0f, small, large), x);
}

inline double fast_erf(double x) {
  return std::erf(x);
}

// Sums in kLanes interleaved partial sums: they vectorize where one running sum cannot (GCC does not
// reassociate floating-point additions without -ffast-math), and their order is fixed by the code, not by
// the thread count or the vector width.
constexpr int kLanes = 8;

// Calls body(k, lane) for k in [begin, end): lane (k - begin) % kLanes, except that the last
// (end - begin) % kLanes values all use lane 0, so that lane indices are constants and the lanes stay in
// registers.
template <typename Body>
void for_each_lane(int64_t begin, int64_t end, Body body) {
  int64_t k = begin;
  for (; k + kLanes <= end; k += kLanes) {
    for (int lane = 0; lane < kLanes; ++lane) body(k + lane, lane);
  }
  for (; k < end; ++k) body(k, 0);
}

template <typename A>
A sum_lanes(const A (&lanes)[kLanes]) {
  A sum = 0;
  for (int lane = 0; lane < kLanes; ++lane) sum += lanes[lane];
  return sum;
}

// 16 floats as one GCC vector: one zmm, two ymm or four xmm registers, as the target has. Loops over
// such vectors vectorize where GCC leaves kLanes interleaved scalars scalar (maxima, or sums converted to
// double), and their lanes are fixed by the code, whatever the ISA.
using Float16 = float __attribute__((vector_size(64)));
using Float8 = float __attribute__((vector_size(32)));
using Double8 = double __attribute__((vector_size(64)));
constexpr int64_t kFloat16Lanes = 16;

// (Through references: a 64-byte vector passed by value changes the ABI between targets, which GCC warns of.)
inline void load16(Float16& v, const float* p) {
  std::memcpy(&v, p, sizeof(v));
}
inline void store16(float* p, const Float16& v) {
  std::memcpy(p, &v, sizeof(v));
}

// The largest of x[k], k < n (-inf for none); NaNs are skipped, except that one at the tail wins.
inline float max_of_row(const float* x, int64_t n) {
  Float16 lane_max = Float16{} - INFINITY;
  int64_t k = 0;
  for (; k + kFloat16Lanes <= n; k += kFloat16Lanes) {
    Float16 v;
    load16(v, x + k);
    lane_max = v > lane_max ? v : lane_max;
  }
  float max = lane_max[0];
  for (int64_t j = 1; j < kFloat16Lanes; ++j) max = lane_max[j] > max ? lane_max[j] : max;
  for (; k < n; ++k) max = x[k] > max || x[k] != x[k] ? x[k] : max;
  return max;
}

// The sum of x[k], k < n, in double: 8 lanes (k % 8), then the tail in order.
inline double sum_of_row_f64(const float* x, int64_t n) {
  Double8 lanes = {};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    Float8 v;
    std::memcpy(&v, x + k, sizeof(v));
    lanes += __builtin_convertvector(v, Double8);
  }
  double sum = 0;
  for (int j = 0; j < 8; ++j) sum += lanes[j];
  for (; k < n; ++k) sum += x[k];
  return sum;
}

}  // namespace se::kernels::cpu
