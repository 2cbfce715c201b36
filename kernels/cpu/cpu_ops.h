// Internal to the CPU backend: the op implementations CpuBackend dispatches to.
// All functions parallelise with OpenMP over cpu_threads() threads; pointers are host memory.
#pragma once
#include <cstdint>

#include "reason/kernels/backend.h"

namespace reason::kernels::cpu {

// oneDNN matmul (primitive cached by shape/dtype/flags). Used for larger m.
void matmul_onednn(const MatmulArgs& a);
// Streaming kernel for small m (decode): reads each weight row once for all m rows of x.
// bf16 weights use AVX512-BF16 dot products when the CPU has them.
void matmul_small_m(const MatmulArgs& a);
// Largest m that matmul_small_m is used for.
constexpr int64_t kSmallM = 8;

void rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t dim, float eps);
void rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
          const int32_t* pos, const float* inv_freq, float attn_factor);
void attention(const AttnArgs& a);
void silu_mul(float* out, const float* gate, const float* up, int64_t n);
void add_inplace(float* y, const float* x, int64_t n);

}  // namespace reason::kernels::cpu
