// The CPU backend's Mixture-of-Experts ops (backend.h: moe_route and its backward,
// gather_scale_dot, the sigmoid gate): one row (token) per work item, spread over the threads;
// each row is computed in a fixed order, so results do not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "../backend_checks.h"
#include "../moe_route_math.h"
#include "cpu_ops.h"

namespace reason::kernels::cpu {

namespace {

float sigmoid_f(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// Indices of the k largest values (descending; ties -> lower index first).
void top_k(const float* v, int n, int k, int32_t* out, std::vector<int32_t>& order) {
  order.resize(size_t(n));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [v](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  std::copy_n(order.begin(), k, out);
}

// softmax(lg) over n values, in float, into p.
void softmax_row(const float* lg, int n, float* p) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int e = 0; e < n; ++e) mx = std::max(mx, lg[e]);
  float z = 0.0f;
  for (int e = 0; e < n; ++e) z += (p[e] = std::exp(lg[e] - mx));
  for (int e = 0; e < n; ++e) p[e] /= z;
}

// Sigmoid scoring's group limit: experts outside the topk_group best groups get -inf in choice.
void mask_groups(const MoeRouteArgs& a, float* choice, std::vector<float>& gscore, std::vector<int32_t>& keep,
                 std::vector<int32_t>& order) {
  const int per = a.n_experts / a.n_group;
  gscore.resize(size_t(a.n_group));
  for (int g = 0; g < a.n_group; ++g) {  // sum of the group's two best biased scores
    float b1 = -std::numeric_limits<float>::infinity(), b2 = b1;
    for (int e = g * per; e < (g + 1) * per; ++e) {
      const float s = choice[e];
      if (s > b1) {
        b2 = b1;
        b1 = s;
      } else if (s > b2) {
        b2 = s;
      }
    }
    gscore[size_t(g)] = per >= 2 ? b1 + b2 : b1;
  }
  keep.resize(size_t(a.topk_group));
  top_k(gscore.data(), a.n_group, a.topk_group, keep.data(), order);
  uint64_t kept = 0;
  for (int32_t g : keep) kept |= uint64_t(1) << g;
  for (int e = 0; e < a.n_experts; ++e)
    if (!((kept >> (e / per)) & 1)) choice[e] = -std::numeric_limits<float>::infinity();
}

void route_row(const MoeRouteArgs& a, int64_t t, std::vector<float>& p, std::vector<float>& choice,
               std::vector<float>& gscore, std::vector<int32_t>& keep, std::vector<int32_t>& order) {
  const int E = a.n_experts, K = a.top_k;
  const float* lg = a.logits + t * E;
  int32_t* id = a.idx + t * K;
  float* w = a.weight + t * K;
  p.resize(size_t(E));
  if (!a.sigmoid) {
    softmax_row(lg, E, p.data());
    top_k(p.data(), E, K, id, order);
  } else {
    choice.resize(size_t(E));
    for (int e = 0; e < E; ++e) {
      p[size_t(e)] = sigmoid_f(lg[e]);
      choice[size_t(e)] = p[size_t(e)] + (a.bias ? a.bias[e] : 0.0f);
    }
    if (a.n_group > 1) mask_groups(a, choice.data(), gscore, keep, order);
    top_k(choice.data(), E, K, id, order);
  }
  for (int j = 0; j < K; ++j) w[j] = p[size_t(id[j])];
  route_weights(w, K, a.sigmoid, a.norm_topk_prob, a.scale);
}

// w_j = scale * r_j / S (normalised) or scale * r_j, S = sum_k r_k (+1e-20 for sigmoid scores),
// r_j = softmax(logits)[e_j] or sigmoid(logits[e_j]): dL/dlogits of one row from dL/dw.
void route_row_bwd(const MoeRouteArgs& a, int64_t t, const float* dweight, float* dlogits, std::vector<float>& p,
                   std::vector<float>& r, std::vector<float>& dr) {
  const int E = a.n_experts, K = a.top_k;
  const float* lg = a.logits + t * E;
  const int32_t* id = a.idx + t * K;
  float* dl = dlogits + t * E;
  r.resize(size_t(K));
  dr.resize(size_t(K));
  if (!a.sigmoid) {  // the forward's softmax, in float as moe_route computes it
    p.resize(size_t(E));
    softmax_row(lg, E, p.data());
    for (int j = 0; j < K; ++j) r[size_t(j)] = p[size_t(id[j])];
  } else {
    for (int j = 0; j < K; ++j) r[size_t(j)] = sigmoid_f(lg[id[j]]);
  }
  for (int j = 0; j < K; ++j) dr[size_t(j)] = dweight[t * K + j];
  route_weights_bwd(dr.data(), r.data(), K, a.sigmoid, a.norm_topk_prob, a.scale);
  if (!a.sigmoid) {  // d p_e' / d z_e = p_e' (delta - p_e)
    double dot = 0;
    for (int j = 0; j < K; ++j) dot += double(dr[size_t(j)]) * r[size_t(j)];
    for (int e = 0; e < E; ++e) dl[e] = -p[size_t(e)] * float(dot);
    for (int j = 0; j < K; ++j) dl[id[j]] += p[size_t(id[j])] * dr[size_t(j)];
  } else {
    for (int e = 0; e < E; ++e) dl[e] = 0.0f;
    for (int j = 0; j < K; ++j) dl[id[j]] += dr[size_t(j)] * r[size_t(j)] * (1.0f - r[size_t(j)]);
  }
}

void check(const MoeRouteArgs& a, const char* op) {
  const std::string why = moe_route_problem(a);
  if (!why.empty()) throw BackendError(std::string("cpu ") + op + ": " + why);
}

}  // namespace

void moe_route(const MoeRouteArgs& a) {
  check(a, "moe_route");
#pragma omp parallel num_threads(cpu_threads()) if (a.rows > 16)
  {
    std::vector<float> p, choice, gscore;
    std::vector<int32_t> keep, order;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < a.rows; ++t) route_row(a, t, p, choice, gscore, keep, order);
  }
}

