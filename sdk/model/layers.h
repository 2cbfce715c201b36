// Building blocks shared by every architecture: a Linear layer and a SwiGLU MLP, run on the
// CPU backend. Weights are immutable and may be shared by any number of threads.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace reason {

// A Linear layer: weight [out, in] in the compute dtype (f32 or bf16), optional f32 bias [out].
struct Linear {
  Tensor w;
  Tensor b;
};

// One SwiGLU MLP: down(silu(gate(x)) * up(x)).
struct SwiGLU {
  Linear gate, up;  // [ffn, d]
  Linear down;      // [d, ffn]
};

// y[m, out] = x[m, in] . W^T (+ b).
void linear_forward(const Linear& l, const float* x, int64_t m, float* y);

// The same with row strides (elements) for x and y.
void linear_forward_strided(const Linear& l, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy);

// y[m, d] = SwiGLU(x[m, d]); gate_buf and up_buf hold m * ffn floats each (gate_buf is
// overwritten with the activation).
void swiglu_forward(const SwiGLU& mlp, const float* x, int64_t m, float* y, float* gate_buf, float* up_buf);

}  // namespace reason
