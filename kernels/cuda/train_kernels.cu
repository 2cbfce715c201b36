// The CUDA backend's training kernels (cuda_kernels.h): the same arithmetic as the CPU loops in
// kernels/cpu/isa/train_ops.cpp, with accurate expf/sincosf (no --use_fast_math).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../dropout_mask.h"
#include "cuda_kernels.h"

namespace reason::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

int grid_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return int(b < 1 ? 1 : b > kMaxBlocks ? kMaxBlocks : b);
}

#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void gather_rows_kernel(float* out, const void* table, int dt, const int32_t* ids, int64_t n, int64_t dim) {
  GRID_STRIDE(idx, n * dim) {
    const int64_t r = idx / dim, c = idx % dim;
    const int64_t src = int64_t(ids[r]) * dim + c;
    float v;
    if (dt == 0)
      v = static_cast<const float*>(table)[src];
    else if (dt == 1)
      v = __bfloat162float(static_cast<const __nv_bfloat16*>(table)[src]);
    else
      v = __half2float(static_cast<const __half*>(table)[src]);
    out[idx] = v;
  }
}

// dx: one thread per row (the row's dot in double, as on the CPU), then its elements.
__global__ void rmsnorm_bwd_rows(float* dx, const float* x, const float* w, const float* rstd, const float* dy,
                                 int64_t rows, int64_t dim) {
  GRID_STRIDE(r, rows) {
    const float* xr = x + r * dim;
    const float* g = dy + r * dim;
    const float rs = rstd[r];
    double dot = 0;
    for (int64_t i = 0; i < dim; ++i) dot += double(w[i]) * g[i] * xr[i];
    const float coef = float(dot) * rs * rs * rs / float(dim);
    for (int64_t i = 0; i < dim; ++i) dx[r * dim + i] += rs * w[i] * g[i] - coef * xr[i];
  }
}

__global__ void rmsnorm_bwd_cols(float* dw, const float* x, const float* rstd, const float* dy, int64_t rows,
                                 int64_t dim) {
  GRID_STRIDE(c, dim) {
    float acc = dw[c];
    for (int64_t r = 0; r < rows; ++r) acc += dy[r * dim + c] * x[r * dim + c] * rstd[r];
    dw[c] = acc;
  }
}

__global__ void rope_bwd_kernel(float* x, int64_t n_tokens, int n_heads, int head_dim, int half, int64_t stride,
                                const int32_t* pos, const float* inv_freq, float attn_factor, int interleaved) {
  GRID_STRIDE(idx, n_tokens * n_heads * half) {
    const int i = int(idx % half);
    const int64_t th = idx / half;
    const int h = int(th % n_heads);
    const int64_t t = th / n_heads;
    float* xh = x + t * stride + int64_t(h) * head_dim;
    float s, c;
    sincosf(float(pos[t]) * inv_freq[i], &s, &c);
    c *= attn_factor;
    s *= attn_factor;
    float* p = xh + (interleaved ? 2 * i : i);
    const int partner = interleaved ? 1 : half;
    const float a = p[0], b = p[partner];
    p[0] = a * c + b * s;
    p[partner] = b * c - a * s;
  }
}

__global__ void silu_mul_bwd_kernel(float* dgate, float* dup, const float* gate, const float* up, const float* dout,
                                    int64_t n) {
  GRID_STRIDE(i, n) {
    const float z = gate[i], sg = 1.0f / (1.0f + expf(-z));
    dup[i] = dout[i] * z * sg;
    dgate[i] = dout[i] * up[i] * sg * (1.0f + z * (1.0f - sg));
  }
}

__global__ void scatter_add_rows_kernel(float* table, const int32_t* ids, const float* src, const float* weights, int64_t n, int64_t dim) {
  GRID_STRIDE(c, dim) {
    for (int64_t r = 0; r < n; ++r) {
      const float s = src[r * dim + c];
      table[int64_t(ids[r]) * dim + c] += weights ? weights[r] * s : s;
    }
  }
}

__global__ void add_column_sums_kernel(float* out, const float* x, int64_t rows, int64_t cols) {
  GRID_STRIDE(c, cols) {
    float acc = out[c];
    for (int64_t r = 0; r < rows; ++r) acc += x[r * cols + c];
    out[c] = acc;
  }
}

