// The CUDA backend's Mixture-of-Experts kernels (cuda_kernels.h): routing and its backward with one
// thread per token (the CPU's loops, the same order of every sum), the expert/gate row dots with
// one thread per row (double sums in element order, as on the CPU), elementwise parts grid-strided.
#include <cmath>

#include "../moe_route_math.h"
#include "cuda_kernels.h"

namespace reason::kernels::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRowThreads = 128;
constexpr int64_t kMaxBlocks = 65535;

int grid_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  return int(b < 1 ? 1 : b > kMaxBlocks ? kMaxBlocks : b);
}

#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__device__ float sigmoid_d(float x) { return 1.0f / (1.0f + expf(-x)); }

// Softmax statistics of a row, in float and in order as the CPU computes them.
__device__ void softmax_stats(const float* lg, int n, float& mx, float& z) {
  mx = -INFINITY;
  for (int e = 0; e < n; ++e) mx = fmaxf(mx, lg[e]);
  z = 0.0f;
  for (int e = 0; e < n; ++e) z += expf(lg[e] - mx);
}

// The selection score of expert e: p (softmax) or the biased sigmoid score, -inf outside the kept
// groups.
__device__ float choice_score(const MoeRouteDev& a, const float* lg, int e, float mx, float z, uint64_t kept) {
  if (!a.sigmoid) return expf(lg[e] - mx) / z;
  if (a.n_group > 1 && !((kept >> (e / (a.n_experts / a.n_group))) & 1)) return -INFINITY;
  return sigmoid_d(lg[e]) + (a.bias ? a.bias[e] : 0.0f);
}

__device__ bool chosen(const int32_t* id, int n, int e) {
  for (int j = 0; j < n; ++j)
    if (id[j] == e) return true;
  return false;
}

__device__ uint64_t kept_groups(const MoeRouteDev& a, const float* lg) {
  if (!a.sigmoid || a.n_group <= 1) return ~uint64_t(0);
  const int per = a.n_experts / a.n_group;
  float gs[64];
  for (int g = 0; g < a.n_group; ++g) {
    float b1 = -INFINITY, b2 = -INFINITY;
    for (int e = g * per; e < (g + 1) * per; ++e) {
      const float s = sigmoid_d(lg[e]) + (a.bias ? a.bias[e] : 0.0f);
      if (s > b1) {
        b2 = b1;
        b1 = s;
      } else if (s > b2) {
        b2 = s;
      }
    }
    gs[g] = per >= 2 ? b1 + b2 : b1;
  }
  uint64_t kept = 0;
  for (int k = 0; k < a.topk_group; ++k) {  // the best remaining group; ties -> lower index
    int best = -1;
    for (int g = 0; g < a.n_group; ++g)
      if (!((kept >> g) & 1) && (best < 0 || gs[g] > gs[best])) best = g;
    kept |= uint64_t(1) << best;
  }
  return kept;
}

__global__ void moe_route_kernel(MoeRouteDev a) {
  GRID_STRIDE(t, a.rows) {
    const int E = a.n_experts, K = a.top_k;
    const float* lg = a.logits + t * E;
    int32_t* id = a.idx + t * K;
    float* w = a.weight + t * K;
    float mx = 0.0f, z = 1.0f;
    if (!a.sigmoid) softmax_stats(lg, E, mx, z);
    const uint64_t kept = kept_groups(a, lg);
    for (int j = 0; j < K; ++j) {  // the best remaining expert; ties -> lower id
      int best = -1;
      float bv = 0.0f;
      for (int e = 0; e < E; ++e) {
        if (chosen(id, j, e)) continue;
        const float v = choice_score(a, lg, e, mx, z, kept);
        if (best < 0 || v > bv) best = e, bv = v;
      }
      id[j] = best;
      w[j] = a.sigmoid ? sigmoid_d(lg[best]) : expf(lg[best] - mx) / z;
    }
    route_weights(w, K, a.sigmoid != 0, a.norm_topk_prob != 0, a.scale);
  }
}

