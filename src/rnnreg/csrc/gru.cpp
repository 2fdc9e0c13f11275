// GRU cell (torch.nn gate order r z n; b_hh's n part inside r * (.), as torch.nn.GRU) with
// recurrent dropout, update dropout and zoneout of h: the pointwise kernels, the forward / backward
// drivers and the op schemas. The shared driver scheme is described in recurrence.h.

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
struct GruFwdP {
  T* g;          // x-side projection x_t @ W_ih^T (B, 3H) in; r, z, n out when training
  const T* bih;  // b_ih (3H)
  const T* hw;   // h_in @ W_hh^T (B, 3H)
  const T* bhh;  // b_hh (3H)
  const T* hp;
  const T* u;  int64_t u_rs;
  const T* kh; int64_t kh_rs;
  T* h;
  T* hn;         // hidden-side n pre-activation, stored when training
  T* hin; const T* rm;
  int64_t H;
};

template <typename T, bool TRAIN>
RR_INLINE void gru_fwd_k(const GruFwdP<T>& p, int64_t begin, int64_t end) {
  const int64_t H = p.H;
  RR_ROWS(begin, end, H) {
    T* xr = p.g + b * 3 * H;
    T* xz = xr + H;
    T* xn = xr + 2 * H;
    const T* hr = p.hw + b * 3 * H;
    const T* hz = hr + H;
    const T* hnp = hr + 2 * H;
    const T* br = p.bhh;
    const T* bz = br + H;
    const T* bn = br + 2 * H;
    const T* cr = p.bih;
    const T* cz = cr + H;
    const T* cn = cr + 2 * H;
    const T* hp = p.hp + b * H;
    const T* u = p.u + b * p.u_rs;
    const T* kh = p.kh + b * p.kh_rs;
    T* h = p.h + b * H;
    T* hn = TRAIN ? p.hn + b * H : nullptr;
    RR_IVDEP
    for (int64_t j = j0; j < j1; ++j) {
      const T r = sigmoid_v((xr[j] + cr[j]) + (hr[j] + br[j]));
      const T z = sigmoid_v((xz[j] + cz[j]) + (hz[j] + bz[j]));
      const T h_n = hnp[j] + bn[j];
      const T n = tanh_v((xn[j] + cn[j]) + r * h_n);
      const T h_old = hp[j];
      const T h_new = (T(1) - z) * (n * u[j]) + z * h_old;
      h[j] = lerp_v(h_new, h_old, kh[j]);
      if (TRAIN) {
        xr[j] = r;
        xz[j] = z;
        xn[j] = n;
        hn[j] = h_n;
      }
    }
    if (p.hin) store_masked(p.hin + b * H, h, p.rm + b * H, j0, j1);
  }
}

template <typename T>
struct GruBwdP {
  const T* g;   // r, z, n (B, 3H)
  const T* hn;  // hidden-side n pre-activation (B, H)
  const T* hp;  // h_{t-1}
  const T* u;  int64_t u_rs;
  const T* kh; int64_t kh_rs;
  const T* dhu; int64_t dhu_rs;
  const T* dhr;  // dG_h,{t+1} @ W_hh: recurrent part of dL/dh_t, (B, H)
  const T* rm; int64_t rm_rs;
  T* dhd;
  T* dgx;  // (B, 3H) gradients of the x-side pre-activations
  T* dgh;  // (B, 3H) gradients of the hidden-side pre-activations
  int64_t H;
};

template <typename T>
RR_INLINE void gru_bwd_k(const GruBwdP<T>& p, int64_t begin, int64_t end) {
  const int64_t H = p.H;
  RR_ROWS(begin, end, H) {
    const T* gr = p.g + b * 3 * H;
    const T* gz = gr + H;
    const T* gn = gr + 2 * H;
    const T* hn = p.hn + b * H;
    const T* hp = p.hp + b * H;
    const T* u = p.u + b * p.u_rs;
    const T* kh = p.kh + b * p.kh_rs;
    const T* dhu = p.dhu + b * p.dhu_rs;
    const T* dhr = p.dhr + b * H;
    const T* rm = p.rm + b * p.rm_rs;
    T* dhd = p.dhd + b * H;
    T* dxr = p.dgx + b * 3 * H;
    T* dxz = dxr + H;
    T* dxn = dxr + 2 * H;
    T* dhr_ = p.dgh + b * 3 * H;
    T* dhz_ = dhr_ + H;
    T* dhn_ = dhr_ + 2 * H;
    RR_IVDEP
    for (int64_t j = j0; j < j1; ++j) {
      const T dh = dhu[j] + dhd[j] + dhr[j] * rm[j];
      const T w_h = kh[j];
      const T dh_new = (T(1) - w_h) * dh;
      const T r = gr[j], z = gz[j], n = gn[j], uj = u[j], h_old = hp[j];
      const T d_z = dh_new * (h_old - n * uj) * z * (T(1) - z);
      const T d_n = dh_new * (T(1) - z) * uj * (T(1) - n * n);
      const T d_r = d_n * hn[j] * r * (T(1) - r);
      dhd[j] = w_h * dh + dh_new * z;
      dxr[j] = d_r;
      dxz[j] = d_z;
      dxn[j] = d_n;
      dhr_[j] = d_r;
      dhz_[j] = d_z;
      dhn_[j] = d_n * r;
    }
  }
}

