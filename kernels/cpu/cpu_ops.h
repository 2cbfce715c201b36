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
// bf16 or quantised weights through oneDNN f32: panels of w widened / dequantised to f32 (a few MB,
// reused for all m rows); for bf16 the rows of x are first rounded to bf16 (matmul_onednn.cpp).
void matmul_dequantized(const MatmulArgs& a, int64_t ldx, int64_t ldy);
// Block-quantised weights (matmul_quant.cpp): integer dot kernels for m <= kSmallM, else
// matmul_dequantized. k must be a multiple of the block (BackendError otherwise).
void matmul_quant(const MatmulArgs& a);
// Largest m that the streaming small-m kernel (isa_ops().matmul_small_m) is used for.
constexpr int64_t kSmallM = 8;

// The paged KV store ops of backend.h (paged_kv.cpp).
void paged_write(const PagedRows& dst, int64_t pos0, int64_t col0, const float* src, int64_t lds, int64_t rows,
                 int64_t cols);
void paged_read(float* dst, int64_t ldd, const PagedRows& src, int64_t pos0, int64_t col0, int64_t rows, int64_t cols);

// GRPO's per-token loss (loss_ops.cpp).
void grpo_token_loss(const GrpoLossArgs& a);
void distill_rows(const DistillRowsArgs& a);

// Next-token sampling over rows of logits (sampling.cpp).
void sample_rows(const SampleArgs& a);

// The Mixture-of-Experts ops of backend.h (moe_ops.cpp).
void moe_route(const MoeRouteArgs& a);
void moe_route_bwd(const MoeRouteArgs& a, const float* dweight, float* dlogits);
void moe_group_rows(const int32_t* idx, const float* weight, int64_t rows, int top_k, int n_experts, int32_t* offsets,
                    int32_t* slots, int32_t* tok, float* wts);
void gather_scale_dot(float* dst, float* dots, const float* src, const int32_t* ids, const float* scale, const float* y,
                      int64_t n, int64_t dim);
void sigmoid_gate_add(float* out, const float* z, const float* y, int64_t rows, int64_t dim);
void sigmoid_gate_bwd(float* dy, float* dz, const float* z, const float* y, const float* dout, int64_t rows, int64_t dim);

}  // namespace reason::kernels::cpu
