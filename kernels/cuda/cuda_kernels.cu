// The CUDA backend's kernels (see cuda_kernels.h). Correctness first: f32 accumulation,
// accurate expf/sqrtf/sincosf (no --use_fast_math) so results match the CPU backend closely.
#include <cuda_bf16.h>

#include <cmath>

#include "cuda_kernels.h"

namespace reason::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;  // grid-stride loops cover the rest

int grid_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > kMaxBlocks) b = kMaxBlocks;
  return int(b);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide reductions; blockDim.x is a multiple of 32 (<= 1024); `red` holds 32 floats.
// Every thread gets the result. Safe to call back to back with the same `red`.
__device__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // earlier readers of red[0] are done
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < n_warps ? red[lane] : 0.0f;
    v = warp_sum(v);
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  return red[0];
}

__device__ float block_max(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < n_warps ? red[lane] : -INFINITY;
    v = warp_max(v);
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  return red[0];
}

__global__ void probe_kernel(int* out) { *out = 0x5eed; }

__global__ void f32_to_bf16_rows_kernel(__nv_bfloat16* dst, const float* src, int64_t m,
                                        int64_t k, int64_t ldx) {
  const int64_t total = m * k;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / k, c = i - r * k;
    dst[i] = __float2bfloat16_rn(src[r * ldx + c]);
  }
}

__global__ void add_bias_rows_kernel(float* y, const float* bias, int64_t m, int64_t n,
                                     int64_t ldy) {
  const int64_t total = m * n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / n, c = i - r * n;
    y[r * ldy + c] += bias[c];
  }
}

// One block per row (grid-stride over rows). y may alias x: every element is read (for the
// sum and again for the output) by the same thread that later writes it, and the sum is
// complete (block_sum synchronises) before any write.
__global__ void rmsnorm_kernel(float* y, const float* x, const float* w, int64_t rows,
                               int64_t dim, float eps, float* rstd) {
  __shared__ float red[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, red);
    const float inv = 1.0f / sqrtf(ss / float(dim) + eps);
    if (rstd && threadIdx.x == 0) rstd[r] = inv;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = (xr[i] * inv) * w[i];
    __syncthreads();  // the next row's block_sum reuses red
  }
}

// One thread per rotated pair (token t, head h, i < rot_dim / 2).
__global__ void rope_kernel(float* x, int64_t n_tokens, int n_heads, int head_dim, int half,
                            int64_t stride, const int32_t* pos, const float* inv_freq,
                            float attn_factor, int interleaved) {
  const int64_t total = n_tokens * n_heads * half;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int i = int(idx % half);
    const int64_t th = idx / half;
    const int h = int(th % n_heads);
    const int64_t t = th / n_heads;
    float* xh = x + t * stride + int64_t(h) * head_dim;
    const float angle = float(pos[t]) * inv_freq[i];
    float s, c;
    sincosf(angle, &s, &c);
    c *= attn_factor;
    s *= attn_factor;
    float* p = xh + (interleaved ? 2 * i : i);
    const int partner = interleaved ? 1 : half;
    const float x0 = p[0], x1 = p[partner];
    p[0] = x0 * c - x1 * s;
    p[partner] = x1 * c + x0 * s;
  }
}

__global__ void silu_mul_kernel(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__device__ __forceinline__ float gelu_dev(float x, int tanh_approx, float* grad) {
  if (tanh_approx) {
    const float k = 0.7978845608028654f, t = tanhf(k * (x + 0.044715f * x * x * x));
    *grad = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * x * (1.0f + t);
  }
  const float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865476f));
  *grad = cdf + x * 0.3989422804014327f * expf(-0.5f * x * x);
  return x * cdf;
}

__global__ void gelu_mul_kernel(float* out, const float* gate, const float* up, int64_t n, int tanh_approx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float grad;
    out[i] = gelu_dev(gate[i], tanh_approx, &grad) * up[i];
  }
}

__global__ void gelu_mul_bwd_kernel(float* dgate, float* dup, const float* gate, const float* up, const float* dout,
                                    int64_t n, int tanh_approx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float grad;
    const float gl = gelu_dev(gate[i], tanh_approx, &grad);
    dup[i] = dout[i] * gl;
    dgate[i] = dout[i] * up[i] * grad;
  }
}

__global__ void add_inplace_kernel(float* y, const float* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += x[i];
}

constexpr int kAttnThreads = 128;
constexpr int kAttnTile = 64;  // keys scored per step

// Key/value position p of a sequence: the base pointer of its block (or of the whole history) and
// the element offset of its row there.
__device__ __forceinline__ const void* kv_base(const void* flat, void* const* blocks, const AttnShape& sh, int64_t p) {
  return sh.block_size > 0 ? blocks[p / sh.block_size] : flat;
}
__device__ __forceinline__ int64_t kv_offset(const AttnSeqDev&, const AttnShape& sh, int64_t p) {
  return (sh.block_size > 0 ? p % sh.block_size : p) * sh.kv_stride;
}
__device__ __forceinline__ float kv_value(const void* base, int64_t i, int bf16) {
  return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]) : static_cast<const float*>(base)[i];
}

