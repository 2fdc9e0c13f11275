// Elementwise math for the pointwise kernels. float: branch-free polynomial versions the compiler
// can vectorize (relative error ~1e-7), because libm's expf / tanhf calls would keep every loop
// scalar; double: the C library (accuracy first; double is the checking dtype, not the fast one).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "compiler.h"

namespace rnnreg_fast {
namespace {  // internal linkage, see compiler.h

// Bit casts through memcpy (the defined way; compiles to a register move).
RR_INLINE int32_t as_int(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof(i));
  return i;
}
RR_INLINE float as_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof(f));
  return f;
}

// exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln(2) / 2, exp(r) by its Taylor series to r^7.
RR_INLINE float exp_f(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  const int32_t ni = as_int(t) - as_int(shifter);
  float r = x - n * 0.693359375f;  // ln 2 split in a short high part and a correction
  r = r + n * 2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * as_float((ni + 127) << 23);
}

RR_INLINE float sigmoid_v(float x) { return 1.0f / (1.0f + exp_f(-x)); }
RR_INLINE double sigmoid_v(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// tanh: odd Taylor polynomial near 0 (no cancellation), (1 - e) / (1 + e), e = exp(-2|x|), elsewhere.
RR_INLINE float tanh_v(float x) {
  const float ax = std::fabs(x);
  const float e = exp_f(-2.0f * ax);
  const float big = (1.0f - e) / (1.0f + e);
  const float x2 = ax * ax;
  float s = 62.0f / 2835.0f;
  s = s * x2 - 17.0f / 315.0f;
  s = s * x2 + 2.0f / 15.0f;
  s = s * x2 - 1.0f / 3.0f;
  s = s * x2 + 1.0f;
  s = s * ax;
  return std::copysign(ax < 0.25f ? s : big, x);
}
RR_INLINE double tanh_v(double x) { return std::tanh(x); }

// log(x) for a normal float x > 0: x = 2^e * m with m in [sqrt(1/2), sqrt(2)), then
// log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172, by its series to s^9 (the next term is
// below 3e-9 relative). Only the Gaussian noise (noise.cpp) uses it, on x in (0, 1].
RR_INLINE float log_f(float x) {
  const int32_t xi = as_int(x);
  int32_t e = ((xi >> 23) & 0xff) - 127;
  float m = as_float((xi & 0x007fffff) | 0x3f800000);  // [1, 2)
  const bool high = m > 1.41421356f;
  m = high ? 0.5f * m : m;
  e = high ? e + 1 : e;
  const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
  float p = 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  const float fe = static_cast<float>(e);
  return (2.0f * s) * p + fe * 0.693359375f - fe * 2.12194440e-4f;  // ln 2, split as in exp_f
}

// cos(2 pi u) and sin(2 pi u) for u in [0, 1): quadrant q = floor(4u), x = (4u - q) pi / 2 in
// [0, pi / 2), cos x and sin x by their Taylor series to x^12 and x^13 (error below 1e-8 there),
// then the quadrant's rotation: cos is (cos x, -sin x, -cos x, sin x), sin is (sin x, cos x,
// -sin x, -cos x) for q = 0..3. The Gaussian noise (noise.cpp) uses both outputs.
RR_INLINE void sincos_2pi_f(float u, float& cos_out, float& sin_out) {
  const float t = 4.0f * u;
  const int32_t q = static_cast<int32_t>(t);
  const float x = (t - static_cast<float>(q)) * 1.57079632679f, x2 = x * x;
  float c = 1.0f / 479001600.0f;
  c = c * x2 - 1.0f / 3628800.0f;
  c = c * x2 + 1.0f / 40320.0f;
  c = c * x2 - 1.0f / 720.0f;
  c = c * x2 + 1.0f / 24.0f;
  c = c * x2 - 0.5f;
  c = c * x2 + 1.0f;
  float s = 1.0f / 6227020800.0f;
  s = s * x2 - 1.0f / 39916800.0f;
  s = s * x2 + 1.0f / 362880.0f;
  s = s * x2 - 1.0f / 5040.0f;
  s = s * x2 + 1.0f / 120.0f;
  s = s * x2 - 1.0f / 6.0f;
  s = s * x2 + 1.0f;
  s = s * x;
  const float vc = (q & 1) ? s : c, vs = (q & 1) ? c : s;
  cos_out = ((q + 1) & 2) ? -vc : vc;
  sin_out = (q & 2) ? -vs : vs;
}

// torch.lerp(start, end, w): start + w * (end - start), written from the nearer end as torch.lerp
// computes it (the reference uses torch.lerp), so w = 0 and w = 1 give start and end exactly.
template <typename T>
RR_INLINE T lerp_v(T start, T end, T w) {
  const T d = end - start;
  return w < T(0.5) ? start + w * d : end - d * (T(1) - w);
}

}  // namespace
}  // namespace rnnreg_fast
