// Matrix transposes into new dense rows (transposed), for the products that need an operand's
// other orientation: W_hh^T for the forward's per-step product, and on the oneDNN route
// (onednn.h) dG^T, the input of the weight gradients' products (oneDNN's inner product reads its
// input as dense rows; a transposed weight it absorbs into its own reorder).
//
// Why by hand: w.t().contiguous() walks one side with a stride of a whole row. It took 14 ms for
// AWD-LSTM's 4600 x 1150 W_hh on the Xeon, and 68 ms for the AWD-size dG (5600 x 4600) on the
// Zen 5 EPYC of 2026-12-02 (2 threads), 0.8 ms for the medium size's 700 x 2600. The tiled scalar
// loop below took 48 and 0.76 ms there; the AVX2 kernel, which swaps 8 x 8 blocks in registers,
// 37 and 0.20 ms (most of the large one's time is the fresh output's first touch).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>

#include "compiler.h"
#include "dispatch.h"

#if RR_X86
#include <immintrin.h>
#endif

namespace rnnreg_fast {
namespace {  // internal linkage, see compiler.h

using at::Tensor;

// Tile edge: a 32 x 32 float tile (4 KiB) of the source and one of the destination stay in L1.
// Tiles are walked in blocks of 256 x 256, so that a block's rows of the source and of the
// destination (256 pages each at most) stay in the TLB: walking a whole row of tiles before the
// next wrote to every destination row, one page each: AWD's 5600 x 4600 dG took 46 against 37 ms
// on the Zen 5 EPYC (2 threads; the medium size's 700 x 2600, 0.15-0.20 ms, alike).
constexpr int64_t kTile = 32, kBlock = 256;

// dst (n, m) = src (m, n)^T over the tile rows [i0, i1) x columns [j0, j1), scalar: the twin of
// the vector kernel below, and what runs for double, on other ISAs, and at the ragged edges.
template <typename T>
void transpose_tile_scalar(const T* src, T* dst, int64_t m, int64_t n, int64_t i0, int64_t i1,
                           int64_t j0, int64_t j1) {
  for (int64_t i = i0; i < i1; ++i)
    for (int64_t j = j0; j < j1; ++j) dst[j * m + i] = src[i * n + j];
}

#if RR_X86
// The same for float, 8 x 8 blocks at a time: eight rows loaded, interleaved in pairs
// (unpacklo/hi), in fours (shuffle) and across the two 128-bit halves (permute2f128), so that
// register k ends up holding column k of the block, stored as row k of the destination block.
RR_AVX2 void transpose_tile_avx2(const float* src, float* dst, int64_t m, int64_t n, int64_t i0,
                                 int64_t i1, int64_t j0, int64_t j1) {
  const int64_t i8 = i0 + (i1 - i0) / 8 * 8, j8 = j0 + (j1 - j0) / 8 * 8;
  for (int64_t i = i0; i < i8; i += 8) {
    for (int64_t j = j0; j < j8; j += 8) {
      const float* s = src + i * n + j;
      const __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + n),
                   r2 = _mm256_loadu_ps(s + 2 * n), r3 = _mm256_loadu_ps(s + 3 * n),
                   r4 = _mm256_loadu_ps(s + 4 * n), r5 = _mm256_loadu_ps(s + 5 * n),
                   r6 = _mm256_loadu_ps(s + 6 * n), r7 = _mm256_loadu_ps(s + 7 * n);
      // t0 = [r0_0 r1_0 r0_1 r1_1 | r0_4 r1_4 r0_5 r1_5], t1 the same for elements 2, 3 | 6, 7
      const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
                   t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
                   t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                   t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
      // u0 = [r0_0 r1_0 r2_0 r3_0 | r0_4 r1_4 r2_4 r3_4]: rows 0-3 of columns 0 and 4
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                   u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                   u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                   u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      float* d = dst + j * m + i;
      _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));  // column j
      _mm256_storeu_ps(d + m, _mm256_permute2f128_ps(u1, u5, 0x20));
      _mm256_storeu_ps(d + 2 * m, _mm256_permute2f128_ps(u2, u6, 0x20));
      _mm256_storeu_ps(d + 3 * m, _mm256_permute2f128_ps(u3, u7, 0x20));
      _mm256_storeu_ps(d + 4 * m, _mm256_permute2f128_ps(u0, u4, 0x31));  // column j + 4
      _mm256_storeu_ps(d + 5 * m, _mm256_permute2f128_ps(u1, u5, 0x31));
      _mm256_storeu_ps(d + 6 * m, _mm256_permute2f128_ps(u2, u6, 0x31));
      _mm256_storeu_ps(d + 7 * m, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
  }
  // The ragged edges: the columns past the last full block, then the rows past it.
  transpose_tile_scalar(src, dst, m, n, i0, i8, j8, j1);
  transpose_tile_scalar(src, dst, m, n, i8, i1, j0, j1);
}
#endif

// One tile, vector where simd asks and the element is float.
template <typename T>
void transpose_tile(const T* src, T* dst, int64_t m, int64_t n, int64_t i0, int64_t i1, int64_t j0,
                    int64_t j1, bool /*simd*/) {
  transpose_tile_scalar(src, dst, m, n, i0, i1, j0, j1);
}
inline void transpose_tile(const float* src, float* dst, int64_t m, int64_t n, int64_t i0,
                           int64_t i1, int64_t j0, int64_t j1, bool simd) {
#if RR_X86
  if (simd) return transpose_tile_avx2(src, dst, m, n, i0, i1, j0, j1);
#endif
  transpose_tile_scalar(src, dst, m, n, i0, i1, j0, j1);
}

// Whether transposed() takes the AVX2 kernel for float: where the CPU has it and
// ATEN_CPU_CAPABILITY does not cap rnnreg below it (dispatch.h). vector false forces the scalar
// loop (the tests' twin, through the rnnreg_fast::transpose probe).
inline bool transpose_vector() {
#if RR_X86
  return isa_cap() >= 1 && cpu_has_avx2_fma();
#else
  return false;
#endif
}

// w (m, n) transposed into a new contiguous (n, m) tensor, tile by tile, the tile rows split
// across threads (grain 16 tile rows: a matrix of at most 16 x 32 rows stays on one thread).
inline Tensor transposed(const Tensor& w_in, bool vector = true) {
  const Tensor w = w_in.contiguous();
  const int64_t m = w.size(0), n = w.size(1);
  Tensor out = at::empty({n, m}, w.options());
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "rnnreg_transposed", [&] {
    const scalar_t* src = w.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    const bool simd = vector && transpose_vector();
    at::parallel_for(0, (m + kTile - 1) / kTile, 16, [&](int64_t r0, int64_t r1) {
      const int64_t row_end = std::min(m, r1 * kTile);
      for (int64_t ib = r0 * kTile; ib < row_end; ib += kBlock) {
        for (int64_t jb = 0; jb < n; jb += kBlock) {
          for (int64_t i0 = ib; i0 < std::min(row_end, ib + kBlock); i0 += kTile) {
            const int64_t i1 = std::min(row_end, i0 + kTile);
            for (int64_t j0 = jb; j0 < std::min(n, jb + kBlock); j0 += kTile)
              transpose_tile(src, dst, m, n, i0, i1, j0, std::min(n, j0 + kTile), simd);
          }
        }
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace rnnreg_fast
