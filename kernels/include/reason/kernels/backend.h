// The one backend interface: every op the engine runs, implemented by the CPU backend
// (oneDNN matmuls + OpenMP-threaded vectorised loops) and by the CUDA backend (cuBLAS +
// our kernels). Nothing here knows about models: arguments are raw device pointers,
// element counts and strides.
//
// Ownership: pointers passed to ops are borrowed for the duration of the call.
// Threads: a Backend object is shared; its ops may be called from several threads at once
// (the CPU backend's primitive cache is locked; each call parallelises internally).
// Errors: ops throw reason::kernels::BackendError (a std::runtime_error) naming the op.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "reason/kernels/dtype.h"
#include "reason/kernels/sampling.h"

namespace reason::kernels {

class BackendError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class DeviceKind : uint8_t { CPU = 0, CUDA = 1 };

// y[m, n] = x[m, k] . w[n, k]^T (+ bias[n]) (+ beta * y).
// x and y are f32 (row strides ldx, ldy in elements); w is a weight matrix as Hugging Face
// stores a Linear (out_features rows of in_features), in f32 or bf16, or (CPU backend) in a
// block-quantised type of quant.h with k a multiple of its block. With bf16 weights the rows of x
// are rounded to bf16 and the product accumulates in f32. With quantised weights and m <= 8 the
// rows of x are quantised to int8 per block of 32 (Q8_0/Q4_0/Q4_1) or 256 (K-quants), llama.cpp's
// Q8_0 / Q8_K, and the integer products are summed exactly; larger m multiplies the dequantised
// weights with the f32 rows.
struct MatmulArgs {
  const float* x = nullptr;
  const void* w = nullptr;
  DType w_dtype = DType::F32;
  const float* bias = nullptr;  // f32 [n] or null
  float* y = nullptr;
  int64_t m = 0, n = 0, k = 0;
  int64_t ldx = 0, ldy = 0;  // 0 means packed (k and n)
  float beta = 0.0f;         // 0: overwrite y; 1: accumulate into y
  // Quantised weights: always the dequantised weights times the f32 rows, never int8-rounded
  // activations (training passes, whose backward differentiates exactly that product).
  bool exact = false;
};

// Rows of a paged (block) store: row p at blocks[p / block_size] + (p % block_size) * row_stride
// elements of dtype (F32 or BF16), for p < n_blocks * block_size (ops reject rows past it).
// `blocks` is an array in the backend's memory (the KV cache keeps it there), so a kernel reads it
// where it runs. Several sequences may list the same block (a shared prompt); the cache copies a
// shared block before one of them writes to it.
struct PagedRows {
  void* const* blocks = nullptr;
  int64_t block_size = 0;
  int64_t row_stride = 0;
  DType dtype = DType::F32;
  int64_t n_blocks = 0;
};

// One sequence's queries against its own KV history (causal).
// Query token t (absolute position q_pos0 + t) attends to key positions [0, q_pos0 + t], or with
// AttnArgs::window = W > 0 to the last W of them, (q_pos0 + t - W, q_pos0 + t] (sliding window).
// q:   f32, row t at q + t * q_stride, head h at + h * head_dim
// k,v: contiguous (AttnArgs::block_size == 0): position p at k + p * kv_stride elements of
//      AttnArgs::kv_dtype, kv head g at + g * head_dim; or paged (block_size > 0): position p at
//      k_blocks[p / block_size] + (p % block_size) * kv_stride (PagedRows' layout), and k / v
//      are ignored; n_blocks: the blocks listed (q_pos0 + n_q <= n_blocks * block_size). MLA's
//      absorbed path passes the same rows as keys and values.
// out: f32, same layout as q (n_heads * head_dim per token at out + t * out_stride)
struct AttnSeq {
  const float* q = nullptr;
  float* out = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t n_q = 0;
  int64_t q_pos0 = 0;
  void* const* k_blocks = nullptr;
  void* const* v_blocks = nullptr;
  int64_t n_blocks = 0;
};

struct AttnArgs {
  const AttnSeq* seqs = nullptr;
  int n_seqs = 0;
  int n_heads = 0;
  int n_kv_heads = 0;  // n_heads % n_kv_heads == 0 (grouped-query attention)
  int head_dim = 0;
  int64_t q_stride = 0, out_stride = 0, kv_stride = 0;
  float scale = 1.0f;  // softmax scale, usually 1/sqrt(head_dim)
  DType kv_dtype = DType::F32;  // F32 or BF16 keys and values (scores and sums in f32)
  int64_t block_size = 0;       // 0: contiguous k / v; > 0: paged k_blocks / v_blocks
  int64_t window = 0;           // > 0: sliding-window attention over the last `window` keys
};

// Causal attention over packed variable-length sequences, FlashAttention-2 style: key tiles with a
// running max and sum per query row, so no [n x n] matrix is ever held (memory O(rows)).
// Sequence s is rows [seq_start[s], seq_start[s + 1]) (seq_start[0] = 0, increasing); query row
// i of a sequence attends to that sequence's rows up to and including i (with window = W > 0
// only rows (i - W, i]: sliding-window attention).
// Query head h reads key/value head h / (n_heads / n_kv_heads).
// q: f32 row t at q + t * q_stride, head h at + h * dk;  k: head g at + g * dk (k_stride);
// v: head g at + g * dv (v_stride);  o: f32 row t at o + t * o_stride, head h at + h * dv
// (overwritten). lse (when non-null): f32 [rows, n_heads], the natural log of
// sum_j exp(scale * q . k_j) of each (row, head), which the backward needs.
struct FlashAttnArgs {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  float* o = nullptr;
  float* lse = nullptr;
  const int64_t* seq_start = nullptr;
  int n_seqs = 0;
  int n_heads = 0, n_kv_heads = 0, dk = 0, dv = 0;
  int64_t q_stride = 0, k_stride = 0, v_stride = 0, o_stride = 0;
  float scale = 1.0f;
  int64_t window = 0;  // > 0: sliding window of that many keys
};

// Gradients of attention_fwd_train. fwd.o and fwd.lse are the forward's outputs (read); dout is
// laid out as o, dq / dk / dv as q / k / v, and all three are overwritten (every row is written by
// one work item in a fixed order, so the result does not depend on the number of threads).
// P is recomputed tile by tile from lse. delta: caller workspace f32 [rows, n_heads].
struct FlashAttnBwdArgs {
  FlashAttnArgs fwd;
  const float* dout = nullptr;
  float* dq = nullptr;
  float* dk = nullptr;
  float* dv = nullptr;
  float* delta = nullptr;
};

// One AdamW step over n elements (torch.optim.AdamW, the gradient first scaled by clip):
//   g' = g * clip;  w *= 1 - lr * decay;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;
//   w -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
// with step_size = lr / (1 - b1^t) and bc2_sqrt = sqrt(1 - b2^t) computed by the caller.
struct AdamWArgs {
  float* w = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  const float* g = nullptr;
  int64_t n = 0;
  float lr = 0, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, decay = 0, clip = 1, step_size = 0, bc2_sqrt = 1;
};

// Mixture-of-Experts routing of rows of router logits (every family the engine runs):
//   softmax scoring (Mixtral, Qwen2-MoE, Qwen3-MoE): p = softmax(logits) over all experts, the top_k
//     largest p, weights = their p;
//   sigmoid scoring (DeepSeek-V3/R1, noaux_tc): s = sigmoid(logits); selection uses s + bias (bias:
//     selection only, may be null); with n_group > 1 the experts split into n_group equal groups, a
//     group scores the sum of its two best biased scores, the best topk_group groups are kept and
//     the top_k is taken over their experts; weights = the chosen experts' unbiased s.
//   Then weights /= their sum when norm_topk_prob (+1e-20 for sigmoid scoring), and *= scale.
// idx [rows, top_k] lists the chosen experts by descending selection score (ties: lower id first).
struct MoeRouteArgs {
  const float* logits = nullptr;  // f32 [rows, n_experts]
  const float* bias = nullptr;    // f32 [n_experts] or null
  int64_t rows = 0;
  int n_experts = 0, top_k = 0;
  bool sigmoid = false;
  int n_group = 1, topk_group = 1;
  bool norm_topk_prob = false;
  float scale = 1.0f;  // routed_scaling_factor
  int32_t* idx = nullptr;   // out [rows, top_k]
  float* weight = nullptr;  // out [rows, top_k]
};

// GRPO's per-token policy loss (DeepSeekMath eq. 3 with TRL's options) over n completion tokens:
//   lw = log_weight[t] if given, else logp - old (the per-token log importance weight; GSPO passes
//   its sequence-level mean); r = exp(lw);
//   loss_t = s_t * -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) + beta KL_t, s_t = pg_scale[t] or 1,
//   KL_t: k1 = logp - ref; k2 = (logp - ref)^2 / 2; k3 = exp(ref - logp) - (ref - logp) - 1, with
//   |ref - logp| clamped at 20 and k3 at k3_clamp when k3_clamp > 0 (no gradient where clamped);
//   KL_t times r when kl_ratio_correction. The clipped term carries no gradient where it is the min.
// In double from the f32 inputs. A token with weight 0 is masked: no loss, no gradient, not counted.
//   dlogp[t] = weight[t] * d loss_t / d logp[t] (f32), where lw depends on logp with slope 1
//   (per-token ratios, GSPO-token); with dlog_weight given, dlogp[t] holds only the part with lw
//   held fixed and dlog_weight[t] = weight[t] * d loss_t / d lw (the caller spreads it over the
//   tokens lw was averaged from: GSPO);
//   sums (double[5], summed in token order): sum weight * loss_t, sum KL_t, the tokens clipped below
//   with A < 0, those clipped above with A > 0, and the live tokens.
struct GrpoLossArgs {
  const float* logp = nullptr;        // [n] the policy's logprobs
  const float* old_logp = nullptr;    // [n] the old policy's, or null (r = 1); unused with log_weight
  const float* log_weight = nullptr;  // [n] the log importance weight, or null (logp - old)
  const float* pg_scale = nullptr;    // [n] factor of the policy-gradient term, or null (1)
  const float* ref_logp = nullptr;    // [n] the reference's (required when beta > 0)
  const float* adv = nullptr;         // [n] each token's advantage
  const double* weight = nullptr;     // [n] each token's aggregation weight (0: masked)
  int64_t n = 0;
  float eps_low = 0.2f, eps_high = 0.2f, beta = 0.0f;
  int kl = 3;  // 1: k1, 2: k2, 3: k3
  float k3_clamp = 10.0f;
  bool kl_ratio_correction = false;
  float* dlogp = nullptr;        // out [n]
  float* dlog_weight = nullptr;  // out [n], or null (folded into dlogp)
  double* sums = nullptr;        // out [5]
};

// Logit distillation of rows of student logits against the teacher's (raw logits [rows, n] each,
// with each row's log-sum-exp at the temperature, lse = log sum_j exp(z_j * inv_t)):
//   lp = z_s * inv_t - lse_s, lq = z_t * inv_t - lse_t (f32), s = exp(lp), q = exp(lq), and
//   forward KL  sum_j q (lq - lp),                     g_j = -q_j
//   reverse KL  sum_j s (lp - lq),                     g_j = s_j (lp_j - lq_j + 1)
//   JSD(beta)   sum_j beta q (lq - lm) + (1 - beta) s (lp - lm),  g_j = (1 - beta) s_j (lp_j - lm_j),
//               lm = log(beta q + (1 - beta) s)  (TRL's generalized_jsd_loss)
// with g = d loss / d lp times the row's weight (f32). loss[r] (double) gets the row's loss
// (unweighted), and z_s is overwritten with d loss / d z_s = (g - s * sum_k g_k) * inv_t. A row of
// weight 0 gets loss 0 and a zero gradient. The CPU sums each row in element order; the CUDA backend
// reduces a row within a thread block (the same terms, another order of the sums).
enum class DistillKind : int { ForwardKL = 0, ReverseKL = 1, JSD = 2 };
struct DistillRowsArgs {
  float* z_s = nullptr;          // in: student logits; out: their gradient
  const float* lse_s = nullptr;  // [rows]
  const float* z_t = nullptr;    // teacher logits
  const float* lse_t = nullptr;  // [rows]
  const float* weight = nullptr; // [rows]
  int64_t rows = 0, n = 0;
  float inv_t = 1.0f;
  DistillKind kind = DistillKind::ForwardKL;
  double beta = 0.5;  // JSD only, in (0, 1)
  double* loss = nullptr;  // out [rows]
};

// Collectives between the ranks of a data-parallel job over this backend's own memory (NCCL on
// CUDA), made by Backend::device_collective. Every rank calls the same operations in the same
// order; each is enqueued on the backend's stream and done when the backend synchronises.
// Threads: one thread at a time (the trainer's).
class DeviceCollective {
 public:
  virtual ~DeviceCollective() = default;
  // In-place sum over the ranks of n floats at device pointer p.
  virtual void allreduce_sum(float* p, size_t n) = 0;
  // Root's n floats at p to every rank.
  virtual void broadcast(float* p, size_t n, int root) = 0;
  // Operations between group_start and group_end are fused into one launch (NCCL groups): a
  // bucket of gradient tensors reduced together.
  virtual void group_start() = 0;
  virtual void group_end() = 0;
  // Waits until every collective enqueued so far has completed, polling (NCCL's own calls never
  // time out: a peer that died or hangs would leave this rank waiting forever). Throws
  // BackendError naming the cause when NCCL reports an asynchronous error or timeout_s passes
  // first; the communicator is then aborted (ncclCommAbort) and unusable: the caller ends the job.
  virtual void wait(double timeout_s) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceKind kind() const = 0;
  virtual const char* name() const = 0;
  // Whether the host may dereference this backend's memory (alloc's pointers). Only host code
  // that reads results without a copy asks (DeviceArray::read, Tensor::host); everything else goes
  // through upload / download.
  virtual bool host_addressable() const { return kind() == DeviceKind::CPU; }

