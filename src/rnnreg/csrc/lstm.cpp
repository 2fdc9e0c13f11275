// LSTM cell (torch.nn gate order i f g o) with peepholes, recurrent dropout, update dropout and
// zoneout of h and c: the pointwise kernels, the forward / backward drivers and the op schemas.
// The shared driver scheme is described in recurrence.h.

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

template <typename T>
struct LstmFwdP {
  T* g;  // (B, 4H) x_t @ W_ih^T + h_in @ W_hh^T in; activated gates out (o: when training)
  const T* bias;  // (4H) b_ih + b_hh
  const T* hp;  // h_{t-1} (B, H)
  const T* cp;  // c_{t-1} (B, H)
  const T* peep;  // (3H)
  const T* u;  int64_t u_rs;
  const T* kh; int64_t kh_rs;
  const T* kc; int64_t kc_rs;
  T* h; T* c;   // outputs h_t, c_t (B, H)
  T* cn;        // un-zoned new cell (B, H), stored only if CN
  T* hin; const T* rm;  // next step's h_t * rec_mask, when hin != nullptr
  int64_t H;
};

// Two passes over each row's [j0, j1): first the input, forget and candidate gates, then the cell,
// the output gate (its peephole reads c_t) and h. One fused loop held ~5 exponentials and
// divisions in one dependency chain per element, more than the out-of-order window overlaps
// across iterations: it ran latency-bound, 2.7x slower (B = 20, H = 200, one thread).
template <typename T, bool TRAIN, bool CN>
RR_INLINE void lstm_fwd_k(const LstmFwdP<T>& p, int64_t begin, int64_t end) {
  const int64_t H = p.H;
  RR_ROWS(begin, end, H) {
    T* gi = p.g + b * 4 * H;
    T* gf = gi + H;
    T* gg = gi + 2 * H;
    T* go = gi + 3 * H;
    const T* bi = p.bias;
    const T* bf = bi + H;
    const T* bg = bi + 2 * H;
    const T* bo = bi + 3 * H;
    const T* hp = p.hp + b * H;
    const T* cp = p.cp + b * H;
    const T* pi = p.peep;
    const T* pf = p.peep + H;
    const T* po = p.peep + 2 * H;
    const T* u = p.u + b * p.u_rs;
    const T* kh = p.kh + b * p.kh_rs;
    const T* kc = p.kc + b * p.kc_rs;
    T* h = p.h + b * H;
    T* c = p.c + b * H;
    T* cn = CN ? p.cn + b * H : nullptr;
    RR_IVDEP
    for (int64_t j = j0; j < j1; ++j) {
      const T c_old = cp[j];
      gi[j] = sigmoid_v(gi[j] + bi[j] + pi[j] * c_old);
      gf[j] = sigmoid_v(gf[j] + bf[j] + pf[j] * c_old);
      gg[j] = tanh_v(gg[j] + bg[j]);
    }
    RR_IVDEP
    for (int64_t j = j0; j < j1; ++j) {
      const T c_old = cp[j];
      const T c_new = gf[j] * c_old + gi[j] * (gg[j] * u[j]);
      const T o = sigmoid_v(go[j] + bo[j] + po[j] * c_new);
      const T h_new = o * tanh_v(c_new);
      h[j] = lerp_v(h_new, hp[j], kh[j]);
      c[j] = lerp_v(c_new, c_old, kc[j]);
      if (TRAIN) go[j] = o;
      if (CN) cn[j] = c_new;
    }
    if (p.hin) store_masked(p.hin + b * H, h, p.rm + b * H, j0, j1);
  }
}

template <typename T>
struct LstmBwdP {
  const T* g;   // activated gates (B, 4H)
  const T* cp;  // c_{t-1}
  const T* cn;  // un-zoned new cell c_new
  const T* peep;
  const T* u;  int64_t u_rs;
  const T* kh; int64_t kh_rs;
  const T* kc; int64_t kc_rs;
  const T* dhu; int64_t dhu_rs;  // upstream dL/dh_t
  const T* dcu; int64_t dcu_rs;  // upstream dL/dc_t
  const T* dhr;                  // dG_{t+1} @ W_hh: recurrent part of dL/dh_t, (B, H)
  const T* rm; int64_t rm_rs;    // rec_mask
  T* dhd;       // in: direct part of dL/dh_t; out: direct part of dL/dh_{t-1}
  T* dc;        // in: carried dL/dc_t; out: dL/dc_{t-1}
  T* dg;        // out: gate pre-activation gradients (B, 4H)
  T* dp;        // peephole accumulator (B, 3H) or nullptr
  int64_t H;
};

