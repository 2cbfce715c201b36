#include "model/layers/embedding.h"

#include <cstring>

#include "reason/kernels/dtype.h"

namespace reason {

void embedding_forward(const Tensor& table, const int32_t* tokens, int64_t n, float* x) {
  const int64_t d = table.dim(1);
  for (int64_t t = 0; t < n; ++t) {
    const size_t row = size_t(tokens[t]) * size_t(d);
    if (table.dtype() == DType::F32)
      std::memcpy(x + t * d, table.data<float>() + row, size_t(d) * 4);
    else
      kernels::convert_to_f32(x + t * d, table.data<uint16_t>() + row, table.dtype(), size_t(d));
  }
}

void embedding_backward(const Tensor& table, const int32_t* tokens, int64_t n, const float* dx, const ParamGrads& g) {
  const int64_t d = table.dim(1);
  float* dE = g.of(table);
  for (int64_t t = 0; t < n; ++t) {
    float* row = dE + int64_t(tokens[t]) * d;
    for (int64_t j = 0; j < d; ++j) row[j] += dx[t * d + j];
  }
}

}  // namespace reason