__global__ void dropout_scale_kernel(float* y, const float* x, int64_t rows, int64_t cols, int64_t ldx, float p,
                                     uint64_t seed, bool accumulate) {
  const float s = 1.0f / (1.0f - p);
  GRID_STRIDE(i, rows * cols) {
    const int64_t r = i / cols, c = i % cols;
    const float v = dropout_keep(seed, r, c, p) ? x[r * ldx + c] * s : 0.0f;
    y[i] = accumulate ? y[i] + v : v;
  }
}

// One thread per block of kSumSquaresBlock elements, summed in order.
__global__ void sum_squares_kernel(double* partial, const float* x, int64_t n, int64_t nb) {
  GRID_STRIDE(b, nb) {
    const int64_t e = (b + 1) * kSumSquaresBlock < n ? (b + 1) * kSumSquaresBlock : n;
    double s = 0;
    for (int64_t i = b * kSumSquaresBlock; i < e; ++i) s += double(x[i]) * x[i];
    partial[b] = s;
  }
}

__global__ void adamw_kernel(float* w, float* m, float* v, const float* g, int64_t n, float lr, float beta1,
                             float beta2, float eps, float decay, float clip, float step_size, float bc2_sqrt) {
  const float keep = 1.0f - lr * decay;
  GRID_STRIDE(i, n) {
    const float gi = g[i] * clip;
    if (decay != 0.0f) w[i] *= keep;
    m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
    v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    const float denom = sqrtf(v[i]) / bc2_sqrt + eps;
    w[i] -= step_size * m[i] / denom;
  }
}

constexpr int kRowThreads = 256;  // blockDim of the row kernels (a multiple of 32)

// Block-wide reductions over kRowThreads threads; every thread gets the result.
__device__ double block_sum_d(double v, double* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  double t = 0;
  for (int w = 0; w < kRowThreads / 32; ++w) t += red[w];
  return t;
}

__device__ float block_max_f(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float t = red[0];
  for (int w = 1; w < kRowThreads / 32; ++w) t = fmaxf(t, red[w]);
  return t;
}

__global__ void logsoftmax_rows_kernel(const float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target,
                                       float* lse, float* logp, float* entropy) {
  __shared__ double redd[kRowThreads / 32];
  __shared__ float redf[kRowThreads / 32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* zr = z + r * n;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, zr[j]);
    mx = block_max_f(mx, redf) * inv_t;
    double sum = 0, dot = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const float s = zr[j] * inv_t;
      const double e = double(expf(s - mx));
      sum += e;
      dot += e * double(s);
    }
    sum = block_sum_d(sum, redd);
    dot = block_sum_d(dot, redd);
    if (threadIdx.x == 0) {
      const double l = double(mx) + log(sum);
      lse[r] = float(l);
      if (logp) logp[r] = float(double(zr[target[r]] * inv_t) - l);
      if (entropy) entropy[r] = float(l - dot / sum);
    }
    __syncthreads();
  }
}

__global__ void logsoftmax_rows_bwd_kernel(float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target,
                                           const float* lse, const float* dlogp) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    float* zr = z + r * n;
    const float g = dlogp[r], c = -g * inv_t, l = lse[r];
    const int32_t t = target[r];
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const float p = expf(zr[j] * inv_t - l);
      zr[j] = p * c + (j == t ? g * inv_t : 0.0f);
    }
  }
}

#undef GRID_STRIDE

}  // namespace

cudaError_t launch_gather_rows(float* out, const void* table, int table_dtype, const int32_t* ids, int64_t n,
                               int64_t dim, cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return cudaSuccess;
  gather_rows_kernel<<<grid_for(n * dim), kThreads, 0, stream>>>(out, table, table_dtype, ids, n, dim);
  return cudaGetLastError();
}

