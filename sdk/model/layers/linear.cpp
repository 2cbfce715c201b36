#include "model/layers/linear.h"

#include <algorithm>
#include <numeric>

#include "core/device_array.h"
#include "reason/kernels/backend.h"

namespace reason {

namespace {

uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// u[m, r] = x[m, in] . A^T (x with row stride ldx; 0 = in).
void lora_down(kernels::Backend& be, const LoraAdapter& a, const float* x, int64_t ldx, int64_t m, DeviceArray<float>& u) {
  const int64_t r = a.rank(), k = a.a.dim(1);
  u.resize(be, size_t(m * r));
  be.gemm_f32(false, true, m, r, k, 1.0f, x, ldx ? ldx : k, a.a.data<float>(), k, 0.0f, u.data(), r);
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
  return s ? splitmix64(s ^ splitmix64(id)) | 1 : 0;
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
  DeviceArray<float> u, xd;
  const int64_t k = l.w.dim(1);
  if (const uint64_t s = exact ? l.lora.mask_seed() : 0) {  // training: dropout on the adapter's input
    xd.resize(be, size_t(m * k));
    be.dropout_scale(xd.data(), x, m, k, ldx ? ldx : k, l.lora.dropout, s, false);
    x = xd.data();
    ldx = 0;
  }
  lora_down(be, l.lora, x, ldx, m, u);
  const int64_t r = l.lora.rank(), n = l.w.dim(0);
  be.gemm_f32(false, true, m, n, r, l.lora.scale, u.data(), r, l.lora.b.data<float>(), r, 1.0f, y, ldy ? ldy : n);
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
  DeviceArray<float> u, du, xd, t;
  const uint64_t s = a.mask_seed();  // the forward's dropout mask, recomputed
  const float* xa = x;
  if (s) {
    xd.resize(be, size_t(m * k));
    be.dropout_scale(xd.data(), x, m, k, k, a.dropout, s, false);
    xa = xd.data();
  }
  lora_down(be, a, xa, 0, m, u);
  du.resize(be, size_t(m * r));
  be.gemm_f32(false, false, m, r, n, a.scale, dy, n, a.b.data<float>(), r, 0.0f, du.data(), r);
  if (float* dB = g.of(a.b)) be.gemm_f32(true, false, n, r, m, a.scale, dy, n, u.data(), r, 1.0f, dB, r);
  if (float* dA = g.of(a.a)) be.gemm_f32(true, false, r, k, m, 1.0f, du.data(), r, xa, k, 1.0f, dA, k);
  if (dx && !s) be.gemm_f32(false, false, m, k, r, 1.0f, du.data(), r, a.a.data<float>(), k, 1.0f, dx, k);
  if (dx && s) {  // dx += mask * (du . A) / (1 - p)
    t.resize(be, size_t(m * k));
    be.gemm_f32(false, false, m, k, r, 1.0f, du.data(), r, a.a.data<float>(), k, 0.0f, t.data(), k);
    be.dropout_scale(dx, t.data(), m, k, k, a.dropout, s, true);
  }
}

}  // namespace reason
