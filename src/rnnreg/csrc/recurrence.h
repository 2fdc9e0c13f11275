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

// w (m, n) transposed into a new contiguous (n, m) tensor, in tiles that stay in L1. Why not
// w.t().contiguous(): its copy walks one side with a stride of a whole row and took 14 ms for
// AWD-LSTM's 4600 x 1150 W_hh (2 ms at H = 650), once per forward call.
inline Tensor transposed(const Tensor& w_in) {
  const Tensor w = w_in.contiguous();
  const int64_t m = w.size(0), n = w.size(1);
  Tensor out = at::empty({n, m}, w.options());
  constexpr int64_t kTile = 32;
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "rnnreg_transposed", [&] {
    const scalar_t* src = w.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    // Grain 16 tile rows: a small matrix (H = 200: 25 tile rows) stays on one thread.
    at::parallel_for(0, (m + kTile - 1) / kTile, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t i0 = r0 * kTile; i0 < std::min(m, r1 * kTile); i0 += kTile) {
        const int64_t i1 = std::min(m, i0 + kTile);
        for (int64_t j0 = 0; j0 < n; j0 += kTile) {
          const int64_t j1 = std::min(n, j0 + kTile);
          for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = j0; j < j1; ++j) dst[j * m + i] = src[i * n + j];
        }
      }
    });
  });
  return out;
}

// Column sums of a (rows, n) matrix, as a matrix-vector product: the bias gradients, sum_t,b dG.
// (dG.sum(0) took 2.8x as long for AWD's 5600 x 4600 dG on one thread, 3.7x on two.) The BLAS
// accumulates each column in order where torch.sum sums pairwise, so over many rows the result
// can differ from dG.sum(0) in the last float bits (the layer tests' tolerances hold).
inline Tensor col_sums(const Tensor& m) {
  return at::mv(m.t(), at::ones({m.size(0)}, m.options()));
}

// Recurrent products, row-major with the batch as rows: forward R_t = h_in @ W_hh^T (B, GH),
// backward D_t = dG_t @ W_hh (B, H), the weight operand prepared once per call (MKL's packed
// layout, else W_hh^T made contiguous for the forward). On the 2-core Xeon (Sapphire Rapids) the
// benchmarks run on, MKL takes 26 us for the B = 20, H = 200 forward product in this orientation
// against 45 us transposed (W_hh @ h_in^T, which the Zen 1 CPU measured earlier preferred), and
// 39 us against 59 us for the backward one; the pointwise passes then read R / D with unit
// stride, so their loops vectorize without gathers.
struct RecGemm {
  Tensor w;        // forward: W_hh^T (H, GH); backward: W_hh (GH, H); undefined when packed
  PackedB packed;  // the same operand in MKL's packed layout, where available (float)
  int64_t B, k, n;  // out (B, n) = in (B, k) @ w (k, n)
  RecGemm(const Tensor& w_hh, int64_t batch, bool backward)
      : packed(w_hh.contiguous(), !backward, batch, backward ? w_hh.size(1) : w_hh.size(0),
               backward ? w_hh.size(0) : w_hh.size(1)),
        B(batch),
        k(backward ? w_hh.size(0) : w_hh.size(1)),
        n(backward ? w_hh.size(1) : w_hh.size(0)) {
    if (!packed.ok()) w = backward ? w_hh.contiguous() : transposed(w_hh);
  }
  // out = in @ w, or out += in @ w (accumulate: the forward adds R_t onto the input projection).
  template <typename T>
  void run(const T* in, T* out, bool accumulate) const {
    if constexpr (std::is_same<T, float>::value) {
      if (packed.ok()) return packed.run(in, out, accumulate);
    }
    gemm_nn<T>(B, n, k, in, k, w.data_ptr<T>(), n, accumulate, out, n);
  }
};

// The neutral rows that stand in for absent optional operands (zoneout weights, peepholes and
// biases read zeros, masks read ones); sized for the widest user, the LSTM's 4H bias.
struct Neutral {
  Tensor zeros, ones;
  Neutral(int64_t H, const at::TensorOptions& o) : zeros(at::zeros({4 * H}, o)), ones(at::ones({H}, o)) {}
};

}  // namespace
}  // namespace rnnreg_fast