template <typename T, bool TR>
using GruFwdK = Kernel<T, GruFwdP<T>, &gru_fwd_k<T, TR>>;
template <typename T>
using GruBwdK = Kernel<T, GruBwdP<T>, &gru_bwd_k<T>>;

// ------------------------------------------------------------------------------------------------
// Drivers

std::vector<Tensor> gru_fwd(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                            const Tensor& w_hh, const OptT& b_ih, const OptT& b_hh,
                            const OptT& rec_mask, const OptT& keep_h, const OptT& upd_mask,
                            bool train, bool bf16) {
  check_inputs(x, w_ih, w_hh, 3);
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1), BH = B * H;
  const auto opt = x.options();
  bf16 = bf16 && x.scalar_type() == at::kFloat;  // bf16 products: float32 operands only
  Tensor gates = project(x, w_ih, bf16);  // (T, B, 3H)
  Tensor hs = at::empty({T, B, H}, opt);
  const RecGemm rg(w_hh, B, false, bf16);
  Tensor hw = at::empty({B, 3 * H}, opt);  // h_in @ W_hh^T of the current step
  Tensor hn = train ? at::empty({T, B, H}, opt) : Tensor();
  const bool rec = has(rec_mask);
  Tensor hin = rec ? at::empty({train ? T : 2, B, H}, opt) : Tensor();
  if (rec) {
    Tensor hin0 = hin[0];
    at::mul_out(hin0, h0, *rec_mask);
  }
  Neutral nz(H, opt);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnreg_gru_fwd", [&] {
    GruFwdP<scalar_t> p{};
    p.H = H;
    p.hw = hw.data_ptr<scalar_t>();
    p.bhh = ptr_or<scalar_t>(b_hh, nz.zeros);
    p.bih = ptr_or<scalar_t>(b_ih, nz.zeros);
    p.rm = rec ? rec_mask->data_ptr<scalar_t>() : nullptr;
    const int64_t u_ts = has(upd_mask) ? BH : 0, kh_ts = has(keep_h) ? BH : 0;
    p.u_rs = has(upd_mask) ? H : 0;
    p.kh_rs = has(keep_h) ? H : 0;
    const scalar_t* u0 = ptr_or<scalar_t>(upd_mask, nz.ones);
    const scalar_t* kh0 = ptr_or<scalar_t>(keep_h, nz.zeros);
    scalar_t* hs_p = hs.data_ptr<scalar_t>();
    scalar_t* g0 = gates.data_ptr<scalar_t>();
    scalar_t* hin_p = rec ? hin.data_ptr<scalar_t>() : nullptr;
    const scalar_t* h0_p = h0.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t slot = train ? t : t % 2, next = train ? t + 1 : (t + 1) % 2;
      p.g = g0 + t * 3 * BH;
      p.hp = t == 0 ? h0_p : hs_p + (t - 1) * BH;
      rg.run(rec ? hin_p + slot * BH : p.hp, hw.data_ptr<scalar_t>(), false);
      p.u = u0 + t * u_ts;
      p.kh = kh0 + t * kh_ts;
      p.h = hs_p + t * BH;
      p.hn = train ? hn.data_ptr<scalar_t>() + t * BH : nullptr;
      p.hin = rec && t + 1 < T ? hin_p + next * BH : nullptr;
      if (train) {
        run_pointwise<GruFwdK<scalar_t, true>>(p, BH, kStepGrain);
      } else {
        run_pointwise<GruFwdK<scalar_t, false>>(p, BH, kStepGrain);
      }
    }
  });
  if (!train) return {hs};
  return {hs, gates, hn, hin.defined() ? hin : at::empty({0}, opt)};
}

