// Internal to kernels/: the parts of MoE routing (backend.h: moe_route, moe_route_bwd) that are
// plain formulas over a token's k chosen experts, compiled by both backends (host_device.h).
#pragma once
#include "host_device.h"

namespace reason::kernels {

// The chosen experts' scores r[0..k) into routing weights, in place: divided by their sum when
// norm (+1e-20 for sigmoid scores), then times scale.
REASON_HD void route_weights(float* w, int k, bool sigmoid, bool norm, float scale) {
  if (norm) {
    float s = 0.0f;
    for (int j = 0; j < k; ++j) s += w[j];
    const float denom = sigmoid ? s + 1e-20f : s;
    for (int j = 0; j < k; ++j) w[j] /= denom;
  }
  for (int j = 0; j < k; ++j) w[j] *= scale;
}

// route_weights' backward: dr[j] = dL/dw[j] in, dL/dr[j] out (r: the chosen experts' scores).
REASON_HD void route_weights_bwd(float* dr, const float* r, int k, bool sigmoid, bool norm, float scale) {
  for (int j = 0; j < k; ++j) dr[j] *= scale;
  if (!norm) return;
  double S = 0, dot = 0;
  for (int j = 0; j < k; ++j) {
    S += r[j];
    dot += double(dr[j]) * r[j];
  }
  if (sigmoid) S += 1e-20;
  for (int j = 0; j < k; ++j) dr[j] = float((double(dr[j]) - dot / S) / S);
}

}  // namespace reason::kernels
