// This ISA path's table of loops (isa_ops.h).
// Compiled once per ISA path (isa_vec.h says the rules).
#include "../cpu_ops.h"
#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

void matmul_small_m(const MatmulArgs& a);
void quant_rows(const QuantRowsArgs& a, int64_t j0, int64_t j1);
void quantize_act(const float* x, int64_t k, bool k_quant, uint8_t* out);
bool dequantize_rows(DType t, const uint8_t* src, float* dst, int64_t n);
void rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* rstd);
void rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
          const int32_t* pos, const float* inv_freq, float attn_factor, bool interleaved);
void attention(const AttnArgs& a);
void flash_attention_fwd(const FlashAttnArgs& a);
void flash_attention_bwd(const FlashAttnBwdArgs& a);
void silu_mul(float* out, const float* gate, const float* up, int64_t n);
void add_inplace(float* y, const float* x, int64_t n);
double scaled_exp_sum(const float* z, int64_t n, float scale, float shift, float* out, double* dot);
float row_max(const float* z, int64_t n);
size_t f16_to_f32(float* dst, const uint16_t* src, size_t n);
void bf16_to_f32(float* dst, const uint16_t* src, size_t n);
void rmsnorm_bwd(float* dx, float* dw, const float* x, const float* w, const float* rstd, const float* dy,
                 int64_t rows, int64_t dim);
void rope_bwd(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride, const int32_t* pos,
              const float* inv_freq, float attn_factor, bool interleaved);
void silu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t n);
void scatter_add_rows(float* table, const int32_t* ids, const float* src, const float* weights, int64_t n, int64_t dim);
void add_column_sums(float* out, const float* x, int64_t rows, int64_t cols);
double sum_squares_blocked(const float* x, int64_t n);
void adamw_update(const AdamWArgs& a);

const IsaOps& table() {
  static const IsaOps ops{REASON_ISA_ENUM, matmul_small_m, quant_rows, quantize_act, dequantize_rows, rmsnorm, rope, attention,
                          flash_attention_fwd, flash_attention_bwd, silu_mul, add_inplace,
                          scaled_exp_sum, row_max, f16_to_f32, bf16_to_f32,
                          rmsnorm_bwd, rope_bwd, silu_mul_bwd, scatter_add_rows, add_column_sums,
                          sum_squares_blocked, adamw_update};
  return ops;
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
