// Internal to kernels/: one element of logit distillation (backend.h: distill_rows), compiled for
// the host (CPU backend) and the device (CUDA backend, by nvcc), so both compute the same formula.
#pragma once
#include <math.h>

#include "host_device.h"

namespace reason::kernels {

struct DistillTerm {
  double loss;  // this element's share of the row's divergence
  float g;      // d loss / d lp, times the row weight (f32, as the row buffer holds it)
  double s;     // exp(lp)
};

// kind: 0 forward KL, 1 reverse KL, 2 JSD; lb / l1b: log(beta) / log(1 - beta) (JSD).
REASON_HD DistillTerm distill_term(float zs, float lse_s, float zt, float lse_t, float inv_t, int kind, double beta,
                                   double lb, double l1b, float w) {
  const float lp = zs * inv_t - lse_s, lq = zt * inv_t - lse_t;
  const double s = exp(double(lp)), q = exp(double(lq));
  DistillTerm o{0.0, 0.0f, s};
  if (kind == 0) {
    o.loss = q * (double(lq) - lp);
    o.g = float(-q * w);
  } else if (kind == 1) {
    o.loss = s * (double(lp) - lq);
    o.g = float(s * (double(lp) - lq + 1.0) * w);
  } else {
    const double a = double(lp) + l1b, b = double(lq) + lb;
    const double lm = (a > b ? a : b) + log1p(exp(-fabs(a - b)));  // log of the mixture
    o.loss = beta * q * (double(lq) - lm) + (1.0 - beta) * s * (double(lp) - lm);
    o.g = float((1.0 - beta) * s * (double(lp) - lm) * w);
  }
  return o;
}

}  // namespace reason::kernels
