// The Mixture-of-Experts feed-forward block, forward and backward: router -> top-k experts per
// token -> grouped SwiGLU matmuls over the tokens routed to each expert -> weighted sum, plus
// shared experts. Training: the top-k choice is a constant (no gradient through the discrete
// selection, nor to the selection-only e_score_correction_bias); the gradient reaches the router
// through the chosen experts' weights exactly as the forward formula computes them.
// Threads: weights are immutable and shared; LayerActs belongs to one pass.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/layers/layer_context.h"
#include "model/layers/linear.h"
#include "model/moe_router.h"

namespace reason {

struct MoeWeights {
  RouterConfig router;
  Tensor gate;                  // f32 [n_experts, d]: router logits (computed in f32, as reference code does)
  Tensor score_bias;            // f32 [n_experts] or undefined: DeepSeek's e_score_correction_bias
  std::vector<SwiGLU> experts;  // [n_experts]
  bool has_shared = false;
  SwiGLU shared;                // DeepSeek: n_shared_experts fused in one MLP; Qwen2-MoE: shared_expert
  Linear shared_gate;           // f32 [1, d] or undefined: Qwen2-MoE's sigmoid(shared_expert_gate(x)) factor
};

// out[T, d] = MoE(h[T, d]), keeping the routing and every expert's activations in `a`.
// When expert_load is non-null, expert_load[e] += tokens routed to e.
void moe_forward(kernels::Backend& be, const MoeWeights& w, const float* h, int64_t T, int64_t d, float* out, LayerActs& a,
                 int64_t* expert_load, bool exact);

// dh (+)= d/dh given dout; weight and router gradients accumulate. With aux_alpha > 0 the
// sequence-wise balance loss's gradient (moe_seq_aux_loss), times aux_scale, is added.
void moe_backward(kernels::Backend& be, const MoeWeights& w, const float* h, int64_t T, int64_t d, const LayerActs& a, const float* dout,
                  float* dh, const ParamGrads& g, const std::vector<int64_t>& seq_start, float aux_alpha,
                  float aux_scale);

// Sequence-wise auxiliary balance loss of one MoE layer (DeepSeek-V3 eq. 17-20; see
// LogprobPass::set_aux_loss) from the forward's router logits and choices: returns its value
// and, when dlogits is non-null, adds scale * dL/dlogits (router logits [T, E]).
double moe_seq_aux_loss(const RouterConfig& rc, const std::vector<float>& logits, const std::vector<int32_t>& idx,
                        const std::vector<int64_t>& seq_start, float alpha, float* dlogits, float scale);

}  // namespace reason