template <typename T>
RR_INLINE void lstm_bwd_k(const LstmBwdP<T>& p, int64_t begin, int64_t end) {
  const int64_t H = p.H;
  RR_ROWS(begin, end, H) {
    const T* gi = p.g + b * 4 * H;
    const T* gf = gi + H;
    const T* gg = gi + 2 * H;
    const T* go = gi + 3 * H;
    const T* cp = p.cp + b * H;
    const T* cn = p.cn + b * H;
    const T* pi = p.peep;
    const T* pf = p.peep + H;
    const T* po = p.peep + 2 * H;
    const T* u = p.u + b * p.u_rs;
    const T* kh = p.kh + b * p.kh_rs;
    const T* kc = p.kc + b * p.kc_rs;
    const T* dhu = p.dhu + b * p.dhu_rs;
    const T* dcu = p.dcu + b * p.dcu_rs;
    const T* dhr = p.dhr + b * H;
    const T* rm = p.rm + b * p.rm_rs;
    T* dhd = p.dhd + b * H;
    T* dcc = p.dc + b * H;
    T* dai = p.dg + b * 4 * H;
    T* daf = dai + H;
    T* dag = dai + 2 * H;
    T* dao = dai + 3 * H;
    RR_IVDEP
    for (int64_t j = j0; j < j1; ++j) {
      const T dh = dhu[j] + dhd[j] + dhr[j] * rm[j];
      const T dct = dcu[j] + dcc[j];
      const T w_h = kh[j], w_c = kc[j];
      const T dh_new = (T(1) - w_h) * dh;
      const T i = gi[j], f = gf[j], g = gg[j], o = go[j];
      const T c_new = cn[j], c_old = cp[j];
      const T tc = tanh_v(c_new);
      const T d_o = dh_new * tc * o * (T(1) - o);
      const T dc_new = (T(1) - w_c) * dct + dh_new * o * (T(1) - tc * tc) + d_o * po[j];
      const T d_i = dc_new * g * u[j] * i * (T(1) - i);
      const T d_f = dc_new * c_old * f * (T(1) - f);
      const T d_g = dc_new * i * u[j] * (T(1) - g * g);
      dcc[j] = w_c * dct + dc_new * f + d_i * pi[j] + d_f * pf[j];
      dhd[j] = w_h * dh;
      dai[j] = d_i;
      daf[j] = d_f;
      dag[j] = d_g;
      dao[j] = d_o;
    }
    if (p.dp) {
      T* dpi = p.dp + b * 3 * H;
      T* dpf = dpi + H;
      T* dpo = dpi + 2 * H;
      RR_IVDEP
      for (int64_t j = j0; j < j1; ++j) {
        dpi[j] += dai[j] * cp[j];
        dpf[j] += daf[j] * cp[j];
        dpo[j] += dao[j] * cn[j];
      }
    }
  }
}

template <typename T, bool TR, bool CN>
using LstmFwdK = Kernel<T, LstmFwdP<T>, &lstm_fwd_k<T, TR, CN>>;
template <typename T>
using LstmBwdK = Kernel<T, LstmBwdP<T>, &lstm_bwd_k<T>>;

// ------------------------------------------------------------------------------------------------
// Drivers