__global__ void paged_write_kernel(void* const* blocks, int64_t bs, int64_t stride, int bf16, int64_t pos0, int64_t col0,
                                   const float* src, int64_t lds, int64_t rows, int64_t cols) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * cols; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i % cols, p = pos0 + r;
    const int64_t off = (p % bs) * stride + col0 + c;
    const float x = src[r * lds + c];
    if (bf16)
      static_cast<__nv_bfloat16*>(blocks[p / bs])[off] = __float2bfloat16_rn(x);
    else
      static_cast<float*>(blocks[p / bs])[off] = x;
  }
}

__global__ void paged_read_kernel(float* dst, int64_t ldd, void* const* blocks, int64_t bs, int64_t stride, int bf16,
                                  int64_t pos0, int64_t col0, int64_t rows, int64_t cols) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * cols; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i % cols, p = pos0 + r;
    dst[r * ldd + c] = kv_value(blocks[p / bs], (p % bs) * stride + col0 + c, bf16);
  }
}

// grid = (chunk.n_tokens, n_heads); block = kAttnThreads.
// Dynamic shared memory: q[head_dim] | acc[head_dim] | p[kAttnTile] | red[32].
__global__ void __launch_bounds__(kAttnThreads)
    attention_kernel(AttnChunk chunk, AttnShape sh) {
  extern __shared__ float smem[];
  float* qs = smem;
  float* acc = qs + sh.head_dim;
  float* p = acc + sh.head_dim;
  float* red = p + kAttnTile;

  // Which sequence owns this query token: the last one whose tok0 <= token.
  const int64_t token = blockIdx.x;
  int s = 0;
  for (int i = 1; i < chunk.n_seqs; ++i)
    if (chunk.seq[i].tok0 <= token) s = i;
  const AttnSeqDev& seq = chunk.seq[s];
  const int64_t t = token - seq.tok0;
  const int h = blockIdx.y;
  const int g = h / (sh.n_heads / sh.n_kv_heads);
  const int hd = sh.head_dim;

  const float* q = seq.q + t * sh.q_stride + int64_t(h) * hd;
  const int64_t koff = int64_t(g) * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    qs[d] = q[d];
    acc[d] = 0.0f;  // each thread owns acc[d] for its d: no synchronisation needed on acc
  }
  __syncthreads();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  const int64_t n_keys = seq.q_pos0 + t + 1;  // causal: keys 0 .. q_pos0 + t
  const int64_t key0 = sh.window > 0 && n_keys > sh.window ? n_keys - sh.window : 0;  // sliding window
  float m = -INFINITY, l = 0.0f;
  for (int64_t j0 = key0; j0 < n_keys; j0 += kAttnTile) {
    const int nt = int(n_keys - j0 < kAttnTile ? n_keys - j0 : kAttnTile);
    // Scores: one warp per key.
    for (int jj = warp; jj < nt; jj += n_warps) {
      const int64_t off = kv_offset(seq, sh, j0 + jj) + koff;
      float dot = 0.0f;
      for (int d = lane; d < hd; d += 32) dot += qs[d] * kv_value(kv_base(seq.k, seq.k_blocks, sh, j0 + jj), off + d, sh.kv_bf16);
      dot = warp_sum(dot);
      if (lane == 0) p[jj] = dot * sh.scale;
    }
    __syncthreads();
    float tmax = -INFINITY;
    for (int jj = threadIdx.x; jj < nt; jj += blockDim.x) tmax = fmaxf(tmax, p[jj]);
    tmax = block_max(tmax, red);  // synchronises: all scores were read before p is rewritten
    const float m_new = fmaxf(m, tmax);
    const float corr = expf(m - m_new);  // 0 on the first tile (m = -inf)
    float psum = 0.0f;
    for (int jj = threadIdx.x; jj < nt; jj += blockDim.x) {
      const float e = expf(p[jj] - m_new);
      p[jj] = e;
      psum += e;
    }
    psum = block_sum(psum, red);  // synchronises: p holds probabilities for every thread
    l = l * corr + psum;
    m = m_new;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
      float a = acc[d] * corr;
      for (int jj = 0; jj < nt; ++jj)
        a += p[jj] * kv_value(kv_base(seq.v, seq.v_blocks, sh, j0 + jj), kv_offset(seq, sh, j0 + jj) + koff + d, sh.kv_bf16);
      acc[d] = a;
    }
    __syncthreads();  // p is overwritten by the next tile's scores
  }
  float* out = seq.out + t * sh.out_stride + int64_t(h) * hd;
  const float inv_l = 1.0f / l;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) out[d] = acc[d] * inv_l;
}

}  // namespace

