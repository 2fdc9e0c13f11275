// Counter-based Gaussian noise (used by rnnreg/regularizers/masks.py for weight noise).
//
// Why: weight noise (Graves 2011) draws a fresh N(0, std^2) for every weight at every forward
// call. torch.randn_like took ~4.4 ns per element on one thread on the benchmark CPU, 26 ms per
// training step for the medium model's four 2600 x 650 matrices (a sixth of the step). Here, as
// for the masks (masks.cpp, counter_hash.h), element i is a pure function of (seed, i), so the
// loops vectorize and split across threads, and the result does not depend on the thread count.
//
// Pair j: two independent 24-bit uniforms from two keyed hash streams, u1 in (0, 1] and u2 in
// [0, 1) (float64: 32 bits each), and both Box-Muller outputs (Box & Muller 1958),
// sqrt(-2 log u1) (cos, sin)(2 pi u2): two independent N(0, 1) draws for exact uniforms. The
// 24-bit u1 bounds |z| by sqrt(2 log 2^24) = 5.77 (float64: 6.66), a tail of probability 8e-9.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>

#include "counter_hash.h"
#include "dispatch.h"
#include "vecmath.h"

namespace rnnreg_fast {
namespace {

using at::Tensor;

// Elements come in chunks of 2 * kPairs: pair k of chunk c (pair index j = c * kPairs + k) gives
// both Box-Muller outputs, r cos(theta) to element c * 2 kPairs + k and r sin(theta) to the same
// plus kPairs, so each pair's hashes, log and square root serve two elements and both stores are
// contiguous. The layout is fixed by the index alone, whatever the thread split (whole chunks).
constexpr int64_t kPairs = 64;

template <typename T>
struct NormalP {  // out (n elements) = scale * N(0, 1)
  T* out;
  int64_t n;
  Key a, b;  // the two uniforms' streams
  T scale;
};

// r = sqrt(-2 log u1) and theta = 2 pi u2 for one pair; float: 24-bit uniforms, u1 in (0, 1].
RR_INLINE void box_muller(uint32_t ha, uint32_t hb, float scale, float& zc, float& zs) {
  const float u1 = static_cast<float>(static_cast<int32_t>(ha >> 8) + 1) * 5.9604645e-8f;
  const float u2 = static_cast<float>(static_cast<int32_t>(hb >> 8)) * 5.9604645e-8f;
  const float r = scale * std::sqrt(-2.0f * log_f(u1));
  float c, s;
  sincos_2pi_f(u2, c, s);
  zc = r * c;
  zs = r * s;
}
RR_INLINE void box_muller(uint32_t ha, uint32_t hb, double scale, double& zc, double& zs) {
  const double u1 = (static_cast<double>(ha) + 1.0) * 2.3283064365386963e-10;
  const double theta = 6.283185307179586 * static_cast<double>(hb) * 2.3283064365386963e-10;
  const double r = scale * std::sqrt(-2.0 * std::log(u1));
  zc = r * std::cos(theta);
  zs = r * std::sin(theta);
}

// Over whole chunks [b, e). Plain loops, no lambdas: a lambda body would not inherit the target
// of run_avx2 / run_avx512. A chunk past the end is computed into a local buffer and cut.
template <typename T>
RR_INLINE void normal_k(const NormalP<T>& p, int64_t b, int64_t e) {
  T tail[2 * kPairs];
  for (int64_t c = b; c < e; ++c) {
    const int64_t first = c * 2 * kPairs, j0 = c * kPairs;
    const bool whole = first + 2 * kPairs <= p.n;
    T* o = whole ? p.out + first : tail;
    // A chunk never straddles a 2^32 boundary of the pair index (kPairs divides 2^32).
    const uint32_t a0 = p.a.k0, a1 = segment_key(p.a, j0), b0 = p.b.k0, b1 = segment_key(p.b, j0);
    const uint32_t lo0 = static_cast<uint32_t>(j0);
    const T scale = p.scale;
    for (uint32_t k = 0; k < kPairs; ++k)
      box_muller(bits(lo0 + k, a0, a1), bits(lo0 + k, b0, b1), scale, o[k], o[kPairs + k]);
    if (!whole)
      for (int64_t i = first; i < p.n; ++i) p.out[i] = tail[i - first];
  }
}

// float only in the vector clones: the double loop spends its time in libm calls.
template <typename T>
using NormalK = Kernel<T, NormalP<T>, &normal_k<T>>;

// ~1.2 ns per element on one thread (AVX-512): below this many chunks it stays on one thread.
constexpr int64_t kNoiseGrain = (1 << 15) / (2 * kPairs);

Tensor normal_noise(at::IntArrayRef shape, double std, int64_t seed, at::ScalarType dtype) {
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "rnnreg noise: float32 or float64 only, got ", dtype);
  TORCH_CHECK(std::isfinite(std) && std >= 0.0, "rnnreg noise: std must be finite and >= 0");
  const auto opt = at::TensorOptions().dtype(dtype);
  if (std == 0.0) return at::zeros(shape, opt);
  Tensor out = at::empty(shape, opt);
  // Two streams from one seed: the second key from the seed's splitmix successor.
  const Key a = make_key(seed), b = make_key(static_cast<int64_t>(
                                        static_cast<uint64_t>(seed) + 0x9E3779B97F4A7C15ULL));
  const int64_t n = out.numel(), chunks = (n + 2 * kPairs - 1) / (2 * kPairs);
  if (dtype == at::kFloat)
    run_pointwise<NormalK<float>>(
        NormalP<float>{out.data_ptr<float>(), n, a, b, static_cast<float>(std)}, chunks, kNoiseGrain);
  else
    run_pointwise<NormalK<double>>(NormalP<double>{out.data_ptr<double>(), n, a, b, std}, chunks,
                                   kNoiseGrain);
  return out;
}

}  // namespace
}  // namespace rnnreg_fast

// Registered as a fragment, like every file here (see recurrence.h).
TORCH_LIBRARY_FRAGMENT(rnnreg_fast, m) {
  m.def("normal_noise(int[] shape, float std, int seed, ScalarType dtype) -> Tensor",
        &rnnreg_fast::normal_noise);
}
