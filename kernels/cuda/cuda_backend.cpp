// CudaBackend: host side (validation, streams, cuBLAS) and the cuda_backend() factory.
#include "cuda_backend.h"
#include "../backend_checks.h"

#include <climits>
#include <cstdlib>
#include <string>
#include <vector>

#include "cublas_loader.h"
#include "cuda_kernels.h"
#include "nccl_collective.h"

#ifndef REASON_CUDA_ARCHITECTURES
#define REASON_CUDA_ARCHITECTURES "?"
#endif

namespace reason::kernels {

namespace cuda {

namespace {

std::string cuda_error_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}

std::string cuda_version_text(int v) {  // 13000 -> "13.0"
  return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

[[noreturn]] void fail(const char* op, const std::string& what) {
  throw BackendError(std::string("cuda ") + op + ": " + what);
}

void check(cudaError_t e, const char* op, const char* call) {
  if (e != cudaSuccess) fail(op, std::string(call) + " failed: " + cuda_error_text(e));
}

// Makes `device` current for the calling thread and restores the previous device afterwards
// (ops may be called from threads that use another device for something else).
class DeviceGuard {
 public:
  DeviceGuard(int device, const char* op) {
    check(cudaGetDevice(&prev_), op, "cudaGetDevice");
    if (prev_ != device) {
      check(cudaSetDevice(device), op, "cudaSetDevice");
    } else {
      prev_ = -1;
    }
  }
  ~DeviceGuard() {
    if (prev_ >= 0) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

int to_int(int64_t v, const char* op, const char* what) {
  if (v < 0 || v > INT_MAX) fail(op, std::string(what) + " = " + std::to_string(v) + " out of range");
  return int(v);
}

void need(bool ok, const char* op, const char* what) {
  if (!ok) fail(op, std::string("invalid argument: ") + what);
}

}  // namespace

std::unique_ptr<CudaBackend> CudaBackend::open(int device, std::string* why) {
  auto give_up = [&](std::string r) -> std::unique_ptr<CudaBackend> {
    cudaGetLastError();  // leave no (non-sticky) error behind for other CUDA users
    if (why) *why = std::move(r);
    return nullptr;
  };

  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0))
    return give_up("no CUDA device found (" + (e == cudaSuccess ? std::string("0 devices")
                                                                 : cuda_error_text(e)) + ")");
  if (e == cudaErrorInsufficientDriver) {
    int driver = 0;
    cudaDriverGetVersion(&driver);  // 0 when no driver library could be loaded
    return give_up(
        (driver == 0 ? std::string("no NVIDIA driver (libcuda.so.1 not found)")
                     : "the NVIDIA driver supports CUDA " + cuda_version_text(driver) +
                           ", older than libreason's CUDA runtime " +
                           cuda_version_text(CUDART_VERSION)) +
        ": " + cuda_error_text(e));
  }
  if (e != cudaSuccess) return give_up("cudaGetDeviceCount failed: " + cuda_error_text(e));
  if (device < 0 || device >= count)
    return give_up("CUDA device " + std::to_string(device) + " does not exist (" +
                   std::to_string(count) + " found)");

  cudaDeviceProp prop{};
  if ((e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess)
    return give_up("cudaGetDeviceProperties failed: " + cuda_error_text(e));
  if ((e = cudaSetDevice(device)) != cudaSuccess)
    return give_up("cudaSetDevice(" + std::to_string(device) + ") failed: " + cuda_error_text(e));

  std::unique_ptr<CudaBackend> b(new CudaBackend());
  b->device_ = device;
  b->name_ = "cuda:" + std::to_string(device) + " (" + prop.name + ", sm_" +
             std::to_string(prop.major) + std::to_string(prop.minor) + ")";
  if ((e = cudaStreamCreate(&b->stream_)) != cudaSuccess)
    return give_up("cudaStreamCreate failed: " + cuda_error_text(e));

  // Probe: our kernels are built for REASON_CUDA_ARCHITECTURES only; an older GPU fails here
  // (cudaErrorNoKernelImageForDevice) rather than at the first real op.
  {
    void* d = nullptr;
    int h = 0;
    e = cudaMalloc(&d, sizeof(int));
    if (e == cudaSuccess) e = launch_probe(static_cast<int*>(d), b->stream_);
    if (e == cudaSuccess) e = cudaMemcpyAsync(&h, d, sizeof(int), cudaMemcpyDeviceToHost, b->stream_);
    if (e == cudaSuccess) e = cudaStreamSynchronize(b->stream_);
    if (d) cudaFree(d);
    if (e != cudaSuccess || h != 0x5eed)
      return give_up("cannot run kernels on " + b->name_ + " (libreason is built for CUDA "
                     "architectures " REASON_CUDA_ARCHITECTURES "): " +
                     (e != cudaSuccess ? cuda_error_text(e) : std::string("probe kernel wrote nothing")));
  }

  std::string cublas_why;
  b->api_ = cublas_api(&cublas_why);
  if (!b->api_) return give_up(cublas_why);
  cublasHandle_t handle = nullptr;
  cublasStatus_t s = b->api_->create(&handle);
  if (s != CUBLAS_STATUS_SUCCESS)
    return give_up(b->api_->library + ": cublasCreate failed: " + b->api_->status_string(s));
  b->cublas_ = handle;
  if ((s = b->api_->set_stream(handle, b->stream_)) != CUBLAS_STATUS_SUCCESS)
    return give_up("cublasSetStream failed: " + b->api_->status_string(s));
  // Full f32 arithmetic for f32 GEMMs (no TF32): CPU parity to ~1e-5.
  if ((s = b->api_->set_math_mode(handle, CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS)
    return give_up("cublasSetMathMode failed: " + b->api_->status_string(s));
  if (why) why->clear();
  return b;
}

CudaBackend::~CudaBackend() {
  int prev = -1;
  cudaGetDevice(&prev);
  cudaSetDevice(device_);
  if (stream_) cudaStreamSynchronize(stream_);
  if (cublas_ && api_) api_->destroy(cublas_);
  if (scratch_) cudaFree(scratch_);
  if (stream_) cudaStreamDestroy(stream_);
  if (prev >= 0 && prev != device_) cudaSetDevice(prev);
  cudaGetLastError();
}

void* CudaBackend::alloc(size_t bytes) {
  DeviceGuard g(device_, "alloc");
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();  // out-of-memory is not sticky; clear it
    fail("alloc", std::to_string(bytes) + " bytes: " + cuda_error_text(e));
  }
  return p;
}

void CudaBackend::dealloc(void* p) {
  if (!p) return;
  int prev = -1;
  cudaGetDevice(&prev);
  if (prev != device_) cudaSetDevice(device_);
  cudaStreamSynchronize(stream_);  // kernels still using p finish first
  cudaFree(p);
  if (prev >= 0 && prev != device_) cudaSetDevice(prev);
}

void CudaBackend::upload(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  need(dst && src, "upload", "null pointer");
  DeviceGuard g(device_, "upload");
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "upload",
        "cudaMemcpyAsync");
  // The caller may reuse `src` as soon as we return.
  check(cudaStreamSynchronize(stream_), "upload", "cudaStreamSynchronize");
}

void CudaBackend::download(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  need(dst && src, "download", "null pointer");
  DeviceGuard g(device_, "download");
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "download",
        "cudaMemcpyAsync");
  check(cudaStreamSynchronize(stream_), "download", "cudaStreamSynchronize");
}

void CudaBackend::synchronize() {
  DeviceGuard g(device_, "synchronize");
  check(cudaStreamSynchronize(stream_), "synchronize", "cudaStreamSynchronize");
}

void* CudaBackend::scratch(size_t bytes) {
  if (bytes <= scratch_bytes_) return scratch_;
  if (scratch_) {
    // Earlier matmuls on the stream may still read the old buffer.
    check(cudaStreamSynchronize(stream_), "matmul", "cudaStreamSynchronize");
    cudaFree(scratch_);
    scratch_ = nullptr;
    scratch_bytes_ = 0;
  }
  size_t want = bytes + bytes / 4;  // some headroom for slightly larger batches
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, want);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("matmul", "scratch of " + std::to_string(want) + " bytes: " + cuda_error_text(e));
  }
  scratch_ = p;
  scratch_bytes_ = want;
  return p;
}