cudaError_t launch_probe(int* out, cudaStream_t stream) {
  probe_kernel<<<1, 1, 0, stream>>>(out);
  return cudaGetLastError();
}

cudaError_t launch_f32_to_bf16_rows(uint16_t* dst, const float* src, int64_t m, int64_t k,
                                    int64_t ldx, cudaStream_t stream) {
  if (m <= 0 || k <= 0) return cudaSuccess;
  f32_to_bf16_rows_kernel<<<grid_for(m * k), kThreads, 0, stream>>>(
      reinterpret_cast<__nv_bfloat16*>(dst), src, m, k, ldx);
  return cudaGetLastError();
}

cudaError_t launch_add_bias_rows(float* y, const float* bias, int64_t m, int64_t n, int64_t ldy,
                                 cudaStream_t stream) {
  if (m <= 0 || n <= 0) return cudaSuccess;
  add_bias_rows_kernel<<<grid_for(m * n), kThreads, 0, stream>>>(y, bias, m, n, ldy);
  return cudaGetLastError();
}

cudaError_t launch_rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t dim,
                           float eps, float* rstd, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return cudaSuccess;
  // Small rows get a smaller block (still a multiple of 32) so few threads idle.
  int threads = dim >= 1024 ? 256 : dim >= 256 ? 128 : dim >= 64 ? 64 : 32;
  const int blocks = int(rows < kMaxBlocks ? rows : kMaxBlocks);
  rmsnorm_kernel<<<blocks, threads, 0, stream>>>(y, x, w, rows, dim, eps, rstd);
  return cudaGetLastError();
}

cudaError_t launch_rope(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim,
                        int64_t stride, const int32_t* pos, const float* inv_freq,
                        float attn_factor, bool interleaved, cudaStream_t stream) {
  const int half = rot_dim / 2;
  if (n_tokens <= 0 || n_heads <= 0 || half <= 0) return cudaSuccess;
  rope_kernel<<<grid_for(n_tokens * n_heads * half), kThreads, 0, stream>>>(
      x, n_tokens, n_heads, head_dim, half, stride, pos, inv_freq, attn_factor, interleaved ? 1 : 0);
  return cudaGetLastError();
}

cudaError_t launch_gelu_mul(float* out, const float* gate, const float* up, int64_t n, int tanh_approx, cudaStream_t stream) {
  gelu_mul_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, gate, up, n, tanh_approx);
  return cudaGetLastError();
}

cudaError_t launch_gelu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t n,
                                int tanh_approx, cudaStream_t stream) {
  gelu_mul_bwd_kernel<<<grid_for(n), kThreads, 0, stream>>>(dgate, dup, gate, up, dout, n, tanh_approx);
  return cudaGetLastError();
}

cudaError_t launch_silu_mul(float* out, const float* gate, const float* up, int64_t n,
                            cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  silu_mul_kernel<<<grid_for(n), kThreads, 0, stream>>>(out, gate, up, n);
  return cudaGetLastError();
}

cudaError_t launch_add_inplace(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  add_inplace_kernel<<<grid_for(n), kThreads, 0, stream>>>(y, x, n);
  return cudaGetLastError();
}

cudaError_t launch_paged_write(void* const* blocks, int64_t block_size, int64_t row_stride, int bf16, int64_t pos0,
                               int64_t col0, const float* src, int64_t lds, int64_t rows, int64_t cols,
                               cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  paged_write_kernel<<<grid_for(rows * cols), kThreads, 0, stream>>>(blocks, block_size, row_stride, bf16, pos0, col0,
                                                                      src, lds, rows, cols);
  return cudaGetLastError();
}

cudaError_t launch_paged_read(float* dst, int64_t ldd, void* const* blocks, int64_t block_size, int64_t row_stride,
                              int bf16, int64_t pos0, int64_t col0, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  paged_read_kernel<<<grid_for(rows * cols), kThreads, 0, stream>>>(dst, ldd, blocks, block_size, row_stride, bf16,
                                                                     pos0, col0, rows, cols);
  return cudaGetLastError();
}

cudaError_t launch_attention(const AttnChunk& chunk, const AttnShape& shape, cudaStream_t stream) {
  if (chunk.n_seqs <= 0 || chunk.n_tokens <= 0 || shape.n_heads <= 0 || shape.head_dim <= 0)
    return cudaSuccess;
  const size_t smem = (2 * size_t(shape.head_dim) + kAttnTile + 32) * sizeof(float);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(attention_kernel,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  const dim3 grid(unsigned(chunk.n_tokens), unsigned(shape.n_heads));
  attention_kernel<<<grid, kAttnThreads, smem, stream>>>(chunk, shape);
  return cudaGetLastError();
}

}  // namespace reason::kernels::cuda
