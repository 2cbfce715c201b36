#include "model/layers/embedding.h"

#include "reason/kernels/backend.h"

namespace reason {

void embedding_forward(kernels::Backend& be, const Tensor& table, const int32_t* tokens, int64_t n, float* x) {
  be.gather_rows(x, table.raw(), table.dtype(), tokens, n, table.dim(1));
}

void embedding_backward(kernels::Backend& be, const Tensor& table, const int32_t* tokens, int64_t n, const float* dx, const ParamGrads& g) {
  if (float* dt = g.of(table)) be.scatter_add_rows(dt, tokens, dx, nullptr, n, table.dim(1));  // null: frozen
}

}  // namespace reason
