#include "model/layers/mlp.h"

#include <vector>

#include "reason/kernels/backend.h"

namespace reason {

void mlp_forward(kernels::Backend& be, const SwiGLU& m, const float* x, int64_t n, int64_t d, MlpActs& a, OpLaps* laps,
                 bool exact) {
  const int64_t ffn = m.gate.w.dim(0);
  a.gate.resize(be, size_t(n * ffn));
  a.up.resize(be, size_t(n * ffn));
  a.act.resize(be, size_t(n * ffn));
  a.y.resize(be, size_t(n * d));
  OpLaps none(nullptr);
  OpLaps& lap = laps ? *laps : none;
  linear_forward(be, m.gate, x, n, a.gate.data(), exact);
  lap(ForwardOp::GateProj, double(m.gate.w.nbytes()));
  linear_forward(be, m.up, x, n, a.up.data(), exact);
  lap(ForwardOp::UpProj, double(m.up.w.nbytes()));
  if (m.act == Activation::Silu)
    be.silu_mul(a.act.data(), a.gate.data(), a.up.data(), n * ffn);
  else
    be.gelu_mul(a.act.data(), a.gate.data(), a.up.data(), n * ffn, m.act == Activation::GeluTanh);
  lap(ForwardOp::SiluMul);
  linear_forward(be, m.down, a.act.data(), n, a.y.data(), exact);
  lap(ForwardOp::DownProj, double(m.down.w.nbytes()));
}

void mlp_backward(kernels::Backend& be, const SwiGLU& m, const float* x, int64_t n, const MlpActs& a, const float* dy, float* dx,
                  bool accumulate_dx, const ParamGrads& g) {
  const int64_t ffn = m.gate.w.dim(0);
  DevF dact(be, size_t(n * ffn)), dgate(be, size_t(n * ffn)), dup(be, size_t(n * ffn));
  linear_backward(be, m.down, a.act.data(), dy, n, dact.data(), false, g);
  if (m.act == Activation::Silu)
    be.silu_mul_bwd(dgate.data(), dup.data(), a.gate.data(), a.up.data(), dact.data(), n * ffn);
  else
    be.gelu_mul_bwd(dgate.data(), dup.data(), a.gate.data(), a.up.data(), dact.data(), n * ffn, m.act == Activation::GeluTanh);
  linear_backward(be, m.gate, x, dgate.data(), n, dx, accumulate_dx, g);
  linear_backward(be, m.up, x, dup.data(), n, dx, true, g);
}

}  // namespace reason
