// Pieces shared by the LSTM, GRU and Elman drivers (lstm.cpp, gru.cpp, rnn.cpp), which are fast
// CPU twins of rnnreg/kernels/reference.py: stepwise recurrences with recurrent dropout
// (rec_mask), update dropout (upd_mask), zoneout (keep_h, keep_c) and LSTM peepholes, each with a
// hand-written backward.
//
// Layout: time-major (T, B, .), torch.nn gate order (LSTM i f g o, GRU r z n), weights (G*H, in).
//
// Forward: one GEMM projects the inputs of all steps; per step one GEMM computes the recurrent
// term (see RecGemm; the LSTM and the Elman cell add it onto the projection in the GEMM itself)
// and one fused pointwise pass adds the biases and applies the gates, peepholes, masks and
// zoneout. Training keeps the activated gates (written over the input
// projection) for the backward; inference keeps nothing.
// Backward: per step (in reverse) one fused pointwise pass turns dh, dc into the gate gradients
// dG_t and the direct parts of dh_{t-1}, dc_{t-1}; one GEMM gives the recurrent part dG_t @ W_hh,
// which the next pass (step t-1) adds, masked. The weight, bias, peephole and input gradients are
// then single GEMMs / reductions over all steps.
//
// Absent optional operands are replaced by neutral rows (zeros for zoneout and peepholes, ones for
// masks, see Neutral) with a zero row stride, so one vectorizable loop serves every combination of
// options.
//
// Op registration: every .cpp here registers its own ops with TORCH_LIBRARY_FRAGMENT(rnnreg_fast),
// beside the code they run. torch allows a single TORCH_LIBRARY per namespace and fragments need
// none, so no file owns the namespace more than another.
#pragma once

// Per-operator headers rather than <ATen/ATen.h>: the extension's build time is mostly header
// parsing, repeated in every translation unit, and ATen.h costs ~3 s more per unit.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/mv.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "compiler.h"
#include "gemm.h"
#include "onednn.h"
#include "rec_gemm.h"

namespace rnnreg_fast {
namespace {  // internal linkage, see compiler.h

using at::Tensor;
using OptT = std::optional<Tensor>;

// Grain of a step's pointwise pass: below this many elements it stays on one thread (a parallel
// region costs a few microseconds, an element a few nanoseconds; 1024-4096 measured best on 2
// cores).
constexpr int64_t kStepGrain = 2048;

// Bits of the `needs` argument of the backward ops (mirrored in kernels/fast.py).
enum Need : int64_t {
  kX = 1, kH0 = 2, kC0 = 4, kWih = 8, kWhh = 16, kBih = 32, kBhh = 64, kPeep = 128
};

inline bool has(const OptT& t) { return t.has_value() && t->defined(); }

template <typename T>
const T* ptr_or(const OptT& t, const Tensor& fallback) {
  return has(t) ? t->data_ptr<T>() : fallback.data_ptr<T>();
}

// An upstream gradient as the kernels read it: dense rows (autograd may hand on a strided view,
// e.g. the slice of a concatenated output's gradient); contiguous() is free when it already is.
inline OptT dense(const OptT& t) { return has(t) ? OptT(t->contiguous()) : t; }

// The Python wrappers check everything (fast.py, _check); these guard direct calls of the ops.
inline void check_inputs(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, int64_t G) {
  TORCH_CHECK(x.device().is_cpu(), "rnnreg fast kernel: CPU tensors only");
  TORCH_CHECK(x.dim() == 3, "rnnreg fast kernel: x must be (T, B, I)");
  TORCH_CHECK(x.size(0) > 0, "rnnreg fast kernel: empty sequence");
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) == G * w_hh.size(1),
              "rnnreg fast kernel: w_hh must be (G*H, H)");
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) == w_hh.size(0) && w_ih.size(1) == x.size(2),
              "rnnreg fast kernel: w_ih must be (G*H, I)");
}

