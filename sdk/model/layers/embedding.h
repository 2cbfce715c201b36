// The token embedding, forward (row gather, f32 or bf16 table) and backward (row scatter-add).
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "model/layers/linear.h"

namespace reason {

// x[t, d] = table[tokens[t]] in f32, for t < n. Ids must be valid (the caller checks them).
void embedding_forward(kernels::Backend& be, const Tensor& table, const int32_t* tokens, int64_t n, float* x);

// dTable[tokens[t]] += dx[t] for t < n (f32 table).
void embedding_backward(kernels::Backend& be, const Tensor& table, const int32_t* tokens, int64_t n, const float* dx, const ParamGrads& g);

}  // namespace reason
