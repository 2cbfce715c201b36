// The Linear layer and the SwiGLU MLP's weights, the matmuls every layer is built from, forward
// and backward, and the gradient lookup every layer's backward writes through.
// Weights are immutable during a forward or backward and may be shared by any number of threads.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>

#include "core/tensor.h"
#include "model/config.h"
#include "reason/kernels/backend.h"

namespace reason {

// A LoRA adapter on a Linear layer (PEFT's LoraLayer, Hu et al. 2021): the layer computes
// y = x . W^T + b + scale * (x . A^T) . B^T with A [r, in] and B [out, r] in f32 on the model's
// backend; scale = lora_alpha / r (lora_alpha / sqrt(r) with rsLoRA). The base weight stays as
// loaded (f32, bf16 or quantised) and is not changed: the adapter is applied unmerged.
// lora_dropout drops elements of the adapter's input in training passes only (PEFT's train
// mode), with a mask that is a function of the model's current dropout seed (set by the trainer
// per step and micro-batch, 0 = off), the adapter's id and the element, so the backward recomputes
// the forward's mask (Backend::dropout_scale).
struct LoraAdapter {
  Tensor a;  // lora_A.weight [r, in]
  Tensor b;  // lora_B.weight [out, r]
  float scale = 0.0f;
  float dropout = 0.0f;
  uint64_t id = 0;  // distinct per adapted layer of a model
  std::shared_ptr<const std::atomic<uint64_t>> dropout_seed;  // the model's; null or 0: no dropout
  bool active() const { return a.raw() != nullptr; }
  int64_t rank() const { return a.dim(0); }
  // The mask seed of a training pass now, or 0 when no dropout applies.
  uint64_t mask_seed() const;
};

// A Linear layer: weight [out, in] in the compute dtype (f32 or bf16), optional f32 bias [out],
// optional LoRA adapter.
struct Linear {
  Tensor w;
  Tensor b;
  LoraAdapter lora = {};
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
  // The accumulator of `weight`, or null when the weight is frozen (no gradient is computed for
  // it: LoRA training freezes every base weight); throws Error(Internal) for a tensor that is
  // not a parameter.
  virtual float* of(const Tensor& weight) const = 0;
  float* bias(const Linear& l) const { return l.b.raw() ? of(l.b) : nullptr; }
};

// y[m, out] = x[m, in] . W^T (+ b) (+ the LoRA adapter's term). exact (training passes set it): a
// quantised W multiplies the f32 rows as dequantised weights (MatmulArgs::exact), and LoRA dropout
// applies.
void linear_forward(kernels::Backend& be, const Linear& l, const float* x, int64_t m, float* y, bool exact = false);

// The same with row strides (elements) for x and y.
void linear_forward_strided(kernels::Backend& be, const Linear& l, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
                            bool exact = false);

// dx[m, in] (+)= dy[m, out] . W (accumulate_dx says which; dx may be null: no input gradient);
// dW += dy^T . x;  db += sum over rows of dy (when l has a bias and they are not frozen). With a
// LoRA adapter, u = x . A^T (recomputed) and du = scale * dy . B: dB += scale * dy^T . u,
// dA += du^T . x, dx += du . A. A base weight that is not f32 must be frozen and, when dx is
// wanted, is read in f32 a block of rows at a time.
void linear_backward(kernels::Backend& be, const Linear& l, const float* x, const float* dy, int64_t m, float* dx, bool accumulate_dx,
                     const ParamGrads& g);

}  // namespace reason