  // Device collectives (data parallelism over several processes). device_collective_id makes the
  // opaque id rank 0 shares with every rank (over MPI); device_collective(id, rank, ranks) joins
  // the group, blocking until every rank has. Backends whose memory the host reads (the CPU) have
  // none: their collectives are MPI's on host memory (empty id, nullptr). Throws BackendError when
  // the library behind them cannot be loaded or fails.
  virtual std::string device_collective_id() { return {}; }
  virtual std::unique_ptr<DeviceCollective> device_collective(const std::string& /*id*/, int /*rank*/, int /*ranks*/) {
    return nullptr;
  }

  // Device memory. alloc throws on failure; dealloc(nullptr) is a no-op.
  virtual void* alloc(size_t bytes) = 0;
  virtual void dealloc(void* p) = 0;
  virtual void upload(void* dst_device, const void* src_host, size_t bytes) = 0;
  // bytes zero bytes at p (this backend's memory).
  virtual void fill_zero(void* p, size_t bytes) = 0;
  virtual void download(void* dst_host, const void* src_device, size_t bytes) = 0;
  virtual void synchronize() = 0;

  virtual void matmul(const MatmulArgs& a) = 0;

  // The layout this backend computes fastest with for a [rows, cols] matmul weight stored as t
  // (the CPU: quant.h's x8 layouts for Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1 with rows a multiple of 8);
  // t itself when there is none. pack_weight writes host bytes `src` (t) as `packed` into host
  // memory `dst` (dtype_nbytes(packed, rows * cols) bytes). Called at load, from one thread.
  virtual DType weight_layout(DType t, int64_t rows, int64_t cols) const {
    (void)rows;
    (void)cols;
    return t;
  }
  virtual void pack_weight(void* dst, const void* src, DType t, DType packed, int64_t rows, int64_t cols) {
    (void)dst, (void)src, (void)t, (void)packed, (void)rows, (void)cols;
    throw BackendError(std::string(name()) + ": no packed weight layouts");
  }

