#include "model/layers.h"

#include "reason/kernels/backend.h"

namespace reason {

void linear_forward(const Linear& l, const float* x, int64_t m, float* y) {
  linear_forward_strided(l, x, 0, m, y, 0);
}

void linear_forward_strided(const Linear& l, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy) {
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
  kernels::cpu_backend().matmul(a);
}

void swiglu_forward(const SwiGLU& mlp, const float* x, int64_t m, float* y, float* gate_buf, float* up_buf) {
  const int64_t ffn = mlp.gate.w.dim(0);
  linear_forward(mlp.gate, x, m, gate_buf);
  linear_forward(mlp.up, x, m, up_buf);
  kernels::cpu_backend().silu_mul(gate_buf, gate_buf, up_buf, m * ffn);
  linear_forward(mlp.down, gate_buf, m, y);
}

}  // namespace reason
