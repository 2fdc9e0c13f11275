// Compiler attributes shared by the kernels. Kept apart so vecmath.h does not depend on the
// dispatch machinery (and the reverse) just to get two macros.
//
// The headers' own code sits in an anonymous namespace, as the .cpp files' code does: each
// translation unit gets private copies, so the extension exports no symbols of its own, as before
// the split: nothing another loaded library could interpose on, no weak copies for the linker to
// choose between.
#pragma once

#if defined(__GNUC__)
// The per-element helpers must inline into each ISA clone, which then compiles them for its own
// target; left out of line they would be one baseline copy that the AVX2 clone calls per element.
#define RR_INLINE inline __attribute__((always_inline))
// The kernels' loops carry no dependencies between iterations, which GCC cannot prove through
// the parameter structs' many pointers; without ivdep they need run-time alias checks or stay
// scalar.
#define RR_IVDEP _Pragma("GCC ivdep")
#else
#define RR_INLINE inline
#define RR_IVDEP
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define RR_X86 1
// Whether this is an AMD CPU, where some of the products take other routes (gemm.h, onednn.h).
inline bool amd_cpu() {
  static const bool amd = __builtin_cpu_is("amd");
  return amd;
}
// Whether this is an AMD CPU with AVX-512 (Zen 4 and later), where MKL still runs its AVX2 code
// but oneDNN its AVX-512 kernels (onednn.h).
inline bool amd_avx512() {
  static const bool yes = amd_cpu() && __builtin_cpu_supports("avx512f");
  return yes;
}
// The fast clones' ISAs. No -march=native in the build: its cache may be shared between machines,
// so the clone is chosen at run time instead (dispatch.h). The AVX-512 clone asks for 512-bit
// vectors explicitly: GCC's generic tuning would otherwise vectorize with 256 bits.
#define RR_AVX2 __attribute__((target("avx2,fma")))
#if defined(__clang__)  // clang has no prefer-vector-width target option (and drops the attribute)
#define RR_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#else
#define RR_AVX512 \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512")))
#endif
#else
#define RR_X86 0
inline bool amd_cpu() { return false; }
inline bool amd_avx512() { return false; }
#endif