void CudaBackend::gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const char* op = "gemm_f32";
  need(m >= 0 && n >= 0 && k >= 0, op, "negative size");
  if (m == 0 || n == 0) return;
  need(a && b && c, op, "null pointer");
  const int im = to_int(m, op, "m"), in = to_int(n, op, "n"), ik = to_int(k, op, "k");
  DeviceGuard g(device_, op);
  std::lock_guard<std::mutex> lock(mu_);
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
  cublasStatus_t s = api_->gemm_ex(cublas_, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   in, im, ik, &alpha, b, CUDA_R_32F, to_int(ldb, op, "ldb"), a, CUDA_R_32F,
                                   to_int(lda, op, "lda"), &beta, c, CUDA_R_32F, to_int(ldc, op, "ldc"),
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) fail(op, std::string("cublasGemmEx failed: ") + api_->status_string(s));
}

void CudaBackend::matmul(const MatmulArgs& a) {
  const char* op = "matmul";
  need(a.m >= 0 && a.n >= 0 && a.k >= 0, op, "negative size");
  if (a.m == 0 || a.n == 0) return;
  need(a.w_dtype == DType::F32 || a.w_dtype == DType::BF16, op,
       "weights must be f32 or bf16");
  const int64_t ldx = a.ldx ? a.ldx : a.k;
  const int64_t ldy = a.ldy ? a.ldy : a.n;
  need(ldx >= a.k && ldy >= a.n, op, "leading dimension smaller than the row");
  need(a.x && a.w && a.y, op, "null pointer");
  const int m = to_int(a.m, op, "m"), n = to_int(a.n, op, "n"), k = to_int(a.k, op, "k");
  const int ildy = to_int(ldy, op, "ldy");
  int ildx = to_int(ldx, op, "ldx");

  DeviceGuard g(device_, op);
  std::lock_guard<std::mutex> lock(mu_);
  const void* B = a.x;
  cudaDataType ab_type = CUDA_R_32F;
  if (a.w_dtype == DType::BF16) {
    // x rounded to bf16 (packed [m, k]); bf16 x bf16 products accumulate in f32.
    auto* xb = static_cast<uint16_t*>(scratch(size_t(m) * size_t(k) * 2 + 2));
    check(launch_f32_to_bf16_rows(xb, a.x, a.m, a.k, ldx, stream_), op, "f32->bf16 kernel");
    B = xb;
    ildx = k;
    ab_type = CUDA_R_16BF;
  }
  // Row-major y[m,n] = x[m,k] . w[n,k]^T is column-major y^T[n,m] = w^T^T[n,k] . x^T[k,m]:
  // A = w viewed as column-major [k, n] (lda = k) with op T, B = x^T column-major [k, m].
  const float alpha = 1.0f, beta = a.beta;
  cublasStatus_t s = api_->gemm_ex(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, a.w,
                                   ab_type, k > 0 ? k : 1, B, ab_type, ildx > 0 ? ildx : 1,
                                   &beta, a.y, CUDA_R_32F, ildy, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS)
    fail(op, std::string("cublasGemmEx (m=") + std::to_string(m) + " n=" + std::to_string(n) +
                 " k=" + std::to_string(k) + ", " + dtype_name(a.w_dtype) +
                 ") failed: " + api_->status_string(s));
  if (a.bias) check(launch_add_bias_rows(a.y, a.bias, a.m, a.n, ldy, stream_), op, "bias kernel");
}

