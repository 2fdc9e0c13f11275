// Counter-based dropout / zoneout masks (used by rnnreg/regularizers/masks.py).
//
// Why: torch.rand costs ~8-9.5 ns per element on the 2-core CPU we target and runs on one thread,
// so weight drop (a mask over every W_hh) and zoneout ((T, B, H) masks) took 7-15% of a training
// step. Here element i's uniform is a pure function of (seed, i): two rounds of a 32-bit
// xorshift-multiply hash, which vectorize (AVX2 or AVX-512 32-bit mullo, chosen at run time) and
// split across threads freely: ~1.4 ns per element on one thread, ~0.7 on two (the 4 vector
// multiplies per element are the bottleneck on that Zen 1 CPU; fewer rounds would be faster but
// weaker).
// The result does not depend on the thread count or the grain; Python draws the 64-bit seed from
// torch's default generator, once per mask, so torch.manual_seed reproduces masks.
//
// Uniforms: float32 u = (bits >> 8) * 2^-24 (24 bits, as torch.rand), float64 u = bits * 2^-32
// (32 bits). keep_mask is 1 iff u < prob, dropout_mask is 0 iff u < p (else 1/(1-p)), so
// keep_mask_const(p) == keep_mask(full(p)) and dropout_mask(p) is its complement, scaled. Constant
// rates become one exact integer threshold on the 32 hash bits.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "counter_hash.h"
#include "dispatch.h"

