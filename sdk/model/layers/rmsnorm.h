// RMSNorm, forward (a backend op) and backward.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "model/layers/linear.h"

namespace reason {

// y[r] = w * x[r] * rstd[r], rstd[r] = 1 / sqrt(mean(x[r]^2) + eps) over `rows` rows of `dim`
// (w f32 [dim]); y may alias x; rstd (nullable) keeps each row's factor for the backward.
void rmsnorm_forward(kernels::Backend& be, const float* x, const Tensor& w, float* y, float* rstd, int64_t rows, int64_t dim, float eps);

// dx += r * (w * dy) - x * r^3 / dim * sum(w * dy * x);  dW += sum over rows of dy * x * r,
// given the forward's x and rstd.
void rmsnorm_backward(kernels::Backend& be, const float* x, const Tensor& w, const float* rstd, const float* dy, float* dx, int64_t rows,
                      int64_t dim, const ParamGrads& g);

}  // namespace reason
