// The CUDA backend's loss-term kernels (cuda_kernels.h): GRPO's per-token loss. The gradient is one
// thread per token; the sums are one thread walking the tokens in order (the CPU's order, so both
// backends give the same sums), recomputing each token's terms (kernels/grpo_token.h).
#include "../distill_row.h"
#include "../grpo_token.h"
#include "cuda_kernels.h"

namespace reason::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

__global__ void grpo_dlogp_kernel(GrpoLossDev a) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < a.n; t += int64_t(gridDim.x) * blockDim.x) {
    if (a.weight[t] == 0.0) {
      a.dlogp[t] = 0.0f;
      if (a.dlog_weight) a.dlog_weight[t] = 0.0f;
      continue;
    }
    const GrpoTokenTerms o = grpo_token_terms_at(a, t);
    if (a.dlog_weight) {
      a.dlogp[t] = float(a.weight[t] * o.dlogp);
      a.dlog_weight[t] = float(a.weight[t] * o.dlw);
    } else {
      a.dlogp[t] = float(a.weight[t] * (o.dlw + o.dlogp));
    }
  }
}

__global__ void grpo_sums_kernel(GrpoLossDev a) {
  double loss = 0, kl = 0, low = 0, high = 0, live = 0;
  for (int64_t t = 0; t < a.n; ++t) {
    if (a.weight[t] == 0.0) continue;
    const GrpoTokenTerms o = grpo_token_terms_at(a, t);
    loss += a.weight[t] * o.loss;
    kl += o.kl;
    low += o.low;
    high += o.high;
    live += 1;
  }
  a.sums[0] = loss, a.sums[1] = kl, a.sums[2] = low, a.sums[3] = high, a.sums[4] = live;
}

constexpr int kRowThreads = 256;

// Sum of v over the block (kRowThreads threads), returned to every thread.
__device__ double block_sum(double v, double* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = kRowThreads / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  const double out = red[0];
  __syncthreads();
  return out;
}

__global__ void __launch_bounds__(kRowThreads) distill_rows_kernel(DistillRowsDev a, double lb, double l1b) {
  __shared__ double red[kRowThreads];
  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    float* z = a.z_s + r * a.n;
    const float* zt = a.z_t + r * a.n;
    const float w = a.weight[r];
    if (w == 0.0f) {
      for (int64_t j = threadIdx.x; j < a.n; j += blockDim.x) z[j] = 0.0f;
      if (threadIdx.x == 0) a.loss[r] = 0.0;
      continue;
    }
    double loss = 0, gsum = 0;
    for (int64_t j = threadIdx.x; j < a.n; j += blockDim.x) {
      const DistillTerm o = distill_term(z[j], a.lse_s[r], zt[j], a.lse_t[r], a.inv_t, a.kind, a.beta, lb, l1b, w);
      loss += o.loss;
      gsum += o.g;
    }
    loss = block_sum(loss, red);
    gsum = block_sum(gsum, red);  // every thread has read its z before any writes below
    if (threadIdx.x == 0) a.loss[r] = loss;
    for (int64_t j = threadIdx.x; j < a.n; j += blockDim.x) {
      const DistillTerm o = distill_term(z[j], a.lse_s[r], zt[j], a.lse_t[r], a.inv_t, a.kind, a.beta, lb, l1b, w);
      z[j] = float((o.g - o.s * gsum) * a.inv_t);
    }
  }
}

}  // namespace

cudaError_t launch_distill_rows(const DistillRowsDev& a, cudaStream_t stream) {
  if (a.rows <= 0) return cudaSuccess;
  const double lb = a.kind == 2 ? log(a.beta) : 0.0, l1b = a.kind == 2 ? log(1.0 - a.beta) : 0.0;
  const int64_t blocks = a.rows < kMaxBlocks ? a.rows : kMaxBlocks;
  distill_rows_kernel<<<int(blocks), kRowThreads, 0, stream>>>(a, lb, l1b);
  return cudaGetLastError();
}

cudaError_t launch_grpo_token_loss(const GrpoLossDev& a, cudaStream_t stream) {
  if (a.n > 0) {
    int64_t b = (a.n + kThreads - 1) / kThreads;
    grpo_dlogp_kernel<<<int(b > kMaxBlocks ? kMaxBlocks : b), kThreads, 0, stream>>>(a);
  }
  grpo_sums_kernel<<<1, 1, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace reason::kernels::cuda
