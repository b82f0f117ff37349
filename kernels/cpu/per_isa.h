// Internal to the CPU kernels: loops compiled once per vector ISA and picked at run time. The build has no
// -march flags (it runs on any x86-64); a function with __attribute__((target(...))) that inlines a
// default-target loop is vectorized by GCC at that target's width (`flatten` forces the inlining).
//
//   #define SE_DEFINE_MY_LOOP(suffix, attribute) attribute void my_loop_##suffix(...) { my_loop(...); }
//   SE_STAMP_PER_ISA(SE_DEFINE_MY_LOOP)            // my_loop_avx512, my_loop_avx2, my_loop_baseline
//   static const auto best = SE_PICK_PER_ISA(my_loop);  // the widest one this CPU runs
//
// Files whose such loops do floating-point arithmetic build with -ffp-contract=off (kernels/CMakeLists.txt),
// so that no ISA fuses a * b + c into an FMA and every ISA gives the same bits.
#pragma once

#if defined(__x86_64__)
#define SE_STAMP_PER_ISA(DEFINE)                     \
  DEFINE(avx512, __attribute__((target("avx512f")))) \
  DEFINE(avx2, __attribute__((target("avx2"))))      \
  DEFINE(baseline, )
#define SE_PICK_PER_ISA(name) \
  (__builtin_cpu_supports("avx512f") ? name##_avx512 : __builtin_cpu_supports("avx2") ? name##_avx2 : name##_baseline)
#else
#define SE_STAMP_PER_ISA(DEFINE) DEFINE(baseline, )
#define SE_PICK_PER_ISA(name) (name##_baseline)
#endif
