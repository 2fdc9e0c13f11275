// The products that go through torch's own oneDNN ops: the steps' float products where oneDNN's
// inner product was measured faster than MKL and its micro-kernel (OneDnnB, prefer_onednn), on AMD
// CPUs with AVX-512 the all-step ones too (prefer_onednn_mm; mm_onednn in recurrence.h), and the
// bf16 products of the stepwise kernels under CPU bf16 autocast where the micro-kernel does not
// take them (gemm_bf16). Reached through the dispatcher and ATen, so nothing of oneDNN is linked here.
#pragma once

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>
#include <c10/util/BFloat16.h>

#include <cstdint>
#include <optional>

#include "compiler.h"
#include "transpose.h"

namespace rnnreg_fast {
namespace {  // internal linkage, see compiler.h

// A product that oneDNN wrote into its own buffer, stored into dst as float32 (accumulate: added
// onto it), over n elements: float32 copied, bf16 widened.
template <typename S>
void store_product(const S* src, float* dst, int64_t n, bool accumulate) {
  at::parallel_for(0, n, int64_t{1} << 15, [&](int64_t b, int64_t e) {
    if (accumulate) {
      RR_IVDEP
      for (int64_t i = b; i < e; ++i) dst[i] += static_cast<float>(src[i]);
    } else {
      RR_IVDEP
      for (int64_t i = b; i < e; ++i) dst[i] = static_cast<float>(src[i]);
    }
  });
}

// torch's oneDNN inner product, y (m, n) = x (m, k) @ w^T for w (n, k), as plain rows or reordered
// by mkldnn::_reorder_linear_weight; found once through the dispatcher. Empty where this torch
// has no such op.
using LinearFn = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            c10::string_view, c10::List<std::optional<at::Scalar>>,
                            std::optional<c10::string_view>);
inline const std::optional<c10::TypedOperatorHandle<LinearFn>>& linear_op() {
  static const std::optional<c10::TypedOperatorHandle<LinearFn>> op =
      []() -> std::optional<c10::TypedOperatorHandle<LinearFn>> {
    const auto h = c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
    if (!h) return std::nullopt;
    return h->typed<LinearFn>();
  }();
  return op;
}

// Whether torch's oneDNN ops may run: they exist in this torch, and oneDNN is not turned off
// (torch.backends.mkldnn.enabled = False turns it off for torch's own ops: for ours too).
inline bool onednn_usable() {
  return linear_op().has_value() && at::globalContext().userEnabledMkldnn();
}

// x (m, k) @ w^T through linear_op, float32: x dense rows, w (n, k) plain (a strided view will
// do: oneDNN reorders it) or reordered.
inline at::Tensor onednn_linear(const at::Tensor& x, const at::Tensor& w) {
  static const c10::List<std::optional<at::Scalar>> no_scalars({std::nullopt});
  return linear_op()->call(x, w, std::nullopt, "none", no_scalars, "");
}

// The right operand of out (m, n) = in (m, k) @ b (k, n) reordered once into oneDNN's blocked
// layout for m rows, each product then one call of torch's own oneDNN inner product
// (mkldnn::_reorder_linear_weight / _linear_pointwise). Why: on a 2-core AMD EPYC (Zen, AVX2)
// of 2026-12-02, MKL's sgemm, packed or not, ran the steps' products slower than oneDNN, which
// torch.nn.LSTM's CPU kernel uses: 640-720 against 480-610 us at B = 20, H = 650, 1080-1160
// against 710-730 us at H = 800, 6.5-6.7 against 5.7-5.8 ms at B = 80, H = 1150 (forward
// orientation; the backward's alike). Intel CPUs keep MKL's packed GEMM, measured faster than
// sgemm_ on the Xeon, where this route was not measured. The product lands in a fresh (m, n)
// tensor and is copied (or added) into out: a pass over B rows, small next to the product.
// Not set up (ok() false) for double, or where this torch has no oneDNN ops.
// b is b_rows (k, n) row-major when !b_is_t, else b_rows (n, k) read as its transpose.
class OneDnnB {
 public:
  OneDnnB() = default;
  OneDnnB(const at::Tensor& b_rows, bool b_is_t, int64_t m) : m_(m) {
    const auto reorder =
        c10::Dispatcher::singleton().findSchema({"mkldnn::_reorder_linear_weight", ""});
    if (b_rows.scalar_type() != at::kFloat || !reorder || !onednn_usable() || m == 0 ||
        b_rows.numel() == 0)
      return;
    // oneDNN's inner product takes the weight as (n, k) rows: b^T.
    const at::Tensor w = b_is_t ? b_rows.contiguous() : transposed(b_rows);
    k_ = w.size(1);
    n_ = w.size(0);
    w_ = reorder->typed<at::Tensor(const at::Tensor&, std::optional<int64_t>)>().call(w, m);
  }
  bool ok() const { return w_.defined(); }
  void run(const float* in, float* out, bool accumulate) const {
    const at::Tensor x = at::from_blob(const_cast<float*>(in), {m_, k_}, at::kFloat);
    const at::Tensor y = onednn_linear(x, w_);
    store_product(y.data_ptr<float>(), out, m_ * n_, accumulate);
  }

