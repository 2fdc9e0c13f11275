// Elman RNN cell (tanh, ReLU or TRec, the thresholded rectifier x * [x > theta]) with recurrent
// dropout and zoneout of h: the pointwise kernels, the forward / backward drivers and the op
// schemas. The shared driver scheme is described in recurrence.h.

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mul.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

#include "dispatch.h"
#include "recurrence.h"
#include "vecmath.h"

namespace rnnreg_fast {
namespace {

// ------------------------------------------------------------------------------------------------
// Pointwise kernels. Each takes a parameter struct and a flat range over B*H.

enum Act : int { kTanh = 0, kRelu = 1, kTrec = 2 };

template <typename T>
struct RnnFwdP {
  T* g;  // x_t @ W_ih^T + h_in @ W_hh^T (B, H) in; activation derivative out when training
  const T* bias;  // (H) b_ih + b_hh
  const T* hp;
  const T* kh; int64_t kh_rs;
  T* h;
  T* hin; const T* rm;
  T thr;
  int64_t H;
};

template <typename T, int ACT, bool TRAIN>
RR_INLINE void rnn_fwd_k(const RnnFwdP<T>& p, int64_t begin, int64_t end) {
  const int64_t H = p.H;
  const T thr = p.thr;
  RR_ROWS(begin, end, H) {
    T* g = p.g + b * H;
    const T* hp = p.hp + b * H;
    const T* kh = p.kh + b * p.kh_rs;
    T* h = p.h + b * H;
    RR_IVDEP
    for (int64_t j = j0; j < j1; ++j) {
      const T pre = g[j] + p.bias[j];
      T a, d;
      if (ACT == kTanh) {
        a = tanh_v(pre);
        d = T(1) - a * a;
      } else if (ACT == kRelu) {
        a = pre > T(0) ? pre : T(0);
        d = pre > T(0) ? T(1) : T(0);
      } else {
        a = pre > thr ? pre : T(0);
        d = pre > thr ? T(1) : T(0);
      }
      h[j] = lerp_v(a, hp[j], kh[j]);
      if (TRAIN) g[j] = d;
    }
    if (p.hin) store_masked(p.hin + b * H, h, p.rm + b * H, j0, j1);
  }
}

template <typename T>
struct RnnBwdP {
  const T* d;  // activation derivative (B, H)
  const T* kh; int64_t kh_rs;
  const T* dhu; int64_t dhu_rs;
  const T* dhr;  // dG_{t+1} @ W_hh: recurrent part of dL/dh_t, (B, H)
  const T* rm; int64_t rm_rs;
  T* dhd;
  T* dg;
  int64_t H;
};

template <typename T>
RR_INLINE void rnn_bwd_k(const RnnBwdP<T>& p, int64_t begin, int64_t end) {
  const int64_t H = p.H;
  RR_ROWS(begin, end, H) {
    const T* d = p.d + b * H;
    const T* kh = p.kh + b * p.kh_rs;
    const T* dhu = p.dhu + b * p.dhu_rs;
    const T* dhr = p.dhr + b * H;
    const T* rm = p.rm + b * p.rm_rs;
    T* dhd = p.dhd + b * H;
    T* dg = p.dg + b * H;
    RR_IVDEP
    for (int64_t j = j0; j < j1; ++j) {
      const T dh = dhu[j] + dhd[j] + dhr[j] * rm[j];
      const T w_h = kh[j];
      dg[j] = (T(1) - w_h) * dh * d[j];
      dhd[j] = w_h * dh;
    }
  }
}

template <typename T, int A, bool TR>
using RnnFwdK = Kernel<T, RnnFwdP<T>, &rnn_fwd_k<T, A, TR>>;
template <typename T>
using RnnBwdK = Kernel<T, RnnBwdP<T>, &rnn_bwd_k<T>>;

// The activation and TRAIN are template parameters so that each pass is one branch-free loop;
// this picks the instantiation once per step.
template <typename T>
void run_rnn_fwd(const RnnFwdP<T>& p, int64_t act, bool train, int64_t n) {
  if (act == kTanh) {
    train ? run_pointwise<RnnFwdK<T, kTanh, true>>(p, n, kStepGrain)
          : run_pointwise<RnnFwdK<T, kTanh, false>>(p, n, kStepGrain);
  } else if (act == kRelu) {
    train ? run_pointwise<RnnFwdK<T, kRelu, true>>(p, n, kStepGrain)
          : run_pointwise<RnnFwdK<T, kRelu, false>>(p, n, kStepGrain);
  } else {
    train ? run_pointwise<RnnFwdK<T, kTrec, true>>(p, n, kStepGrain)
          : run_pointwise<RnnFwdK<T, kTrec, false>>(p, n, kStepGrain);
  }
}

// ------------------------------------------------------------------------------------------------
// Drivers

std::vector<Tensor> rnn_fwd(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                            const Tensor& w_hh, const OptT& b_ih, const OptT& b_hh,
                            const OptT& rec_mask, const OptT& keep_h, int64_t act,
                            double threshold, bool train, bool bf16) {
  check_inputs(x, w_ih, w_hh, 1);
  TORCH_CHECK(act >= 0 && act <= 2, "rnnreg fast kernel: unknown nonlinearity");
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1), BH = B * H;
  const auto opt = x.options();
  bf16 = bf16 && x.scalar_type() == at::kFloat;  // bf16 products: float32 operands only
  Tensor gates = project(x, w_ih, bf16);  // (T, B, H)
  const Tensor bias = bias_sum(b_ih, b_hh);
  Tensor hs = at::empty({T, B, H}, opt);
  const bool rec = has(rec_mask);
  Tensor hin = rec ? at::empty({train ? T : 2, B, H}, opt) : Tensor();
  if (rec) {
    Tensor hin0 = hin[0];
    at::mul_out(hin0, h0, *rec_mask);
  }
  const RecGemm rg(w_hh, B, false, bf16);
  Neutral nz(H, opt);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnreg_rnn_fwd", [&] {
    RnnFwdP<scalar_t> p{};
    p.H = H;
    p.thr = static_cast<scalar_t>(threshold);
    p.bias = bias.defined() ? bias.data_ptr<scalar_t>() : nz.zeros.data_ptr<scalar_t>();
    p.rm = rec ? rec_mask->data_ptr<scalar_t>() : nullptr;
    const int64_t kh_ts = has(keep_h) ? BH : 0;
    p.kh_rs = has(keep_h) ? H : 0;
    const scalar_t* kh0 = ptr_or<scalar_t>(keep_h, nz.zeros);
    scalar_t* hs_p = hs.data_ptr<scalar_t>();
    scalar_t* g0 = gates.data_ptr<scalar_t>();
    scalar_t* hin_p = rec ? hin.data_ptr<scalar_t>() : nullptr;
    const scalar_t* h0_p = h0.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t slot = train ? t : t % 2, next = train ? t + 1 : (t + 1) % 2;
      p.g = g0 + t * BH;
      p.hp = t == 0 ? h0_p : hs_p + (t - 1) * BH;
      rg.run(rec ? hin_p + slot * BH : p.hp, p.g, true);  // g_t += h_in @ W_hh^T
      p.kh = kh0 + t * kh_ts;
      p.h = hs_p + t * BH;
      p.hin = rec && t + 1 < T ? hin_p + next * BH : nullptr;
      run_rnn_fwd(p, act, train, BH);
    }
  });
  if (!train) return {hs};
  return {hs, gates, hin.defined() ? hin : at::empty({0}, opt)};
}