__global__ void moe_route_bwd_kernel(MoeRouteDev a, const float* dweight, float* dlogits) {
  GRID_STRIDE(t, a.rows) {
    const int E = a.n_experts, K = a.top_k;
    const float* lg = a.logits + t * E;
    const int32_t* id = a.idx + t * K;
    float* dl = dlogits + t * E;
    float mx = 0.0f, z = 1.0f, r[64], dr[64];
    if (!a.sigmoid) softmax_stats(lg, E, mx, z);
    for (int j = 0; j < K; ++j) {
      r[j] = a.sigmoid ? sigmoid_d(lg[id[j]]) : expf(lg[id[j]] - mx) / z;
      dr[j] = dweight[t * K + j];
    }
    route_weights_bwd(dr, r, K, a.sigmoid != 0, a.norm_topk_prob != 0, a.scale);
    if (!a.sigmoid) {
      double dot = 0;
      for (int j = 0; j < K; ++j) dot += double(dr[j]) * r[j];
      for (int e = 0; e < E; ++e) dl[e] = -(expf(lg[e] - mx) / z) * float(dot);
      for (int j = 0; j < K; ++j) dl[id[j]] += r[j] * dr[j];
    } else {
      for (int e = 0; e < E; ++e) dl[e] = 0.0f;
      for (int j = 0; j < K; ++j) dl[id[j]] += dr[j] * r[j] * (1.0f - r[j]);
    }
  }
}

// Counting sort by expert, stable: one thread per expert counts its slots, one thread turns the
// counts into offsets, then one thread per expert writes its slots in order. O(n_experts x slots)
// work, no atomics (so the order is the CPU's).
__global__ void expert_count_kernel(const int32_t* idx, int64_t n, int n_experts, int32_t* offsets) {
  GRID_STRIDE(e, n_experts) {
    int32_t c = 0;
    for (int64_t s = 0; s < n; ++s) c += idx[s] == e;
    offsets[e + 1] = c;
  }
}

__global__ void expert_offsets_kernel(int n_experts, int32_t* offsets) {
  offsets[0] = 0;
  for (int e = 0; e < n_experts; ++e) offsets[e + 1] += offsets[e];
}

__global__ void expert_fill_kernel(const int32_t* idx, const float* weight, int64_t n, int top_k, int n_experts,
                                   const int32_t* offsets, int32_t* slots, int32_t* tok, float* wts) {
  GRID_STRIDE(e, n_experts) {
    int32_t p = offsets[e];
    for (int64_t s = 0; s < n; ++s)
      if (idx[s] == e) {
        slots[p] = int32_t(s);
        tok[p] = int32_t(s / top_k);
        wts[p] = weight[s];
        ++p;
      }
  }
}

__global__ void add_group_sums_kernel(float* out, int64_t ldo, const float* x, int64_t ldx, int64_t groups,
                                      int64_t group, int64_t cols) {
  GRID_STRIDE(k, groups * cols) {
    const int64_t g = k / cols, j = k % cols;
    float acc = out[g * ldo + j];
    for (int64_t r = 0; r < group; ++r) acc += x[(g * group + r) * ldx + j];
    out[g * ldo + j] = acc;
  }
}

__global__ void gather_dot_kernel(float* dots, const float* src, const int32_t* ids, const float* y, int64_t n,
                                  int64_t dim) {
  GRID_STRIDE(i, n) {
    const float* x = src + (ids ? int64_t(ids[i]) : i) * dim;
    double dot = 0;
    for (int64_t c = 0; c < dim; ++c) dot += double(x[c]) * y[i * dim + c];
    dots[i] = float(dot);
  }
}

__global__ void gather_scale_kernel(float* dst, const float* src, const int32_t* ids, const float* scale, int64_t n,
                                    int64_t dim) {
  GRID_STRIDE(k, n * dim) {
    const int64_t i = k / dim, c = k % dim;
    dst[k] = scale[i] * src[(ids ? int64_t(ids[i]) : i) * dim + c];
  }
}

__global__ void sigmoid_gate_add_kernel(float* out, const float* z, const float* y, int64_t rows, int64_t dim) {
  GRID_STRIDE(k, rows * dim) out[k] += sigmoid_d(z[k / dim]) * y[k];
}