void CudaBackend::rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t dim,
                          float eps, float* rstd) {
  const char* op = "rmsnorm";
  need(rows >= 0 && dim >= 0, op, "negative size");
  if (rows == 0 || dim == 0) return;
  need(y && x && w, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_rmsnorm(y, x, w, rows, dim, eps, rstd, stream_), op, "kernel launch");
}

void CudaBackend::rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim,
                       int64_t stride, const int32_t* pos, const float* inv_freq,
                       float attn_factor, bool interleaved) {
  const char* op = "rope";
  need(n_tokens >= 0 && n_heads >= 0 && head_dim >= 0, op, "negative size");
  need(rot_dim >= 0 && rot_dim <= head_dim && rot_dim % 2 == 0, op,
       "rot_dim must be even and <= head_dim");
  if (n_tokens == 0 || n_heads == 0 || rot_dim == 0) return;
  need(stride >= 0, op, "negative stride");
  need(x && pos && inv_freq, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_rope(x, n_tokens, n_heads, head_dim, rot_dim, stride, pos, inv_freq, attn_factor,
                    interleaved, stream_),
        op, "kernel launch");
}

void CudaBackend::attention_fwd_train(const FlashAttnArgs&) {
  throw BackendError("cuda attention_fwd_train: training attention is not implemented on the CUDA backend yet");
}