// a (m, k) @ b (k, n) in float32 through torch's oneDNN inner product: a as dense rows (a
// transposed view turned with transposed(); the callers hand the weight gradients' dG^T over
// already turned, see grad_t), b^T as its weight, a view: oneDNN reorders its weight into its own
// blocked layout anyway and absorbs the transpose there (the medium size's dx = dG @ W_ih, 700 x
// 2600 x 650, took 7.1 ms with W_ih^T a view against 8.7 ms made contiguous by torch first).
inline Tensor mm_onednn(const Tensor& a, const Tensor& b) {
  const Tensor rows =
      a.is_contiguous() ? a : (a.t().is_contiguous() ? transposed(a.t()) : a.contiguous());
  return onednn_linear(rows, b.t());
}

// The products over all steps, a @ b in float32. With bf16 (the kernels under CPU bf16 autocast,
// see kernels/precision.py) through bf16 copies of the operands, as autocast's own products
// (oneDNN's bf16 at::mm), the bf16 result then widened; operands already in bf16 are taken as they
// are.
// In float32 through oneDNN where it is faster than MKL (prefer_onednn_mm), else MKL, with a
// gradient product (turnable) turned where that runs faster (prefer_transposed).
inline Tensor mm_f32(const Tensor& a, const Tensor& b, bool bf16, bool turnable = false) {
  if (!bf16) {
    const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
    const bool f32 = a.scalar_type() == at::kFloat;
    if (f32 && m * k * n > 0 && prefer_onednn_mm(m, n, k)) return mm_onednn(a, b);
    if (f32 && turnable && prefer_transposed(m, n, k))
      return at::mm(b.t(), a.t()).t().contiguous();  // (n, m) computed, (m, n) returned
    return at::mm(a, b);
  }
  return at::mm(a.to(at::kBFloat16), b.to(at::kBFloat16)).to(at::kFloat);
}

// Input projection of all steps: x @ w_ih^T, as (T, B, G*H). (The biases are added in the
// pointwise passes.)
inline Tensor project(const Tensor& x, const Tensor& w_ih, bool bf16 = false) {
  const int64_t T = x.size(0), B = x.size(1);
  return mm_f32(x.reshape({T * B, x.size(2)}), w_ih.t(), bf16).view({T, B, w_ih.size(0)});
}

// b_ih + b_hh where both enter the same pre-activation (LSTM, Elman; not GRU's n gate), so the
// pointwise pass reads one bias; undefined when neither is given.
inline Tensor bias_sum(const OptT& a, const OptT& b) {
  if (has(a) && has(b)) return a->add(*b);  // what *a + *b is, without its header
  if (has(a)) return *a;
  if (has(b)) return *b;
  return Tensor();
}

// dG (T*B, n) as dG^T (n, T*B), the left operand of the weight gradients dG^T @ (T*B, width):
// where that product takes oneDNN turned into dense rows here, once (oneDNN reads its input as
// rows), and shared by dW_ih and dW_hh where both read the same dG (LSTM, Elman); elsewhere the
// free view.
inline Tensor grad_t(const Tensor& dg2, int64_t width) {
  const bool onednn =
      dg2.scalar_type() == at::kFloat && prefer_onednn_mm(dg2.size(1), width, dg2.size(0));
  return onednn ? transposed(dg2) : dg2.t();
}

