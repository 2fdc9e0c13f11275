// Test hooks: the tests reach through them the routes the kernel otherwise picks on its own.
// gemm_route: one product through a named route of gemm.h, checked against torch.mm. Why: on a
// machine whose torch brings MKL the recurrences always take "blas" or "packed", and the "aten"
// fallback (a torch without a Fortran BLAS) would otherwise never run there.
// transpose: transposed() (transpose.h) with its vector kernel or forced scalar, its twin.
// brgemm / vnni: the micro-kernel's product (brgemm.h) on prepared operands, and the bf16 weight
// layout it reads.
// gemm_routes: which routes this torch offers; step_route: the one RecGemm takes for a step's
// product of a given shape. simd_clone: the pointwise clone in use (dispatch.h), so a test run
// under ATEN_CPU_CAPABILITY can check that the cap took.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "brgemm.h"
#include "dispatch.h"
#include "gemm.h"
#include "onednn.h"
#include "rec_gemm.h"
#include "recurrence.h"
#include "transpose.h"

namespace rnnreg_fast {
namespace {  // internal linkage, see compiler.h

// a (m, k) @ b (k, n), plus c (m, n) when accumulate, through `route`: "blas" (sgemm_/dgemm_),
// "packed" (MKL's packed GEMM, float only), "onednn" / "onednn_t" (OneDnnB, float only, b given
// as its rows / as b^T's rows, as the backward / forward recurrences give it), "onednn_mm" (the
// all-step products' mm_onednn, float only, on the operands as given, transposed views included),
// "brgemm" (oneDNN's micro-kernel, brgemm.h, float only) or "aten" (at::mm on views of the same
// memory). a and b may be row-strided views (the leading dimensions); the result is written into
// a buffer wider than n, so the output's leading dimension differs from its width too (the
// packed, oneDNN and brgemm routes, as the recurrences use them, take dense rows: their a and b
// are made contiguous).
at::Tensor gemm_route(const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& c,
                      bool accumulate, const std::string& route) {
  TORCH_CHECK(a_in.dim() == 2 && b_in.dim() == 2 && c.dim() == 2, "gemm_route: 2-d operands");
  TORCH_CHECK(a_in.size(1) == b_in.size(0) && c.size(0) == a_in.size(0) && c.size(1) == b_in.size(1),
              "gemm_route: shapes do not chain");
  TORCH_CHECK(a_in.scalar_type() == b_in.scalar_type() && c.scalar_type() == a_in.scalar_type(),
              "gemm_route: one dtype");
  if (route == "onednn_mm") {
    TORCH_CHECK(a_in.scalar_type() == at::kFloat, "gemm_route: the oneDNN route is float only");
    TORCH_CHECK(onednn_usable(), "gemm_route: torch's oneDNN ops are not available");
    const at::Tensor product = mm_onednn(a_in, b_in);
    return accumulate ? product.add(c) : product;
  }
  const bool packed =
      route == "packed" || route == "onednn" || route == "onednn_t" || route == "brgemm";
  const at::Tensor a = packed || a_in.stride(1) != 1 ? a_in.contiguous() : a_in;
  const at::Tensor b = packed || b_in.stride(1) != 1 ? b_in.contiguous() : b_in;
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1), ldc = packed ? n : n + 3;
  at::Tensor buf = at::empty({m, ldc}, c.options());  // (m, ldc), the product in its first n columns
  at::Tensor out = buf.narrow(1, 0, n);
  out.copy_(c);
  if (route == "onednn" || route == "onednn_t") {  // onednn_t: b handed over as b^T's rows
    TORCH_CHECK(a.scalar_type() == at::kFloat, "gemm_route: the oneDNN route is float only");
    const bool t = route == "onednn_t";
    const OneDnnB ob(t ? b.t().contiguous() : b, t, m);
    TORCH_CHECK(ob.ok(), "gemm_route: torch's oneDNN ops are not available");
    ob.run(a.data_ptr<float>(), buf.data_ptr<float>(), accumulate);
    return out;
  }
  if (route == "brgemm") {
    TORCH_CHECK(a.scalar_type() == at::kFloat, "gemm_route: the brgemm route is float only");
    TORCH_CHECK(kHaveBrgemm && onednn_usable(), "gemm_route: this torch has no brgemm");
    brgemm_nn(m, n, k, a.data_ptr<float>(), b.data_ptr<float>(), accumulate, buf.data_ptr<float>());
    return out;
  }
  if (packed) {
    TORCH_CHECK(a.scalar_type() == at::kFloat, "gemm_route: the packed route is float only");
    const PackedB pb(b, false, m, n, k);
    TORCH_CHECK(pb.ok(), "gemm_route: MKL's packed GEMM is not available");
    pb.run(a.data_ptr<float>(), buf.data_ptr<float>(), accumulate);
    return out;
  }
  TORCH_CHECK(route == "blas" || route == "aten", "gemm_route: unknown route ", route);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rnnreg_gemm_route", [&] {
    const scalar_t *pa = a.data_ptr<scalar_t>(), *pb = b.data_ptr<scalar_t>();
    scalar_t* pc = buf.data_ptr<scalar_t>();
    if (route == "aten") {
      gemm_nn_aten<scalar_t>(m, n, k, pa, a.stride(0), pb, b.stride(0), accumulate, pc, ldc);
    } else {
      const scalar_t beta = accumulate ? scalar_t(1) : scalar_t(0);
      TORCH_CHECK(blas_fits(m, n, k, a.stride(0), b.stride(0), ldc) &&
                      blas_nn(static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), pa,
                              static_cast<int>(a.stride(0)), pb, static_cast<int>(b.stride(0)),
                              beta, pc, static_cast<int>(ldc)),
                  "gemm_route: no Fortran BLAS in this torch");
    }
  });
  return out;
}

