// Pieces shared by the LSTM, GRU and Elman drivers (lstm.cpp, gru.cpp, rnn.cpp), which are fast
// CPU twins of rnnreg/kernels/reference.py: stepwise recurrences with recurrent dropout
// (rec_mask), update dropout (upd_mask), zoneout (keep_h, keep_c) and LSTM peepholes, each with a
// hand-written backward.
//
// Layout: time-major (T, B, .), torch.nn gate order (LSTM i f g o, GRU r z n), weights (G*H, in).
//
// Forward: one GEMM projects the inputs of all steps; per step one GEMM computes the recurrent
// term (transposed, see RecGemm) and one fused pointwise pass adds the biases and applies the
// gates, peepholes, masks and zoneout. Training keeps the activated gates (written over the input
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
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "compiler.h"

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

// Input projection of all steps: x @ w_ih^T, as (T, B, G*H). (The biases are added in the
// pointwise passes.)
inline Tensor project(const Tensor& x, const Tensor& w_ih) {
  const int64_t T = x.size(0), B = x.size(1);
  return at::mm(x.reshape({T * B, x.size(2)}), w_ih.t()).view({T, B, w_ih.size(0)});
}

// b_ih + b_hh where both enter the same pre-activation (LSTM, Elman; not GRU's n gate), so the
// pointwise pass reads one bias; undefined when neither is given.
inline Tensor bias_sum(const OptT& a, const OptT& b) {
  if (has(a) && has(b)) return a->add(*b);  // what *a + *b is, without its header
  if (has(a)) return *a;
  if (has(b)) return *b;
  return Tensor();
}

// Weight gradient of the recurrent matrix: sum_t dG_t^T h_in_{t-1}. With rec_mask the h_in were
// stored (hin, (T, B, H)); without it h_in_{t-1} is h0 for t = 0 and h_seq[t-1] after.
inline Tensor grad_w_hh(const Tensor& dgh, const Tensor& hin, const Tensor& h0, const Tensor& hs) {
  const int64_t T = dgh.size(0), B = dgh.size(1), GH = dgh.size(2), H = h0.size(1);
  if (hin.defined() && hin.numel() > 0) {
    return at::mm(dgh.view({T * B, GH}).t(), hin.view({T * B, H}));
  }
  Tensor dw = at::mm(dgh[0].t(), h0);
  if (T > 1) {
    dw.addmm_(dgh.narrow(0, 1, T - 1).reshape({(T - 1) * B, GH}).t(),
              hs.narrow(0, 0, T - 1).reshape({(T - 1) * B, H}));
  }
  return dw;
}

// The input-side gradients every cell shares, each one GEMM over all steps:
// dW_ih = sum_t dG_x,t^T x_t and dx = dG_x W_ih. dgx2 is (T*B, G*H).
inline void grad_inputs(const Tensor& dgx2, const Tensor& x, const Tensor& w_ih, int64_t needs,
                        Tensor& dw_ih, Tensor& dx) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2);
  if (needs & kWih) dw_ih = at::mm(dgx2.t(), x.reshape({T * B, I}));
  if (needs & kX) dx = at::mm(dgx2, w_ih).view({T, B, I});
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

// Recurrent GEMMs, computed transposed: forward R_t^T = W_hh @ h_in^T (GH, B), backward
// D_t^T = W_hh^T @ dG_t^T (H, B) with W_hh^T made contiguous once. With a small batch MKL is
// markedly faster in this orientation than for R_t = h_in @ W_hh^T (measured 1.3x to 3x for
// B <= 80 on the target CPU, never slower for larger B); the pointwise passes read R / D strided.
struct RecGemm {
  Tensor w;    // forward: W_hh (GH, H); backward: W_hh^T (H, GH)
  Tensor out;  // forward: (GH, B); backward: (H, B), zero until the first product
  RecGemm(const Tensor& w_hh, int64_t B, bool backward, const at::TensorOptions& o) {
    if (backward) {
      w = w_hh.t().contiguous();
      out = at::zeros({w_hh.size(1), B}, o);
    } else {
      w = w_hh;
      out = at::empty({w_hh.size(0), B}, o);
    }
  }
  int64_t bs() const { return 1; }              // stride of the batch index in out
  int64_t ks() const { return out.size(1); }    // stride of the feature index in out
  void fwd(const Tensor& h_in) { at::mm_out(out, w, h_in.t()); }
  void bwd(const Tensor& dg_t) { at::mm_out(out, w, dg_t.t()); }
  Tensor as_bh() const { return out.t(); }      // (B, n) view
};

// The neutral rows that stand in for absent optional operands (zoneout weights, peepholes and
// biases read zeros, masks read ones); sized for the widest user, the LSTM's 4H bias.
struct Neutral {
  Tensor zeros, ones;
  Neutral(int64_t H, const at::TensorOptions& o) : zeros(at::zeros({4 * H}, o)), ones(at::ones({H}, o)) {}
};

}  // namespace
}  // namespace rnnreg_fast
