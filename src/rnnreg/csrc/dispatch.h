// Running a pointwise kernel over a flat range: the ISA clone is picked at run time and the range
// is split across threads with at::parallel_for. Shared by the recurrences and the masks.
//
// Why clones instead of -march=native: the build cache (~/.cache/torch_extensions) may be shared
// between machines, so the baseline build must run anywhere; the AVX2+FMA and AVX-512 copies of
// each kernel are compiled beside it and the widest the CPU runs is chosen once per process. (The
// LSTM step's pointwise pass took 16 us with AVX-512 against 25 us with AVX2 on the benchmark
// CPU, B = 20, H = 200, one thread.)
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "compiler.h"

namespace rnnreg_fast {
namespace {  // internal linkage, see compiler.h

// A kernel instantiation as a type: run_base / run_avx2 / run_avx512 below are templates on it, so
// each clone gets its own copy of the kernel body with everything inlined into it (a function
// pointer passed at run time, or a lambda, would be compiled once, for the baseline ISA). T is the scalar, P the
// parameter struct, F the kernel, over the flat range [b, e). SIMD: whether the vector clones are
// worth having; by default float only, since the double kernels spend their time in libm calls
// that the clones cannot vectorize.
template <typename TT, typename PP, void (*F)(const PP&, int64_t, int64_t),
          bool SIMD = std::is_same<TT, float>::value>
struct Kernel {
  using T = TT;
  using P = PP;
  static constexpr bool simd = SIMD;
  static RR_INLINE void run(const P& p, int64_t b, int64_t e) { F(p, b, e); }
};

template <typename K>
void run_base(const typename K::P& p, int64_t b, int64_t e) { K::run(p, b, e); }

#if RR_X86
template <typename K>
RR_AVX2 void run_avx2(const typename K::P& p, int64_t b, int64_t e) { K::run(p, b, e); }
template <typename K>
RR_AVX512 void run_avx512(const typename K::P& p, int64_t b, int64_t e) { K::run(p, b, e); }

inline bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
// libgcc's check includes the OS's support for the wider register state (XCR0).
inline bool cpu_has_avx512() {
  static const bool has = cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  return has;
}
#endif

// The widest clone allowed: 0 baseline, 1 AVX2, 2 AVX-512. ATEN_CPU_CAPABILITY, torch's own switch
// for its CPU kernels ("default", "avx2", "avx512"), caps ours the same way, read once per
// process: a user who keeps torch off AVX-512 keeps rnnreg off it too, and the tests run every
// clone on a machine that has them all (the clones' float results may differ in the last bits:
// the compiler contracts multiply-adds into FMAs in the vector clones only).
inline int isa_cap() {
  static const int cap = [] {
    const char* v = std::getenv("ATEN_CPU_CAPABILITY");
    if (v == nullptr) return 2;
    if (std::strcmp(v, "default") == 0) return 0;
    if (std::strcmp(v, "avx2") == 0) return 1;
    return 2;
  }();
  return cap;
}

// The clone run_pointwise picks for a vector kernel: "avx512", "avx2" or "base".
inline const char* simd_clone() {
#if RR_X86
  if (isa_cap() >= 2 && cpu_has_avx512()) return "avx512";
  if (isa_cap() >= 1 && cpu_has_avx2_fma()) return "avx2";
#endif
  return "base";
}

// Below `grain` elements the range stays on one thread: a parallel region costs microseconds, so
// each caller sets its grain from its own per-element cost.
template <typename K>
void run_pointwise(const typename K::P& p, int64_t n, int64_t grain) {
#if RR_X86
  if constexpr (K::simd) {
    if (isa_cap() >= 2 && cpu_has_avx512()) {
      at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) { run_avx512<K>(p, b, e); });
      return;
    }
    if (isa_cap() >= 1 && cpu_has_avx2_fma()) {
      at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) { run_avx2<K>(p, b, e); });
      return;
    }
  }
#endif
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) { run_base<K>(p, b, e); });
}

}  // namespace
}  // namespace rnnreg_fast

// The recurrence kernels walk the flat range [begin, end) of a (rows, H) array row by row: row b
// covers columns [j0, j1). A parallel_for chunk may start and end mid-row. (A macro over plain
// loops, not a lambda, so the AVX2 clones inline everything.)
#define RR_ROWS(begin, end, H)                                      \
  for (int64_t b = (begin) / (H); b * (H) < (end); ++b)             \
    if (const int64_t j0 = std::max<int64_t>((begin) - b * (H), 0), \
        j1 = std::min<int64_t>((end) - b * (H), (H));               \
        j0 < j1)
