// Internal to the CPU backend: the table of per-ISA loops (kernels/cpu/isa/, compiled once per
// ISA path) and the helpers those loops take from generic code.
#pragma once
#include <cstddef>
#include <cstdint>

#include "reason/kernels/backend.h"
#include "reason/kernels/cpu_isa.h"

namespace reason::kernels::cpu {

// Activation rows quantised for the quantised-weight dot products (quant_dot.cpp): int8 values
// with an f32 scale per block, so the products with the weights' integers are exact.
struct ActQ8 {  // 32 values, for Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1 weights
  float d;      // x ~= d * qs
  float s;      // d * sum(qs) (Q4_1's min term)
  int32_t sum;  // sum(qs) (the x8 kernels' offset term: (q - 8) . x = q . x - 8 sum)
  int8_t qs[32];
};
struct ActQ8K {       // 256 values, for the K-quants (ggml's block_q8_K)
  float d;
  int16_t bsums[16];  // sums of qs by 16
  int8_t qs[256];
};

// y[i, j] for weight rows j0 <= j < j1 and activation rows i < m: the quantised row j of w
// (`blocks` blocks of wt) dotted with activation row i (ActQ8 or ActQ8K blocks), + bias[j], + beta y.
// For an x8 layout (dtype_row_group(wt) == 8) j0 and j1 are multiples of 8 and w_row_bytes is still
// the bytes of one row (a group of 8 rows takes 8 of them).
struct QuantRowsArgs {
  DType wt = DType::Q8_0;
  const uint8_t* w = nullptr;
  size_t w_row_bytes = 0;
  int64_t blocks = 0;
  const uint8_t* xq = nullptr;
  size_t xq_row_bytes = 0;
  int64_t m = 0;
  float* y = nullptr;
  int64_t ldy = 0;
  const float* bias = nullptr;
  float beta = 0.0f;
};

// Whether the AVX-512 path's quantised kernels use AVX512-VNNI (vpdpbusd): the CPU has it and
// REASON_CPU_VNNI is not 0 (tests force both). Generic code (cpu_isa.cpp); decided once.
bool int8_vnni();

struct IsaOps {
  CpuIsa isa;
  // Small-m matmul (decode): each weight row streamed once for all m <= kSmallM rows of x.
  void (*matmul_small_m)(const MatmulArgs& a);
  // Quantised weights (QuantRowsArgs above), rows j0 <= j < j1; the caller splits rows over threads.
  void (*quant_rows)(const QuantRowsArgs& a, int64_t j0, int64_t j1);
  // One activation row of k values (whole blocks) to int8 blocks: ActQ8K super-blocks for the
  // K-quants (k_quant), else ActQ8 blocks (quant_act.cpp).
  void (*quantize_act)(const float* x, int64_t k, bool k_quant, uint8_t* out);
  // n elements of a quantised row to f32 (quant.h's dequantize_row, vectorised; FMA may contract
  // d * q - m). False for a type that is not quantised or partial blocks.
  bool (*dequantize_rows)(DType t, const uint8_t* src, float* dst, int64_t n);
  void (*rmsnorm)(float* y, const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* rstd);
  void (*rope)(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
               const int32_t* pos, const float* inv_freq, float attn_factor, bool interleaved);
  void (*attention)(const AttnArgs& a);
  void (*flash_attention_fwd)(const FlashAttnArgs& a);
  void (*flash_attention_bwd)(const FlashAttnBwdArgs& a);
  void (*silu_mul)(float* out, const float* gate, const float* up, int64_t n);
  void (*add_inplace)(float* y, const float* x, int64_t n);
  double (*scaled_exp_sum)(const float* z, int64_t n, float scale, float shift, float* out, double* dot);
  float (*row_max)(const float* z, int64_t n);
  // Widens a prefix of src (a multiple of 8 with F16C, none on the generic path); returns its length.
  size_t (*f16_to_f32)(float* dst, const uint16_t* src, size_t n);
  // Widens bf16 to f32 (exact).
  void (*bf16_to_f32)(float* dst, const uint16_t* src, size_t n);
  // Training (train_ops.cpp; backend.h documents each).
  void (*rmsnorm_bwd)(float* dx, float* dw, const float* x, const float* w, const float* rstd, const float* dy,
                      int64_t rows, int64_t dim);
  void (*rope_bwd)(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
                   const int32_t* pos, const float* inv_freq, float attn_factor, bool interleaved);
  void (*silu_mul_bwd)(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t n);
  void (*scatter_add_rows)(float* table, const int32_t* ids, const float* src, const float* weights, int64_t n, int64_t dim);
  void (*add_column_sums)(float* out, const float* x, int64_t rows, int64_t cols);
  double (*sum_squares)(const float* x, int64_t n);
  void (*adamw_update)(const AdamWArgs& a);
};

namespace isa_generic { const IsaOps& table(); }
namespace isa_avx2 { const IsaOps& table(); }
namespace isa_avx512 { const IsaOps& table(); }

// The table of the path in use (cpu_isa()).
const IsaOps& isa_ops();

// Per-thread scratch memory, at least `bytes` long, 64-byte aligned. slot < 4 picks one of
// several independent buffers. Valid until the same thread asks for the same slot again.
void* thread_scratch(size_t bytes, int slot);

// v rounded to the nearest f16 and widened back (dtype.h's f16 conversions), for the per-ISA files.
float f16_round(float v);

}  // namespace reason::kernels::cpu