cudaError_t launch_rmsnorm_bwd(float* dx, float* dw, const float* x, const float* w, const float* rstd,
                               const float* dy, int64_t rows, int64_t dim, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return cudaSuccess;
  rmsnorm_bwd_rows<<<grid_for(rows), kThreads, 0, stream>>>(dx, x, w, rstd, dy, rows, dim);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || !dw) return e;  // dw null: a frozen weight
  rmsnorm_bwd_cols<<<grid_for(dim), kThreads, 0, stream>>>(dw, x, rstd, dy, rows, dim);
  return cudaGetLastError();
}

cudaError_t launch_rope_bwd(float* x, int64_t n_tokens, int n_heads, int head_dim, int rot_dim, int64_t stride,
                            const int32_t* pos, const float* inv_freq, float attn_factor, bool interleaved,
                            cudaStream_t stream) {
  const int half = rot_dim / 2;
  if (n_tokens <= 0 || n_heads <= 0 || half <= 0) return cudaSuccess;
  rope_bwd_kernel<<<grid_for(n_tokens * n_heads * half), kThreads, 0, stream>>>(
      x, n_tokens, n_heads, head_dim, half, stride, pos, inv_freq, attn_factor, interleaved ? 1 : 0);
  return cudaGetLastError();
}

cudaError_t launch_silu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout,
                                int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  silu_mul_bwd_kernel<<<grid_for(n), kThreads, 0, stream>>>(dgate, dup, gate, up, dout, n);
  return cudaGetLastError();
}

cudaError_t launch_scatter_add_rows(float* table, const int32_t* ids, const float* src, const float* weights, int64_t n, int64_t dim,
                                    cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return cudaSuccess;
  scatter_add_rows_kernel<<<grid_for(dim), kThreads, 0, stream>>>(table, ids, src, weights, n, dim);
  return cudaGetLastError();
}

cudaError_t launch_add_column_sums(float* out, const float* x, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  add_column_sums_kernel<<<grid_for(cols), kThreads, 0, stream>>>(out, x, rows, cols);
  return cudaGetLastError();
}

cudaError_t launch_dropout_scale(float* y, const float* x, int64_t rows, int64_t cols, int64_t ldx, float p, uint64_t seed,
                                 bool accumulate, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  dropout_scale_kernel<<<grid_for(rows * cols), kThreads, 0, stream>>>(y, x, rows, cols, ldx, p, seed, accumulate);
  return cudaGetLastError();
}

cudaError_t launch_sum_squares_blocks(double* partial, const float* x, int64_t n, cudaStream_t stream) {
  const int64_t nb = (n + kSumSquaresBlock - 1) / kSumSquaresBlock;
  if (nb <= 0) return cudaSuccess;
  sum_squares_kernel<<<grid_for(nb), kThreads, 0, stream>>>(partial, x, n, nb);
  return cudaGetLastError();
}

cudaError_t launch_logsoftmax_rows(const float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target,
                                   float* lse, float* logp, float* entropy, cudaStream_t stream) {
  if (rows <= 0 || n <= 0) return cudaSuccess;
  const int blocks = int(rows < kMaxBlocks ? rows : kMaxBlocks);
  logsoftmax_rows_kernel<<<blocks, kRowThreads, 0, stream>>>(z, rows, n, inv_t, target, lse, logp, entropy);
  return cudaGetLastError();
}

cudaError_t launch_logsoftmax_rows_bwd(float* z, int64_t rows, int64_t n, float inv_t, const int32_t* target,
                                       const float* lse, const float* dlogp, cudaStream_t stream) {
  if (rows <= 0 || n <= 0) return cudaSuccess;
  const int blocks = int(rows < kMaxBlocks ? rows : kMaxBlocks);
  logsoftmax_rows_bwd_kernel<<<blocks, kRowThreads, 0, stream>>>(z, rows, n, inv_t, target, lse, dlogp);
  return cudaGetLastError();
}

cudaError_t launch_adamw(float* w, float* m, float* v, const float* g, int64_t n, float lr, float beta1, float beta2,
                         float eps, float decay, float clip, float step_size, float bc2_sqrt, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  adamw_kernel<<<grid_for(n), kThreads, 0, stream>>>(w, m, v, g, n, lr, beta1, beta2, eps, decay, clip, step_size,
                                                     bc2_sqrt);
  return cudaGetLastError();
}

}  // namespace reason::kernels::cuda
