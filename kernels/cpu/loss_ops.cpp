// The CPU backend's loss-term ops (backend.h: grpo_token_loss): one pass over the tokens in order,
// so the sums are those of a sequential loop whatever the thread count.
#include <cmath>
#include <string>
#include <vector>

#include "../backend_checks.h"
#include "../distill_row.h"
#include "../grpo_token.h"
#include "cpu_ops.h"

namespace reason::kernels::cpu {

void grpo_token_loss(const GrpoLossArgs& a) {
  const std::string why = grpo_loss_problem(a);
  if (!why.empty()) throw BackendError("cpu grpo_token_loss: " + why);
  double loss = 0, kl = 0, low = 0, high = 0, live = 0;
  for (int64_t t = 0; t < a.n; ++t) {
    if (a.weight[t] == 0.0) {
      a.dlogp[t] = 0.0f;
      if (a.dlog_weight) a.dlog_weight[t] = 0.0f;
      continue;
    }
    const GrpoTokenTerms o = grpo_token_terms_at(a, t);
    loss += a.weight[t] * o.loss;
    kl += o.kl;
    low += o.low;
    high += o.high;
    live += 1;
    if (a.dlog_weight) {
      a.dlogp[t] = float(a.weight[t] * o.dlogp);
      a.dlog_weight[t] = float(a.weight[t] * o.dlw);
    } else {
      a.dlogp[t] = float(a.weight[t] * (o.dlw + o.dlogp));
    }
  }
  a.sums[0] = loss, a.sums[1] = kl, a.sums[2] = low, a.sums[3] = high, a.sums[4] = live;
}

void distill_rows(const DistillRowsArgs& a) {
  const std::string why = distill_rows_problem(a);
  if (!why.empty()) throw BackendError("cpu distill_rows: " + why);
  const int kind = int(a.kind);
  const double lb = kind == 2 ? std::log(a.beta) : 0.0, l1b = kind == 2 ? std::log(1.0 - a.beta) : 0.0;
#pragma omp parallel num_threads(cpu_threads()) if (a.rows * a.n > 65536)
  {
    std::vector<float> g(size_t(a.n));  // the row's d loss / d lp (f32), kept for the second pass
#pragma omp for schedule(static)
    for (int64_t r = 0; r < a.rows; ++r) {
      float* z = a.z_s + r * a.n;
      const float* zt = a.z_t + r * a.n;
      const float w = a.weight[r];
      if (w == 0.0f) {
        a.loss[r] = 0.0;
        for (int64_t j = 0; j < a.n; ++j) z[j] = 0.0f;
        continue;
      }
      double loss = 0, gsum = 0;
      for (int64_t j = 0; j < a.n; ++j) {
        const DistillTerm o = distill_term(z[j], a.lse_s[r], zt[j], a.lse_t[r], a.inv_t, kind, a.beta, lb, l1b, w);
        loss += o.loss;
        gsum += o.g;
        g[size_t(j)] = o.g;
      }
      a.loss[r] = loss;
      for (int64_t j = 0; j < a.n; ++j) {  // the softmax's backward: s = exp(lp) as distill_term computes it
        const float lp = z[j] * a.inv_t - a.lse_s[r];
        z[j] = float((g[size_t(j)] - std::exp(double(lp)) * gsum) * a.inv_t);
      }
    }
  }
}

}  // namespace reason::kernels::cpu
