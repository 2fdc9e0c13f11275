// The recurrences' matrix products on MKL / the Fortran BLAS: the per-step products on raw
// row-major pointers, and which way round to compute the large all-step ones (prefer_transposed).
//
// Why not at::mm_out per step: a step's product is small (B = 20, H = 200: 20 x 800 x 200, ~25 us
// on 2 cores), and at::mm_out took 45 us against 38 us for the same BLAS call made directly (one
// core: the dispatcher, the slices made to pass it, the wrapper's checks), 70 times per layer per
// training step. torch links a Fortran BLAS (MKL on x86) and exports its sgemm_ / dgemm_, and MKL's
// packed GEMM; they are declared weak here, so a torch build without them still loads the
// extension and takes the at::mm path instead.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>

#include <climits>
#include <cstddef>
#include <cstdint>

#include "compiler.h"

// The Fortran BLAS interface (32-bit integers, as torch's own CPUBlas.cpp declares it).
extern "C" {
void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc) __attribute__((weak));
void dgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b,
            const int* ldb, const double* beta, double* c, const int* ldc) __attribute__((weak));
// MKL's packed GEMM (the CBLAS enums passed as their int values, see PackedB).
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k) __attribute__((weak));
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha,
                      const float* src, int ld, float* dest) __attribute__((weak));
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k, const float* a,
                         int lda, const float* b, int ldb, float beta, float* c, int ldc)
    __attribute__((weak));
}

namespace rnnreg_fast {
namespace {  // internal linkage, see compiler.h

inline bool blas_fits(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc) {
  for (int64_t v : {m, n, k, lda, ldb, ldc})
    if (v > INT_MAX) return false;
  return true;
}

// Column-major BLAS on row-major operands: c = a @ b is c^T = b^T @ a^T, so the operands swap.
inline bool blas_nn(int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                    float beta, float* c, int ldc) {
  if (!sgemm_) return false;
  const float one = 1.0f;
  sgemm_("N", "N", &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &ldc);
  return true;
}
inline bool blas_nn(int m, int n, int k, const double* a, int lda, const double* b, int ldb,
                    double beta, double* c, int ldc) {
  if (!dgemm_) return false;
  const double one = 1.0;
  dgemm_("N", "N", &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &ldc);
  return true;
}

// The fallback for a torch built without a Fortran BLAS: the same product through ATen, on
// tensors that view the caller's memory (so the leading dimensions carry over as row strides).
template <typename T>
void gemm_nn_aten(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
                  int64_t ldb, bool accumulate, T* c, int64_t ldc) {
  const auto opt = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  const at::Tensor ta = at::from_blob(const_cast<T*>(a), {m, k}, {lda, 1}, opt);
  const at::Tensor tb = at::from_blob(const_cast<T*>(b), {k, n}, {ldb, 1}, opt);
  at::Tensor tc = at::from_blob(c, {m, n}, {ldc, 1}, opt);
  if (accumulate) {
    tc.addmm_(ta, tb);
  } else {
    at::mm_out(tc, ta, tb);
  }
}

// c (m, n) = a (m, k) @ b (k, n), plus c when accumulate; row-major, with leading dimensions.
template <typename T>
void gemm_nn(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
             bool accumulate, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const T beta = accumulate ? T(1) : T(0);
  if (blas_fits(m, n, k, lda, ldb, ldc) &&
      blas_nn(static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc)))
    return;
  gemm_nn_aten(m, n, k, a, lda, b, ldb, accumulate, c, ldc);
}

// The right operand of out (m, n) = in (m, k) @ b (k, n), repacked once by MKL into its GEMM
// kernel's own layout, for a product repeated at every step with the same shapes: each step then
// skips MKL's own per-call packing (H = 650, B = 20: 277 us against 331 us on 2 cores), and the
// forward needs no transposed copy of W_hh. The LSTM forward op took 40 ms against 57 ms at
// H = 650 and 483 ms against 595 ms at AWD-LSTM's B = 80, H = 1150 (T = 35, one core).
// Not set up (ok() false) without MKL's packed API, or for double; the caller then uses gemm_nn.
// b is b_rows (k, n) row-major when !transposed, else b_rows (n, k) read as its transpose.
class PackedB {
 public:
  PackedB() = default;
  PackedB(const at::Tensor& b_rows, bool transposed, int64_t m, int64_t n, int64_t k)
      : m_(m), n_(n), k_(k) {
    if (b_rows.scalar_type() != at::kFloat || !cblas_sgemm_pack_get_size || !cblas_sgemm_pack ||
        !cblas_sgemm_compute || !blas_fits(m, n, k, k, n, n) || m == 0 || n == 0 || k == 0)
      return;
    const size_t bytes = cblas_sgemm_pack_get_size(kBMatrix, static_cast<int>(m),
                                                   static_cast<int>(n), static_cast<int>(k));
    buf_ = at::empty({static_cast<int64_t>((bytes + sizeof(float) - 1) / sizeof(float))},
                     b_rows.options());
    cblas_sgemm_pack(kRowMajor, kBMatrix, transposed ? kTrans : kNoTrans, static_cast<int>(m),
                     static_cast<int>(n), static_cast<int>(k), 1.0f, b_rows.data_ptr<float>(),
                     static_cast<int>(transposed ? k : n), buf_.data_ptr<float>());
  }
  bool ok() const { return buf_.defined(); }
  // out (m, n) = in (m, k) @ b, plus out when accumulate; in and out dense rows.
  void run(const float* in, float* out, bool accumulate) const {
    cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, static_cast<int>(m_), static_cast<int>(n_),
                        static_cast<int>(k_), in, static_cast<int>(k_), buf_.data_ptr<float>(),
                        static_cast<int>(n_), accumulate ? 1.0f : 0.0f, out, static_cast<int>(n_));
  }

