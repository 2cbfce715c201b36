// Internal to the CPU backend: the op implementations CpuBackend dispatches to.
// All functions parallelise with OpenMP over cpu_threads() threads; pointers are host memory.
// The vectorised loops are per-ISA (isa_ops.h); these are the generic-code entry points.
#pragma once
#include <cstdint>

#include "reason/kernels/backend.h"

namespace reason::kernels::cpu {

// oneDNN matmul (primitive cached by shape/dtype/flags). Used for larger m. bf16 weights run
// as oneDNN bf16 where the ISA path has it (AVX-512), else as f32 on bf16-rounded inputs with
// the weights widened panel by panel (the same products, exact in f32, summed in f32).
void matmul_onednn(const MatmulArgs& a);
// Largest m that the streaming small-m kernel (isa_ops().matmul_small_m) is used for.
constexpr int64_t kSmallM = 8;

// The paged KV store ops of backend.h (paged_kv.cpp).
void paged_write(const PagedRows& dst, int64_t pos0, int64_t col0, const float* src, int64_t lds, int64_t rows,
                 int64_t cols);
void paged_read(float* dst, int64_t ldd, const PagedRows& src, int64_t pos0, int64_t col0, int64_t rows, int64_t cols);

}  // namespace reason::kernels::cpu
