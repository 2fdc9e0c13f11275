// Fast CPU twin of rnnreg/kernels/reference.py: stepwise LSTM / GRU / Elman recurrences with
// recurrent dropout (rec_mask), update dropout (upd_mask), zoneout (keep_h, keep_c) and LSTM
// peepholes, each with a hand-written backward.
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
// masks) with a zero row stride, so one vectorizable loop serves every combination of options.
// The float kernels are also compiled for AVX2+FMA and chosen at run time.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#if defined(__GNUC__)
#define RR_INLINE inline __attribute__((always_inline))
#define RR_IVDEP _Pragma("GCC ivdep")
#else
#define RR_INLINE inline
#define RR_IVDEP
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define RR_X86 1
#define RR_AVX2 __attribute__((target("avx2,fma")))
#else
#define RR_X86 0
#endif

namespace rnnreg_fast {
namespace {

using at::Tensor;
using OptT = std::optional<Tensor>;

// ------------------------------------------------------------------------------------------------
// Elementwise math. float: branch-free polynomial versions the compiler can vectorize (relative
// error ~1e-7); double: the C library.

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

// torch.lerp(start, end, w): start + w * (end - start), written from the nearer end.
template <typename T>
RR_INLINE T lerp_v(T start, T end, T w) {
  const T d = end - start;
  return w < T(0.5) ? start + w * d : end - d * (T(1) - w);
}

// The kernels walk the flat range [begin, end) of a (rows, H) array row by row: row b covers
// columns [j0, j1). (Plain loops, not a lambda, so the AVX2 clones inline everything.)
#define RR_ROWS(begin, end, H)                                      \
  for (int64_t b = (begin) / (H); b * (H) < (end); ++b)             \
    if (const int64_t j0 = std::max<int64_t>((begin) - b * (H), 0), \
        j1 = std::min<int64_t>((end) - b * (H), (H));               \
        j0 < j1)

// ------------------------------------------------------------------------------------------------
// Pointwise kernels. Each takes a parameter struct and a flat range over B*H.

template <typename T>
struct LstmFwdP {
  T* g;         // (B, 4H) input projection x_t @ W_ih^T in; activated gates out when training
  const T* bias;  // (4H) b_ih + b_hh
  const T* gt;  // recurrent term W_hh h_in: (b, k) at gt[b * tbs + k * tks]
  int64_t tbs, tks;
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

template <typename T, bool TRAIN, bool CN>
RR_INLINE void lstm_fwd_k(const LstmFwdP<T>& p, int64_t begin, int64_t end) {
  const int64_t H = p.H;
  RR_ROWS(begin, end, H) {
    T* gi = p.g + b * 4 * H;
    T* gf = gi + H;
    T* gg = gi + 2 * H;
    T* go = gi + 3 * H;
    const int64_t ld = p.tks;
    const T* ti = p.gt + b * p.tbs;
    const T* tf = ti + H * ld;
    const T* tg = ti + 2 * H * ld;
    const T* to = ti + 3 * H * ld;
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
      const T i = sigmoid_v(gi[j] + bi[j] + ti[j * ld] + pi[j] * c_old);
      const T f = sigmoid_v(gf[j] + bf[j] + tf[j * ld] + pf[j] * c_old);
      const T g = tanh_v(gg[j] + bg[j] + tg[j * ld]);
      const T c_new = f * c_old + i * (g * u[j]);
      const T o = sigmoid_v(go[j] + bo[j] + to[j * ld] + po[j] * c_new);
      const T h_new = o * tanh_v(c_new);
      h[j] = lerp_v(h_new, hp[j], kh[j]);
      c[j] = lerp_v(c_new, c_old, kc[j]);
      if (TRAIN) {
        gi[j] = i;
        gf[j] = f;
        gg[j] = g;
        go[j] = o;
      }
      if (CN) cn[j] = c_new;
    }
    if (p.hin) {
      T* hin = p.hin + b * H;
      const T* rm = p.rm + b * H;
      RR_IVDEP
      for (int64_t j = j0; j < j1; ++j) hin[j] = h[j] * rm[j];
    }
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
  const T* dhr;                  // (dG_{t+1} @ W_hh)^T: recurrent part of dL/dh_t, (H, B)
  int64_t tbs, tks;              // (b, j) at dhr[b * tbs + j * tks]
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
    const T* dhr = p.dhr + b * p.tbs;
    const int64_t ld = p.tks;
    const T* rm = p.rm + b * p.rm_rs;
    T* dhd = p.dhd + b * H;
    T* dcc = p.dc + b * H;
    T* dai = p.dg + b * 4 * H;
    T* daf = dai + H;
    T* dag = dai + 2 * H;
    T* dao = dai + 3 * H;
    RR_IVDEP
    for (int64_t j = j0; j < j1; ++j) {
      const T dh = dhu[j] + dhd[j] + dhr[j * ld] * rm[j];
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

template <typename T>
struct GruFwdP {
  T* g;          // x-side projection x_t @ W_ih^T (B, 3H) in; r, z, n out when training
  const T* bih;  // b_ih (3H)
  const T* hw;   // W_hh h_in: (b, k) at hw[b * tbs + k * tks]
  int64_t tbs, tks;
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
    const int64_t ld = p.tks;
    const T* hr = p.hw + b * p.tbs;
    const T* hz = hr + H * ld;
    const T* hnp = hr + 2 * H * ld;
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
      const T r = sigmoid_v((xr[j] + cr[j]) + (hr[j * ld] + br[j]));
      const T z = sigmoid_v((xz[j] + cz[j]) + (hz[j * ld] + bz[j]));
      const T h_n = hnp[j * ld] + bn[j];
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
    if (p.hin) {
      T* hin = p.hin + b * H;
      const T* rm = p.rm + b * H;
      RR_IVDEP
      for (int64_t j = j0; j < j1; ++j) hin[j] = h[j] * rm[j];
    }
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
  const T* dhr;  // (b, j) at dhr[b * tbs + j * tks]
  int64_t tbs, tks;
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
    const T* dhr = p.dhr + b * p.tbs;
    const int64_t ld = p.tks;
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
      const T dh = dhu[j] + dhd[j] + dhr[j * ld] * rm[j];
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

enum Act : int { kTanh = 0, kRelu = 1, kTrec = 2 };

template <typename T>
struct RnnFwdP {
  T* g;  // input projection x_t @ W_ih^T (B, H) in; activation derivative out when training
  const T* bias;  // (H) b_ih + b_hh
  const T* gt;  // recurrent term W_hh h_in: (b, k) at gt[b * tbs + k * tks]
  int64_t tbs, tks;
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
    const int64_t ld = p.tks;
    const T* gt = p.gt + b * p.tbs;
    const T* hp = p.hp + b * H;
    const T* kh = p.kh + b * p.kh_rs;
    T* h = p.h + b * H;
    RR_IVDEP
    for (int64_t j = j0; j < j1; ++j) {
      const T pre = g[j] + p.bias[j] + gt[j * ld];
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
    if (p.hin) {
      T* hin = p.hin + b * H;
      const T* rm = p.rm + b * H;
      RR_IVDEP
      for (int64_t j = j0; j < j1; ++j) hin[j] = h[j] * rm[j];
    }
  }
}

template <typename T>
struct RnnBwdP {
  const T* d;  // activation derivative (B, H)
  const T* kh; int64_t kh_rs;
  const T* dhu; int64_t dhu_rs;
  const T* dhr;  // (b, j) at dhr[b * tbs + j * tks]
  int64_t tbs, tks;
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
    const T* dhr = p.dhr + b * p.tbs;
    const int64_t ld = p.tks;
    const T* rm = p.rm + b * p.rm_rs;
    T* dhd = p.dhd + b * H;
    T* dg = p.dg + b * H;
    RR_IVDEP
    for (int64_t j = j0; j < j1; ++j) {
      const T dh = dhu[j] + dhd[j] + dhr[j * ld] * rm[j];
      const T w_h = kh[j];
      dg[j] = (T(1) - w_h) * dh * d[j];
      dhd[j] = w_h * dh;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Instantiation for the baseline ISA and (float only) AVX2+FMA, chosen once at run time.
// K is a small struct naming a kernel instantiation: K::T its scalar, K::P its parameters.

template <typename TT, typename PP, void (*F)(const PP&, int64_t, int64_t)>
struct Kernel {
  using T = TT;
  using P = PP;
  static RR_INLINE void run(const P& p, int64_t b, int64_t e) { F(p, b, e); }
};

template <typename K>
void run_base(const typename K::P& p, int64_t b, int64_t e) { K::run(p, b, e); }

#if RR_X86
template <typename K>
RR_AVX2 void run_avx2(const typename K::P& p, int64_t b, int64_t e) { K::run(p, b, e); }

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#endif

// Grain: below this many elements a step's pointwise pass stays on one thread (a parallel region
// costs a few microseconds, an element a few nanoseconds; 1024-4096 measured best on 2 cores).
constexpr int64_t kGrain = 2048;

template <typename K>
void run_pointwise(const typename K::P& p, int64_t n) {
#if RR_X86
  if constexpr (std::is_same<typename K::T, float>::value) {
    if (cpu_has_avx2()) {
      at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) { run_avx2<K>(p, b, e); });
      return;
    }
  }
#endif
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) { run_base<K>(p, b, e); });
}

template <typename T, bool TR, bool CN>
using LstmFwdK = Kernel<T, LstmFwdP<T>, &lstm_fwd_k<T, TR, CN>>;
template <typename T>
using LstmBwdK = Kernel<T, LstmBwdP<T>, &lstm_bwd_k<T>>;
template <typename T, bool TR>
using GruFwdK = Kernel<T, GruFwdP<T>, &gru_fwd_k<T, TR>>;
template <typename T>
using GruBwdK = Kernel<T, GruBwdP<T>, &gru_bwd_k<T>>;
template <typename T, int A, bool TR>
using RnnFwdK = Kernel<T, RnnFwdP<T>, &rnn_fwd_k<T, A, TR>>;
template <typename T>
using RnnBwdK = Kernel<T, RnnBwdP<T>, &rnn_bwd_k<T>>;

template <typename T>
void run_rnn_fwd(const RnnFwdP<T>& p, int64_t act, bool train, int64_t n) {
  if (act == kTanh) {
    train ? run_pointwise<RnnFwdK<T, kTanh, true>>(p, n) : run_pointwise<RnnFwdK<T, kTanh, false>>(p, n);
  } else if (act == kRelu) {
    train ? run_pointwise<RnnFwdK<T, kRelu, true>>(p, n) : run_pointwise<RnnFwdK<T, kRelu, false>>(p, n);
  } else {
    train ? run_pointwise<RnnFwdK<T, kTrec, true>>(p, n) : run_pointwise<RnnFwdK<T, kTrec, false>>(p, n);
  }
}

// ------------------------------------------------------------------------------------------------
// Helpers shared by the drivers.

template <typename T>
const T* ptr_or(const OptT& t, const Tensor& fallback) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : fallback.data_ptr<T>();
}

bool has(const OptT& t) { return t.has_value() && t->defined(); }

void check_inputs(const Tensor& x, const Tensor& w_ih, const Tensor& w_hh, int64_t G) {
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
Tensor project(const Tensor& x, const Tensor& w_ih) {
  const int64_t T = x.size(0), B = x.size(1);
  return at::mm(x.reshape({T * B, x.size(2)}), w_ih.t()).view({T, B, w_ih.size(0)});
}

Tensor bias_sum(const OptT& a, const OptT& b) {
  if (has(a) && has(b)) return *a + *b;
  if (has(a)) return *a;
  if (has(b)) return *b;
  return Tensor();
}

// Weight gradient of the recurrent matrix: sum_t dG_t^T h_in_{t-1}. With rec_mask the h_in were
// stored (hin, (T, B, H)); without it h_in_{t-1} is h0 for t = 0 and h_seq[t-1] after.
Tensor grad_w_hh(const Tensor& dgh, const Tensor& hin, const Tensor& h0, const Tensor& hs) {
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

// Bits of the `needs` argument of the backward ops.
enum Need : int64_t {
  kX = 1, kH0 = 2, kC0 = 4, kWih = 8, kWhh = 16, kBih = 32, kBhh = 64, kPeep = 128
};

struct Neutral {
  Tensor zeros, ones;
  Neutral(int64_t H, const at::TensorOptions& o) : zeros(at::zeros({4 * H}, o)), ones(at::ones({H}, o)) {}
};

// ------------------------------------------------------------------------------------------------
// LSTM

std::vector<Tensor> lstm_fwd(const Tensor& x, const Tensor& h0, const Tensor& c0,
                             const Tensor& w_ih, const Tensor& w_hh, const OptT& b_ih,
                             const OptT& b_hh, const OptT& peep, const OptT& rec_mask,
                             const OptT& keep_h, const OptT& keep_c, const OptT& upd_mask,
                             bool train) {
  check_inputs(x, w_ih, w_hh, 4);
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1), BH = B * H;
  const auto opt = x.options();
  Tensor gates = project(x, w_ih);  // (T, B, 4H)
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
  RecGemm rg(w_hh, B, false, opt);
  Neutral nz(H, opt);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnreg_lstm_fwd", [&] {
    LstmFwdP<scalar_t> p{};
    p.H = H;
    p.gt = rg.out.data_ptr<scalar_t>();
    p.tbs = rg.bs();
    p.tks = rg.ks();
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
    for (int64_t t = 0; t < T; ++t) {
      const int64_t slot = train ? t : t % 2, next = train ? t + 1 : (t + 1) % 2;
      rg.fwd(rec ? hin[slot] : (t == 0 ? h0 : hs[t - 1]));
      p.g = g0 + t * 4 * BH;
      p.hp = t == 0 ? h0.data_ptr<scalar_t>() : hs_p + (t - 1) * BH;
      p.cp = t == 0 ? c0.data_ptr<scalar_t>() : cs_p + (t - 1) * BH;
      p.u = u0 + t * u_ts;
      p.kh = kh0 + t * kh_ts;
      p.kc = kc0 + t * kc_ts;
      p.h = hs_p + t * BH;
      p.c = cs_p + t * BH;
      p.cn = store_cn ? cn.data_ptr<scalar_t>() + t * BH : nullptr;
      p.hin = rec && t + 1 < T ? hin.data_ptr<scalar_t>() + next * BH : nullptr;
      if (!train) {
        run_pointwise<LstmFwdK<scalar_t, false, false>>(p, BH);
      } else if (store_cn) {
        run_pointwise<LstmFwdK<scalar_t, true, true>>(p, BH);
      } else {
        run_pointwise<LstmFwdK<scalar_t, true, false>>(p, BH);
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
                             const Tensor& hin, int64_t needs) {
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1), BH = B * H;
  const auto opt = x.options();
  const bool rec = has(rec_mask);
  const bool want_peep = has(peep) && (needs & kPeep);
  Tensor dg = at::empty({T, B, 4 * H}, opt);
  Tensor dhd = at::zeros({B, H}, opt), dc = at::zeros({B, H}, opt);
  RecGemm rg(w_hh, B, true, opt);
  Tensor dp = want_peep ? at::zeros({B, 3 * H}, opt) : Tensor();
  Neutral nz(H, opt);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnreg_lstm_bwd", [&] {
    LstmBwdP<scalar_t> p{};
    p.H = H;
    p.peep = ptr_or<scalar_t>(peep, nz.zeros);
    p.rm = rec ? rec_mask->data_ptr<scalar_t>() : nz.ones.data_ptr<scalar_t>();
    p.rm_rs = rec ? H : 0;
    const int64_t u_ts = has(upd_mask) ? BH : 0, kh_ts = has(keep_h) ? BH : 0,
                  kc_ts = has(keep_c) ? BH : 0, dhu_ts = has(dhs) ? BH : 0,
                  dcu_ts = has(dcs) ? BH : 0;
    p.u_rs = has(upd_mask) ? H : 0;
    p.kh_rs = has(keep_h) ? H : 0;
    p.kc_rs = has(keep_c) ? H : 0;
    p.dhu_rs = has(dhs) ? H : 0;
    p.dcu_rs = has(dcs) ? H : 0;
    const scalar_t* u0 = ptr_or<scalar_t>(upd_mask, nz.ones);
    const scalar_t* kh0 = ptr_or<scalar_t>(keep_h, nz.zeros);
    const scalar_t* kc0 = ptr_or<scalar_t>(keep_c, nz.zeros);
    const scalar_t* dhu0 = ptr_or<scalar_t>(dhs, nz.zeros);
    const scalar_t* dcu0 = ptr_or<scalar_t>(dcs, nz.zeros);
    const scalar_t* g0 = gates.data_ptr<scalar_t>();
    const scalar_t* cs_p = cs.data_ptr<scalar_t>();
    const scalar_t* cn_p = cn.numel() > 0 ? cn.data_ptr<scalar_t>() : cs_p;
    scalar_t* dg_p = dg.data_ptr<scalar_t>();
    p.dhr = rg.out.data_ptr<scalar_t>();
    p.tbs = rg.bs();
    p.tks = rg.ks();
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
      run_pointwise<LstmBwdK<scalar_t>>(p, BH);
      if (t > 0 || (needs & kH0)) rg.bwd(dg[t]);
    }
  });
  std::vector<Tensor> out(7);
  const Tensor dg2 = dg.view({T * B, 4 * H});
  if (needs & kH0) out[1] = rec ? dhd.addcmul_(rg.as_bh(), *rec_mask) : dhd.add_(rg.as_bh());
  if (needs & kC0) out[2] = dc;
  if (needs & kWhh) out[4] = grad_w_hh(dg, hin, h0, hs);
  if (needs & (kBih | kBhh)) out[5] = dg2.sum(0);
  if (needs & kWih) out[3] = at::mm(dg2.t(), x.reshape({T * B, x.size(2)}));
  if (needs & kX) out[0] = at::mm(dg2, w_ih).view({T, B, x.size(2)});
  if (want_peep) out[6] = dp.sum(0);
  for (auto& o : out)
    if (!o.defined()) o = at::empty({0}, opt);
  return out;
}

// ------------------------------------------------------------------------------------------------
// GRU

std::vector<Tensor> gru_fwd(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                            const Tensor& w_hh, const OptT& b_ih, const OptT& b_hh,
                            const OptT& rec_mask, const OptT& keep_h, const OptT& upd_mask,
                            bool train) {
  check_inputs(x, w_ih, w_hh, 3);
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1), BH = B * H;
  const auto opt = x.options();
  Tensor gates = project(x, w_ih);  // (T, B, 3H)
  Tensor hs = at::empty({T, B, H}, opt);
  RecGemm rg(w_hh, B, false, opt);
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
    p.hw = rg.out.data_ptr<scalar_t>();
    p.tbs = rg.bs();
    p.tks = rg.ks();
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
    for (int64_t t = 0; t < T; ++t) {
      const int64_t slot = train ? t : t % 2, next = train ? t + 1 : (t + 1) % 2;
      rg.fwd(rec ? hin[slot] : (t == 0 ? h0 : hs[t - 1]));
      p.g = g0 + t * 3 * BH;
      p.hp = t == 0 ? h0.data_ptr<scalar_t>() : hs_p + (t - 1) * BH;
      p.u = u0 + t * u_ts;
      p.kh = kh0 + t * kh_ts;
      p.h = hs_p + t * BH;
      p.hn = train ? hn.data_ptr<scalar_t>() + t * BH : nullptr;
      p.hin = rec && t + 1 < T ? hin.data_ptr<scalar_t>() + next * BH : nullptr;
      if (train) {
        run_pointwise<GruFwdK<scalar_t, true>>(p, BH);
      } else {
        run_pointwise<GruFwdK<scalar_t, false>>(p, BH);
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
                            int64_t needs) {
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1), BH = B * H;
  const auto opt = x.options();
  const bool rec = has(rec_mask);
  Tensor dgx = at::empty({T, B, 3 * H}, opt), dgh = at::empty({T, B, 3 * H}, opt);
  Tensor dhd = at::zeros({B, H}, opt);
  RecGemm rg(w_hh, B, true, opt);
  Neutral nz(H, opt);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnreg_gru_bwd", [&] {
    GruBwdP<scalar_t> p{};
    p.H = H;
    p.rm = rec ? rec_mask->data_ptr<scalar_t>() : nz.ones.data_ptr<scalar_t>();
    p.rm_rs = rec ? H : 0;
    const int64_t u_ts = has(upd_mask) ? BH : 0, kh_ts = has(keep_h) ? BH : 0,
                  dhu_ts = has(dhs) ? BH : 0;
    p.u_rs = has(upd_mask) ? H : 0;
    p.kh_rs = has(keep_h) ? H : 0;
    p.dhu_rs = has(dhs) ? H : 0;
    const scalar_t* u0 = ptr_or<scalar_t>(upd_mask, nz.ones);
    const scalar_t* kh0 = ptr_or<scalar_t>(keep_h, nz.zeros);
    const scalar_t* dhu0 = ptr_or<scalar_t>(dhs, nz.zeros);
    const scalar_t* g0 = gates.data_ptr<scalar_t>();
    const scalar_t* hn0 = hn.data_ptr<scalar_t>();
    const scalar_t* hs_p = hs.data_ptr<scalar_t>();
    p.dhr = rg.out.data_ptr<scalar_t>();
    p.tbs = rg.bs();
    p.tks = rg.ks();
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
      run_pointwise<GruBwdK<scalar_t>>(p, BH);
      if (t > 0 || (needs & kH0)) rg.bwd(dgh[t]);
    }
  });
  std::vector<Tensor> out(6);
  const Tensor dgx2 = dgx.view({T * B, 3 * H});
  if (needs & kH0) out[1] = rec ? dhd.addcmul_(rg.as_bh(), *rec_mask) : dhd.add_(rg.as_bh());
  if (needs & kWhh) out[3] = grad_w_hh(dgh, hin, h0, hs);
  if (needs & kBih) out[4] = dgx2.sum(0);
  if (needs & kBhh) out[5] = dgh.view({T * B, 3 * H}).sum(0);
  if (needs & kWih) out[2] = at::mm(dgx2.t(), x.reshape({T * B, x.size(2)}));
  if (needs & kX) out[0] = at::mm(dgx2, w_ih).view({T, B, x.size(2)});
  for (auto& o : out)
    if (!o.defined()) o = at::empty({0}, opt);
  return out;
}

