// One pre-norm decoder block, forward and backward side by side (llm.c's shape):
//   x += o(attention(rmsnorm(x)));  x += ffn(rmsnorm(x))
// with GQA attention (Llama, Qwen2 with q/k/v biases, Qwen3 with per-head q/k norms) or
// DeepSeek-V3's Multi-head Latent Attention, and a dense SwiGLU MLP or a Mixture-of-Experts
// block. The same forward serves inference and training (layer_context.h says how they differ).
// Threads: weights are immutable and shared; a pass's LayerCtx and LayerActs belong to it.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/layers/layer_context.h"
#include "model/layers/linear.h"
#include "model/layers/moe.h"

namespace reason {

struct DecoderLayer {
  Tensor attn_norm;  // f32 [d]
  Linear q, k, v, o; // q [n_heads*hd, d], k/v [n_kv*hd, d] (+bias for Qwen2), o [d, n_heads*hd]
  Tensor q_norm, k_norm;  // f32 [hd] or undefined: Qwen3's RMSNorm of each head before RoPE
  Tensor mlp_norm;   // f32 [d]
  bool is_moe = false;
  SwiGLU mlp;        // dense layers: gate/up [ffn, d], down [d, ffn]
  MoeWeights moe;    // MoE layers

  // Multi-head Latent Attention (DeepSeek-V3); `q` holds q_proj when there is no q LoRA and
  // `o` the output projection [d, H*v].
  Linear q_a;        // [q_lora, d]
  Tensor q_a_norm;   // f32 [q_lora]
  Linear q_b;        // [H*(nope+rope), q_lora]
  Linear kv_a;       // [kv_lora + rope, d]: latent and the shared rope key
  Tensor kv_a_norm;  // f32 [kv_lora]
  Linear kv_b;       // [H*(nope+v), kv_lora]: per head W_UK (nope rows) then W_UV (v rows)
  std::vector<Linear> w_uk_t;  // absorbed path, per head: W_UK^T [kv_lora, nope]
  std::vector<Linear> w_uv;    // absorbed path, per head: W_UV [v, kv_lora] (views into kv_b)
};

// x[T, d] -> the layer's output, in place; `a` receives the activations. expert_load (MoE
// layers, nullable): expert_load[e] += tokens routed to expert e.
void decoder_layer_forward(const LayerCtx& ctx, const DecoderLayer& ly, int64_t layer, DevF& x,
                           LayerActs& a, int64_t* expert_load);

// The balance-loss settings of a training pass (LogprobPass::set_aux_loss).
struct AuxLoss {
  float alpha = 0.0f;
  float weight = 1.0f;
};

// dx: in, dL/d(layer output) [T, d]; out, dL/d(layer input). Weight gradients accumulate into g.
// `a` must hold this layer's activations from a training forward (keep_inputs).
void decoder_layer_backward(const LayerCtx& ctx, const DecoderLayer& ly, const LayerActs& a, DevF& dx,
                            const ParamGrads& g, AuxLoss aux);

}  // namespace reason
