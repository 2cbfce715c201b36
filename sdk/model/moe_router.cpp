#include "model/moe_router.h"

namespace reason {

kernels::MoeRouteArgs route_args(const RouterConfig& c, const float* logits, const float* bias, int64_t T, int32_t* idx,
                                 float* weight) {
  kernels::MoeRouteArgs a;
  a.logits = logits;
  a.bias = bias;
  a.rows = T;
  a.n_experts = c.n_experts;
  a.top_k = c.top_k;
  a.sigmoid = c.scoring == RouterConfig::Scoring::Sigmoid;
  a.n_group = c.n_group;
  a.topk_group = c.topk_group;
  a.norm_topk_prob = c.norm_topk_prob;
  a.scale = c.routed_scaling_factor;
  a.idx = idx;
  a.weight = weight;
  return a;
}

}  // namespace reason