// ------------------------------------------------------------------------------------------------
// Elman RNN (tanh, relu, trec)

std::vector<Tensor> rnn_fwd(const Tensor& x, const Tensor& h0, const Tensor& w_ih,
                            const Tensor& w_hh, const OptT& b_ih, const OptT& b_hh,
                            const OptT& rec_mask, const OptT& keep_h, int64_t act,
                            double threshold, bool train) {
  check_inputs(x, w_ih, w_hh, 1);
  TORCH_CHECK(act >= 0 && act <= 2, "rnnreg fast kernel: unknown nonlinearity");
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1), BH = B * H;
  const auto opt = x.options();
  Tensor gates = project(x, w_ih);  // (T, B, H)
  const Tensor bias = bias_sum(b_ih, b_hh);
  Tensor hs = at::empty({T, B, H}, opt);
  const bool rec = has(rec_mask);
  Tensor hin = rec ? at::empty({train ? T : 2, B, H}, opt) : Tensor();
  if (rec) {
    Tensor hin0 = hin[0];
    at::mul_out(hin0, h0, *rec_mask);
  }
  RecGemm rg(w_hh, B, false, opt);
  Neutral nz(H, opt);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnreg_rnn_fwd", [&] {
    RnnFwdP<scalar_t> p{};
    p.H = H;
    p.gt = rg.out.data_ptr<scalar_t>();
    p.tbs = rg.bs();
    p.tks = rg.ks();
    p.thr = static_cast<scalar_t>(threshold);
    p.bias = bias.defined() ? bias.data_ptr<scalar_t>() : nz.zeros.data_ptr<scalar_t>();
    p.rm = rec ? rec_mask->data_ptr<scalar_t>() : nullptr;
    const int64_t kh_ts = has(keep_h) ? BH : 0;
    p.kh_rs = has(keep_h) ? H : 0;
    const scalar_t* kh0 = ptr_or<scalar_t>(keep_h, nz.zeros);
    scalar_t* hs_p = hs.data_ptr<scalar_t>();
    scalar_t* g0 = gates.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t slot = train ? t : t % 2, next = train ? t + 1 : (t + 1) % 2;
      rg.fwd(rec ? hin[slot] : (t == 0 ? h0 : hs[t - 1]));
      p.g = g0 + t * BH;
      p.hp = t == 0 ? h0.data_ptr<scalar_t>() : hs_p + (t - 1) * BH;
      p.kh = kh0 + t * kh_ts;
      p.h = hs_p + t * BH;
      p.hin = rec && t + 1 < T ? hin.data_ptr<scalar_t>() + next * BH : nullptr;
      run_rnn_fwd(p, act, train, BH);
    }
  });
  if (!train) return {hs};
  return {hs, gates, hin.defined() ? hin : at::empty({0}, opt)};
}