std::vector<std::string> gemm_routes() {
  std::vector<std::string> out{"aten"};
  if (sgemm_ && dgemm_) out.push_back("blas");
  if (PackedB(at::ones({2, 2}), false, 2, 2, 2).ok()) out.push_back("packed");
  if (OneDnnB(at::ones({2, 2}), false, 2).ok()) {
    out.push_back("onednn");
    out.push_back("onednn_t");
  }
  if (onednn_usable()) out.push_back("onednn_mm");
  if (kHaveBrgemm && onednn_usable()) out.push_back("brgemm");
  if (kHaveBrgemm && onednn_usable() && brgemm_bf16_runs()) out.push_back("brgemm_bf16");
  return out;
}

// The route RecGemm takes for a float W_hh of (gates * hidden, hidden) at this batch size, with
// bf16 products or not.
std::string step_route(int64_t batch, int64_t hidden, int64_t gates, bool backward, bool bf16) {
  return RecGemm(at::zeros({gates * hidden, hidden}), batch, backward, bf16).route();
}

std::string simd_clone_name() { return simd_clone(); }

at::Tensor transpose_probe(const at::Tensor& w, bool vector) {
  TORCH_CHECK(w.dim() == 2, "transpose: a matrix");
  return transposed(w, vector);
}

// Whether transposed() runs its vector kernel for float here, and whether the all-step products
// of a given shape take oneDNN (prefer_onednn_mm).
bool transpose_vector_probe() { return transpose_vector(); }
bool onednn_mm_probe(int64_t m, int64_t n, int64_t k) { return prefer_onednn_mm(m, n, k); }

// brgemm_nn (brgemm.h) on operands prepared as RecGemm prepares them, into out in place, so that
// the benchmark times the product alone: a (m, k) and b (k, n) float rows, or a bf16 rows and b
// in VNNI layout (k / 2, n, 2) as vnni returns it (where gemm_routes lists brgemm_bf16); out
// (m, n) float rows.
void brgemm_probe(const at::Tensor& a, const at::Tensor& b, at::Tensor& out, bool accumulate) {
  TORCH_CHECK(kHaveBrgemm && onednn_usable(), "brgemm: this torch has no brgemm");
  TORCH_CHECK(a.dim() == 2 && a.is_contiguous() && b.is_contiguous() && out.is_contiguous() &&
                  out.scalar_type() == at::kFloat && out.dim() == 2 && out.size(0) == a.size(0),
              "brgemm: dense operands, a float out of a's rows");
  const int64_t m = a.size(0), k = a.size(1), n = out.size(1);
  if (a.scalar_type() == at::kFloat) {
    TORCH_CHECK(b.scalar_type() == at::kFloat && b.dim() == 2 && b.size(0) == k && b.size(1) == n,
                "brgemm: b (k, n) float");
    brgemm_nn(m, n, k, a.data_ptr<float>(), b.data_ptr<float>(), accumulate, out.data_ptr<float>());
    return;
  }
  TORCH_CHECK(a.scalar_type() == at::kBFloat16 && b.scalar_type() == at::kBFloat16 &&
                  b.dim() == 3 && k % 2 == 0 && b.size(0) == k / 2 && b.size(1) == n &&
                  b.size(2) == 2,
              "brgemm: bf16 a (m, k), k even, with b (k / 2, n, 2) from vnni");
  TORCH_CHECK(brgemm_bf16_runs(), "brgemm: oneDNN generates no bf16 micro-kernel on this CPU");
  brgemm_nn(m, n, k, a.data_ptr<at::BFloat16>(), b.data_ptr<at::BFloat16>(), accumulate,
            out.data_ptr<float>());
}

// vnni_bf16 (brgemm.h): b (k, n) float rows, or (b_is_t, as the forward hands W_hh over) b^T's
// (n, k) rows; k even.
at::Tensor vnni_probe(const at::Tensor& b, bool b_is_t) {
  TORCH_CHECK(b.dim() == 2 && b.scalar_type() == at::kFloat && b.size(b_is_t ? 1 : 0) % 2 == 0,
              "vnni: float b (k, n), or b^T (n, k) with b_is_t, k even");
  return vnni_bf16(b, b_is_t);
}

}  // namespace
}  // namespace rnnreg_fast

// Registered as a fragment, like every file here (see recurrence.h).
TORCH_LIBRARY_FRAGMENT(rnnreg_fast, m) {
  m.def("gemm_route(Tensor a, Tensor b, Tensor c, bool accumulate, str route) -> Tensor",
        &rnnreg_fast::gemm_route);
  m.def("gemm_routes() -> str[]", &rnnreg_fast::gemm_routes);
  m.def("step_route(int batch, int hidden, int gates, bool backward, bool bf16=False) -> str",
        &rnnreg_fast::step_route);
  m.def("simd_clone() -> str", &rnnreg_fast::simd_clone_name);
  m.def("transpose(Tensor w, bool vector) -> Tensor", &rnnreg_fast::transpose_probe);
  m.def("transpose_vector() -> bool", &rnnreg_fast::transpose_vector_probe);
  m.def("onednn_mm(int m, int n, int k) -> bool", &rnnreg_fast::onednn_mm_probe);
  m.def("brgemm(Tensor a, Tensor b, Tensor(a!) out, bool accumulate) -> ()",
        &rnnreg_fast::brgemm_probe);
  m.def("vnni(Tensor b, bool b_is_t=False) -> Tensor", &rnnreg_fast::vnni_probe);
}
