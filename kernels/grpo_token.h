// Internal to kernels/: GRPO's per-token loss and its gradient (backend.h: grpo_token_loss), one
// function compiled for the host (CPU backend) and the device (CUDA backend, by nvcc), so both
// backends compute the same formula.
#pragma once
#include <math.h>

#include "host_device.h"

namespace reason::kernels {

struct GrpoTokenTerms {
  double loss;  // -min(r A, clip(r) A) + beta KL
  double kl;
  double dlogp;  // d loss / d logp
  int low, high;  // clipped below with A < 0 / above with A > 0
};

// kl: 1 k1, 2 k2, 3 k3 (see backend.h).
REASON_HD GrpoTokenTerms grpo_token_terms(double logp, double old, double ref, double A, double eps_low, double eps_high,
                                          double beta, int kl, double k3_clamp, bool ratio_correction) {
  GrpoTokenTerms o{};
  const double ratio = exp(logp - old);
  const double lo = 1.0 - eps_low, hi = 1.0 + eps_high;
  const double clipped = ratio < lo ? lo : ratio > hi ? hi : ratio;
  const double t1 = ratio * A, t2 = clipped * A;
  o.loss = -(t2 < t1 ? t2 : t1);  // -std::min(t1, t2), NaN included
  // d(-min(t1, t2))/dlogp: -A * ratio unless the clipped (constant) term is the smaller.
  o.dlogp = (t2 < t1 && clipped != ratio) ? 0.0 : -A * ratio;
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
    if (ratio_correction) {  // kl * r, d(kl * r)/dlogp = dkl * r + kl * r
      dk = dk * ratio + k * ratio;
      k *= ratio;
    }
    o.loss += beta * k;
    o.dlogp += beta * dk;
    o.kl = k;
  }
  return o;
}

}  // namespace reason::kernels