std::vector<Tensor> rnn_bwd(const OptT& dhs, const Tensor& x, const Tensor& h0,
                            const Tensor& w_ih, const Tensor& w_hh, const OptT& rec_mask,
                            const OptT& keep_h, const Tensor& hs, const Tensor& deriv,
                            const Tensor& hin, int64_t needs) {
  const int64_t T = x.size(0), B = x.size(1), H = w_hh.size(1), BH = B * H;
  const auto opt = x.options();
  const bool rec = has(rec_mask);
  Tensor dg = at::empty({T, B, H}, opt);
  Tensor dhd = at::zeros({B, H}, opt);
  RecGemm rg(w_hh, B, true, opt);
  Neutral nz(H, opt);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rnnreg_rnn_bwd", [&] {
    RnnBwdP<scalar_t> p{};
    p.H = H;
    p.rm = rec ? rec_mask->data_ptr<scalar_t>() : nz.ones.data_ptr<scalar_t>();
    p.rm_rs = rec ? H : 0;
    const int64_t kh_ts = has(keep_h) ? BH : 0, dhu_ts = has(dhs) ? BH : 0;
    p.kh_rs = has(keep_h) ? H : 0;
    p.dhu_rs = has(dhs) ? H : 0;
    const scalar_t* kh0 = ptr_or<scalar_t>(keep_h, nz.zeros);
    const scalar_t* dhu0 = ptr_or<scalar_t>(dhs, nz.zeros);
    const scalar_t* d0 = deriv.data_ptr<scalar_t>();
    p.dhr = rg.out.data_ptr<scalar_t>();
    p.tbs = rg.bs();
    p.tks = rg.ks();
    p.dhd = dhd.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      p.d = d0 + t * BH;
      p.kh = kh0 + t * kh_ts;
      p.dhu = dhu0 + t * dhu_ts;
      p.dg = dg.data_ptr<scalar_t>() + t * BH;
      run_pointwise<RnnBwdK<scalar_t>>(p, BH);
      if (t > 0 || (needs & kH0)) rg.bwd(dg[t]);
    }
  });
  std::vector<Tensor> out(6);
  const Tensor dg2 = dg.view({T * B, H});
  if (needs & kH0) out[1] = rec ? dhd.addcmul_(rg.as_bh(), *rec_mask) : dhd.add_(rg.as_bh());
  if (needs & kWhh) out[3] = grad_w_hh(dg, hin, h0, hs);
  if (needs & (kBih | kBhh)) out[4] = dg2.sum(0);
  if (needs & kWih) out[2] = at::mm(dg2.t(), x.reshape({T * B, x.size(2)}));
  if (needs & kX) out[0] = at::mm(dg2, w_ih).view({T, B, x.size(2)});
  for (auto& o : out)
    if (!o.defined()) o = at::empty({0}, opt);
  return out;
}

}  // namespace
}  // namespace rnnreg_fast