std::vector<Tensor> rnn_bwd(const OptT& dhs, const Tensor& x, const Tensor& h0,
                            const Tensor& w_ih, const Tensor& w_hh, const OptT& rec_mask,
                            const OptT& keep_h, const Tensor& hs, const Tensor& deriv,
                            const Tensor& hin, int64_t needs, bool bf16) {
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1), BH = B * H;
  const auto opt = x.options();
  const bool rec = has(rec_mask);
  Tensor dg = at::empty({T, B, H}, opt);
  Tensor dhd = at::zeros({B, H}, opt);
  Tensor dhr = at::zeros({B, H}, opt);  // dG_{t+1} @ W_hh, zero for the last step
  const RecGemm rg(w_hh, B, true, bf16);
  // With bf16 products each step's dG_t is kept rounded to bf16 (T, B, H), as the step's product
  // reads it, and the weight and input gradients are products of that copy (as in lstm.cpp).
  Tensor dgb = rg.bf16() ? at::empty({T, B, H}, opt.dtype(at::kBFloat16)) : Tensor();
  const OptT dhu = dense(dhs);
  Neutral nz(H, opt);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnreg_rnn_bwd", [&] {
    RnnBwdP<scalar_t> p{};
    p.H = H;
    p.rm = rec ? rec_mask->data_ptr<scalar_t>() : nz.ones.data_ptr<scalar_t>();
    p.rm_rs = rec ? H : 0;
    const int64_t kh_ts = has(keep_h) ? BH : 0, dhu_ts = has(dhu) ? BH : 0;
    p.kh_rs = has(keep_h) ? H : 0;
    p.dhu_rs = has(dhu) ? H : 0;
    const scalar_t* kh0 = ptr_or<scalar_t>(keep_h, nz.zeros);
    const scalar_t* dhu0 = ptr_or<scalar_t>(dhu, nz.zeros);
    const scalar_t* d0 = deriv.data_ptr<scalar_t>();
    p.dhr = dhr.data_ptr<scalar_t>();
    p.dhd = dhd.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      p.d = d0 + t * BH;
      p.kh = kh0 + t * kh_ts;
      p.dhu = dhu0 + t * dhu_ts;
      p.dg = dg.data_ptr<scalar_t>() + t * BH;
      run_pointwise<RnnBwdK<scalar_t>>(p, BH, kStepGrain);
      at::BFloat16* keep = dgb.defined() ? dgb.data_ptr<at::BFloat16>() + t * BH : nullptr;
      if (t > 0 || (needs & kH0)) {
        rg.run(p.dg, dhr.data_ptr<scalar_t>(), false, keep);
      } else if (keep != nullptr) {  // set for float32 operands only, so dg is float
        // No product at t = 0, but dG_0 enters the weight gradients.
        rg.round(reinterpret_cast<const float*>(p.dg), keep);
      }
    }
  });
  std::vector<Tensor> out(6);
  const Tensor dg2 = dg.view({T * B, H});
  if (needs & kH0) out[1] = rec ? dhd.addcmul_(dhr, *rec_mask) : dhd.add_(dhr);
  // The products over all steps take bf16 operands too, reading the kept dG.
  const bool lowp = rg.bf16();
  const Tensor dgw2 = lowp ? dgb.view({T * B, H}) : dg2;
  const Tensor dgt = needs & (kWih | kWhh) ? grad_t(dgw2, H) : Tensor();  // dW_ih's and dW_hh's
  if (needs & kWhh) out[3] = grad_w_hh(dgt, hin, h0, hs, lowp);
  if (needs & (kBih | kBhh)) out[4] = col_sums(dg2);
  grad_inputs(dgw2, dgt, x, w_ih, needs, out[2], out[0], lowp);
  return with_empties(std::move(out), opt);
}

}  // namespace
}  // namespace rnnreg_fast

// Registered as a fragment, like every file here (see recurrence.h).
TORCH_LIBRARY_FRAGMENT(rnnreg_fast, m) {
  m.def(
      "rnn_fwd(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? rec_mask, Tensor? keep_h, int act, float threshold, bool train, "
      "bool bf16=False) -> Tensor[]",
      &rnnreg_fast::rnn_fwd);
  m.def(
      "rnn_bwd(Tensor? dhs, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? rec_mask, "
      "Tensor? keep_h, Tensor hs, Tensor deriv, Tensor hin, int needs, bool bf16=False) "
      "-> Tensor[]",
      &rnnreg_fast::rnn_bwd);
}
