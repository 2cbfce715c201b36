// The CPU backend: host memory, oneDNN matmuls for larger m, our own streaming kernels for
// small m, and OpenMP-threaded loops for everything else.
#include <omp.h>

#include <dnnl.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include <sys/mman.h>

#include "../dropout_mask.h"
#include "cpu_ops.h"
#include "isa_ops.h"
#include "reason/kernels/cpu_math.h"
#include "reason/kernels/gelu.h"
#include "reason/kernels/quant.h"

namespace reason::kernels {

namespace {

std::atomic<int> g_threads{0};
constexpr size_t kHugePageBytes = size_t(2) << 20;

void check_flash(const FlashAttnArgs& a, const char* op) {
  const std::string o(op);
  if (!a.q || !a.k || !a.v || !a.seq_start || a.n_seqs < 0) throw BackendError(o + ": null pointer or negative n_seqs");
  if (a.n_kv_heads <= 0 || a.n_heads <= 0 || a.n_heads % a.n_kv_heads)
    throw BackendError(o + ": n_heads must be a positive multiple of n_kv_heads");
  if (a.dk <= 0 || a.dv <= 0) throw BackendError(o + ": head dims must be positive");
  if (a.q_stride < int64_t(a.n_heads) * a.dk || a.k_stride < int64_t(a.n_kv_heads) * a.dk ||
      a.v_stride < int64_t(a.n_kv_heads) * a.dv || a.o_stride < int64_t(a.n_heads) * a.dv)
    throw BackendError(o + ": a row stride is smaller than heads x head dim");
  if (a.seq_start[0] != 0) throw BackendError(o + ": seq_start[0] must be 0");
  for (int s = 0; s < a.n_seqs; ++s)
    if (a.seq_start[s + 1] < a.seq_start[s]) throw BackendError(o + ": seq_start must not decrease");
}

class CpuBackend final : public Backend {
 public:
  DeviceKind kind() const override { return DeviceKind::CPU; }
  const char* name() const override { return "cpu"; }

