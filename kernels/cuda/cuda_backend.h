// The CUDA backend: cuBLAS (loaded with dlopen, see cublas_loader.h) for matmuls and our own
// kernels (cuda_kernels.cu) for everything else. Implements reason::kernels::Backend; the
// process-wide instance on device 0 comes from reason::kernels::cuda_backend().
//
// Streams: every op is enqueued on the backend's one stream (a blocking stream, so it also
// orders with work on the legacy default stream); upload, download, synchronize and dealloc
// wait for it. Ops are therefore executed in the order they were called.
// Threads: ops may be called from several threads at once (matmul serialises on a mutex that
// guards the cuBLAS handle and the bf16 scratch buffer; other ops only enqueue kernels).
// Errors: ops throw BackendError("cuda <op>: ... <cudaError name> (<message>)"), or the cuBLAS
// status for matmul. Asynchronous kernel faults surface at the next call that synchronises.
#pragma once
#include <cuda_runtime_api.h>

#include <memory>
#include <mutex>
#include <string>

#include "reason/kernels/backend.h"

struct cublasContext;  // = *cublasHandle_t

namespace reason::kernels::cuda {

struct CublasApi;

class CudaBackend final : public Backend {
 public:
  // Opens `device`: checks the driver and the device, that our kernels run on it (a probe
  // launch), loads cuBLAS and creates the stream and the cuBLAS handle. Returns nullptr and
  // sets *why when any of that fails. Does not throw.
  static std::unique_ptr<CudaBackend> open(int device, std::string* why);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  DeviceKind kind() const override { return DeviceKind::CUDA; }
  const char* name() const override { return name_.c_str(); }  // "cuda:0 (<device name>)"

  void* alloc(size_t bytes) override;
  void dealloc(void* p) override;  // waits for the stream; never throws
  void upload(void* dst_device, const void* src_host, size_t bytes) override;
  void download(void* dst_host, const void* src_device, size_t bytes) override;
  void synchronize() override;
  void fill_zero(void* p, size_t bytes) override;

  // NCCL (nccl_collective.h), loaded at first use.
  std::string device_collective_id() override;
  std::unique_ptr<DeviceCollective> device_collective(const std::string& id, int rank, int ranks) override;

  void matmul(const MatmulArgs& a) override;
  void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) override;
  void rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t dim,
               float eps, float* rstd) override;
  void rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
            const int32_t* pos, const float* inv_freq, float attn_factor, bool interleaved) override;
  void attention(const AttnArgs& a) override;
  // Not implemented on CUDA yet (the CUDA training path is its own issue): throw BackendError.
  void attention_fwd_train(const FlashAttnArgs& a) override;
  void attention_bwd(const FlashAttnBwdArgs& a) override;
  void silu_mul(float* out, const float* gate, const float* up, int64_t n) override;
  void gelu_mul(float* out, const float* gate, const float* up, int64_t n, bool tanh_approx) override;
  void add_inplace(float* y, const float* x, int64_t n) override;
  void copy_2d(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) override;
  void paged_write(const PagedRows& dst, int64_t pos0, int64_t col0, const float* src, int64_t lds, int64_t rows,
                   int64_t cols) override;
  void paged_read(float* dst, int64_t ldd, const PagedRows& src, int64_t pos0, int64_t col0, int64_t rows,
                  int64_t cols) override;
  void copy_bytes(void* dst, const void* src, size_t bytes) override;
  void add_group_sums(float* out, int64_t ldo, const float* x, int64_t ldx, int64_t groups, int64_t group,
                      int64_t cols) override;
  void grpo_token_loss(const GrpoLossArgs& a) override;
  void distill_rows(const DistillRowsArgs& a) override;
  void sample_rows(const SampleArgs& a) override;
  void moe_route(const MoeRouteArgs& a) override;
  void moe_route_bwd(const MoeRouteArgs& a, const float* dweight, float* dlogits) override;
  void moe_group_rows(const int32_t* idx, const float* weight, int64_t rows, int top_k, int n_experts, int32_t* offsets,
                      int32_t* slots, int32_t* tok, float* wts) override;
  void gather_scale_dot(float* dst, float* dots, const float* src, const int32_t* ids, const float* scale,
                        const float* y, int64_t n, int64_t dim) override;
  void sigmoid_gate_add(float* out, const float* z, const float* y, int64_t rows, int64_t dim) override;
  void sigmoid_gate_bwd(float* dy, float* dz, const float* z, const float* y, const float* dout, int64_t rows,
                        int64_t dim) override;
  void gather_rows(float* out, const void* table, DType dtype, const int32_t* ids, int64_t n, int64_t dim) override;
  void rmsnorm_bwd(float* dx, float* dw, const float* x, const float* w, const float* rstd, const float* dy,
                   int64_t rows, int64_t dim) override;
  void rope_bwd(float* dx, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
                const int32_t* pos, const float* inv_freq, float attn_factor, bool interleaved) override;
  void gelu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t n,
                    bool tanh_approx) override;
  void silu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout,
                    int64_t n) override;
  void scatter_add_rows(float* table, const int32_t* ids, const float* src, const float* weights, int64_t n, int64_t dim) override;
  void add_column_sums(float* out, const float* x, int64_t rows, int64_t cols) override;
  void dropout_scale(float* y, const float* x, int64_t rows, int64_t cols, int64_t ldx, float p, uint64_t seed,
                     bool accumulate) override;
  double sum_squares(const float* x, int64_t n) override;
  void logsoftmax_rows(const float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target, float* lse,
                       float* logp, float* entropy) override;
  void logsoftmax_rows_bwd(float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target, const float* lse,
                           const float* dlogp) override;  // synchronises (the result is a host value)
  void adamw_update(const AdamWArgs& a) override;

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }

 private:
  CudaBackend() = default;
  void* scratch(size_t bytes);  // bf16 copy of x for matmul; call with mu_ held

  int device_ = 0;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  const CublasApi* api_ = nullptr;
  cublasContext* cublas_ = nullptr;
  std::mutex mu_;  // cuBLAS handle + scratch
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
};

}  // namespace reason::kernels::cuda
