#include "model/layers/linear.h"

#include <algorithm>
#include <numeric>

#include "core/device_array.h"
#include "core/mix64.h"
#include "reason/kernels/backend.h"

namespace reason {

namespace {

// u[m, r] = x[m, in] . A^T (x with row stride ldx; 0 = in).
void lora_down(kernels::Backend& be, const LoraAdapter& a, const float* x, int64_t ldx, int64_t m, float* u) {
  const int64_t r = a.rank(), k = a.a.dim(1);
  be.gemm_f32(false, true, m, r, k, 1.0f, x, ldx ? ldx : k, a.a.data<float>(), k, 0.0f, u, r);
}

// dx[m, k] (+)= dy[m, n] . W for a weight that is not f32: W is read in f32 a block of rows at a
// time (gather_rows converts bf16 and the block-quantised types), so a frozen quantised base
// (QLoRA) passes gradients to its input without a dequantised copy of the whole matrix.
void input_grad_blocked(kernels::Backend& be, const Tensor& w, const float* dy, int64_t m, float* dx, bool accumulate) {
  const int64_t n = w.dim(0), k = w.dim(1);
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(n, (int64_t(1) << 22) / std::max<int64_t>(k, 1)));
  std::vector<int32_t> ids(static_cast<size_t>(rows));
  DeviceArray<int32_t> ids_dev;
  DeviceArray<float> blk(be, size_t(rows * k));
  for (int64_t r0 = 0; r0 < n; r0 += rows) {
    const int64_t nr = std::min(rows, n - r0);
    std::iota(ids.begin(), ids.begin() + nr, int32_t(r0));
    ids_dev.upload(be, std::span<const int32_t>(ids.data(), size_t(nr)));
    be.gather_rows(blk.data(), w.raw(), w.dtype(), ids_dev.data(), nr, k);
    be.gemm_f32(false, false, m, k, nr, 1.0f, dy + r0, n, blk.data(), k, (accumulate || r0 > 0) ? 1.0f : 0.0f, dx, k);
  }
}

}  // namespace

uint64_t LoraAdapter::mask_seed() const {
  const uint64_t s = dropout > 0.0f && dropout_seed ? dropout_seed->load(std::memory_order_relaxed) : 0;
  constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;  // splitmix64's increment
  return s ? mix64((s ^ mix64(id + kGolden)) + kGolden) | 1 : 0;
}

void linear_forward(kernels::Backend& be, const Linear& l, const float* x, int64_t m, float* y, bool exact) {
  linear_forward_strided(be, l, x, 0, m, y, 0, exact);
}

void linear_forward_strided(kernels::Backend& be, const Linear& l, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
                            bool exact) {
  kernels::MatmulArgs a;
  a.exact = exact;
  a.ldx = ldx;
  a.ldy = ldy;
  a.x = x;
  a.w = l.w.raw();
  a.w_dtype = l.w.dtype();
  a.bias = l.b.raw() ? l.b.data<float>() : nullptr;
  a.y = y;
  a.m = m;
  a.n = l.w.dim(0);
  a.k = l.w.dim(1);
  be.matmul(a);
  if (!l.lora.active() || m == 0) return;
  const int64_t k = l.w.dim(1), r = l.lora.rank(), n = l.w.dim(0);
  const uint64_t s = exact ? l.lora.mask_seed() : 0;  // training: dropout on the adapter's input
  // One allocation per call: u [m, r], then the dropped input [m, k] when dropout applies.
  DeviceArray<float> scratch(be, size_t(m * r + (s ? m * k : 0)));
  float* u = scratch.data();
  if (s) {
    float* xd = u + m * r;
    be.dropout_scale(xd, x, m, k, ldx ? ldx : k, l.lora.dropout, s, false);
    x = xd;
    ldx = 0;
  }
  lora_down(be, l.lora, x, ldx, m, u);
  be.gemm_f32(false, true, m, n, r, l.lora.scale, u, r, l.lora.b.data<float>(), r, 1.0f, y, ldy ? ldy : n);
}

void linear_backward(kernels::Backend& be, const Linear& l, const float* x, const float* dy, int64_t m, float* dx, bool accumulate_dx,
                     const ParamGrads& g) {
  const int64_t n = l.w.dim(0), k = l.w.dim(1);
  if (m == 0) return;
  if (dx) {
    if (l.w.dtype() == DType::F32)
      be.gemm_f32(false, false, m, k, n, 1.0f, dy, n, l.w.data<float>(), k, accumulate_dx ? 1.0f : 0.0f, dx, k);
    else
      input_grad_blocked(be, l.w, dy, m, dx, accumulate_dx);
  }
  if (float* dw = g.of(l.w)) be.gemm_f32(true, false, n, k, m, 1.0f, dy, n, x, k, 1.0f, dw, k);
  if (float* db = g.bias(l)) be.add_column_sums(db, dy, m, n);
  if (!l.lora.active()) return;
  const LoraAdapter& a = l.lora;
  const int64_t r = a.rank();
  const uint64_t s = a.mask_seed();  // the forward's dropout mask, recomputed
  // One allocation per call: u and du [m, r], then with dropout one [m, k] buffer that holds the
  // dropped input and, once dA has it, du . A.
  DeviceArray<float> scratch(be, size_t(2 * m * r + (s ? m * k : 0)));
  float *u = scratch.data(), *du = u + m * r, *xk = du + m * r;
  const float* xa = x;
  if (s) {
    be.dropout_scale(xk, x, m, k, k, a.dropout, s, false);
    xa = xk;
  }
  lora_down(be, a, xa, 0, m, u);
  be.gemm_f32(false, false, m, r, n, a.scale, dy, n, a.b.data<float>(), r, 0.0f, du, r);
  if (float* dB = g.of(a.b)) be.gemm_f32(true, false, n, r, m, a.scale, dy, n, u, r, 1.0f, dB, r);
  if (float* dA = g.of(a.a)) be.gemm_f32(true, false, r, k, m, 1.0f, du, r, xa, k, 1.0f, dA, k);
  if (dx && !s) be.gemm_f32(false, false, m, k, r, 1.0f, du, r, a.a.data<float>(), k, 1.0f, dx, k);
  if (dx && s) {  // dx += mask * (du . A) / (1 - p)
    be.gemm_f32(false, false, m, k, r, 1.0f, du, r, a.a.data<float>(), k, 0.0f, xk, k);
    be.dropout_scale(dx, xk, m, k, k, a.dropout, s, true);
  }
}

}  // namespace reason