std::vector<Tensor> lstm_fwd(const Tensor& x, const Tensor& h0, const Tensor& c0,
                             const Tensor& w_ih, const Tensor& w_hh, const OptT& b_ih,
                             const OptT& b_hh, const OptT& peep, const OptT& rec_mask,
                             const OptT& keep_h, const OptT& keep_c, const OptT& upd_mask,
                             bool train, bool bf16) {
  check_inputs(x, w_ih, w_hh, 4);
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1), BH = B * H;
  const auto opt = x.options();
  bf16 = bf16 && x.scalar_type() == at::kFloat;  // bf16 products: float32 operands only
  Tensor gates = project(x, w_ih, bf16);  // (T, B, 4H)
  const Tensor bias = bias_sum(b_ih, b_hh);
  Tensor hs = at::empty({T, B, H}, opt), cs = at::empty({T, B, H}, opt);
  const bool rec = has(rec_mask);
  const bool store_cn = train && has(keep_c);
  Tensor cn = store_cn ? at::empty({T, B, H}, opt) : Tensor();
  Tensor hin = rec ? at::empty({train ? T : 2, B, H}, opt) : Tensor();
  if (rec) {
    Tensor hin0 = hin[0];
    at::mul_out(hin0, h0, *rec_mask);
  }
  const RecGemm rg(w_hh, B, false, bf16);
  Neutral nz(H, opt);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnreg_lstm_fwd", [&] {
    LstmFwdP<scalar_t> p{};
    p.H = H;
    p.peep = ptr_or<scalar_t>(peep, nz.zeros);
    p.bias = bias.defined() ? bias.data_ptr<scalar_t>() : nz.zeros.data_ptr<scalar_t>();
    p.rm = rec ? rec_mask->data_ptr<scalar_t>() : nullptr;
    const int64_t u_ts = has(upd_mask) ? BH : 0, kh_ts = has(keep_h) ? BH : 0,
                  kc_ts = has(keep_c) ? BH : 0;
    p.u_rs = has(upd_mask) ? H : 0;
    p.kh_rs = has(keep_h) ? H : 0;
    p.kc_rs = has(keep_c) ? H : 0;
    const scalar_t* u0 = ptr_or<scalar_t>(upd_mask, nz.ones);
    const scalar_t* kh0 = ptr_or<scalar_t>(keep_h, nz.zeros);
    const scalar_t* kc0 = ptr_or<scalar_t>(keep_c, nz.zeros);
    scalar_t* hs_p = hs.data_ptr<scalar_t>();
    scalar_t* cs_p = cs.data_ptr<scalar_t>();
    scalar_t* g0 = gates.data_ptr<scalar_t>();
    scalar_t* hin_p = rec ? hin.data_ptr<scalar_t>() : nullptr;
    const scalar_t* h0_p = h0.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t slot = train ? t : t % 2, next = train ? t + 1 : (t + 1) % 2;
      p.g = g0 + t * 4 * BH;
      p.hp = t == 0 ? h0_p : hs_p + (t - 1) * BH;
      rg.run(rec ? hin_p + slot * BH : p.hp, p.g, true);  // gates_t += h_in @ W_hh^T
      p.cp = t == 0 ? c0.data_ptr<scalar_t>() : cs_p + (t - 1) * BH;
      p.u = u0 + t * u_ts;
      p.kh = kh0 + t * kh_ts;
      p.kc = kc0 + t * kc_ts;
      p.h = hs_p + t * BH;
      p.c = cs_p + t * BH;
      p.cn = store_cn ? cn.data_ptr<scalar_t>() + t * BH : nullptr;
      p.hin = rec && t + 1 < T ? hin_p + next * BH : nullptr;
      if (!train) {
        run_pointwise<LstmFwdK<scalar_t, false, false>>(p, BH, kStepGrain);
      } else if (store_cn) {
        run_pointwise<LstmFwdK<scalar_t, true, true>>(p, BH, kStepGrain);
      } else {
        run_pointwise<LstmFwdK<scalar_t, true, false>>(p, BH, kStepGrain);
      }
    }
  });
  if (!train) return {hs, cs};
  return {hs, cs, gates, cn.defined() ? cn : at::empty({0}, opt),
          hin.defined() ? hin : at::empty({0}, opt)};
}