  // General row-major f32 GEMM (the BLAS sgemm contract, row-major):
  //   C[m, n] = alpha * op(A) . op(B) + beta * C,  op(X) = X or X^T as trans_a / trans_b say.
  // A is [m, k] (or [k, m] when trans_a) with row stride lda; B is [k, n] (or [n, k] when
  // trans_b) with row stride ldb. Used by the training backward passes (dX = dY . W,
  // dW += dY^T . X).
  virtual void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                        int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) = 0;

  // y[r, :] = x[r, :] * rstd[r] * w,  rstd[r] = 1 / sqrt(mean(x[r, :]^2) + eps)  (w f32 [dim]);
  // y may alias x. rstd (f32 [rows]) may be null; when given it receives the factor y used,
  // which the training backward needs.
  virtual void rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t dim,
                       float eps, float* rstd) = 0;

  // Rotary embedding on the first rot_dim values of every head: pair i < rot_dim/2 rotates by
  // angle pos[t] * inv_freq[i], with cos/sin multiplied by attn_factor (YaRN / llama3 attention
  // scaling; 1 otherwise). The pairs are (i, i + rot_dim/2) in the rotate_half (GPT-NeoX) layout,
  // or (2i, 2i + 1) when interleaved (GPT-J; DeepSeek's rope_interleave: the same rotation as
  // de-interleaving to [evens | odds] then rotate_half, with the values left in place).
  // x: f32, token t head h at x + t * stride + h * head_dim.
  virtual void rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim,
                    int64_t stride, const int32_t* pos, const float* inv_freq,
                    float attn_factor, bool interleaved) = 0;

  virtual void attention(const AttnArgs& a) = 0;
  // Training attention in O(rows) memory (FlashAttnArgs / FlashAttnBwdArgs above).
  virtual void attention_fwd_train(const FlashAttnArgs& a) = 0;
  virtual void attention_bwd(const FlashAttnBwdArgs& a) = 0;

  // out[i] = silu(gate[i]) * up[i] for i < n (row-strided variants are built from rows).
  virtual void silu_mul(float* out, const float* gate, const float* up, int64_t n) = 0;
  // out[i] = gelu(gate[i]) * up[i]: exact GELU 0.5 x (1 + erf(x / sqrt 2)) (transformers' "gelu"),
  // or with tanh_approx its tanh form 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  // ("gelu_pytorch_tanh", "gelu_new", "gelu_fast").
  virtual void gelu_mul(float* out, const float* gate, const float* up, int64_t n, bool tanh_approx) = 0;
  // y[i] += x[i]
  virtual void add_inplace(float* y, const float* x, int64_t n) = 0;

  // dst[r * ldd + c] = src[r * lds + c] for r < rows, c < cols (f32; the regions must not
  // overlap): KV-cache appends, splitting and joining row blocks.
  virtual void copy_2d(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) = 0;

  // Paged KV store (PagedRows above): rows [pos0, pos0 + rows) of dst, columns [col0, col0 + cols),
  // get src's rows (f32, row stride lds), rounded to nearest-even when dst is bf16; and back:
  // dst (f32, row stride ldd) gets those rows of src as f32.
  virtual void paged_write(const PagedRows& dst, int64_t pos0, int64_t col0, const float* src, int64_t lds,
                           int64_t rows, int64_t cols) = 0;
  virtual void paged_read(float* dst, int64_t ldd, const PagedRows& src, int64_t pos0, int64_t col0, int64_t rows,
                          int64_t cols) = 0;
  // bytes from src to dst, both in this backend's memory (must not overlap).
  virtual void copy_bytes(void* dst, const void* src, size_t bytes) = 0;

  // out[r, :] = table[ids[r], :] as f32, for r < n (table [*, dim] in f32, bf16 or f16; the
  // caller has checked the ids).
  virtual void gather_rows(float* out, const void* table, DType dtype, const int32_t* ids, int64_t n,
                           int64_t dim) = 0;

  // ---- Training: the backward ops and the optimizer (f32). Every output element is summed by
  // one thread in a fixed order: results do not depend on the number of threads.
  // Gradient of rmsnorm() given its input x, weight w, row factors rstd and dy:
  //   dx[r] += rstd[r] * w * dy[r] - x[r] * rstd[r]^3 / dim * sum(w * dy[r] * x[r])
  //   dw    += sum over rows (in order) of dy[r] * x[r] * rstd[r]   (dw null: not computed, a frozen weight)
  virtual void rmsnorm_bwd(float* dx, float* dw, const float* x, const float* w, const float* rstd, const float* dy,
                           int64_t rows, int64_t dim) = 0;
  // The transpose of rope() (same arguments; rotates by -angle): rope's gradient, in place.
  virtual void rope_bwd(float* dx, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
                        const int32_t* pos, const float* inv_freq, float attn_factor, bool interleaved) = 0;
  // Gradient of silu_mul(): with s = sigmoid(gate[i]),
  //   dgate[i] = dout[i] * up[i] * s * (1 + gate[i] * (1 - s)),  dup[i] = dout[i] * gate[i] * s.
  virtual void silu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout,
                            int64_t n) = 0;
  // Gradient of gelu_mul(): dgate[i] = dout[i] * up[i] * gelu'(gate[i]), dup[i] = dout[i] * gelu(gate[i]).
  virtual void gelu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t n,
                            bool tanh_approx) = 0;
  // table[ids[r], :] += weights[r] * src[r, :] for r < n (f32 [*, dim]; weights null: 1, no
  // multiplication); repeated ids add in row order. (Embedding and LM-head row gradients, MoE's
  // weighted combine of expert outputs.)
  virtual void scatter_add_rows(float* table, const int32_t* ids, const float* src, const float* weights, int64_t n, int64_t dim) = 0;
  // out[j] += sum over rows i (in order) of x[i, j], x f32 [rows, cols] (a bias gradient).
  virtual void add_column_sums(float* out, const float* x, int64_t rows, int64_t cols) = 0;
  // Inverted dropout with a mask that is a function of (seed, row, column) (kernels/dropout_mask.h,
  // the same on every backend): y[r, c] (+)= keep(seed, r, c, p) ? x[r * ldx + c] / (1 - p) : 0
  // for r < rows, c < cols; y is packed [rows, cols]; accumulate says += or =. LoRA dropout: the
  // forward drops the adapter's input, the backward masks its input gradient with the same mask.
  virtual void dropout_scale(float* y, const float* x, int64_t rows, int64_t cols, int64_t ldx, float p, uint64_t seed,
                             bool accumulate) = 0;
  // Column sums of consecutive groups of rows: out[g * ldo + j] += sum over r < group (in order) of
  // x[(g * group + r) * ldx + j], for g < groups, j < cols (MLA's shared rope key: its gradient is
  // the sum over the heads).
  virtual void add_group_sums(float* out, int64_t ldo, const float* x, int64_t ldx, int64_t groups, int64_t group,
                              int64_t cols) = 0;
  // sum of x[i]^2 in double: blocks of 4096 elements (each summed with up to 16 partial sums),
  // the block sums added in order. A NaN or
  // infinity in x gives a non-finite result.
  virtual double sum_squares(const float* x, int64_t n) = 0;
  // Log-softmax of rows of logits at a temperature, the training losses' core: for row r of z
  // [rows, n] with s = z * inv_t (sums in double):
  //   lse[r] = log sum_j exp(s_j);  logp[r] = s[target[r]] - lse[r];  entropy[r] = lse[r] - sum_j p_j s_j.
  // logp and entropy may be null.
  virtual void logsoftmax_rows(const float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target,
                               float* lse, float* logp, float* entropy) = 0;
  // Its backward for logp: z (the same logits) is overwritten with
  //   dL/dz[r] = dlogp[r] * inv_t * (onehot(target[r]) - exp(s - lse[r])).
  virtual void logsoftmax_rows_bwd(float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target,
                                   const float* lse, const float* dlogp) = 0;
  virtual void adamw_update(const AdamWArgs& a) = 0;

  // GRPO's per-token loss and its gradient (GrpoLossArgs above).
  virtual void grpo_token_loss(const GrpoLossArgs& a) = 0;
  // Logit distillation's loss rows and their gradient to the student's logits (DistillRowsArgs).
  virtual void distill_rows(const DistillRowsArgs& a) = 0;

  // ---- Sampling: the next token of each SampleRow from its logits row (sampling.h): penalty,
  // temperature, top-k / top-p / min-p, a draw with the row's generator, the token's logprob;
  // results in the (host) descriptors. Every backend gives the same token from the same logits
  // and generator state.
  virtual void sample_rows(const SampleArgs& a) = 0;

  // ---- Mixture of Experts (MoeRouteArgs above).
  virtual void moe_route(const MoeRouteArgs& a) = 0;
  // The routing weights' gradient back to the logits: given a's logits, bias and chosen idx (from
  // moe_route; the choice itself is a constant) and dweight [rows, top_k] = dL/dweight,
  // dlogits [rows, n_experts] is overwritten with dL/dlogits.
  virtual void moe_route_bwd(const MoeRouteArgs& a, const float* dweight, float* dlogits) = 0;
  // The routing slots s = t * top_k + j (t < rows) grouped by expert, a stable counting sort of
  // idx (moe_route's): offsets [n_experts + 1] (expert e's slots are positions offsets[e] ..
  // offsets[e + 1] - 1), and at each position p: slots[p] (in increasing order within an expert),
  // tok[p] = slots[p] / top_k and wts[p] = weight[slots[p]]. Every id in idx must be in
  // [0, n_experts) (moe_route's are): the CPU backend rejects others with a BackendError, the
  // CUDA backend, which does not read results back, counts them nowhere and leaves their
  // positions unwritten.
  virtual void moe_group_rows(const int32_t* idx, const float* weight, int64_t rows, int top_k, int n_experts,
                              int32_t* offsets, int32_t* slots, int32_t* tok, float* wts) = 0;
  // For rows i < n, with x_i = src[ids ? ids[i] : i, :] (f32 [*, dim]):
  //   dst[i, :] = scale[i] * x_i (dst may be null);  dots[i] = x_i . y[i, :] (summed in double).
  // (The expert and gate backward: an expert's share of dout and the gradient of its weight.)
  virtual void gather_scale_dot(float* dst, float* dots, const float* src, const int32_t* ids, const float* scale,
                                const float* y, int64_t n, int64_t dim) = 0;
  // A sigmoid-gated residual add (Qwen2-MoE's shared expert): out[r, :] += sigmoid(z[r]) * y[r, :]
  // (f32 [rows, dim], z [rows]); and its backward given dout: dy[r, :] = sigmoid(z[r]) * dout[r, :],
  // dz[r] = (dout[r, :] . y[r, :]) * s (1 - s) (both overwritten).
  virtual void sigmoid_gate_add(float* out, const float* z, const float* y, int64_t rows, int64_t dim) = 0;
  virtual void sigmoid_gate_bwd(float* dy, float* dz, const float* z, const float* y, const float* dout, int64_t rows,
                                int64_t dim) = 0;
};

