// The recurrent product of every step (RecGemm).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "brgemm.h"
#include "compiler.h"
#include "gemm.h"
#include "onednn.h"
#include "transpose.h"

namespace rnnreg_fast {
namespace {  // internal linkage, see compiler.h

using at::Tensor;

// Recurrent products, row-major with the batch as rows: forward R_t = h_in @ W_hh^T (B, GH),
// backward D_t = dG_t @ W_hh (B, H), the weight operand prepared once per call: in bf16 for bf16
// products (in VNNI layout where prefer_brgemm asks), else as dense rows for oneDNN's micro-kernel
// where prefer_brgemm asks, else in oneDNN's layout where prefer_onednn asks, else MKL's packed
// layout where prefer_packed asks, else W_hh^T made contiguous for the forward (the Fortran BLAS).
// On the 2-core Xeon (Sapphire Rapids) of 2026-12-01, MKL took 26 us for the B = 20, H = 200
// forward product in this orientation against 45 us transposed (W_hh @ h_in^T, which the Zen 1 CPU
// measured earlier preferred), and 39 us against 59 us for the backward one; the pointwise passes
// then read R / D with unit stride, so their loops vectorize without gathers.
struct RecGemm {
  Tensor w;        // forward: W_hh^T (H, GH); backward: W_hh (GH, H); the blas and brgemm routes
  bool brgemm = false;  // the products through oneDNN's micro-kernel (brgemm.h)
  PackedB packed;  // the same operand in MKL's packed layout, where available (float)
  OneDnnB onednn;  // or in oneDNN's, where that was measured faster (prefer_onednn)
  Tensor wb;       // bf16 products: w in bf16 (see gemm_bf16), in VNNI layout for brgemm
  Tensor inb;      // bf16 products: the step's input rows (B, k) rounded to bf16
  Tensor outb;     // bf16 products: the step's product (B, n) in bf16, before widening
  int64_t B, k, n;  // out (B, n) = in (B, k) @ w (k, n)
  // bf16: the products in bf16 with float32 accumulation (float operands only; otherwise they stay
  // in the operands' dtype), at every size.
  RecGemm(const Tensor& w_hh, int64_t batch, bool backward, bool bf16 = false)
      : B(batch),
        k(backward ? w_hh.size(0) : w_hh.size(1)),
        n(backward ? w_hh.size(1) : w_hh.size(0)) {
    if (bf16 && w_hh.scalar_type() == at::kFloat) {
      brgemm = prefer_brgemm(k, n, true);
      wb = brgemm ? vnni_bf16(w_hh, !backward)
                  : (backward ? w_hh.contiguous() : transposed(w_hh)).to(at::kBFloat16);
      inb = at::empty({B, k}, wb.options());
      if (!brgemm) outb = at::empty({B, n}, wb.options());
      return;
    }
    if (w_hh.scalar_type() == at::kFloat && prefer_brgemm(k, n, false)) {
      brgemm = true;
      w = backward ? w_hh.contiguous() : transposed(w_hh);
      return;
    }
    if (prefer_onednn(B, n, k)) onednn = OneDnnB(w_hh, !backward, B);
    if (!onednn.ok() && prefer_packed()) packed = PackedB(w_hh.contiguous(), !backward, B, n, k);
    if (!onednn.ok() && !packed.ok()) w = backward ? w_hh.contiguous() : transposed(w_hh);
  }
  bool bf16() const { return wb.defined(); }
  // in rounded to bf16, into keep (B, k) when given (the backward keeps each step's dG_t for the
  // weight gradients), else into the scratch rows; returns where it went. Only when bf16().
  const at::BFloat16* round(const float* in, at::BFloat16* keep) const {
    at::BFloat16* dst = keep != nullptr ? keep : inb.data_ptr<at::BFloat16>();
    to_bf16(in, dst, B * k);
    return dst;
  }
  // The route the products take: "bf16_brgemm", "bf16", "brgemm", "onednn", "packed" or "blas"
  // (gemm_nn: the Fortran BLAS, or at::mm in a torch without one).
  const char* route() const {
    if (bf16()) return brgemm ? "bf16_brgemm" : "bf16";
    if (brgemm) return "brgemm";
    if (onednn.ok()) return "onednn";
    return packed.ok() ? "packed" : "blas";
  }
  // out = in @ w, or out += in @ w (accumulate: the forward adds R_t onto the input projection).
  template <typename T>
  void run(const T* in, T* out, bool accumulate, at::BFloat16* keep = nullptr) const {
    if constexpr (std::is_same<T, float>::value) {
      if (bf16() && brgemm)
        return brgemm_nn(B, n, k, round(in, keep), wb.data_ptr<at::BFloat16>(), accumulate, out);
      if (bf16()) return gemm_bf16(B, n, k, round(in, keep), wb, outb, accumulate, out);
      if (brgemm) return brgemm_nn(B, n, k, in, w.data_ptr<float>(), accumulate, out);
      if (onednn.ok()) return onednn.run(in, out, accumulate);
      if (packed.ok()) return packed.run(in, out, accumulate);
    }
    gemm_nn<T>(B, n, k, in, k, w.data_ptr<T>(), n, accumulate, out, n);
  }
};

}  // namespace
}  // namespace rnnreg_fast