std::vector<Tensor> gru_bwd(const OptT& dhs, const Tensor& x, const Tensor& h0,
                            const Tensor& w_ih, const Tensor& w_hh, const OptT& rec_mask,
                            const OptT& keep_h, const OptT& upd_mask, const Tensor& hs,
                            const Tensor& gates, const Tensor& hn, const Tensor& hin,
                            int64_t needs, bool bf16) {
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1), BH = B * H;
  const auto opt = x.options();
  const bool rec = has(rec_mask);
  Tensor dgx = at::empty({T, B, 3 * H}, opt), dgh = at::empty({T, B, 3 * H}, opt);
  Tensor dhd = at::zeros({B, H}, opt);
  Tensor dhr = at::zeros({B, H}, opt);  // dG_h,{t+1} @ W_hh, zero for the last step
  const RecGemm rg(w_hh, B, true, bf16);
  // With bf16 products each step's hidden-side dG_h,t is kept rounded to bf16 (T, B, 3H), as the
  // step's product reads it, and dW_hh is a product of that copy (the LSTM's way, lstm.cpp).
  Tensor dghb = rg.bf16() ? at::empty({T, B, 3 * H}, opt.dtype(at::kBFloat16)) : Tensor();
  const OptT dhu = dense(dhs);
  Neutral nz(H, opt);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnreg_gru_bwd", [&] {
    GruBwdP<scalar_t> p{};
    p.H = H;
    p.rm = rec ? rec_mask->data_ptr<scalar_t>() : nz.ones.data_ptr<scalar_t>();
    p.rm_rs = rec ? H : 0;
    const int64_t u_ts = has(upd_mask) ? BH : 0, kh_ts = has(keep_h) ? BH : 0,
                  dhu_ts = has(dhu) ? BH : 0;
    p.u_rs = has(upd_mask) ? H : 0;
    p.kh_rs = has(keep_h) ? H : 0;
    p.dhu_rs = has(dhu) ? H : 0;
    const scalar_t* u0 = ptr_or<scalar_t>(upd_mask, nz.ones);
    const scalar_t* kh0 = ptr_or<scalar_t>(keep_h, nz.zeros);
    const scalar_t* dhu0 = ptr_or<scalar_t>(dhu, nz.zeros);
    const scalar_t* g0 = gates.data_ptr<scalar_t>();
    const scalar_t* hn0 = hn.data_ptr<scalar_t>();
    const scalar_t* hs_p = hs.data_ptr<scalar_t>();
    p.dhr = dhr.data_ptr<scalar_t>();
    p.dhd = dhd.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      p.g = g0 + t * 3 * BH;
      p.hn = hn0 + t * BH;
      p.hp = t == 0 ? h0.data_ptr<scalar_t>() : hs_p + (t - 1) * BH;
      p.u = u0 + t * u_ts;
      p.kh = kh0 + t * kh_ts;
      p.dhu = dhu0 + t * dhu_ts;
      p.dgx = dgx.data_ptr<scalar_t>() + t * 3 * BH;
      p.dgh = dgh.data_ptr<scalar_t>() + t * 3 * BH;
      run_pointwise<GruBwdK<scalar_t>>(p, BH, kStepGrain);
      at::BFloat16* keep = dghb.defined() ? dghb.data_ptr<at::BFloat16>() + t * 3 * BH : nullptr;
      if (t > 0 || (needs & kH0)) {
        rg.run(p.dgh, dhr.data_ptr<scalar_t>(), false, keep);
      } else if (keep != nullptr) {  // set for float32 operands only, so dgh is float
        // No product at t = 0, but dG_h,0 enters dW_hh.
        rg.round(reinterpret_cast<const float*>(p.dgh), keep);
      }
    }
  });
  std::vector<Tensor> out(6);
  const Tensor dgx2 = dgx.view({T * B, 3 * H});
  if (needs & kH0) out[1] = rec ? dhd.addcmul_(dhr, *rec_mask) : dhd.add_(dhr);
  const Tensor dgh2 = dgh.view({T * B, 3 * H});
  // The products over all steps take bf16 operands too: dW_hh reads the kept dG_h, and dG_x is
  // rounded once for both dW_ih and dx.
  const bool lowp = rg.bf16();
  if (needs & kWhh) {
    const Tensor dghw2 = lowp ? dghb.view({T * B, 3 * H}) : dgh2;
    out[3] = grad_w_hh(grad_t(dghw2, H), hin, h0, hs, lowp);
  }
  if (needs & kBih) out[4] = col_sums(dgx2);
  if (needs & kBhh) out[5] = col_sums(dgh2);
  const Tensor dgxw2 = lowp && (needs & (kWih | kX)) ? dgx2.to(at::kBFloat16) : dgx2;
  const Tensor dgxt = needs & kWih ? grad_t(dgxw2, x.size(2)) : Tensor();
  grad_inputs(dgxw2, dgxt, x, w_ih, needs, out[2], out[0], lowp);
  return with_empties(std::move(out), opt);
}

}  // namespace
}  // namespace rnnreg_fast

// Registered as a fragment, like every file here (see recurrence.h).
TORCH_LIBRARY_FRAGMENT(rnnreg_fast, m) {
  m.def(
      "gru_fwd(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? rec_mask, Tensor? keep_h, Tensor? upd_mask, bool train, bool bf16=False) "
      "-> Tensor[]",
      &rnnreg_fast::gru_fwd);
  m.def(
      "gru_bwd(Tensor? dhs, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? rec_mask, "
      "Tensor? keep_h, Tensor? upd_mask, Tensor hs, Tensor gates, Tensor hn, Tensor hin, "
      "int needs, bool bf16=False) -> Tensor[]",
      &rnnreg_fast::gru_bwd);
}
