// Training loops: the backward of RMSNorm and SwiGLU's gate (RoPE's is in elementwise.cpp), embedding scatter-add, column
// sums, the blocked sum of squares and the AdamW update. Threaded; every output element is
// written by one thread with a fixed summation order, so the results do not depend on the number
// of threads. Compiled once per ISA path (isa_vec.h says the rules).
#include "../cpu_ops.h"
#include "../isa_ops.h"
#include "isa_vec.h"

namespace reason::kernels::cpu::REASON_ISA_NS {

namespace {
constexpr int64_t kColBlock = 64;      // columns per work item of the column reductions
constexpr int64_t kSumBlock = 4096;    // elements per partial sum of sum_squares (backend.h)
}  // namespace

void rmsnorm_bwd(float* dx, float* dw, const float* x, const float* w, const float* rstd, const float* dy,
                 int64_t rows, int64_t dim) {
  const int nt = cpu_threads();
#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * dim;
      const float* g = dy + r * dim;
      const float rs = rstd[r];
      double dot = 0;
      for (int64_t i = 0; i < dim; ++i) dot += double(w[i]) * g[i] * xr[i];
      const float coef = float(dot) * rs * rs * rs / float(dim);
      float* d = dx + r * dim;
      for (int64_t i = 0; i < dim; ++i) d[i] += rs * w[i] * g[i] - coef * xr[i];
    }
#pragma omp for schedule(static)
    for (int64_t c0 = 0; c0 < dim; c0 += kColBlock) {
      const int64_t nc = dim - c0 < kColBlock ? dim - c0 : kColBlock;
      float acc[kColBlock];
      for (int64_t i = 0; i < nc; ++i) acc[i] = dw[c0 + i];
      for (int64_t r = 0; r < rows; ++r) {
        const float* g = dy + r * dim + c0;
        const float* xr = x + r * dim + c0;
        const float rs = rstd[r];
        for (int64_t i = 0; i < nc; ++i) acc[i] += g[i] * xr[i] * rs;
      }
      for (int64_t i = 0; i < nc; ++i) dw[c0 + i] = acc[i];
    }
  }
}

void silu_mul_bwd(float* dgate, float* dup, const float* gate, const float* up, const float* dout, int64_t n) {
  const int nt = cpu_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) {
    const float z = gate[i], sg = 1.0f / (1.0f + expf(-z));
    dup[i] = dout[i] * z * sg;
    dgate[i] = dout[i] * up[i] * sg * (1.0f + z * (1.0f - sg));
  }
}

void scatter_add_rows(float* table, const int32_t* ids, const float* src, const float* weights, int64_t n, int64_t dim) {
  const int nt = cpu_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t c0 = 0; c0 < dim; c0 += kColBlock) {
    const int64_t nc = dim - c0 < kColBlock ? dim - c0 : kColBlock;
    for (int64_t r = 0; r < n; ++r) {
      float* dst = table + int64_t(ids[r]) * dim + c0;
      const float* s = src + r * dim + c0;
      if (weights) {
        const float w = weights[r];
        for (int64_t i = 0; i < nc; ++i) dst[i] += w * s[i];
      } else {
        for (int64_t i = 0; i < nc; ++i) dst[i] += s[i];
      }
    }
  }
}

void add_column_sums(float* out, const float* x, int64_t rows, int64_t cols) {
  const int nt = cpu_threads();
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t c0 = 0; c0 < cols; c0 += kColBlock) {
    const int64_t nc = cols - c0 < kColBlock ? cols - c0 : kColBlock;
    float acc[kColBlock];
    for (int64_t i = 0; i < nc; ++i) acc[i] = out[c0 + i];
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < nc; ++i) acc[i] += x[r * cols + c0 + i];
    for (int64_t i = 0; i < nc; ++i) out[c0 + i] = acc[i];
  }
}

double sum_squares_blocked(const float* x, int64_t n) {
  const int64_t nb = (n + kSumBlock - 1) / kSumBlock;
  double* part = static_cast<double*>(thread_scratch(sizeof(double) * size_t(nb > 0 ? nb : 1), 1));
  const int nt = cpu_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (nb > 1)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t e = (b + 1) * kSumBlock < n ? (b + 1) * kSumBlock : n;
    double s = 0;
    for (int64_t i = b * kSumBlock; i < e; ++i) s += double(x[i]) * x[i];
    part[b] = s;
  }
  double total = 0;
  for (int64_t b = 0; b < nb; ++b) total += part[b];
  return total;
}

void adamw_update(const AdamWArgs& a) {
  const int nt = cpu_threads();
  const float keep = 1.0f - a.lr * a.decay;
#pragma omp parallel for num_threads(nt) schedule(static) if (a.n > 16384)
  for (int64_t i = 0; i < a.n; ++i) {
    const float gi = a.g[i] * a.clip;
    if (a.decay != 0.0f) a.w[i] *= keep;
    a.m[i] = a.beta1 * a.m[i] + (1.0f - a.beta1) * gi;
    a.v[i] = a.beta2 * a.v[i] + (1.0f - a.beta2) * gi * gi;
    const float denom = sqrtf(a.v[i]) / a.bc2_sqrt + a.eps;
    a.w[i] -= a.step_size * a.m[i] / denom;
  }
}

}  // namespace reason::kernels::cpu::REASON_ISA_NS
