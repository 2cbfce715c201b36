// The Mixture-of-Experts feed-forward block: router -> top-k experts per token -> grouped
// SwiGLU matmuls over the tokens routed to each expert -> weighted sum, plus shared experts.
// Threads: weights are immutable and shared; MoeScratch belongs to one forward call.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/layers.h"
#include "model/moe_router.h"

namespace reason {

struct MoeWeights {
  RouterConfig router;
  Tensor gate;                  // f32 [n_experts, d]: router logits (computed in f32, as reference code does)
  Tensor score_bias;            // f32 [n_experts] or undefined: DeepSeek's e_score_correction_bias
  std::vector<SwiGLU> experts;  // [n_experts]
  bool has_shared = false;
  SwiGLU shared;                // DeepSeek: n_shared_experts fused in one MLP; Qwen2-MoE: shared_expert
  Tensor shared_gate;           // f32 [1, d] or undefined: Qwen2-MoE's sigmoid(shared_expert_gate(x)) factor
};

struct MoeScratch {
  std::vector<float> logits, weights, xe, ge, ue, ye, sg, shared_out;
  std::vector<int32_t> idx;
  std::vector<std::vector<std::pair<int32_t, float>>> rows;  // per expert: (token, weight)
};

// out[T, d] = MoE(h[T, d]). When expert_load is non-null, expert_load[e] += tokens routed to e.
void moe_forward(const MoeWeights& w, const float* h, int64_t T, int64_t d, float* out, MoeScratch& s,
                 int64_t* expert_load);


}  // namespace reason