 private:
  // CBLAS_LAYOUT, CBLAS_TRANSPOSE, CBLAS_STORAGE and CBLAS_IDENTIFIER values (mkl_cblas.h).
  enum : int { kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162 };
  at::Tensor buf_;
  int64_t m_ = 0, n_ = 0, k_ = 0;
};

// Whether the steps' products take MKL's packed GEMM (PackedB) where it is available: not on AMD
// CPUs, where the EPYC ran sgemm_ on the same operands faster at every shape measured (B = 20,
// H = 200: 64-73 against 70-86 us forward, 60 against 66 us backward; H = 650: 637-652 against
// 673-720 us; B = 80, H = 1150: 6.5 against 6.7 ms), and a whole small training step (T = 35,
// B = 20, H = 200, one layer) took 11.1 against 12.0 ms without the packing.
inline bool prefer_packed() { return !amd_cpu(); }

// Whether an all-steps float gradient product out (m, n) = a @ b (the weight and input
// gradients) runs faster as (b^T @ a^T)^T, made contiguous: on AMD CPUs, for m >= 2n and
// at least 2^32 multiply-adds. MKL's sgemm ran these products faster with the wide side as the
// result's rows: on the AMD EPYC, AWD-LSTM's dx = dG (5600 x 4600) @ W_ih (4600 x 1150) took 337
// against 437 ms, dW = dG^T @ x (4600 x 1150) 338 (the copy included) against 434 ms; at the
// medium size (700 x 2600 x 650, 2^30) the copy cost what the turn saved, and the input
// projection x @ W_ih^T (5600 x 4600) took 448 ms turned against 358 ms as it is, so only the
// gradient products ask. A whole AWD-size training step of one layer (T = 70, B = 80, H = 1150)
// took 2.41 s with the turn against 2.61 s without.
inline bool prefer_transposed(int64_t m, int64_t n, int64_t k) {
  return amd_cpu() && m >= 2 * n && m * n * k >= (int64_t{1} << 32);
}

}  // namespace
}  // namespace rnnreg_fast