TORCH_LIBRARY(rnnreg_fast, m) {
  m.def(
      "lstm_fwd(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh, Tensor? peep, Tensor? rec_mask, Tensor? keep_h, Tensor? keep_c, "
      "Tensor? upd_mask, bool train) -> Tensor[]",
      &rnnreg_fast::lstm_fwd);
  m.def(
      "lstm_bwd(Tensor? dhs, Tensor? dcs, Tensor x, Tensor h0, Tensor c0, Tensor w_ih, "
      "Tensor w_hh, Tensor? peep, Tensor? rec_mask, Tensor? keep_h, Tensor? keep_c, "
      "Tensor? upd_mask, Tensor hs, Tensor cs, Tensor gates, Tensor cn, Tensor hin, "
      "int needs) -> Tensor[]",
      &rnnreg_fast::lstm_bwd);
  m.def(
      "gru_fwd(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? rec_mask, Tensor? keep_h, Tensor? upd_mask, bool train) -> Tensor[]",
      &rnnreg_fast::gru_fwd);
  m.def(
      "gru_bwd(Tensor? dhs, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? rec_mask, "
      "Tensor? keep_h, Tensor? upd_mask, Tensor hs, Tensor gates, Tensor hn, Tensor hin, "
      "int needs) -> Tensor[]",
      &rnnreg_fast::gru_bwd);
  m.def(
      "rnn_fwd(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
      "Tensor? rec_mask, Tensor? keep_h, int act, float threshold, bool train) -> Tensor[]",
      &rnnreg_fast::rnn_fwd);
  m.def(
      "rnn_bwd(Tensor? dhs, Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? rec_mask, "
      "Tensor? keep_h, Tensor hs, Tensor deriv, Tensor hin, int needs) -> Tensor[]",
      &rnnreg_fast::rnn_bwd);
}