namespace rnnreg_fast {
namespace {

using at::Tensor;

template <typename T>
struct ThresholdP {  // out = bits < t ? below : above
  T* out;
  Key key;
  uint32_t t;
  T below, above;
};

template <typename T>
struct ProbP {  // out = u < prob ? 1 : 0
  const T* prob;
  T* out;
  Key key;
};

template <typename T>
struct ApplyP {  // out = x * (bits < t ? 0 : scale)
  const T* x;
  T* out;
  Key key;
  uint32_t t;
  T scale;
};

// Plain loops, no lambdas: a lambda body would not inherit the target of run_avx2 / run_avx512.
template <typename T>
RR_INLINE void threshold_k(const ThresholdP<T>& p, int64_t b, int64_t e) {
  for (int64_t s = b, stop; s < e; s = stop) {
    stop = segment_end(s, e);
    const uint32_t lo0 = static_cast<uint32_t>(s), k0 = p.key.k0, k1 = segment_key(p.key, s);
    const uint32_t t = p.t;
    const T below = p.below, above = p.above;
    T* o = p.out + s;
    uint32_t lo = lo0;  // a 32-bit counter beside j: GCC then keeps a 32-bit vector index
    for (int64_t j = 0, m = stop - s; j < m; ++j, ++lo) o[j] = bits(lo, k0, k1) < t ? below : above;
  }
}

// x times dropout_mask's entry, the same product x * m as multiplying by the mask tensor.
template <typename T>
RR_INLINE void apply_k(const ApplyP<T>& p, int64_t b, int64_t e) {
  for (int64_t s = b, stop; s < e; s = stop) {
    stop = segment_end(s, e);
    const uint32_t lo0 = static_cast<uint32_t>(s), k0 = p.key.k0, k1 = segment_key(p.key, s);
    const uint32_t t = p.t;
    const T zero = 0, scale = p.scale;
    const T* xi = p.x + s;
    T* o = p.out + s;
    uint32_t lo = lo0;
    for (int64_t j = 0, m = stop - s; j < m; ++j, ++lo)
      o[j] = xi[j] * (bits(lo, k0, k1) < t ? zero : scale);
  }
}

// Both compare exactly: r < prob * 2^24 <=> r * 2^-24 < prob (scaling by 2^k is exact).
RR_INLINE void prob_k(const ProbP<float>& p, int64_t b, int64_t e) {
  for (int64_t s = b, stop; s < e; s = stop) {
    stop = segment_end(s, e);
    const uint32_t lo0 = static_cast<uint32_t>(s), k0 = p.key.k0, k1 = segment_key(p.key, s);
    const float* q = p.prob + s;
    float* o = p.out + s;
    uint32_t lo = lo0;
    for (int64_t j = 0, m = stop - s; j < m; ++j, ++lo) {
      const int32_t r = static_cast<int32_t>(bits(lo, k0, k1) >> 8);
      o[j] = static_cast<float>(r) < q[j] * 16777216.0f ? 1.0f : 0.0f;
    }
  }
}

RR_INLINE void prob_k(const ProbP<double>& p, int64_t b, int64_t e) {
  for (int64_t s = b, stop; s < e; s = stop) {
    stop = segment_end(s, e);
    const uint32_t lo0 = static_cast<uint32_t>(s), k0 = p.key.k0, k1 = segment_key(p.key, s);
    const double* q = p.prob + s;
    double* o = p.out + s;
    uint32_t lo = lo0;
    for (int64_t j = 0, m = stop - s; j < m; ++j, ++lo) {
      // uint32 -> double through a signed int32 (AVX2 has no unsigned conversion), exact.
      const uint32_t x = bits(lo, k0, k1);
      const double r = static_cast<double>(static_cast<int32_t>(x ^ 0x80000000U)) + 2147483648.0;
      o[j] = r < q[j] * 4294967296.0 ? 1.0 : 0.0;
    }
  }
}

// The vector clones for double too: the time goes into the integer hash, not the double compare.
template <typename T>
using ThresholdK = Kernel<T, ThresholdP<T>, &threshold_k<T>, true>;
template <typename T>
using ProbK = Kernel<T, ProbP<T>, &prob_k, true>;
template <typename T>
using ApplyK = Kernel<T, ApplyP<T>, &apply_k<T>, true>;

// ~1.4 ns per element: below this a mask stays on one thread (a parallel region costs microseconds).
constexpr int64_t kMaskGrain = 1 << 15;

void check_dtype(at::ScalarType dtype) {
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "rnnreg masks: float32 or float64 only, got ", dtype);
}

// The integer t with (u < p <=> bits < t) for this dtype's uniform u; 2^32 means "always".
uint64_t threshold(double p, at::ScalarType dtype) {
  if (dtype == at::kFloat) {
    const float pf = static_cast<float>(p);  // the per-element float path compares in float too
    if (!(pf > 0.0f)) return 0;  // also NaN: u < NaN is false
    if (pf >= 1.0f) return uint64_t(1) << 32;
    return static_cast<uint64_t>(std::ceil(static_cast<double>(pf) * 16777216.0)) << 8;
  }
  if (!(p > 0.0)) return 0;
  if (p >= 1.0) return uint64_t(1) << 32;
  return static_cast<uint64_t>(std::ceil(p * 4294967296.0));
}

template <typename T>
Tensor threshold_mask(at::IntArrayRef shape, uint64_t t, T below, T above, int64_t seed,
                      at::ScalarType dtype) {
  if (t == 0) return at::full(shape, above, at::TensorOptions().dtype(dtype));
  if (t >> 32) return at::full(shape, below, at::TensorOptions().dtype(dtype));
  Tensor out = at::empty(shape, at::TensorOptions().dtype(dtype));
  run_pointwise<ThresholdK<T>>(
      ThresholdP<T>{out.data_ptr<T>(), make_key(seed), static_cast<uint32_t>(t), below, above},
      out.numel(), kMaskGrain);
  return out;
}

Tensor dropout_mask(at::IntArrayRef shape, double p, int64_t seed, at::ScalarType dtype) {
  check_dtype(dtype);
  const uint64_t t = threshold(p, dtype);
  // Scale computed in the mask's dtype, as keep.to(dtype).div_(1 - p) does.
  if (dtype == at::kFloat)
    return threshold_mask<float>(shape, t, 0.0f, 1.0f / static_cast<float>(1.0 - p), seed, dtype);
  return threshold_mask<double>(shape, t, 0.0, 1.0 / (1.0 - p), seed, dtype);
}

// x * dropout_mask(x.shape, p, seed) without the mask: weight drop's forward (x = W_hh) and its
// backward (x = the gradient, the same seed), one pass over x each, where the mask took three
// (draw it, multiply, and multiply again in the backward, reading the stored mask).
template <typename T>
Tensor apply_mask(const Tensor& x, uint64_t t, T scale, int64_t seed) {
  if (t == 0) return x.mul(at::Scalar(static_cast<double>(scale)));
  if (t >> 32) return x.mul(at::Scalar(0.0));
  Tensor out = at::empty(x.sizes(), x.options());
  if (out.numel() == 0) return out;
  run_pointwise<ApplyK<T>>(ApplyP<T>{x.data_ptr<T>(), out.data_ptr<T>(), make_key(seed),
                                     static_cast<uint32_t>(t), scale},
                           out.numel(), kMaskGrain);
  return out;
}

Tensor dropout_apply(const Tensor& x, double p, int64_t seed) {
  TORCH_CHECK(x.device().is_cpu(), "rnnreg masks: CPU tensors only, got ", x.device());
  check_dtype(x.scalar_type());
  const Tensor xc = x.contiguous();  // element i is the i-th in row-major order, as in the mask
  const uint64_t t = threshold(p, x.scalar_type());
  if (x.scalar_type() == at::kFloat)
    return apply_mask<float>(xc, t, 1.0f / static_cast<float>(1.0 - p), seed);
  return apply_mask<double>(xc, t, 1.0 / (1.0 - p), seed);
}

Tensor keep_mask_const(at::IntArrayRef shape, double prob, int64_t seed, at::ScalarType dtype) {
  check_dtype(dtype);
  const uint64_t t = threshold(prob, dtype);
  if (dtype == at::kFloat) return threshold_mask<float>(shape, t, 1.0f, 0.0f, seed, dtype);
  return threshold_mask<double>(shape, t, 1.0, 0.0, seed, dtype);
}

Tensor keep_mask(const Tensor& prob, int64_t seed) {
  TORCH_CHECK(prob.device().is_cpu(), "rnnreg masks: CPU tensors only, got ", prob.device());
  check_dtype(prob.scalar_type());
  const Tensor q = prob.contiguous();  // materializes broadcast (expanded) probabilities
  Tensor out = at::empty(q.sizes(), q.options());
  if (out.numel() == 0) return out;
  if (q.scalar_type() == at::kFloat)
    run_pointwise<ProbK<float>>(
        ProbP<float>{q.data_ptr<float>(), out.data_ptr<float>(), make_key(seed)}, out.numel(),
        kMaskGrain);
  else
    run_pointwise<ProbK<double>>(
        ProbP<double>{q.data_ptr<double>(), out.data_ptr<double>(), make_key(seed)}, out.numel(),
        kMaskGrain);
  return out;
}

}  // namespace
}  // namespace rnnreg_fast

// Registered as a fragment, like every file here (see recurrence.h).
TORCH_LIBRARY_FRAGMENT(rnnreg_fast, m) {
  m.def("dropout_mask(int[] shape, float p, int seed, ScalarType dtype) -> Tensor",
        &rnnreg_fast::dropout_mask);
  m.def("keep_mask(Tensor prob, int seed) -> Tensor", &rnnreg_fast::keep_mask);
  m.def("dropout_apply(Tensor x, float p, int seed) -> Tensor", &rnnreg_fast::dropout_apply);
  m.def("keep_mask_const(int[] shape, float prob, int seed, ScalarType dtype) -> Tensor",
        &rnnreg_fast::keep_mask_const);
}