void CudaBackend::attention_bwd(const FlashAttnBwdArgs&) {
  throw BackendError("cuda attention_bwd: training attention is not implemented on the CUDA backend yet");
}

void CudaBackend::attention(const AttnArgs& a) {
  const char* op = "attention";
  need(a.n_seqs >= 0, op, "negative n_seqs");
  if (a.n_seqs == 0) return;
  need(a.seqs != nullptr, op, "null seqs");
  need(a.n_heads > 0 && a.n_kv_heads > 0 && a.n_heads % a.n_kv_heads == 0, op,
       "n_heads must be a positive multiple of n_kv_heads");
  need(a.n_heads <= 65535, op, "n_heads > 65535");
  need(a.head_dim > 0 && a.head_dim <= 16384, op, "head_dim out of range");
  need(a.q_stride >= 0 && a.out_stride >= 0 && a.kv_stride >= 0, op, "negative stride");

  need(a.kv_dtype == DType::F32 || a.kv_dtype == DType::BF16, op, "KV dtype must be f32 or bf16");
  need(a.block_size >= 0, op, "negative block_size");
  need(a.window >= 0, op, "negative window");
  AttnShape shape{a.n_heads, a.n_kv_heads, a.head_dim, a.q_stride, a.out_stride, a.kv_stride,
                  a.scale, a.block_size, a.kv_dtype == DType::BF16 ? 1 : 0, a.window};
  DeviceGuard g(device_, op);
  AttnChunk chunk{};
  auto flush = [&] {
    if (chunk.n_seqs == 0) return;
    check(launch_attention(chunk, shape, stream_), op, "kernel launch");
    chunk = AttnChunk{};
  };
  for (int i = 0; i < a.n_seqs; ++i) {
    const AttnSeq& s = a.seqs[i];
    need(s.n_q >= 0 && s.q_pos0 >= 0, op, "negative n_q or q_pos0");
    if (s.n_q == 0) continue;
    need(s.q && s.out && (a.block_size > 0 ? s.k_blocks && s.v_blocks : s.k && s.v), op, "null pointer in a sequence");
    need(a.block_size == 0 || s.q_pos0 + s.n_q <= s.n_blocks * a.block_size, op, "keys past the block table");
    need(s.n_q <= INT_MAX, op, "n_q too large");
    if (chunk.n_seqs == kAttnChunk || chunk.n_tokens + s.n_q > INT_MAX) flush();
    chunk.seq[chunk.n_seqs++] = AttnSeqDev{s.q, s.out, s.k, s.v, s.k_blocks, s.v_blocks, s.n_q, s.q_pos0, chunk.n_tokens};
    chunk.n_tokens += s.n_q;
  }
  flush();
}

void CudaBackend::gelu_mul(float* out, const float* gate, const float* up, int64_t n, bool tanh_approx) {
  const char* op = "gelu_mul";
  need(n >= 0, op, "negative size");
  if (n == 0) return;
  need(out && gate && up, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_gelu_mul(out, gate, up, n, tanh_approx ? 1 : 0, stream_), op, "kernel launch");
}

void CudaBackend::gelu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout,
                               int64_t n, bool tanh_approx) {
  const char* op = "gelu_mul_bwd";
  need(n >= 0, op, "negative size");
  if (n == 0) return;
  need(dgate && dup && gate && up && dout, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_gelu_mul_bwd(dgate, dup, gate, up, dout, n, tanh_approx ? 1 : 0, stream_), op, "kernel launch");
}

void CudaBackend::silu_mul(float* out, const float* gate, const float* up, int64_t n) {
  const char* op = "silu_mul";
  need(n >= 0, op, "negative size");
  if (n == 0) return;
  need(out && gate && up, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_silu_mul(out, gate, up, n, stream_), op, "kernel launch");
}

void CudaBackend::add_inplace(float* y, const float* x, int64_t n) {
  const char* op = "add_inplace";
  need(n >= 0, op, "negative size");
  if (n == 0) return;
  need(y && x, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_add_inplace(y, x, n, stream_), op, "kernel launch");
}