std::vector<Tensor> lstm_bwd(const OptT& dhs, const OptT& dcs, const Tensor& x, const Tensor& h0,
                             const Tensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                             const OptT& peep, const OptT& rec_mask, const OptT& keep_h,
                             const OptT& keep_c, const OptT& upd_mask, const Tensor& hs,
                             const Tensor& cs, const Tensor& gates, const Tensor& cn,
                             const Tensor& hin, int64_t needs, bool bf16) {
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1), BH = B * H;
  const auto opt = x.options();
  const bool rec = has(rec_mask);
  const bool want_peep = has(peep) && (needs & kPeep);
  const OptT dhu = dense(dhs), dcu = dense(dcs);
  Tensor dg = at::empty({T, B, 4 * H}, opt);
  Tensor dhd = at::zeros({B, H}, opt), dc = at::zeros({B, H}, opt);
  Tensor dhr = at::zeros({B, H}, opt);  // dG_{t+1} @ W_hh, zero for the last step
  const RecGemm rg(w_hh, B, true, bf16);
  // With bf16 products each step's dG_t is kept rounded to bf16 (T, B, 4H), as the step's product
  // reads it, and the weight and input gradients are products of that copy.
  Tensor dgb = rg.bf16() ? at::empty({T, B, 4 * H}, opt.dtype(at::kBFloat16)) : Tensor();
  Tensor dp = want_peep ? at::zeros({B, 3 * H}, opt) : Tensor();
  Neutral nz(H, opt);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnreg_lstm_bwd", [&] {
    LstmBwdP<scalar_t> p{};
    p.H = H;
    p.peep = ptr_or<scalar_t>(peep, nz.zeros);
    p.rm = rec ? rec_mask->data_ptr<scalar_t>() : nz.ones.data_ptr<scalar_t>();
    p.rm_rs = rec ? H : 0;
    const int64_t u_ts = has(upd_mask) ? BH : 0, kh_ts = has(keep_h) ? BH : 0,
                  kc_ts = has(keep_c) ? BH : 0, dhu_ts = has(dhu) ? BH : 0,
                  dcu_ts = has(dcu) ? BH : 0;
    p.u_rs = has(upd_mask) ? H : 0;
    p.kh_rs = has(keep_h) ? H : 0;
    p.kc_rs = has(keep_c) ? H : 0;
    p.dhu_rs = has(dhu) ? H : 0;
    p.dcu_rs = has(dcu) ? H : 0;
    const scalar_t* u0 = ptr_or<scalar_t>(upd_mask, nz.ones);
    const scalar_t* kh0 = ptr_or<scalar_t>(keep_h, nz.zeros);
    const scalar_t* kc0 = ptr_or<scalar_t>(keep_c, nz.zeros);
    const scalar_t* dhu0 = ptr_or<scalar_t>(dhu, nz.zeros);
    const scalar_t* dcu0 = ptr_or<scalar_t>(dcu, nz.zeros);
    const scalar_t* g0 = gates.data_ptr<scalar_t>();
    const scalar_t* cs_p = cs.data_ptr<scalar_t>();
    const scalar_t* cn_p = cn.numel() > 0 ? cn.data_ptr<scalar_t>() : cs_p;
    scalar_t* dg_p = dg.data_ptr<scalar_t>();
    p.dhr = dhr.data_ptr<scalar_t>();
    p.dhd = dhd.data_ptr<scalar_t>();
    p.dc = dc.data_ptr<scalar_t>();
    p.dp = want_peep ? dp.data_ptr<scalar_t>() : nullptr;
    for (int64_t t = T - 1; t >= 0; --t) {
      p.g = g0 + t * 4 * BH;
      p.cp = t == 0 ? c0.data_ptr<scalar_t>() : cs_p + (t - 1) * BH;
      p.cn = cn_p + t * BH;
      p.u = u0 + t * u_ts;
      p.kh = kh0 + t * kh_ts;
      p.kc = kc0 + t * kc_ts;
      p.dhu = dhu0 + t * dhu_ts;
      p.dcu = dcu0 + t * dcu_ts;
      p.dg = dg_p + t * 4 * BH;
      run_pointwise<LstmBwdK<scalar_t>>(p, BH, kStepGrain);
      at::BFloat16* keep = dgb.defined() ? dgb.data_ptr<at::BFloat16>() + t * 4 * BH : nullptr;
      if (t > 0 || (needs & kH0)) {
        rg.run(p.dg, dhr.data_ptr<scalar_t>(), false, keep);
      } else if (keep != nullptr) {  // set for float32 operands only, so dg is float
        // No product at t = 0, but dG_0 enters the weight gradients.
        rg.round(reinterpret_cast<const float*>(p.dg), keep);
      }
    }
  });
  std::vector<Tensor> out(7);
  const Tensor dg2 = dg.view({T * B, 4 * H});
  // The products over all steps take bf16 operands too, reading the kept dG.
  const bool lowp = rg.bf16();
  const Tensor dgw = lowp ? dgb : dg;
  if (needs & kH0) out[1] = rec ? dhd.addcmul_(dhr, *rec_mask) : dhd.add_(dhr);
  if (needs & kC0) out[2] = dc;
  const Tensor dgw2 = dgw.view({T * B, 4 * H});
  const Tensor dgt = needs & (kWih | kWhh) ? grad_t(dgw2, H) : Tensor();  // dW_ih's and dW_hh's
  if (needs & kWhh) out[4] = grad_w_hh(dgt, hin, h0, hs, lowp);
  if (needs & (kBih | kBhh)) out[5] = col_sums(dg2);
  grad_inputs(dgw2, dgt, x, w_ih, needs, out[3], out[0], lowp);
  if (want_peep) out[6] = dp.sum(0);
  return with_empties(std::move(out), opt);
}

}  // namespace
}  // namespace rnnreg_fast

// Registered as a fragment, like every file here (see recurrence.h).
TORCH_LIBRARY_FRAGMENT(rnnreg_fast, m) {
  m.def(
      "lstm_fwd(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh, Tensor? peep, Tensor? rec_mask, Tensor? keep_h, Tensor? keep_c, "
      "Tensor? upd_mask, bool train, bool bf16=False) -> Tensor[]",
      &rnnreg_fast::lstm_fwd);
  m.def(
      "lstm_bwd(Tensor? dhs, Tensor? dcs, Tensor x, Tensor h0, Tensor c0, Tensor w_ih, "
      "Tensor w_hh, Tensor? peep, Tensor? rec_mask, Tensor? keep_h, Tensor? keep_c, "
      "Tensor? upd_mask, Tensor hs, Tensor cs, Tensor gates, Tensor cn, Tensor hin, "
      "int needs, bool bf16=False) -> Tensor[]",
      &rnnreg_fast::lstm_bwd);
}