  void* alloc(size_t bytes) override {
    // Large buffers (gradients, optimizer state, KV-cache pools) get 2 MiB alignment and
    // transparent huge pages, as host tensors do (core/tensor.cpp): they are streamed every step.
    const size_t align = bytes >= kHugePageBytes * 2 ? kHugePageBytes : 64;
    const size_t rounded = (bytes + align - 1) / align * align;
    void* p = std::aligned_alloc(align, rounded ? rounded : align);
    if (!p) throw BackendError("cpu alloc: out of memory for " + std::to_string(bytes) + " bytes");
    if (align == kHugePageBytes) ::madvise(p, rounded, MADV_HUGEPAGE);
    return p;
  }
  void fill_zero(void* p, size_t bytes) override {
    if (bytes && !p) throw BackendError("cpu fill_zero: null pointer");
    if (bytes) std::memset(p, 0, bytes);
  }
  void dealloc(void* p) override { std::free(p); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void synchronize() override {}

  void matmul(const MatmulArgs& a) override {
    if (!a.x || !a.w || !a.y || a.m < 0 || a.n < 0 || a.k < 0)
      throw BackendError("cpu matmul: null pointer or negative size");
    if (a.w_dtype != DType::F32 && a.w_dtype != DType::BF16 && !dtype_is_quantized(a.w_dtype))
      throw BackendError(std::string("cpu matmul: unsupported weight dtype ") + dtype_name(a.w_dtype));
    if (a.m == 0 || a.n == 0) return;
    if (dtype_is_quantized(a.w_dtype))
      cpu::matmul_quant(a);
    else if (a.m <= cpu::kSmallM)
      cpu::isa_ops().matmul_small_m(a);
    else
      cpu::matmul_onednn(a);
  }
  DType weight_layout(DType t, int64_t rows, int64_t cols) const override {
    // REASON_CPU_PACK=0 keeps weights as stored (for A/B measurements of the x8 kernels).
    static const bool off = [] {
      const char* e = std::getenv("REASON_CPU_PACK");
      return e && std::string(e) == "0";
    }();
    const DType x8 = off ? t : x8_layout_of(t);
    return x8 != t && rows > 0 && rows % 8 == 0 && cols > 0 && cols % dtype_block_elems(t) == 0 ? x8 : t;
  }
  void pack_weight(void* dst, const void* src, DType t, DType packed, int64_t rows, int64_t cols) override {
    if (!dst || !src) throw BackendError("cpu pack_weight: null pointer");
    if (packed != weight_layout(t, rows, cols) || dtype_block_format(packed) != t ||
        !pack_x8(packed, src, dst, rows, cols))
      throw BackendError(std::string("cpu pack_weight: cannot pack ") + dtype_name(t) + " [" + std::to_string(rows) +
                         ", " + std::to_string(cols) + "] as " + dtype_name(packed));
  }
  void gemm_f32(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override {
    if (m < 0 || n < 0 || k < 0) throw BackendError("cpu gemm_f32: negative size");
    if (m == 0 || n == 0) return;
    cpu::isa_ops();  // caps oneDNN's ISA before its first use
    omp_set_num_threads(cpu_threads());
    const dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (st != dnnl_success) throw BackendError("cpu gemm_f32: dnnl_sgemm failed with status " + std::to_string(int(st)));
  }
  void rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* rstd) override {
    if (rows < 0 || dim < 0) throw BackendError("cpu rmsnorm: negative size");
    cpu::isa_ops().rmsnorm(y, x, w, rows, dim, eps, rstd);
  }
  void rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
            const int32_t* pos, const float* inv_freq, float attn_factor, bool interleaved) override {
    if (rot_dim <= 0 || rot_dim > head_dim || rot_dim % 2) throw BackendError("cpu rope: bad rot_dim");
    cpu::isa_ops().rope(x, n_tokens, n_heads, head_dim, rot_dim, stride, pos, inv_freq, attn_factor, interleaved);
  }
  void attention(const AttnArgs& a) override {
    if (a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads) throw BackendError("cpu attention: n_heads % n_kv_heads != 0");
    if (a.kv_dtype != DType::F32 && a.kv_dtype != DType::BF16)
      throw BackendError(std::string("cpu attention: unsupported KV dtype ") + dtype_name(a.kv_dtype));
    if (a.block_size < 0) throw BackendError("cpu attention: negative block_size");
    for (int s = 0; s < a.n_seqs; ++s) {
      const AttnSeq& q = a.seqs[s];
      if (q.n_q > 0 && (a.block_size > 0 ? !q.k_blocks || !q.v_blocks : !q.k || !q.v))
        throw BackendError("cpu attention: null keys or values in a sequence");
      if (q.n_q > 0 && a.block_size > 0 && q.q_pos0 + q.n_q > q.n_blocks * a.block_size)
        throw BackendError("cpu attention: keys past the block table");
    }
    cpu::isa_ops().attention(a);
  }
  void attention_fwd_train(const FlashAttnArgs& a) override {
    check_flash(a, "cpu attention_fwd_train");
    if (!a.o) throw BackendError("cpu attention_fwd_train: null output");
    cpu::isa_ops().flash_attention_fwd(a);
  }
  void attention_bwd(const FlashAttnBwdArgs& a) override {
    check_flash(a.fwd, "cpu attention_bwd");
    if (!a.fwd.o || !a.fwd.lse || !a.dout || !a.dq || !a.dk || !a.dv || !a.delta)
      throw BackendError("cpu attention_bwd: null pointer (o, lse, dout, dq, dk, dv and delta are required)");
    cpu::isa_ops().flash_attention_bwd(a);
  }
  void silu_mul(float* out, const float* gate, const float* up, int64_t n) override { cpu::isa_ops().silu_mul(out, gate, up, n); }
  // GELU MLPs are rare (no supported checkpoint family ships one): plain loops, not per-ISA kernels.
  void gelu_mul(float* out, const float* gate, const float* up, int64_t n, bool tanh_approx) override {
#pragma omp parallel for num_threads(cpu_threads()) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) out[i] = gelu(gate[i], tanh_approx) * up[i];
  }
  void gelu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t n,
                    bool tanh_approx) override {
#pragma omp parallel for num_threads(cpu_threads()) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) {
      dup[i] = dout[i] * gelu(gate[i], tanh_approx);
      dgate[i] = dout[i] * up[i] * gelu_grad(gate[i], tanh_approx);
    }
  }
  void add_inplace(float* y, const float* x, int64_t n) override { cpu::isa_ops().add_inplace(y, x, n); }

