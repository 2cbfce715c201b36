// A device the host cannot touch, for tests without a GPU: the CPU backend's kernels behind memory
// that is readable only while one of the backend's own ops runs.
//
// alloc() hands out pages of one reserved address range that is PROT_NONE except during an op
// (upload, download, fill_zero, copy_bytes and every compute op open it, run the CPU backend's op,
// and close it again), so host code that dereferences an activation, a weight or a KV block between
// ops dies with SIGSEGV, as it would read garbage on a GPU. Every pointer an op receives must lie in
// that range (or, for upload's source and download's destination, outside it), else the op throws a
// BackendError naming the op and the argument: a host std::vector handed to an op is caught as a
// CUDA run would fault on it. Ops are serialised (one mutex); results are bit for bit the CPU
// backend's, so a test can compare a whole run on this backend with the same run on the CPU.
// Freed pages are returned with MADV_DONTNEED (opening and closing the range costs time in
// proportion to its resident pages) and handed out again only for an allocation of the same size
// (which keeps the range small: training repeats its shapes).
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "reason/kernels/backend.h"

namespace reason::test {

class GuardedBackend final : public kernels::Backend {
 public:
  explicit GuardedBackend(size_t reserve_bytes = size_t(1) << 38) : reserve_(reserve_bytes) {
    void* p = ::mmap(nullptr, reserve_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw kernels::BackendError("guarded backend: cannot reserve its address range");
    base_ = static_cast<char*>(p);
  }
  ~GuardedBackend() override { ::munmap(base_, reserve_); }
  GuardedBackend(const GuardedBackend&) = delete;
  GuardedBackend& operator=(const GuardedBackend&) = delete;

  kernels::DeviceKind kind() const override { return kernels::DeviceKind::CPU; }
  const char* name() const override { return "guarded-cpu"; }
  bool host_addressable() const override { return false; }

  // Ops run so far (each counted once), allocations live now.
  int64_t ops() const { return ops_; }
  size_t live_allocations() const { return sizes_.size(); }

  void* alloc(size_t bytes) override {
    std::lock_guard<std::mutex> lk(mu_);
    const size_t page = size_t(::sysconf(_SC_PAGESIZE));
    const size_t n = (std::max<size_t>(bytes, 1) + page - 1) / page * page;
    auto fit = free_.find(n);
    if (fit != free_.end() && !fit->second.empty()) {
      char* p = fit->second.back();
      fit->second.pop_back();
      sizes_[p] = n;
      return p;
    }
    if (used_ + n > reserve_) throw kernels::BackendError("guarded backend: out of reserved address space");
    char* p = base_ + used_;
    used_ += n;
    sizes_[p] = n;
    return p;
  }
  void dealloc(void* p) override {
    if (!p) return;
    std::lock_guard<std::mutex> lk(mu_);
    auto it = sizes_.find(static_cast<char*>(p));
    if (it == sizes_.end()) throw kernels::BackendError("guarded backend: dealloc of a pointer it did not allocate");
    ::madvise(it->first, it->second, MADV_DONTNEED);
    free_[it->second].push_back(it->first);
    sizes_.erase(it);
  }
  void upload(void* dst, const void* src, size_t bytes) override {
    Op op(this, "upload");
    dev(dst, "dst"), host(src, "src");
    cpu().upload(dst, src, bytes);
  }
  void download(void* dst, const void* src, size_t bytes) override {
    Op op(this, "download");
    host(dst, "dst"), dev(src, "src");
    cpu().download(dst, src, bytes);
  }
  void fill_zero(void* p, size_t bytes) override {
    Op op(this, "fill_zero");
    dev(p, "p");
    cpu().fill_zero(p, bytes);
  }
  void synchronize() override {}
  void copy_bytes(void* dst, const void* src, size_t bytes) override {
    Op op(this, "copy_bytes");
    dev(dst, "dst"), dev(src, "src");
    cpu().copy_bytes(dst, src, bytes);
  }

  void matmul(const kernels::MatmulArgs& a) override {
    Op op(this, "matmul");
    dev(a.x, "x"), dev(a.w, "w"), dev(a.bias, "bias"), dev(a.y, "y");
    cpu().matmul(a);
  }
  void gemm_f32(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override {
    Op op(this, "gemm_f32");
    dev(a, "a"), dev(b, "b"), dev(c, "c");
    cpu().gemm_f32(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  void rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* rstd) override {
    Op op(this, "rmsnorm");
    dev(y, "y"), dev(x, "x"), dev(w, "w"), dev(rstd, "rstd");
    cpu().rmsnorm(y, x, w, rows, dim, eps, rstd);
  }
  void rope(float* x, int64_t n, int nh, int hd, int rot, int64_t stride, const int32_t* pos, const float* inv_freq,
            float af, bool il) override {
    Op op(this, "rope");
    dev(x, "x"), dev(pos, "pos"), dev(inv_freq, "inv_freq");
    cpu().rope(x, n, nh, hd, rot, stride, pos, inv_freq, af, il);
  }
  void attention(const kernels::AttnArgs& a) override {
    Op op(this, "attention");
    for (int s = 0; s < a.n_seqs; ++s) {
      const kernels::AttnSeq& q = a.seqs[s];
      dev(q.q, "q"), dev(q.out, "out"), dev(q.k, "k"), dev(q.v, "v"), dev(q.k_blocks, "k_blocks"), dev(q.v_blocks, "v_blocks");
    }
    cpu().attention(a);
  }
  void attention_fwd_train(const kernels::FlashAttnArgs& a) override {
    Op op(this, "attention_fwd_train");
    flash(a);
    cpu().attention_fwd_train(a);
  }
  void attention_bwd(const kernels::FlashAttnBwdArgs& a) override {
    Op op(this, "attention_bwd");
    flash(a.fwd);
    dev(a.dout, "dout"), dev(a.dq, "dq"), dev(a.dk, "dk"), dev(a.dv, "dv"), dev(a.delta, "delta");
    cpu().attention_bwd(a);
  }
  void silu_mul(float* out, const float* g, const float* u, int64_t n) override {
    Op op(this, "silu_mul");
    dev(out, "out"), dev(g, "gate"), dev(u, "up");
    cpu().silu_mul(out, g, u, n);
  }
  void gelu_mul(float* out, const float* g, const float* u, int64_t n, bool t) override {
    Op op(this, "gelu_mul");
    dev(out, "out"), dev(g, "gate"), dev(u, "up");
    cpu().gelu_mul(out, g, u, n, t);
  }
  void gelu_mul_bwd(float* dg, float* du, const float* g, const float* u, const float* dout, int64_t n, bool t) override {
    Op op(this, "gelu_mul_bwd");
    dev(dg, "dgate"), dev(du, "dup"), dev(g, "gate"), dev(u, "up"), dev(dout, "dout");
    cpu().gelu_mul_bwd(dg, du, g, u, dout, n, t);
  }
  void add_inplace(float* y, const float* x, int64_t n) override {
    Op op(this, "add_inplace");
    dev(y, "y"), dev(x, "x");
    cpu().add_inplace(y, x, n);
  }
  void copy_2d(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) override {
    Op op(this, "copy_2d");
    dev(dst, "dst"), dev(src, "src");
    cpu().copy_2d(dst, ldd, src, lds, rows, cols);
  }
  void paged_write(const kernels::PagedRows& dst, int64_t pos0, int64_t col0, const float* src, int64_t lds, int64_t rows,
                   int64_t cols) override {
    Op op(this, "paged_write");
    dev(dst.blocks, "dst.blocks"), dev(src, "src");
    cpu().paged_write(dst, pos0, col0, src, lds, rows, cols);
  }
  void paged_read(float* dst, int64_t ldd, const kernels::PagedRows& src, int64_t pos0, int64_t col0, int64_t rows,
                  int64_t cols) override {
    Op op(this, "paged_read");
    dev(dst, "dst"), dev(src.blocks, "src.blocks");
    cpu().paged_read(dst, ldd, src, pos0, col0, rows, cols);
  }
  void gather_rows(float* out, const void* table, kernels::DType dt, const int32_t* ids, int64_t n, int64_t dim) override {
    Op op(this, "gather_rows");
    dev(out, "out"), dev(table, "table"), dev(ids, "ids");
    cpu().gather_rows(out, table, dt, ids, n, dim);
  }
  void rmsnorm_bwd(float* dx, float* dw, const float* x, const float* w, const float* rstd, const float* dy, int64_t rows,
                   int64_t dim) override {
    Op op(this, "rmsnorm_bwd");
    dev(dx, "dx"), dev(dw, "dw"), dev(x, "x"), dev(w, "w"), dev(rstd, "rstd"), dev(dy, "dy");
    cpu().rmsnorm_bwd(dx, dw, x, w, rstd, dy, rows, dim);
  }
  void rope_bwd(float* dx, int64_t n, int nh, int hd, int rot, int64_t stride, const int32_t* pos, const float* inv_freq,
                float af, bool il) override {
    Op op(this, "rope_bwd");
    dev(dx, "dx"), dev(pos, "pos"), dev(inv_freq, "inv_freq");
    cpu().rope_bwd(dx, n, nh, hd, rot, stride, pos, inv_freq, af, il);
  }
  void silu_mul_bwd(float* dg, float* du, const float* g, const float* u, const float* dout, int64_t n) override {
    Op op(this, "silu_mul_bwd");
    dev(dg, "dgate"), dev(du, "dup"), dev(g, "gate"), dev(u, "up"), dev(dout, "dout");
    cpu().silu_mul_bwd(dg, du, g, u, dout, n);
  }
  void scatter_add_rows(float* table, const int32_t* ids, const float* src, const float* w, int64_t n, int64_t dim) override {
    Op op(this, "scatter_add_rows");
    dev(table, "table"), dev(ids, "ids"), dev(src, "src"), dev(w, "weights");
    cpu().scatter_add_rows(table, ids, src, w, n, dim);
  }
  void add_column_sums(float* out, const float* x, int64_t rows, int64_t cols) override {
    Op op(this, "add_column_sums");
    dev(out, "out"), dev(x, "x");
    cpu().add_column_sums(out, x, rows, cols);
  }
  void dropout_scale(float* y, const float* x, int64_t rows, int64_t cols, int64_t ldx, float p, uint64_t seed,
                     bool accumulate) override {
    Op op(this, "dropout_scale");
    dev(y, "y"), dev(x, "x");
    cpu().dropout_scale(y, x, rows, cols, ldx, p, seed, accumulate);
  }
  void add_group_sums(float* out, int64_t ldo, const float* x, int64_t ldx, int64_t groups, int64_t group,
                      int64_t cols) override {
    Op op(this, "add_group_sums");
    dev(out, "out"), dev(x, "x");
    cpu().add_group_sums(out, ldo, x, ldx, groups, group, cols);
  }
  double sum_squares(const float* x, int64_t n) override {
    Op op(this, "sum_squares");
    dev(x, "x");
    return cpu().sum_squares(x, n);
  }
  void logsoftmax_rows(const float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target, float* lse, float* logp,
                       float* entropy) override {
    Op op(this, "logsoftmax_rows");
    dev(z, "z"), dev(target, "target"), dev(lse, "lse"), dev(logp, "logp"), dev(entropy, "entropy");
    cpu().logsoftmax_rows(z, rows, n, inv_t, target, lse, logp, entropy);
  }
  void logsoftmax_rows_bwd(float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target, const float* lse,
                           const float* dlogp) override {
    Op op(this, "logsoftmax_rows_bwd");
    dev(z, "z"), dev(target, "target"), dev(lse, "lse"), dev(dlogp, "dlogp");
    cpu().logsoftmax_rows_bwd(z, rows, n, inv_t, target, lse, dlogp);
  }
  void adamw_update(const kernels::AdamWArgs& a) override {
    Op op(this, "adamw_update");
    dev(a.w, "w"), dev(a.m, "m"), dev(a.v, "v"), dev(a.g, "g");
    cpu().adamw_update(a);
  }
  void grpo_token_loss(const kernels::GrpoLossArgs& a) override {
    Op op(this, "grpo_token_loss");
    dev(a.logp, "logp"), dev(a.old_logp, "old_logp"), dev(a.ref_logp, "ref_logp"), dev(a.adv, "adv");
    dev(a.weight, "weight"), dev(a.dlogp, "dlogp"), dev(a.sums, "sums");
    cpu().grpo_token_loss(a);
  }
  void distill_rows(const kernels::DistillRowsArgs& a) override {
    Op op(this, "distill_rows");
    dev(a.z_s, "z_s"), dev(a.lse_s, "lse_s"), dev(a.z_t, "z_t"), dev(a.lse_t, "lse_t"), dev(a.weight, "weight");
    dev(a.loss, "loss");
    cpu().distill_rows(a);
  }
  void sample_rows(const kernels::SampleArgs& a) override {
    Op op(this, "sample_rows");
    dev(a.logits, "logits"), host(a.rows, "rows");
    for (int64_t i = 0; i < a.n_rows; ++i) host(a.rows[i].history, "history"), host(a.rows[i].rng, "rng");
    cpu().sample_rows(a);
  }
  void moe_route(const kernels::MoeRouteArgs& a) override {
    Op op(this, "moe_route");
    route(a);
    cpu().moe_route(a);
  }
  void moe_route_bwd(const kernels::MoeRouteArgs& a, const float* dweight, float* dlogits) override {
    Op op(this, "moe_route_bwd");
    route(a);
    dev(dweight, "dweight"), dev(dlogits, "dlogits");
    cpu().moe_route_bwd(a, dweight, dlogits);
  }
  void moe_group_rows(const int32_t* idx, const float* weight, int64_t rows, int top_k, int n_experts, int32_t* offsets,
                      int32_t* slots, int32_t* tok, float* wts) override {
    Op op(this, "moe_group_rows");
    dev(idx, "idx"), dev(weight, "weight"), dev(offsets, "offsets"), dev(slots, "slots"), dev(tok, "tok"), dev(wts, "wts");
    cpu().moe_group_rows(idx, weight, rows, top_k, n_experts, offsets, slots, tok, wts);
  }
  void gather_scale_dot(float* dst, float* dots, const float* src, const int32_t* ids, const float* scale, const float* y,
                        int64_t n, int64_t dim) override {
    Op op(this, "gather_scale_dot");
    dev(dst, "dst"), dev(dots, "dots"), dev(src, "src"), dev(ids, "ids"), dev(scale, "scale"), dev(y, "y");
    cpu().gather_scale_dot(dst, dots, src, ids, scale, y, n, dim);
  }
  void sigmoid_gate_add(float* out, const float* z, const float* y, int64_t rows, int64_t dim) override {
    Op op(this, "sigmoid_gate_add");
    dev(out, "out"), dev(z, "z"), dev(y, "y");
    cpu().sigmoid_gate_add(out, z, y, rows, dim);
  }
  void sigmoid_gate_bwd(float* dy, float* dz, const float* z, const float* y, const float* dout, int64_t rows,
                        int64_t dim) override {
    Op op(this, "sigmoid_gate_bwd");
    dev(dy, "dy"), dev(dz, "dz"), dev(z, "z"), dev(y, "y"), dev(dout, "dout");
    cpu().sigmoid_gate_bwd(dy, dz, z, y, dout, rows, dim);
  }

 private:
  // Opens the range for the op's duration (one op at a time) and names the op in any error.
  class Op {
   public:
    Op(GuardedBackend* g, const char* name) : g_(g), lk_(g->mu_) {
      g_->op_ = name;
      ++g_->ops_;
      if (g_->used_) ::mprotect(g_->base_, g_->used_, PROT_READ | PROT_WRITE);
    }
    ~Op() {
      if (g_->used_) ::mprotect(g_->base_, g_->used_, PROT_NONE);
    }

   private:
    GuardedBackend* g_;
    std::lock_guard<std::mutex> lk_;
  };

  static kernels::Backend& cpu() { return kernels::cpu_backend(); }
  bool inside(const void* p) const {
    const char* c = static_cast<const char*>(p);
    return c >= base_ && c < base_ + used_;
  }
  void dev(const void* p, const char* arg) const {
    if (p && !inside(p))
      throw kernels::BackendError(std::string("guarded backend: ") + op_ + ": " + arg + " is host memory, not the device's");
  }
  void host(const void* p, const char* arg) const {
    if (p && inside(p))
      throw kernels::BackendError(std::string("guarded backend: ") + op_ + ": " + arg + " is device memory, not the host's");
  }
  void flash(const kernels::FlashAttnArgs& a) const {
    dev(a.q, "q"), dev(a.k, "k"), dev(a.v, "v"), dev(a.o, "o"), dev(a.lse, "lse"), dev(a.seq_start, "seq_start");
  }
  void route(const kernels::MoeRouteArgs& a) const {
    dev(a.logits, "logits"), dev(a.bias, "bias"), dev(a.idx, "idx"), dev(a.weight, "weight");
  }

  size_t reserve_;
  char* base_ = nullptr;
  size_t used_ = 0;
  std::map<char*, size_t> sizes_;
  std::map<size_t, std::vector<char*>> free_;  // freed ranges by size
  std::mutex mu_;
  const char* op_ = "";
  int64_t ops_ = 0;
};

}  // namespace reason::test
