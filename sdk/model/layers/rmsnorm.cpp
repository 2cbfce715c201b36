#include "model/layers/rmsnorm.h"

#include "reason/kernels/backend.h"

namespace reason {

void rmsnorm_forward(kernels::Backend& be, const float* x, const Tensor& w, float* y, float* rstd, int64_t rows, int64_t dim, float eps) {
  be.rmsnorm(y, x, w.data<float>(), rows, dim, eps, rstd);
}

void rmsnorm_backward(kernels::Backend& be, const float* x, const Tensor& w, const float* rstd, const float* dy, float* dx, int64_t rows,
                      int64_t dim, const ParamGrads& g) {
  be.rmsnorm_bwd(dx, g.of(w) /* null: frozen */, x, w.data<float>(), rstd, dy, rows, dim);
}

}  // namespace reason
