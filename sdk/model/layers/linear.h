// The Linear layer and the SwiGLU MLP's weights, the matmuls every layer is built from, forward
// and backward, and the gradient lookup every layer's backward writes through.
// Weights are immutable during a forward or backward and may be shared by any number of threads.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "model/config.h"
#include "reason/kernels/backend.h"

namespace reason {

// A Linear layer: weight [out, in] in the compute dtype (f32 or bf16), optional f32 bias [out].
struct Linear {
  Tensor w;
  Tensor b;
};

// One SwiGLU MLP: down(silu(gate(x)) * up(x)).
// A gated MLP: down(act(gate(x)) * up(x)); act is SiLU (SwiGLU) or a GELU (GeGLU).
struct SwiGLU {
  Linear gate, up;  // [ffn, d]
  Linear down;      // [d, ffn]
  Activation act = Activation::Silu;
};

// Where the gradient of each weight accumulates (f32, the weight's shape). Implemented by the
// trainer (sdk/train); the layers' backward functions only look gradients up.
class ParamGrads {
 public:
  virtual ~ParamGrads() = default;
  // The accumulator of `weight`; throws Error(Internal) for a tensor that is not a parameter.
  virtual float* of(const Tensor& weight) const = 0;
  float* bias(const Linear& l) const { return l.b.raw() ? of(l.b) : nullptr; }
};

// y[m, out] = x[m, in] . W^T (+ b).
void linear_forward(kernels::Backend& be, const Linear& l, const float* x, int64_t m, float* y);

// The same with row strides (elements) for x and y.
void linear_forward_strided(kernels::Backend& be, const Linear& l, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy);

// dx[m, in] (+)= dy[m, out] . W (accumulate_dx says which; dx may be null: no input gradient);
// dW += dy^T . x;  db += sum over rows of dy (when l has a bias). f32 weights only.
void linear_backward(kernels::Backend& be, const Linear& l, const float* x, const float* dy, int64_t m, float* dx, bool accumulate_dx,
                     const ParamGrads& g);

}  // namespace reason
