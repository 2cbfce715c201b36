// Launchers for the CUDA backend's own kernels (everything except the cuBLAS matmul).
// Each enqueues work on `stream` and returns cudaGetLastError() of the launch (cudaSuccess when
// there was nothing to do); errors of the asynchronous execution surface at the next
// synchronisation. All pointers are device pointers; arguments were validated by the caller.
// Compiled by nvcc (cuda_kernels.cu); this header is plain C++ so host code built by the C++
// compiler can call it.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace reason::kernels::cuda {

// Writes 0x5eed to *out: proves that this binary carries a kernel image the device can run.
cudaError_t launch_probe(int* out, cudaStream_t stream);

// dst[r * k + c] = bf16(src[r * ldx + c]) (round to nearest even); dst is packed [m, k].
cudaError_t launch_f32_to_bf16_rows(uint16_t* dst, const float* src, int64_t m, int64_t k,
                                    int64_t ldx, cudaStream_t stream);

// y[r * ldy + c] += bias[c] for r < m, c < n.
cudaError_t launch_add_bias_rows(float* y, const float* bias, int64_t m, int64_t n, int64_t ldy,
                                 cudaStream_t stream);

// Fused RMSNorm, one block per row; y may alias x; rstd (nullable) receives each row's factor.
cudaError_t launch_rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t dim,
                           float eps, float* rstd, cudaStream_t stream);

// rotate_half RoPE on the first rot_dim (even, <= head_dim) values of every head, in place.
// interleaved: pairs (2i, 2i + 1) instead of (i, i + rot_dim / 2).
cudaError_t launch_rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim,
                        int64_t stride, const int32_t* pos, const float* inv_freq,
                        float attn_factor, bool interleaved, cudaStream_t stream);

// out = gelu(gate) * up (tanh_approx: the tanh form) and its gradient (reason/kernels/gelu.h's math).
cudaError_t launch_gelu_mul(float* out, const float* gate, const float* up, int64_t n, int tanh_approx, cudaStream_t stream);
cudaError_t launch_gelu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t n,
                                int tanh_approx, cudaStream_t stream);
cudaError_t launch_silu_mul(float* out, const float* gate, const float* up, int64_t n,
                            cudaStream_t stream);
cudaError_t launch_add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream);

// One sequence of a batched causal attention launch (device pointers; host-side struct).
// Keys / values: contiguous (block_size 0: position p at k + p * kv_stride elements) or paged
// (position p at k_blocks[p / block_size] + (p % block_size) * kv_stride; the block tables are
// device arrays); elements are f32 or bf16 (AttnShape::kv_bf16).
struct AttnSeqDev {
  const float* q;
  float* out;
  const void* k;
  const void* v;
  void* const* k_blocks;
  void* const* v_blocks;
  int64_t n_q;
  int64_t q_pos0;
  int64_t tok0;  // index of this sequence's first query token within the chunk
};

// Sequences are passed to the kernel by value, kAttnChunk at a time (kernel parameter space).
constexpr int kAttnChunk = 32;
struct AttnChunk {
  AttnSeqDev seq[kAttnChunk];
  int n_seqs;
  int64_t n_tokens;  // sum of n_q over the chunk; < 2^31
};

struct AttnShape {
  int n_heads, n_kv_heads, head_dim;
  int64_t q_stride, out_stride, kv_stride;
  float scale;
  int64_t block_size;  // 0: contiguous keys and values
  int kv_bf16;         // 1: bf16 keys and values, 0: f32
  int64_t window;      // > 0: sliding window of that many keys
};

// Paged KV store rows (backend.h's PagedRows; blocks is a device array): rows [pos0, pos0 + rows),
// columns [col0, col0 + cols) written from / read to f32 (dst_bf16 / src_bf16: the store's dtype).
cudaError_t launch_paged_write(void* const* blocks, int64_t block_size, int64_t row_stride, int bf16, int64_t pos0,
                               int64_t col0, const float* src, int64_t lds, int64_t rows, int64_t cols,
                               cudaStream_t stream);
cudaError_t launch_paged_read(float* dst, int64_t ldd, void* const* blocks, int64_t block_size, int64_t row_stride,
                              int bf16, int64_t pos0, int64_t col0, int64_t rows, int64_t cols, cudaStream_t stream);

// ---- loss_kernels.cu: backend.h's grpo_token_loss (GrpoLossArgs, as plain fields, validated).
struct GrpoLossDev {
  const float* logp;
  const float* old_logp;
  const float* log_weight;
  const float* pg_scale;
  const float* ref_logp;
  const float* adv;
  const double* weight;
  int64_t n;
  float eps_low, eps_high, beta;
  int kl;
  float k3_clamp;
  int kl_ratio_correction;
  float* dlogp;
  float* dlog_weight;
  double* sums;
};
cudaError_t launch_grpo_token_loss(const GrpoLossDev& a, cudaStream_t stream);
// backend.h's distill_rows (validated): one block per row, the row's sums reduced in the block.
struct DistillRowsDev {
  float* z_s;
  const float* lse_s;
  const float* z_t;
  const float* lse_t;
  const float* weight;
  int64_t rows, n;
  float inv_t;
  int kind;
  double beta;
  double* loss;
};
cudaError_t launch_distill_rows(const DistillRowsDev& a, cudaStream_t stream);

