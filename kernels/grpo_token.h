// Internal to kernels/: GRPO's per-token loss and its gradient (backend.h: grpo_token_loss), one
// function compiled for the host (CPU backend) and the device (CUDA backend, by nvcc), so both
// backends compute the same formula.
#pragma once
#include <math.h>
#include <stdint.h>

#include "host_device.h"

namespace reason::kernels {

struct GrpoTokenTerms {
  double loss;  // scale * -min(r A, clip(r) A) + beta KL
  double kl;
  double dlw;     // d loss / d lw (through the importance ratio r = exp(lw))
  double dlogp;   // d loss / d logp with lw held fixed (the KL term's own dependence on logp)
  int low, high;  // clipped below with A < 0 / above with A > 0
};

// lw: the log importance weight (logp - old per token; GSPO: the sequence's mean of them), so
// r = exp(lw). scale multiplies the policy-gradient term only (entropy mask, rollout correction).
// kl: 1 k1, 2 k2, 3 k3 (see backend.h).
REASON_HD GrpoTokenTerms grpo_token_terms(double logp, double lw, double ref, double A, double scale, double eps_low,
                                          double eps_high, double beta, int kl, double k3_clamp, bool ratio_correction) {
  GrpoTokenTerms o{};
  const double ratio = exp(lw);
  const double lo = 1.0 - eps_low, hi = 1.0 + eps_high;
  const double clipped = ratio < lo ? lo : ratio > hi ? hi : ratio;
  const double t1 = ratio * A, t2 = clipped * A;
  o.loss = -(t2 < t1 ? t2 : t1) * scale;  // -std::min(t1, t2), NaN included
  // d(-min(t1, t2))/dlw: -A * ratio unless the clipped (constant) term is the smaller.
  o.dlw = (t2 < t1 && clipped != ratio) ? 0.0 : -A * ratio * scale;
  o.low = ratio < 1.0 - eps_low && A < 0;
  o.high = ratio > 1.0 + eps_high && A > 0;
  if (beta > 0.0) {
    double k = 0, dk = 0;
    if (kl == 1) {
      k = logp - ref;
      dk = 1.0;
    } else if (kl == 2) {
      k = 0.5 * (logp - ref) * (logp - ref);
      dk = logp - ref;
    } else {
      double lr = ref - logp;
      bool pass_through = true;
      if (k3_clamp > 0.0 && fabs(lr) > 20.0) {
        lr = lr < -20.0 ? -20.0 : 20.0;
        pass_through = false;
      }
      k = exp(lr) - lr - 1.0;
      dk = pass_through ? 1.0 - exp(lr) : 0.0;
      if (k3_clamp > 0.0 && fabs(k) > k3_clamp) {
        k = k < -k3_clamp ? -k3_clamp : k3_clamp;
        dk = 0.0;
      }
    }
    if (ratio_correction) {  // kl * r: d/dlogp = dkl * r, d/dlw = kl * r
      o.dlw += beta * k * ratio;
      dk *= ratio;
      k *= ratio;
    }
    o.loss += beta * k;
    o.dlogp = beta * dk;
    o.kl = k;
  }
  return o;
}

// The terms of token t of a GrpoLossArgs-shaped struct (backend.h; the CUDA backend's GrpoLossDev
// has the same fields).
template <class Args>
REASON_HD GrpoTokenTerms grpo_token_terms_at(const Args& a, int64_t t) {
  const double logp = a.logp[t];
  const double lw = a.log_weight ? double(a.log_weight[t]) : a.old_logp ? logp - double(a.old_logp[t]) : 0.0;
  return grpo_token_terms(logp, lw, a.ref_logp ? double(a.ref_logp[t]) : 0.0, a.adv[t],
                          a.pg_scale ? double(a.pg_scale[t]) : 1.0, a.eps_low, a.eps_high, a.beta, a.kl, a.k3_clamp,
                          a.kl_ratio_correction != 0);
}

}  // namespace reason::kernels
