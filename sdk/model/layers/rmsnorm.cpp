#include "model/layers/rmsnorm.h"

#include "reason/kernels/backend.h"

namespace reason {

void rmsnorm_forward(const float* x, const Tensor& w, float* y, float* rstd, int64_t rows, int64_t dim, float eps) {
  kernels::cpu_backend().rmsnorm(y, x, w.data<float>(), rows, dim, eps, rstd);
}

void rmsnorm_backward(const float* x, const Tensor& w, const float* rstd, const float* dy, float* dx, int64_t rows,
                      int64_t dim, const ParamGrads& g) {
  kernels::cpu_backend().rmsnorm_bwd(dx, g.of(w), x, w.data<float>(), rstd, dy, rows, dim);
}

}  // namespace reason
