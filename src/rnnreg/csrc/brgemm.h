// The steps' products through oneDNN's batch-reduce GEMM micro-kernel (brgemm), as torch exports
// it (at::native::cpublas::brgemm, which its CPU flash attention calls), where prefer_brgemm asks:
// bf16 products wherever oneDNN generates the bf16 kernel (AVX512_BF16 or AMX), float ones on AMD
// CPUs with AVX-512; up to the medium size's weight, except bf16 ones on AMD CPUs.
//
// Why: MKL runs its AVX2 code on AMD CPUs, and torch's oneDNN ops (OneDnnB, gemm_bf16 in
// onednn.h) cost 12-20 us a call on top of their kernel (the dispatcher, ideep's wrapping, a
// fresh output and the copy out of it). The micro-kernel is generated once per shape and thread
// (torch caches it); a call is then a hash lookup and the kernel, and bf16 operands give float32
// out directly. benchmarks/bench_kernel_parts.py times a step's product both ways: at B = 20,
// H = 200, 19 against 32 us (OneDnnB) float and 10 against 27 us (torch.mm) bf16 on the Zen 5
// EPYC (benchmarks/results/2026-12-02-kernel-parts-zen5-epyc-2core-brgemm.jsonl); bf16 on the
// Xeon with AMX, see kBrgemmMaxWeight.
#pragma once

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/native/CPUBlas.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <type_traits>

#include "compiler.h"
#include "onednn.h"
#include "transpose.h"

namespace rnnreg_fast {
namespace {  // internal linkage, see compiler.h

// The micro-kernel computes one column block of the product at a time, the blocks shared out
// between the threads: kBrgemmCols columns (four AVX-512 vectors), K in chunks of kBrgemmDepth
// when K is larger than twice that, the remainder last (the backward's K = 4H at H = 650: a
// block's rows of b then stay in L2 across a chunk; in a one-off timing on the Zen 5 EPYC, 186
// against 228 us for K whole). The chunk is a multiple of AMX's 32-deep bf16 tiles and even (a
// VNNI row pair stays whole): split evenly instead, into ragged chunks, the B = 80, H = 1150
// forward product (K = 1150 as 384, 384, 382) took 1.6-1.8 ms against 0.8-0.9 ms on the Xeon
// with AMX (one-off timings).
constexpr int64_t kBrgemmCols = 64, kBrgemmDepth = 512;

// Whether torch exports the float micro-kernel (the torch versions that do define this macro in
// the same header).
#if defined(CPUBLAS_BRGEMM_F32F32F32) && RR_X86
constexpr bool kHaveBrgemm = true;
#else
constexpr bool kHaveBrgemm = false;
#endif

// Step products whose weight (k x n) has more elements than this take OneDnnB (float) or torch.mm
// on bf16 (gemm_bf16) instead, except bf16 ones on AMD CPUs: with a weight far beyond L2, oneDNN's
// own primitives block it better. Float on the Zen 5 EPYC: at AWD-LSTM's B = 80, H = 1150 (5.3M
// elements) the micro-kernel took 2.60 against 2.22 ms for OneDnnB, at the medium size's H = 650
// (1.7M) about as long (the kernel-parts results file above). bf16 on the Zen 5 EPYC, same file:
// 1.16 against 1.53 ms (torch.mm on bf16) at B = 80, H = 1150. bf16 on the 2-core Xeon (Sapphire
// Rapids, AMX) of 2026-12-03 (benchmarks/results/2026-12-03-kernel-parts-xeon-spr-2core.jsonl):
// 7.7 against 27.5 us at B = 20, H = 200, 70 against 146 us at H = 650, but 830 against 794 us at
// B = 80, H = 1150, and the stepwise bf16 LSTM there trained at the same speed either way (5043
// against 5047 tokens/s, 2026-12-03-layers-xeon-spr-2core-bf16-every-size.jsonl and
// ...-layers-xeon-spr-2core.jsonl beside it): nothing gained for the VNNI copy of the weight (1.6
// ms a call to build at that size, "vnni pack"). Float products on that Xeon stay with MKL (22.6
// against 26.0 us at B = 20, H = 200).
constexpr int64_t kBrgemmMaxWeight = int64_t{1} << 21;

// Whether oneDNN generates the bf16 micro-kernel here. torch offers it wherever oneDNN finds
// AVX-512, but oneDNN generates it only with AVX512_BF16 or AMX, and not where ONEDNN_MAX_CPU_ISA
// caps it below those: a 1 x 1 x 2 product, tried once, tells. Tried only while torch's oneDNN
// is turned on (off, torch refuses the product, and the answer would stick).
inline bool brgemm_bf16_runs() {
#if defined(CPUBLAS_BRGEMM_F32F32F32) && RR_X86
  if (!at::globalContext().userEnabledMkldnn()) return false;
  static const bool runs = [] {
    try {
      // a (1, 2) = [1, 2], b (2, 1) = [3, 4] (VNNI: its one row pair (1, 1, 2)), a b = 11.
      const at::BFloat16 a[2] = {at::BFloat16(1.0f), at::BFloat16(2.0f)};
      const at::BFloat16 b[2] = {at::BFloat16(3.0f), at::BFloat16(4.0f)};
      float c = 0.0f;
      at::native::cpublas::brgemm(1, 1, 2, 2, 1, 1, false, a, b, &c, true);
      at::native::cpublas::brgemm_release(true);
      return c == 11.0f;
    } catch (const std::exception&) {
      return false;
    }
  }();
  return runs;
#else
  return false;
#endif
}

// Whether a step's product of weight b (k, n) takes the micro-kernel, where torch's oneDNN is
// turned on (torch.backends.mkldnn.enabled = False turns the kernel off for torch's own calls: for
// ours too; torch would otherwise fall back to MKL per column block, or refuse bf16). bf16: with k
// even, wherever the bf16 kernel runs (brgemm_bf16_runs), up to kBrgemmMaxWeight except on AMD
// CPUs with AVX-512. Float: on AMD CPUs with AVX-512, where MKL runs its AVX2 code, up to
// kBrgemmMaxWeight.
inline bool prefer_brgemm(int64_t k, int64_t n, bool bf16) {
  if (!kHaveBrgemm || !onednn_usable()) return false;
  if (bf16) return k % 2 == 0 && (amd_avx512() || k * n <= kBrgemmMaxWeight) && brgemm_bf16_runs();
  return amd_avx512() && k * n <= kBrgemmMaxWeight;
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
  // A thread takes at least 2^18 multiply-adds' worth of blocks: in a one-off timing on the Zen 5
  // EPYC a 20 x 64 x 256 product (327K) took 3.1 us on one thread and 3.2-3.5 us split in two.
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
    // With AMX, the tile state is released before the thread goes back to the pool, as torch's
    // own callers do: held, it is saved on every context switch and keeps the core out of its
    // deep sleep states (Intel's AMX programming guide). The next product configures it again.
    if (vnni) at::native::cpublas::brgemm_release(true);
  });
#else
  (void)m, (void)n, (void)k, (void)a, (void)b, (void)accumulate, (void)out;
#endif
}