  void copy_2d(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) override {
    if (rows < 0 || cols < 0 || ldd < cols || lds < cols) throw BackendError("cpu copy_2d: bad size or stride");
    if (rows == 0 || cols == 0) return;
    if (!dst || !src) throw BackendError("cpu copy_2d: null pointer");
    if (ldd == cols && lds == cols) {
      std::memcpy(dst, src, size_t(rows * cols) * sizeof(float));
      return;
    }
#pragma omp parallel for num_threads(cpu_threads()) schedule(static) if (rows * cols > 65536)
    for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * ldd, src + r * lds, size_t(cols) * sizeof(float));
  }
  void paged_write(const PagedRows& dst, int64_t pos0, int64_t col0, const float* src, int64_t lds, int64_t rows,
                   int64_t cols) override {
    cpu::paged_write(dst, pos0, col0, src, lds, rows, cols);
  }
  void paged_read(float* dst, int64_t ldd, const PagedRows& src, int64_t pos0, int64_t col0, int64_t rows,
                  int64_t cols) override {
    cpu::paged_read(dst, ldd, src, pos0, col0, rows, cols);
  }
  void add_group_sums(float* out, int64_t ldo, const float* x, int64_t ldx, int64_t groups, int64_t group,
                      int64_t cols) override {
    if (groups < 0 || group < 0 || cols < 0 || ldo < cols || ldx < cols) throw BackendError("cpu add_group_sums: bad size or stride");
    if (groups == 0 || group == 0 || cols == 0) return;
    if (!out || !x) throw BackendError("cpu add_group_sums: null pointer");
#pragma omp parallel for num_threads(cpu_threads()) schedule(static) if (groups * group * cols > 65536)
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t r = 0; r < group; ++r) {
        const float* xr = x + (g * group + r) * ldx;
        float* o = out + g * ldo;
        for (int64_t j = 0; j < cols; ++j) o[j] += xr[j];
      }
  }
  void grpo_token_loss(const GrpoLossArgs& a) override { cpu::grpo_token_loss(a); }
  void distill_rows(const DistillRowsArgs& a) override { cpu::distill_rows(a); }
  void sample_rows(const SampleArgs& a) override { cpu::sample_rows(a); }
  void moe_route(const MoeRouteArgs& a) override { cpu::moe_route(a); }
  void moe_route_bwd(const MoeRouteArgs& a, const float* dweight, float* dlogits) override {
    cpu::moe_route_bwd(a, dweight, dlogits);
  }
  void moe_group_rows(const int32_t* idx, const float* weight, int64_t rows, int top_k, int n_experts, int32_t* offsets,
                      int32_t* slots, int32_t* tok, float* wts) override {
    cpu::moe_group_rows(idx, weight, rows, top_k, n_experts, offsets, slots, tok, wts);
  }
  void gather_scale_dot(float* dst, float* dots, const float* src, const int32_t* ids, const float* scale,
                        const float* y, int64_t n, int64_t dim) override {
    cpu::gather_scale_dot(dst, dots, src, ids, scale, y, n, dim);
  }
  void sigmoid_gate_add(float* out, const float* z, const float* y, int64_t rows, int64_t dim) override {
    cpu::sigmoid_gate_add(out, z, y, rows, dim);
  }
  void sigmoid_gate_bwd(float* dy, float* dz, const float* z, const float* y, const float* dout, int64_t rows,
                        int64_t dim) override {
    cpu::sigmoid_gate_bwd(dy, dz, z, y, dout, rows, dim);
  }
  void copy_bytes(void* dst, const void* src, size_t bytes) override {
    if (bytes && (!dst || !src)) throw BackendError("cpu copy_bytes: null pointer");
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void gather_rows(float* out, const void* table, DType dtype, const int32_t* ids, int64_t n, int64_t dim) override {
    if (n < 0 || dim < 0) throw BackendError("cpu gather_rows: negative size");
    if (n == 0 || dim == 0) return;
    if (!out || !table || !ids) throw BackendError("cpu gather_rows: null pointer");
    if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16 && !dtype_is_quantized(dtype))
      throw BackendError(std::string("cpu gather_rows: unsupported table dtype ") + dtype_name(dtype));
    if (dim % dtype_block_elems(dtype))
      throw BackendError(std::string("cpu gather_rows: rows of ") + std::to_string(dim) + " are not whole " +
                         dtype_name(dtype) + " blocks");
    const size_t row_bytes = dtype_nbytes(dtype, dim);
    const char* base = static_cast<const char*>(table);
    if (dtype_row_group(dtype) > 1) {  // an x8 layout: each row unpacked to its block format first
      const DType t = dtype_block_format(dtype);
      std::vector<uint8_t> row(dtype_nbytes(t, dim));
      for (int64_t r = 0; r < n; ++r) {
        unpack_x8_row(dtype, table, ids[r], dim, row.data());
        convert_to_f32(out + r * dim, row.data(), t, size_t(dim));
      }
      return;
    }
#pragma omp parallel for num_threads(cpu_threads()) schedule(static) if (n * dim > 65536)
    for (int64_t r = 0; r < n; ++r) {
      const void* row = base + size_t(ids[r]) * row_bytes;
      if (dtype == DType::F32)
        std::memcpy(out + r * dim, row, size_t(dim) * 4);
      else
        convert_to_f32(out + r * dim, row, dtype, size_t(dim));
    }
  }
  void rmsnorm_bwd(float* dx, float* dw, const float* x, const float* w, const float* rstd, const float* dy,
                   int64_t rows, int64_t dim) override {
    if (rows < 0 || dim < 0) throw BackendError("cpu rmsnorm_bwd: negative size");
    cpu::isa_ops().rmsnorm_bwd(dx, dw, x, w, rstd, dy, rows, dim);
  }
  void rope_bwd(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
                const int32_t* pos, const float* inv_freq, float attn_factor, bool interleaved) override {
    if (rot_dim <= 0 || rot_dim > head_dim || rot_dim % 2) throw BackendError("cpu rope_bwd: bad rot_dim");
    cpu::isa_ops().rope_bwd(x, n_tokens, n_heads, head_dim, rot_dim, stride, pos, inv_freq, attn_factor, interleaved);
  }
  void silu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t n) override {
    cpu::isa_ops().silu_mul_bwd(dgate, dup, gate, up, dout, n);
  }
  void scatter_add_rows(float* table, const int32_t* ids, const float* src, const float* weights, int64_t n, int64_t dim) override {
    if (n < 0 || dim < 0) throw BackendError("cpu scatter_add_rows: negative size");
    cpu::isa_ops().scatter_add_rows(table, ids, src, weights, n, dim);
  }
  void dropout_scale(float* y, const float* x, int64_t rows, int64_t cols, int64_t ldx, float p, uint64_t seed,
                     bool accumulate) override {
    if (rows < 0 || cols < 0 || ldx < cols) throw BackendError("cpu dropout_scale: bad size or stride");
    if (!(p >= 0.0f && p < 1.0f)) throw BackendError("cpu dropout_scale: p must be in [0, 1)");
    const float s = 1.0f / (1.0f - p);
#pragma omp parallel for num_threads(cpu_threads()) schedule(static) if (rows * cols > 65536)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float v = dropout_keep(seed, r, c, p) ? x[r * ldx + c] * s : 0.0f;
        y[r * cols + c] = accumulate ? y[r * cols + c] + v : v;
      }
  }
  void add_column_sums(float* out, const float* x, int64_t rows, int64_t cols) override {
    if (rows < 0 || cols < 0) throw BackendError("cpu add_column_sums: negative size");
    cpu::isa_ops().add_column_sums(out, x, rows, cols);
  }
  void logsoftmax_rows(const float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target, float* lse,
                       float* logp, float* entropy) override {
    if (rows < 0 || n <= 0) throw BackendError("cpu logsoftmax_rows: bad size");
    if (!z || !target || !lse) throw BackendError("cpu logsoftmax_rows: null pointer");
    const cpu::IsaOps& ops = cpu::isa_ops();
#pragma omp parallel for num_threads(cpu_threads()) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* zr = z + r * n;
      // lse = mx + log sum exp(s - mx); entropy = lse - sum p s. inv_t > 0: max(z) inv_t = max(s).
      const float mx = ops.row_max(zr, n) * inv_t;
      double dot = 0;
      const double sum = ops.scaled_exp_sum(zr, n, inv_t, mx, nullptr, &dot);
      const double l = double(mx) + std::log(sum);
      lse[r] = float(l);
      if (logp) logp[r] = float(double(zr[target[r]] * inv_t) - l);
      if (entropy) entropy[r] = float(l - dot / sum);
    }
  }
  void logsoftmax_rows_bwd(float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target, const float* lse,
                           const float* dlogp) override {
    if (rows < 0 || n <= 0) throw BackendError("cpu logsoftmax_rows_bwd: bad size");
    if (!z || !target || !lse || !dlogp) throw BackendError("cpu logsoftmax_rows_bwd: null pointer");
    const cpu::IsaOps& ops = cpu::isa_ops();
#pragma omp parallel for num_threads(cpu_threads()) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      float* zr = z + r * n;
      const float g = dlogp[r];
      ops.scaled_exp_sum(zr, n, inv_t, lse[r], zr, nullptr);  // p = exp(s - lse)
      const float c = -g * inv_t;
      for (int64_t j = 0; j < n; ++j) zr[j] *= c;
      zr[target[r]] += g * inv_t;
    }
  }
  double sum_squares(const float* x, int64_t n) override {
    if (n < 0) throw BackendError("cpu sum_squares: negative size");
    return cpu::isa_ops().sum_squares(x, n);
  }
  void adamw_update(const AdamWArgs& a) override {
    if (a.n < 0) throw BackendError("cpu adamw_update: negative size");
    if (a.n > 0 && (!a.w || !a.m || !a.v || !a.g)) throw BackendError("cpu adamw_update: null pointer");
    cpu::isa_ops().adamw_update(a);
  }
};

}  // namespace

double scaled_exp_sum(const float* z, int64_t n, float scale, float shift, float* out, double* dot) {
  return cpu::isa_ops().scaled_exp_sum(z, n, scale, shift, out, dot);
}

float row_max(const float* z, int64_t n) { return cpu::isa_ops().row_max(z, n); }

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

namespace {
thread_local int t_threads = 0;  // the calling thread's own count (0: none)
}

int set_thread_cpu_threads(int n) {
  const int prev = t_threads;
  t_threads = n > 0 ? n : 0;
  return prev;
}

int thread_cpu_threads() { return t_threads; }

int cpu_threads() {
  if (t_threads > 0) return t_threads;
  int n = g_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  static const int dflt = [] {
    if (const char* e = std::getenv("REASON_NUM_THREADS")) {
      int v = std::atoi(e);
      if (v > 0) return v;
    }
    return omp_get_num_procs();
  }();
  return dflt;
}

void set_cpu_threads(int n) { g_threads.store(n > 0 ? n : 0, std::memory_order_relaxed); }

}  // namespace reason::kernels