 private:
  at::Tensor w_;
  int64_t m_ = 0, n_ = 0, k_ = 0;
};

// Products below this many multiply-adds stay on MKL on AMD CPUs with AVX-512: oneDNN's inner
// product costs 12-20 us a call whatever its size, and reordering a step's weight 110-200 us a
// call. On the Zen 5 EPYC (2 threads), a step's product at B = 20 took 18 us through MKL against
// 22 us through oneDNN at H = 64 (327K multiply-adds), 42 against 32 us at H = 128 (1.3M); at B = 80
// 30 against 26 us at H = 64 (1.3M), 91 against 45 us at H = 128; at B = 1, H = 256 (262K) both 18.
// (One-off timings; benchmarks/bench_kernel_parts.py measures the products and the reorder.)
constexpr int64_t kOneDnnMinAvx512 = int64_t{1} << 20;

// Whether the float products over all steps (the input projection, the weight and input
// gradients) take oneDNN too (mm_onednn, recurrence.h): on AMD CPUs with AVX-512, where MKL runs
// its AVX2 code at half oneDNN's speed, from kOneDnnMinAvx512 multiply-adds. On the 2-core EPYC
// with Zen 5 cores (family 26) of 2026-12-02, 2 threads, torch.mm (MKL) against oneDNN's inner
// product on plain rows: 1.12 against 0.53 ms (700 x 200 x 800), 12.4 against 6.0 ms (700 x 650 x
// 2600), 329 against 177 ms (5600 x 1150 x 4600), and the weight gradient dG^T x at that size 345
// against 216 ms with both operands turned into rows first. MKL's products there ran at 160-200
// GFLOP/s, oneDNN's at 330-435.
inline bool prefer_onednn_mm(int64_t m, int64_t n, int64_t k) {
  return amd_avx512() && m * n * k >= kOneDnnMinAvx512 && onednn_usable();
}

// Whether a step's float product out (m, n) = in (m, k) @ b takes oneDNN (OneDnnB) rather than MKL,
// on AMD CPUs only, where oneDNN's brgemm micro-kernel does not take it first (RecGemm asks
// prefer_brgemm, brgemm.h, before this: with AVX-512, weights up to kBrgemmMaxWeight elements).
// With AVX-512 from kOneDnnMinAvx512 multiply-adds: the step's product at B = 20, H = 200 took
// 68 us through MKL against 45 us through oneDNN on plain rows and 33 us on the reordered weight,
// at H = 650 583 against 239 (171) us, at B = 80, H = 1150 5.4 against 2.5 (2.1) ms. On other AMD
// CPUs (one measured: the Zen EPYC with AVX2 above) from 2^23 multiply-adds: below that oneDNN's
// fixed cost per call (the dispatcher, a fresh output, the copy) outweighed its faster kernel
// there: whole LSTM training steps (T = 35, B = 20, one layer) on that EPYC took 15.5 against
// 14.2 ms at H = 200 (3.2M multiply-adds a product), 109 against 120 ms at H = 650 (34M), and 2.60
// against 2.85 s at B = 80, H = 1150 (T = 70; 423M).
inline bool prefer_onednn(int64_t m, int64_t n, int64_t k) {
  const int64_t macs = m * n * k;
  return amd_cpu() && macs >= (amd_avx512() ? kOneDnnMinAvx512 : int64_t{1} << 23);
}

// float32 to bf16 over n elements, rounded to nearest even (c10::BFloat16's own conversion, so the
// same bits as tensor.to(torch.bfloat16)).
inline void to_bf16(const float* src, at::BFloat16* dst, int64_t n) {
  at::parallel_for(0, n, int64_t{1} << 15, [&](int64_t b, int64_t e) {
    RR_IVDEP
    for (int64_t i = b; i < e; ++i) dst[i] = at::BFloat16(src[i]);
  });
}

// out (m, n) = a (m, k) @ b (k, n), plus out when accumulate: bf16 operands (dense rows), float32
// out, through at::mm_out on bf16 tensors (oneDNN, float32 accumulation) into the bf16 rows
// scratch (m, n), then widened: what CPU autocast's bf16 products compute, bf16 result included.
// (MKL's cblas_gemm_bf16bf16f32, which writes float32 directly, was tried on a Xeon with
// AVX512_BF16 in one-off timings and ran no faster than oneDNN there; no results file records it.)
inline void gemm_bf16(int64_t m, int64_t n, int64_t k, const at::BFloat16* a, const at::Tensor& b,
                      const at::Tensor& scratch, bool accumulate, float* c) {
  if (m == 0 || n == 0) return;
  const auto opt = b.options();
  const at::Tensor ta = at::from_blob(const_cast<at::BFloat16*>(a), {m, k}, opt);
  at::Tensor out = scratch;
  at::mm_out(out, ta, b);
  store_product(scratch.data_ptr<at::BFloat16>(), c, m * n, accumulate);
}

}  // namespace
}  // namespace rnnreg_fast