// b (k, n) float rows rounded to bf16 in the micro-kernel's VNNI layout (k / 2, n, 2), in one
// pass: rows 2p and 2p + 1 interleaved into pair row p. k must be even.
inline at::Tensor vnni_from_rows(const at::Tensor& b_rows) {
  const at::Tensor b = b_rows.contiguous();  // (k, n)
  const int64_t k = b.size(0), n = b.size(1);
  at::Tensor out = at::empty({k / 2, n, 2}, b.options().dtype(at::kBFloat16));
  const float* src = b.data_ptr<float>();
  at::BFloat16* dst = out.data_ptr<at::BFloat16>();
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(n, 1));
  at::parallel_for(0, k / 2, grain, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const float *even = src + 2 * p * n, *odd = even + n;
      at::BFloat16* row = dst + 2 * p * n;
      RR_IVDEP
      for (int64_t j = 0; j < n; ++j) {
        row[2 * j] = at::BFloat16(even[j]);
        row[2 * j + 1] = at::BFloat16(odd[j]);
      }
    }
  });
  return out;
}

// The same layout from b^T's (n, k) rows, as the forward hands W_hh over: in bf16 those rows are
// (n, k / 2) pairs of 32 bits each, and the VNNI layout is their transpose, which transposed()
// does for float (its vector kernel moves bits unchanged).
inline at::Tensor vnni_from_t(const at::Tensor& bt_rows) {
  const int64_t n = bt_rows.size(0), k = bt_rows.size(1);
  const auto bf16 = bt_rows.options().dtype(at::kBFloat16);
  if (n == 0 || k == 0) return at::empty({k / 2, n, 2}, bf16);
  // Dense (n, k) rows made here: .to() would keep the odd strides of a size-1 dimension, which
  // the view as float refuses.
  const at::Tensor pairs = at::empty({n, k}, bf16).copy_(bt_rows).view(at::kFloat);  // (n, k / 2)
  const at::Tensor t = transposed(pairs);  // (k / 2, n), each element a bf16 pair
  return t.view(at::kBFloat16).view({t.size(0), t.size(1), 2});  // (k / 2, n, 2)
}

// b (k, n) float rows (b_is_t: given as b^T's (n, k) rows) in the micro-kernel's bf16 VNNI layout
// (k / 2, n, 2): element (d, j) at (d / 2, j, d % 2). k must be even.
inline at::Tensor vnni_bf16(const at::Tensor& b_rows, bool b_is_t) {
  return b_is_t ? vnni_from_t(b_rows) : vnni_from_rows(b_rows);
}

}  // namespace
}  // namespace rnnreg_fast