// Weight gradient of the recurrent matrix: sum_t dG_t^T h_in_{t-1}, from dgt = dG^T (GH, T*B)
// (grad_t). With rec_mask the h_in were stored (hin, (T, B, H)); without it h_in_{t-1} is h0 for
// t = 0 and h_seq[t-1] after (with bf16 products, or float ones through oneDNN, gathered into one
// (T, B, H) copy for a single product).
inline Tensor grad_w_hh(const Tensor& dgt, const Tensor& hin, const Tensor& h0, const Tensor& hs,
                        bool bf16 = false) {
  const int64_t GH = dgt.size(0), TB = dgt.size(1), B = h0.size(0), H = h0.size(1), T = hs.size(0);
  if (hin.defined() && hin.numel() > 0) return mm_f32(dgt, hin.view({TB, H}), bf16, true);
  if (bf16 || (dgt.scalar_type() == at::kFloat && prefer_onednn_mm(GH, H, TB))) {
    Tensor h_in = at::empty({T, B, H}, h0.options().dtype(bf16 ? at::kBFloat16 : at::kFloat));
    h_in[0].copy_(h0);
    if (T > 1) h_in.narrow(0, 1, T - 1).copy_(hs.narrow(0, 0, T - 1));
    return mm_f32(dgt, h_in.view({TB, H}), bf16);
  }
  // dG_0^T (GH, B) and the later steps' dG^T (GH, (T-1) B), the sum in two products.
  const Tensor first = dgt.narrow(1, 0, B), rest = dgt.narrow(1, B, TB - B);
  const Tensor h_rest = hs.narrow(0, 0, T - 1).reshape({TB - B, H});
  if (dgt.scalar_type() == at::kFloat && prefer_transposed(GH, H, TB)) {
    Tensor dwt = at::mm(h0.t(), first.t());  // (H, GH): the same sum, turned
    if (T > 1) dwt.addmm_(h_rest.t(), rest.t());
    return dwt.t().contiguous();
  }
  Tensor dw = at::mm(first, h0);
  if (T > 1) dw.addmm_(rest, h_rest);
  return dw;
}

// The input-side gradients every cell shares, each one GEMM over all steps:
// dW_ih = sum_t dG_x,t^T x_t and dx = dG_x W_ih. dgx2 is dG_x (T*B, G*H), dgxt its grad_t.
inline void grad_inputs(const Tensor& dgx2, const Tensor& dgxt, const Tensor& x,
                        const Tensor& w_ih, int64_t needs, Tensor& dw_ih, Tensor& dx,
                        bool bf16 = false) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2);
  if (needs & kWih) dw_ih = mm_f32(dgxt, x.reshape({T * B, I}), bf16, true);
  if (needs & kX) dx = mm_f32(dgx2, w_ih, bf16, true).view({T, B, I});
}

// The ops return a fixed-length list; a gradient nobody asked for is an empty tensor.
inline std::vector<Tensor> with_empties(std::vector<Tensor> out, const at::TensorOptions& opt) {
  for (auto& o : out)
    if (!o.defined()) o = at::empty({0}, opt);
  return out;
}

// h_in = h * rec_mask over one row's [j0, j1): what the next step's recurrent GEMM reads.
template <typename T>
RR_INLINE void store_masked(T* hin, const T* h, const T* rm, int64_t j0, int64_t j1) {
  RR_IVDEP
  for (int64_t j = j0; j < j1; ++j) hin[j] = h[j] * rm[j];
}

// Column sums of a (rows, n) matrix, as a matrix-vector product: the bias gradients, sum_t,b dG.
// (dG.sum(0) took 2.8x as long for AWD's 5600 x 4600 dG on one thread, 3.7x on two.) The BLAS
// accumulates each column in order where torch.sum sums pairwise, so over many rows the result
// can differ from dG.sum(0) in the last float bits (the layer tests' tolerances hold).
inline Tensor col_sums(const Tensor& m) {
  return at::mv(m.t(), at::ones({m.size(0)}, m.options()));
}

// The neutral rows that stand in for absent optional operands (zoneout weights, peepholes and
// biases read zeros, masks read ones); sized for the widest user, the LSTM's 4H bias.
struct Neutral {
  Tensor zeros, ones;
  Neutral(int64_t H, const at::TensorOptions& o) : zeros(at::zeros({4 * H}, o)), ones(at::ones({H}, o)) {}
};

}  // namespace
}  // namespace rnnreg_fast