void CudaBackend::copy_2d(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) {
  const char* op = "copy_2d";
  need(rows >= 0 && cols >= 0 && ldd >= cols && lds >= cols, op, "bad size or stride");
  if (rows == 0 || cols == 0) return;
  need(dst && src, op, "null pointer");
  DeviceGuard g(device_, op);
  check(cudaMemcpy2DAsync(dst, size_t(ldd) * sizeof(float), src, size_t(lds) * sizeof(float), size_t(cols) * sizeof(float),
                          size_t(rows), cudaMemcpyDeviceToDevice, stream_),
        op, "cudaMemcpy2DAsync");
}

namespace {
void check_paged(const PagedRows& p, int64_t pos0, int64_t col0, int64_t rows, int64_t cols, const char* op) {
  need(rows >= 0 && cols >= 0 && pos0 >= 0 && col0 >= 0, op, "negative size or offset");
  if (rows == 0 || cols == 0) return;
  need(p.blocks != nullptr, op, "null block table");
  need(p.block_size > 0, op, "block_size must be positive");
  need(col0 + cols <= p.row_stride, op, "columns past the row stride");
  need(pos0 + rows <= p.n_blocks * p.block_size, op, "rows past the block table");
  need(p.dtype == DType::F32 || p.dtype == DType::BF16, op, "KV dtype must be f32 or bf16");
}
}  // namespace

void CudaBackend::paged_write(const PagedRows& dst, int64_t pos0, int64_t col0, const float* src, int64_t lds,
                              int64_t rows, int64_t cols) {
  const char* op = "paged_write";
  check_paged(dst, pos0, col0, rows, cols, op);
  if (rows == 0 || cols == 0) return;
  need(src && lds >= cols, op, "null source or row stride smaller than cols");
  DeviceGuard g(device_, op);
  check(launch_paged_write(dst.blocks, dst.block_size, dst.row_stride, dst.dtype == DType::BF16, pos0, col0, src, lds,
                           rows, cols, stream_),
        op, "kernel launch");
}

void CudaBackend::paged_read(float* dst, int64_t ldd, const PagedRows& src, int64_t pos0, int64_t col0, int64_t rows,
                             int64_t cols) {
  const char* op = "paged_read";
  check_paged(src, pos0, col0, rows, cols, op);
  if (rows == 0 || cols == 0) return;
  need(dst && ldd >= cols, op, "null destination or row stride smaller than cols");
  DeviceGuard g(device_, op);
  check(launch_paged_read(dst, ldd, src.blocks, src.block_size, src.row_stride, src.dtype == DType::BF16, pos0, col0,
                          rows, cols, stream_),
        op, "kernel launch");
}

void CudaBackend::fill_zero(void* p, size_t bytes) {
  const char* op = "fill_zero";
  if (bytes == 0) return;
  need(p != nullptr, op, "null pointer");
  DeviceGuard g(device_, op);
  check(cudaMemsetAsync(p, 0, bytes, stream_), op, "cudaMemsetAsync");
}

void CudaBackend::copy_bytes(void* dst, const void* src, size_t bytes) {
  const char* op = "copy_bytes";
  if (bytes == 0) return;
  need(dst && src, op, "null pointer");
  DeviceGuard g(device_, op);
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), op, "cudaMemcpyAsync");
}

namespace {
MoeRouteDev route_dev(const MoeRouteArgs& a, const char* op) {
  const std::string why = moe_route_problem(a);
  need(why.empty(), op, why.c_str());
  return MoeRouteDev{a.logits, a.bias, a.rows, a.n_experts, a.top_k, a.sigmoid ? 1 : 0, a.n_group, a.topk_group,
                     a.norm_topk_prob ? 1 : 0, a.scale, a.idx, a.weight};
}
}  // namespace

void CudaBackend::add_group_sums(float* out, int64_t ldo, const float* x, int64_t ldx, int64_t groups, int64_t group,
                                 int64_t cols) {
  const char* op = "add_group_sums";
  need(groups >= 0 && group >= 0 && cols >= 0 && ldo >= cols && ldx >= cols, op, "bad size or stride");
  if (groups == 0 || group == 0 || cols == 0) return;
  need(out && x, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_add_group_sums(out, ldo, x, ldx, groups, group, cols, stream_), op, "kernel launch");
}

