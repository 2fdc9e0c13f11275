// The steps' products through oneDNN's batch-reduce GEMM micro-kernel (brgemm), as torch exports
// it (at::native::cpublas::brgemm, which its CPU flash attention calls): on AMD CPUs with AVX-512,
// float products up to the medium size and bf16 products at every size (prefer_brgemm).
//
// Why: MKL runs its AVX2 code on AMD CPUs, and torch's oneDNN ops (OneDnnB, gemm_bf16 in
// onednn.h) cost 12-20 us a call on top of their kernel (the dispatcher, ideep's wrapping, a
// fresh output and the copy out of it). The micro-kernel is generated once per shape and thread
// (torch caches it); a call is then a hash lookup and the kernel, and bf16 operands give float32
// out directly. On the 2-core Zen 5 EPYC of 2026-12-02 (2 threads), a step's product at B = 20,
// H = 200 took 16-25 us against 30-57 us through OneDnnB forward, 18-25 against 30-40 us backward
// (H x 4H); in bf16 10-11 us against 27-43 us through torch.mm on bf16. (One-off timings beside
// benchmarks/results/2026-12-02-kernel-parts-zen5-epyc-2core-brgemm.jsonl, which
// benchmarks/bench_kernel_parts.py wrote.)
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/native/CPUBlas.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "compiler.h"
#include "onednn.h"

namespace rnnreg_fast {
namespace {  // internal linkage, see compiler.h

// The micro-kernel computes one column block of the product at a time, the blocks shared out
// between the threads: kBrgemmCols columns (four AVX-512 vectors), K in chunks of kBrgemmDepth
// when K is larger than twice that (the backward's K = 4H at H = 650: a block's rows of b then
// stay in L2 across the chunk; 186 against 228 us there).
constexpr int64_t kBrgemmCols = 64, kBrgemmDepth = 512;

// Whether torch exports the float micro-kernel (the torch versions that do define this macro in
// the same header).
#if defined(CPUBLAS_BRGEMM_F32F32F32) && RR_X86
constexpr bool kHaveBrgemm = true;
#else
constexpr bool kHaveBrgemm = false;
#endif

// Float step products whose weight (k x n) has more elements than this take OneDnnB instead: with
// a weight far beyond L2, oneDNN's inner product blocks it better. On the Zen 5 EPYC, at
// AWD-LSTM's B = 80, H = 1150 (5.3M elements) the micro-kernel took 2.6-2.9 ms against 2.2-2.4 ms
// for OneDnnB, at the medium size's H = 650 (1.7M) about as long (154-163 against 172-203 us
// forward at B = 20; 618 against 682 us forward, 702 against 625 us backward at B = 80). bf16
// products take it at every size: 1.16 against 1.53 ms (torch.mm on bf16) at B = 80, H = 1150.
constexpr int64_t kBrgemmMaxWeight = int64_t{1} << 21;

// Whether a step's product of weight b (k, n) takes the micro-kernel, float or bf16 (bf16 with k
// even): on AMD CPUs with AVX-512 (no AMX there, whose tile state torch's brgemm would otherwise
// need released), for float up to kBrgemmMaxWeight, where torch's oneDNN is turned on
// (torch.backends.mkldnn.enabled = False turns the kernel off for torch's own calls: for ours
// too; torch would otherwise fall back to MKL per column block).
inline bool prefer_brgemm(int64_t k, int64_t n, bool bf16) {
  if (!kHaveBrgemm || !amd_avx512() || !onednn_usable()) return false;
  return bf16 ? k % 2 == 0 : k * n <= kBrgemmMaxWeight;
}

// out (m, n) = a (m, k) @ b (k, n), plus out when accumulate, float32 out. float operands: dense
// rows. bf16 operands (float32 accumulation): a dense rows, b in VNNI layout (vnni_bf16), k even.
// Only where kHaveBrgemm.
template <typename T>
void brgemm_nn(int64_t m, int64_t n, int64_t k, const T* a, const T* b, bool accumulate,
               float* out) {
#if defined(CPUBLAS_BRGEMM_F32F32F32) && RR_X86
  if (m == 0 || n == 0) return;
  constexpr bool vnni = std::is_same<T, at::BFloat16>::value;
  const int64_t blocks = (n + kBrgemmCols - 1) / kBrgemmCols;
  const int64_t depth = k > 2 * kBrgemmDepth ? kBrgemmDepth : std::max<int64_t>(k, 1);
  // A thread takes at least 2^18 multiply-adds' worth of blocks: a 20 x 64 x 256 product (327K)
  // took 3.1 us on one thread and 3.2-3.5 us split in two on the Zen 5 EPYC.
  const int64_t per_block = std::max<int64_t>(1, m * kBrgemmCols * k);
  const int64_t grain = ((int64_t{1} << 18) + per_block - 1) / per_block;
  at::parallel_for(0, blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t j = blk * kBrgemmCols, cols = std::min(kBrgemmCols, n - j);
      if (k == 0 && !accumulate) {
        for (int64_t r = 0; r < m; ++r) std::fill_n(out + r * n + j, cols, 0.0f);
        continue;
      }
      // Column j of b starts at b + j (rows), b + 2j (VNNI pairs); row d (even) at b + d n in both.
      const T* bj = b + (vnni ? 2 * j : j);
      for (int64_t d = 0; d < k; d += depth) {
        at::native::cpublas::brgemm(m, cols, std::min(depth, k - d), k, n, n, accumulate || d > 0,
                                    a + d, bj + d * n, out + j, vnni);
      }
    }
  });
#else
  (void)m, (void)n, (void)k, (void)a, (void)b, (void)accumulate, (void)out;
#endif
}

// b (k, n) float rows (b_is_t: given as b^T's (n, k) rows), rounded to bf16 in the micro-kernel's
// VNNI layout (k / 2, n, 2): the two rows of each pair interleaved, element (d, j) at
// (d / 2, j, d % 2). k must be even.
inline at::Tensor vnni_bf16(const at::Tensor& b_rows, bool b_is_t) {
  const at::Tensor b = (b_is_t ? b_rows.t() : b_rows).to(at::kBFloat16);  // (k, n)
  const int64_t k = b.size(0), n = b.size(1);
  return b.reshape({k / 2, 2, n}).transpose(1, 2).contiguous();  // (k / 2, n, 2)
}

}  // namespace
}  // namespace rnnreg_fast
