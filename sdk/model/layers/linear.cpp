#include "model/layers/linear.h"

#include "reason/kernels/backend.h"

namespace reason {

void linear_forward(kernels::Backend& be, const Linear& l, const float* x, int64_t m, float* y) {
  linear_forward_strided(be, l, x, 0, m, y, 0);
}

void linear_forward_strided(kernels::Backend& be, const Linear& l, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy) {
  kernels::MatmulArgs a;
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
}

void linear_backward(kernels::Backend& be, const Linear& l, const float* x, const float* dy, int64_t m, float* dx, bool accumulate_dx,
                     const ParamGrads& g) {
  const int64_t n = l.w.dim(0), k = l.w.dim(1);
  if (m == 0) return;
    if (dx) be.gemm_f32(false, false, m, k, n, 1.0f, dy, n, l.w.data<float>(), k, accumulate_dx ? 1.0f : 0.0f, dx, k);
  be.gemm_f32(true, false, n, k, m, 1.0f, dy, n, x, k, 1.0f, g.of(l.w), k);
  if (float* db = g.bias(l)) be.add_column_sums(db, dy, m, n);
}

}  // namespace reason