void moe_route_bwd(const MoeRouteArgs& a, const float* dweight, float* dlogits) {
  check(a, "moe_route_bwd");
  if (a.rows > 0 && (!dweight || !dlogits)) throw BackendError("cpu moe_route_bwd: null dweight or dlogits");
#pragma omp parallel num_threads(cpu_threads()) if (a.rows > 16)
  {
    std::vector<float> p, r, dr;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < a.rows; ++t) route_row_bwd(a, t, dweight, dlogits, p, r, dr);
  }
}

void moe_group_rows(const int32_t* idx, const float* weight, int64_t rows, int top_k, int n_experts, int32_t* offsets,
                    int32_t* slots, int32_t* tok, float* wts) {
  if (rows < 0 || top_k <= 0 || n_experts <= 0) throw BackendError("cpu moe_group_rows: bad size");
  if (!offsets || (rows > 0 && (!idx || !weight || !slots || !tok || !wts)))
    throw BackendError("cpu moe_group_rows: null pointer");
  const int64_t n = rows * top_k;
  if (n > INT32_MAX) throw BackendError("cpu moe_group_rows: more than 2^31 routing slots");
  std::fill(offsets, offsets + n_experts + 1, 0);
  for (int64_t s = 0; s < n; ++s) {
    if (idx[s] < 0 || idx[s] >= n_experts)
      throw BackendError("cpu moe_group_rows: expert id " + std::to_string(idx[s]) + " out of range");
    ++offsets[idx[s] + 1];
  }
  for (int e = 0; e < n_experts; ++e) offsets[e + 1] += offsets[e];
  std::vector<int32_t> next(offsets, offsets + n_experts);
  for (int64_t s = 0; s < n; ++s) {
    const int32_t p = next[size_t(idx[s])]++;
    slots[p] = int32_t(s);
    tok[p] = int32_t(s / top_k);
    wts[p] = weight[s];
  }
}

void gather_scale_dot(float* dst, float* dots, const float* src, const int32_t* ids, const float* scale, const float* y,
                      int64_t n, int64_t dim) {
  if (n < 0 || dim < 0) throw BackendError("cpu gather_scale_dot: negative size");
  if (n == 0) return;
  if (!src || !y || !dots || (dst && !scale)) throw BackendError("cpu gather_scale_dot: null pointer");
#pragma omp parallel for num_threads(cpu_threads()) schedule(static) if (n * dim > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float* x = src + (ids ? int64_t(ids[i]) : i) * dim;
    const float* yi = y + i * dim;
    double dot = 0;
    for (int64_t c = 0; c < dim; ++c) dot += double(x[c]) * yi[c];
    dots[i] = float(dot);
    if (dst)
      for (int64_t c = 0; c < dim; ++c) dst[i * dim + c] = scale[i] * x[c];
  }
}

void sigmoid_gate_add(float* out, const float* z, const float* y, int64_t rows, int64_t dim) {
  if (rows < 0 || dim < 0) throw BackendError("cpu sigmoid_gate_add: negative size");
  if (rows == 0) return;
  if (!out || !z || !y) throw BackendError("cpu sigmoid_gate_add: null pointer");
#pragma omp parallel for num_threads(cpu_threads()) schedule(static) if (rows * dim > 65536)
  for (int64_t t = 0; t < rows; ++t) {
    const float g = sigmoid_f(z[t]);
    for (int64_t c = 0; c < dim; ++c) out[t * dim + c] += g * y[t * dim + c];
  }
}

void sigmoid_gate_bwd(float* dy, float* dz, const float* z, const float* y, const float* dout, int64_t rows, int64_t dim) {
  if (rows < 0 || dim < 0) throw BackendError("cpu sigmoid_gate_bwd: negative size");
  if (rows == 0) return;
  if (!dy || !dz || !z || !y || !dout) throw BackendError("cpu sigmoid_gate_bwd: null pointer");
#pragma omp parallel for num_threads(cpu_threads()) schedule(static) if (rows * dim > 65536)
  for (int64_t t = 0; t < rows; ++t) {
    const float g = sigmoid_f(z[t]);
    double dot = 0;
    for (int64_t c = 0; c < dim; ++c) {
      dy[t * dim + c] = g * dout[t * dim + c];
      dot += double(dout[t * dim + c]) * y[t * dim + c];
    }
    dz[t] = float(dot) * g * (1.0f - g);
  }
}

}  // namespace reason::kernels::cpu
