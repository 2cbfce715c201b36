// Mixture-of-Experts routing: router logits -> the top-k experts of each token and their weights,
// for every family the engine runs.
//   Softmax (Mixtral, Qwen2-MoE, Qwen3-MoE): p = softmax(logits) over all experts, top-k of p,
//     weights = p of the chosen (renormalised to sum 1 when norm_topk_prob; Mixtral always).
//   Sigmoid (DeepSeek-V3/R1, noaux_tc): s = sigmoid(logits); selection uses s + bias
//     (e_score_correction_bias, selection only); experts are split into n_group groups, a group
//     scores the sum of its top-2 biased scores, the best topk_group groups are kept, top-k over
//     the kept experts; weights = unbiased s of the chosen, divided by their sum when
//     norm_topk_prob, times routed_scaling_factor.
// The routing itself is a backend op (Backend::moe_route, kernels/include/reason/kernels/backend.h).
#pragma once
#include <cstdint>

#include "reason/kernels/backend.h"

namespace reason {

struct RouterConfig {
  enum class Scoring { Softmax, Sigmoid };
  Scoring scoring = Scoring::Softmax;
  int n_experts = 0;
  int top_k = 0;
  int n_group = 1;     // Sigmoid only
  int topk_group = 1;  // Sigmoid only
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
};

// The backend's routing arguments for rows of router logits: logits f32 [T, n_experts]; bias f32
// [n_experts] or null (Sigmoid selection bias); idx / weight [T, top_k] are written by
// Backend::moe_route (expert ids in descending order of selection score, ties towards the lower
// id) and read by Backend::moe_route_bwd.
kernels::MoeRouteArgs route_args(const RouterConfig& cfg, const float* logits, const float* bias, int64_t T,
                                 int32_t* idx, float* weight);

}  // namespace reason
