// The SwiGLU MLP, forward and backward: y = down(silu(gate(x)) * up(x)).
#pragma once
#include <cstdint>

#include "model/layers/layer_context.h"
#include "model/layers/linear.h"

namespace reason {

// a.y[n, d] = MLP(x[n, d]), keeping gate, up and act for the backward. laps (nullable) times
// each of its ops.
void mlp_forward(kernels::Backend& be, const SwiGLU& m, const float* x, int64_t n, int64_t d, MlpActs& a, OpLaps* laps = nullptr,
                 bool exact = false);

// dx (+)= d/dx given dy (accumulate_dx says which); weight gradients accumulate.
void mlp_backward(kernels::Backend& be, const SwiGLU& m, const float* x, int64_t n, const MlpActs& a, const float* dy, float* dx,
                  bool accumulate_dx, const ParamGrads& g);

}  // namespace reason
