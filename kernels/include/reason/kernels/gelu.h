// GELU and its derivative, exact (erf) and tanh-approximated, as torch.nn.functional.gelu
// computes them (approximate="none" / "tanh"); shared by the CPU backend and the tests.
#pragma once
#include <cmath>

namespace reason::kernels {

inline float gelu(float x, bool tanh_approx) {
  if (tanh_approx) {
    const float k = 0.7978845608028654f;  // sqrt(2 / pi)
    return 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x)));
  }
  return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
}

inline float gelu_grad(float x, bool tanh_approx) {
  if (tanh_approx) {
    const float k = 0.7978845608028654f, inner = k * (x + 0.044715f * x * x * x), t = std::tanh(inner);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * x * x);
  }
  const float cdf = 0.5f * (1.0f + std::erf(x * 0.7071067811865476f));
  const float pdf = 0.3989422804014327f * std::exp(-0.5f * x * x);  // 1 / sqrt(2 pi)
  return cdf + x * pdf;
}

}  // namespace reason::kernels