// The process-wide CPU backend. Never null.
Backend& cpu_backend();

// The CUDA backend on device 0, or nullptr when libreason was built without CUDA, when no
// driver/GPU is present, or when cuBLAS cannot be loaded. The reason is in *why if given.
Backend* cuda_backend(std::string* why = nullptr);

// Number of worker threads used by CPU ops (OpenMP) started from the calling thread: that
// thread's own count when it set one (set_thread_cpu_threads), else the process's
// (set_cpu_threads; 0 restores the default: all cores or $REASON_NUM_THREADS).
int cpu_threads();
void set_cpu_threads(int n);
// The calling thread's own count (0: none, use the process's). Returns the previous one.
int set_thread_cpu_threads(int n);
int thread_cpu_threads();  // 0 when the calling thread has none of its own
// Sets the calling thread's count for a scope (n <= 0: leaves it as it is).
class ScopedCpuThreads {
 public:
  explicit ScopedCpuThreads(int n) : prev_(n > 0 ? set_thread_cpu_threads(n) : thread_cpu_threads()) {}
  ~ScopedCpuThreads() { set_thread_cpu_threads(prev_); }
  ScopedCpuThreads(const ScopedCpuThreads&) = delete;
  ScopedCpuThreads& operator=(const ScopedCpuThreads&) = delete;

 private:
  int prev_;
};

}  // namespace reason::kernels