__global__ void sigmoid_gate_dz_kernel(float* dz, const float* z, const float* y, const float* dout, int64_t rows,
                                       int64_t dim) {
  GRID_STRIDE(t, rows) {
    const float g = sigmoid_d(z[t]);
    double dot = 0;
    for (int64_t c = 0; c < dim; ++c) dot += double(dout[t * dim + c]) * y[t * dim + c];
    dz[t] = float(dot) * g * (1.0f - g);
  }
}

__global__ void sigmoid_gate_dy_kernel(float* dy, const float* z, const float* dout, int64_t rows, int64_t dim) {
  GRID_STRIDE(k, rows * dim) dy[k] = sigmoid_d(z[k / dim]) * dout[k];
}

}  // namespace

cudaError_t launch_moe_route(const MoeRouteDev& a, cudaStream_t stream) {
  if (a.rows <= 0) return cudaSuccess;
  moe_route_kernel<<<grid_for(a.rows, kRowThreads), kRowThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t launch_moe_route_bwd(const MoeRouteDev& a, const float* dweight, float* dlogits, cudaStream_t stream) {
  if (a.rows <= 0) return cudaSuccess;
  moe_route_bwd_kernel<<<grid_for(a.rows, kRowThreads), kRowThreads, 0, stream>>>(a, dweight, dlogits);
  return cudaGetLastError();
}

cudaError_t launch_add_group_sums(float* out, int64_t ldo, const float* x, int64_t ldx, int64_t groups, int64_t group,
                                  int64_t cols, cudaStream_t stream) {
  if (groups <= 0 || group <= 0 || cols <= 0) return cudaSuccess;
  add_group_sums_kernel<<<grid_for(groups * cols), kThreads, 0, stream>>>(out, ldo, x, ldx, groups, group, cols);
  return cudaGetLastError();
}

cudaError_t launch_moe_group_rows(const int32_t* idx, const float* weight, int64_t n_slots, int top_k, int n_experts,
                                  int32_t* offsets, int32_t* slots, int32_t* tok, float* wts, cudaStream_t stream) {
  expert_count_kernel<<<grid_for(n_experts, kRowThreads), kRowThreads, 0, stream>>>(idx, n_slots, n_experts, offsets);
  expert_offsets_kernel<<<1, 1, 0, stream>>>(n_experts, offsets);
  if (n_slots > 0)
    expert_fill_kernel<<<grid_for(n_experts, kRowThreads), kRowThreads, 0, stream>>>(idx, weight, n_slots, top_k, n_experts,
                                                                                     offsets, slots, tok, wts);
  return cudaGetLastError();
}

cudaError_t launch_gather_scale_dot(float* dst, float* dots, const float* src, const int32_t* ids, const float* scale,
                                    const float* y, int64_t n, int64_t dim, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  gather_dot_kernel<<<grid_for(n, kRowThreads), kRowThreads, 0, stream>>>(dots, src, ids, y, n, dim);
  if (dst && dim > 0) gather_scale_kernel<<<grid_for(n * dim), kThreads, 0, stream>>>(dst, src, ids, scale, n, dim);
  return cudaGetLastError();
}

cudaError_t launch_sigmoid_gate_add(float* out, const float* z, const float* y, int64_t rows, int64_t dim,
                                    cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return cudaSuccess;
  sigmoid_gate_add_kernel<<<grid_for(rows * dim), kThreads, 0, stream>>>(out, z, y, rows, dim);
  return cudaGetLastError();
}

cudaError_t launch_sigmoid_gate_bwd(float* dy, float* dz, const float* z, const float* y, const float* dout,
                                    int64_t rows, int64_t dim, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  sigmoid_gate_dz_kernel<<<grid_for(rows, kRowThreads), kRowThreads, 0, stream>>>(dz, z, y, dout, rows, dim);
  if (dim > 0) sigmoid_gate_dy_kernel<<<grid_for(rows * dim), kThreads, 0, stream>>>(dy, z, dout, rows, dim);
  return cudaGetLastError();
}

}  // namespace reason::kernels::cuda
