#include "model/layers/rmsnorm.h"

#include "reason/kernels/backend.h"

namespace reason {

void rmsnorm_forward(const float* x, const Tensor& w, float* y, float* rstd, int64_t rows, int64_t dim, float eps) {
  kernels::cpu_backend().rmsnorm(y, x, w.data<float>(), rows, dim, eps, rstd);
}

void rmsnorm_backward(const float* x, const Tensor& w, const float* rstd, const float* dy, float* dx, int64_t rows,
                      int64_t dim, const ParamGrads& g) {
  const float* wv = w.data<float>();
  float* dw = g.of(w);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float* gr = dy + r * dim;
    const float rs = rstd[r];
    double dot = 0;
    for (int64_t i = 0; i < dim; ++i) dot += double(wv[i]) * gr[i] * xr[i];
    const float coef = float(dot) * rs * rs * rs / float(dim);
    for (int64_t i = 0; i < dim; ++i) {
      dx[r * dim + i] += rs * wv[i] * gr[i] - coef * xr[i];
      dw[i] += gr[i] * xr[i] * rs;
    }
  }
}

}  // namespace reason