void CudaBackend::grpo_token_loss(const GrpoLossArgs& a) {
  const char* op = "grpo_token_loss";
  const std::string why = grpo_loss_problem(a);
  need(why.empty(), op, why.c_str());
  DeviceGuard g(device_, op);
  check(launch_grpo_token_loss(GrpoLossDev{a.logp, a.old_logp, a.log_weight, a.pg_scale, a.ref_logp, a.adv, a.weight, a.n,
                                           a.eps_low, a.eps_high, a.beta, a.kl, a.k3_clamp,
                                           a.kl_ratio_correction ? 1 : 0, a.dlogp, a.dlog_weight, a.sums},
                               stream_),
        op, "kernel launch");
}

void CudaBackend::distill_rows(const DistillRowsArgs& a) {
  const char* op = "distill_rows";
  const std::string why = distill_rows_problem(a);
  need(why.empty(), op, why.c_str());
  DeviceGuard g(device_, op);
  check(launch_distill_rows(DistillRowsDev{a.z_s, a.lse_s, a.z_t, a.lse_t, a.weight, a.rows, a.n, a.inv_t, int(a.kind),
                                           a.beta, a.loss},
                            stream_),
        op, "kernel launch");
}

// Sampling runs the host algorithm (sampling.h) on the rows it downloads: V floats per sampled
// row per step. A device kernel (sorting-free top-k/top-p) is the CUDA issue's; this keeps every
// backend's tokens identical meanwhile.
void CudaBackend::sample_rows(const SampleArgs& a) {
  const char* op = "sample_rows";
  if (a.n_rows <= 0) return;
  need(a.logits && a.rows && a.n > 0, op, "null logits or rows, or an empty vocabulary");
  std::vector<float> row(static_cast<size_t>(a.n));
  SamplerScratch s;
  for (int64_t i = 0; i < a.n_rows; ++i) {
    download(row.data(), a.logits + a.rows[i].row * a.n, row.size() * sizeof(float));
    sample_row(row.data(), a.n, a.rows[i], s);
  }
}

void CudaBackend::moe_route(const MoeRouteArgs& a) {
  const char* op = "moe_route";
  const MoeRouteDev d = route_dev(a, op);
  if (a.rows == 0) return;
  DeviceGuard g(device_, op);
  check(launch_moe_route(d, stream_), op, "kernel launch");
}

void CudaBackend::moe_route_bwd(const MoeRouteArgs& a, const float* dweight, float* dlogits) {
  const char* op = "moe_route_bwd";
  const MoeRouteDev d = route_dev(a, op);
  if (a.rows == 0) return;
  need(dweight && dlogits, op, "null dweight or dlogits");
  DeviceGuard g(device_, op);
  check(launch_moe_route_bwd(d, dweight, dlogits, stream_), op, "kernel launch");
}

void CudaBackend::moe_group_rows(const int32_t* idx, const float* weight, int64_t rows, int top_k, int n_experts,
                                 int32_t* offsets, int32_t* slots, int32_t* tok, float* wts) {
  const char* op = "moe_group_rows";
  need(rows >= 0 && top_k > 0 && n_experts > 0, op, "bad size");
  need(offsets && (rows == 0 || (idx && weight && slots && tok && wts)), op, "null pointer");
  need(rows * top_k <= INT_MAX, op, "more than 2^31 routing slots");
  DeviceGuard g(device_, op);
  check(launch_moe_group_rows(idx, weight, rows * top_k, top_k, n_experts, offsets, slots, tok, wts, stream_), op,
        "kernel launch");
}

void CudaBackend::gather_scale_dot(float* dst, float* dots, const float* src, const int32_t* ids, const float* scale,
                                   const float* y, int64_t n, int64_t dim) {
  const char* op = "gather_scale_dot";
  need(n >= 0 && dim >= 0, op, "negative size");
  if (n == 0) return;
  need(src && y && dots && (!dst || scale), op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_gather_scale_dot(dst, dots, src, ids, scale, y, n, dim, stream_), op, "kernel launch");
}

