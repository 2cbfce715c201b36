// Internal to kernels/: argument checks that every backend applies the same way, so the CPU and
// CUDA backends reject the same calls with the same message. Each returns an empty string when the
// arguments are valid, else what is wrong.
#pragma once
#include <string>

#include "reason/kernels/backend.h"

namespace reason::kernels {

inline std::string moe_route_problem(const MoeRouteArgs& a) {
  if (a.rows < 0) return "negative rows";
  if (a.n_experts <= 0 || a.top_k <= 0 || a.top_k > a.n_experts) return "top_k must be in [1, n_experts]";
  if (a.n_experts > 4096 || a.top_k > 64) return "more than 4096 experts or a top_k above 64";
  if (a.sigmoid && a.n_group > 1) {
    if (a.n_group > 64 || a.n_experts % a.n_group) return "n_group must divide n_experts (at most 64 groups)";
    if (a.topk_group < 1 || a.topk_group > a.n_group) return "topk_group must be in [1, n_group]";
    if (int64_t(a.topk_group) * (a.n_experts / a.n_group) < a.top_k) return "the kept groups hold fewer than top_k experts";
  }
  if (a.rows > 0 && (!a.logits || !a.idx || !a.weight)) return "null logits, idx or weight";
  return {};
}

inline std::string grpo_loss_problem(const GrpoLossArgs& a) {
  if (a.n < 0) return "negative n";
  if (!a.sums) return "null sums";
  if (a.n > 0 && (!a.logp || !a.adv || !a.weight || !a.dlogp)) return "null logp, adv, weight or dlogp";
  if (a.beta > 0.0f && a.n > 0 && !a.ref_logp) return "beta > 0 needs ref_logp";
  if (a.kl < 1 || a.kl > 3) return "kl must be 1, 2 or 3";
  return {};
}

inline std::string distill_rows_problem(const DistillRowsArgs& a) {
  if (a.rows < 0 || a.n < 0) return "negative size";
  if (a.rows > 0 && (!a.z_s || !a.lse_s || !a.z_t || !a.lse_t || !a.weight || !a.loss)) return "null pointer";
  if (a.kind != DistillKind::ForwardKL && a.kind != DistillKind::ReverseKL && a.kind != DistillKind::JSD)
    return "unknown distillation loss";
  if (a.kind == DistillKind::JSD && !(a.beta > 0.0 && a.beta < 1.0)) return "JSD beta must be in (0, 1)";
  return {};
}

}  // namespace reason::kernels