// ---- moe_kernels.cu: backend.h's Mixture-of-Experts ops (MoeRouteArgs, as plain fields; the
// caller has validated them: top_k <= 64, n_group <= 64).
struct MoeRouteDev {
  const float* logits;
  const float* bias;
  int64_t rows;
  int n_experts, top_k;
  int sigmoid;
  int n_group, topk_group;
  int norm_topk_prob;
  float scale;
  int32_t* idx;
  float* weight;
};
cudaError_t launch_moe_route(const MoeRouteDev& a, cudaStream_t stream);
cudaError_t launch_moe_route_bwd(const MoeRouteDev& a, const float* dweight, float* dlogits, cudaStream_t stream);
// out[g * ldo + j] += sum over r < group (in order) of x[(g * group + r) * ldx + j]: one thread per
// output element.
cudaError_t launch_add_group_sums(float* out, int64_t ldo, const float* x, int64_t ldx, int64_t groups, int64_t group,
                                  int64_t cols, cudaStream_t stream);
// Slots grouped by expert (ids outside [0, n_experts) are counted nowhere and leave their
// positions unwritten; the CPU backend rejects them).
cudaError_t launch_moe_group_rows(const int32_t* idx, const float* weight, int64_t n_slots, int top_k, int n_experts,
                                  int32_t* offsets, int32_t* slots, int32_t* tok, float* wts, cudaStream_t stream);
cudaError_t launch_gather_scale_dot(float* dst, float* dots, const float* src, const int32_t* ids, const float* scale,
                                    const float* y, int64_t n, int64_t dim, cudaStream_t stream);
cudaError_t launch_sigmoid_gate_add(float* out, const float* z, const float* y, int64_t rows, int64_t dim,
                                    cudaStream_t stream);
cudaError_t launch_sigmoid_gate_bwd(float* dy, float* dz, const float* z, const float* y, const float* dout,
                                    int64_t rows, int64_t dim, cudaStream_t stream);

// One block per (query token, head) of the chunk; online softmax over the causal keys.
cudaError_t launch_attention(const AttnChunk& chunk, const AttnShape& shape, cudaStream_t stream);

// ---- train_kernels.cu: the training ops of backend.h. Column reductions give one thread per
// column, summing rows in order (results independent of the launch shape).
// table_dtype: 0 f32, 1 bf16, 2 f16.
cudaError_t launch_gather_rows(float* out, const void* table, int table_dtype, const int32_t* ids, int64_t n,
                               int64_t dim, cudaStream_t stream);
cudaError_t launch_rmsnorm_bwd(float* dx, float* dw, const float* x, const float* w, const float* rstd,
                               const float* dy, int64_t rows, int64_t dim, cudaStream_t stream);
cudaError_t launch_rope_bwd(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
                            const int32_t* pos, const float* inv_freq, float attn_factor, bool interleaved,
                            cudaStream_t stream);
cudaError_t launch_silu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout,
                                int64_t n, cudaStream_t stream);
cudaError_t launch_scatter_add_rows(float* table, const int32_t* ids, const float* src, const float* weights, int64_t n, int64_t dim,
                                    cudaStream_t stream);
cudaError_t launch_add_column_sums(float* out, const float* x, int64_t rows, int64_t cols, cudaStream_t stream);
cudaError_t launch_dropout_scale(float* y, const float* x, int64_t rows, int64_t cols, int64_t ldx, float p, uint64_t seed,
                                 bool accumulate, cudaStream_t stream);
// partial[b] = sum of x[i]^2 (double) over block b of 4096 elements.
constexpr int64_t kSumSquaresBlock = 4096;
cudaError_t launch_sum_squares_blocks(double* partial, const float* x, int64_t n, cudaStream_t stream);
// One block per row; sums in double as on the CPU.
cudaError_t launch_logsoftmax_rows(const float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target,
                                   float* lse, float* logp, float* entropy, cudaStream_t stream);
cudaError_t launch_logsoftmax_rows_bwd(float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target,
                                       const float* lse, const float* dlogp, cudaStream_t stream);
cudaError_t launch_adamw(float* w, float* m, float* v, const float* g, int64_t n, float lr, float beta1, float beta2,
                         float eps, float decay, float clip, float step_size, float bc2_sqrt, cudaStream_t stream);

}  // namespace reason::kernels::cuda