void CudaBackend::sigmoid_gate_add(float* out, const float* z, const float* y, int64_t rows, int64_t dim) {
  const char* op = "sigmoid_gate_add";
  need(rows >= 0 && dim >= 0, op, "negative size");
  if (rows == 0) return;
  need(out && z && y, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_sigmoid_gate_add(out, z, y, rows, dim, stream_), op, "kernel launch");
}

void CudaBackend::sigmoid_gate_bwd(float* dy, float* dz, const float* z, const float* y, const float* dout,
                                   int64_t rows, int64_t dim) {
  const char* op = "sigmoid_gate_bwd";
  need(rows >= 0 && dim >= 0, op, "negative size");
  if (rows == 0) return;
  need(dy && dz && z && y && dout, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_sigmoid_gate_bwd(dy, dz, z, y, dout, rows, dim, stream_), op, "kernel launch");
}

void CudaBackend::gather_rows(float* out, const void* table, DType dtype, const int32_t* ids, int64_t n,
                              int64_t dim) {
  const char* op = "gather_rows";
  need(n >= 0 && dim >= 0, op, "negative size");
  if (n == 0 || dim == 0) return;
  need(out && table && ids, op, "null pointer");
  const int dt = dtype == DType::F32 ? 0 : dtype == DType::BF16 ? 1 : dtype == DType::F16 ? 2 : -1;
  need(dt >= 0, op, "table dtype must be f32, bf16 or f16");
  DeviceGuard g(device_, op);
  check(launch_gather_rows(out, table, dt, ids, n, dim, stream_), op, "kernel launch");
}

void CudaBackend::rmsnorm_bwd(float* dx, float* dw, const float* x, const float* w, const float* rstd,
                              const float* dy, int64_t rows, int64_t dim) {
  const char* op = "rmsnorm_bwd";
  need(rows >= 0 && dim >= 0, op, "negative size");
  if (rows == 0 || dim == 0) return;
  need(dx && x && w && rstd && dy, op, "null pointer");  // dw may be null (a frozen weight)
  DeviceGuard g(device_, op);
  check(launch_rmsnorm_bwd(dx, dw, x, w, rstd, dy, rows, dim, stream_), op, "kernel launch");
}

void CudaBackend::rope_bwd(float* dx, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
                           const int32_t* pos, const float* inv_freq, float attn_factor, bool interleaved) {
  const char* op = "rope_bwd";
  need(n_tokens >= 0 && n_heads >= 0 && head_dim >= 0, op, "negative size");
  need(rot_dim >= 0 && rot_dim <= head_dim && rot_dim % 2 == 0, op, "rot_dim must be even and <= head_dim");
  if (n_tokens == 0 || n_heads == 0 || rot_dim == 0) return;
  need(dx && pos && inv_freq, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_rope_bwd(dx, n_tokens, n_heads, head_dim, rot_dim, stride, pos, inv_freq, attn_factor, interleaved,
                        stream_),
        op,
        "kernel launch");
}

void CudaBackend::silu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout,
                               int64_t n) {
  const char* op = "silu_mul_bwd";
  need(n >= 0, op, "negative size");
  if (n == 0) return;
  need(dgate && dup && gate && up && dout, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_silu_mul_bwd(dgate, dup, gate, up, dout, n, stream_), op, "kernel launch");
}

void CudaBackend::scatter_add_rows(float* table, const int32_t* ids, const float* src, const float* weights, int64_t n, int64_t dim) {
  const char* op = "scatter_add_rows";
  need(n >= 0 && dim >= 0, op, "negative size");
  if (n == 0 || dim == 0) return;
  need(table && ids && src, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_scatter_add_rows(table, ids, src, weights, n, dim, stream_), op, "kernel launch");
}

void CudaBackend::add_column_sums(float* out, const float* x, int64_t rows, int64_t cols) {
  const char* op = "add_column_sums";
  need(rows >= 0 && cols >= 0, op, "negative size");
  if (rows == 0 || cols == 0) return;
  need(out && x, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_add_column_sums(out, x, rows, cols, stream_), op, "kernel launch");
}

void CudaBackend::dropout_scale(float* y, const float* x, int64_t rows, int64_t cols, int64_t ldx, float p, uint64_t seed,
                                bool accumulate) {
  const char* op = "dropout_scale";
  need(rows >= 0 && cols >= 0 && ldx >= cols, op, "bad size or stride");
  need(p >= 0.0f && p < 1.0f, op, "p must be in [0, 1)");
  if (rows == 0 || cols == 0) return;
  need(y && x, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_dropout_scale(y, x, rows, cols, ldx, p, seed, accumulate, stream_), op, "kernel launch");
}

double CudaBackend::sum_squares(const float* x, int64_t n) {
  const char* op = "sum_squares";
  need(n >= 0, op, "negative size");
  if (n == 0) return 0.0;
  need(x != nullptr, op, "null pointer");
  const int64_t nb = (n + kSumSquaresBlock - 1) / kSumSquaresBlock;
  std::vector<double> host(size_t(nb), 0.0);
  double* part = static_cast<double*>(alloc(size_t(nb) * sizeof(double)));
  try {
    DeviceGuard g(device_, op);
    check(launch_sum_squares_blocks(part, x, n, stream_), op, "kernel launch");
    download(host.data(), part, size_t(nb) * sizeof(double));
  } catch (...) {
    dealloc(part);
    throw;
  }
  dealloc(part);
  double total = 0;
  for (double p : host) total += p;
  return total;
}

void CudaBackend::logsoftmax_rows(const float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target,
                                  float* lse, float* logp, float* entropy) {
  const char* op = "logsoftmax_rows";
  need(rows >= 0 && n > 0, op, "bad size");
  if (rows == 0) return;
  need(z && target && lse, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_logsoftmax_rows(z, rows, n, inv_t, target, lse, logp, entropy, stream_), op, "kernel launch");
}

void CudaBackend::logsoftmax_rows_bwd(float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target,
                                      const float* lse, const float* dlogp) {
  const char* op = "logsoftmax_rows_bwd";
  need(rows >= 0 && n > 0, op, "bad size");
  if (rows == 0) return;
  need(z && target && lse && dlogp, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_logsoftmax_rows_bwd(z, rows, n, inv_t, target, lse, dlogp, stream_), op, "kernel launch");
}

void CudaBackend::adamw_update(const AdamWArgs& a) {
  const char* op = "adamw_update";
  need(a.n >= 0, op, "negative size");
  if (a.n == 0) return;
  need(a.w && a.m && a.v && a.g, op, "null pointer");
  DeviceGuard g(device_, op);
  check(launch_adamw(a.w, a.m, a.v, a.g, a.n, a.lr, a.beta1, a.beta2, a.eps, a.decay, a.clip, a.step_size,
                     a.bc2_sqrt, stream_),
        op, "kernel launch");
}

std::string CudaBackend::device_collective_id() { return nccl_unique_id(); }

std::unique_ptr<DeviceCollective> CudaBackend::device_collective(const std::string& id, int rank, int ranks) {
  synchronize();
  return nccl_collective(id, rank, ranks, device_, stream_);
}

}  // namespace cuda

// The GPU this process uses: device 0, or with several ranks of a job on one node, the rank's
// local index modulo the visible devices (OpenMPI's OMPI_COMM_WORLD_LOCAL_RANK, torchrun's
// LOCAL_RANK, Slurm's SLURM_LOCALID), so that each rank has its own GPU as NCCL requires.
static int process_device() {
  int local = 0;
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "LOCAL_RANK", "SLURM_LOCALID"})
    if (const char* e = std::getenv(v); e && *e) {
      local = std::atoi(e);
      break;
    }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= 0) return 0;
  return local > 0 ? local % count : 0;
}

// The process-wide CUDA backend on process_device(), opened on first use (thread-safe) and kept for the
// life of the process. It is deliberately never destroyed: at exit the statically linked CUDA
// runtime may already be torn down, and freeing device memory then fails or crashes.
Backend* cuda_backend(std::string* why) {
  struct Opened {
    Backend* backend = nullptr;
    std::string why;
  };
  static const Opened opened = [] {
    Opened o;
    try {
      o.backend = cuda::CudaBackend::open(process_device(), &o.why).release();
    } catch (const std::exception& e) {
      o.why = std::string("cuda backend: ") + e.what();
    }
    if (!o.backend && o.why.empty()) o.why = "cuda backend: unknown failure";
    return o;
  }();
  if (why) *why = opened.backend ? std::string() : opened.why;
  return opened.backend;
}

}  // namespace reason::kernels
