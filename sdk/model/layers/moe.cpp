#include "model/layers/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/layers/mlp.h"
#include "reason/kernels/backend.h"

namespace reason {

namespace {
float sigmoid_f(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// The tokens an expert's rows (token * K + slot) come from, and their routing weights.
void expert_tokens(const std::vector<int32_t>& rows, int K, const std::vector<float>& route_w, std::vector<int32_t>& tok,
                   std::vector<float>& wts) {
  tok.resize(rows.size());
  wts.resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    tok[i] = rows[i] / K;
    wts[i] = route_w[size_t(rows[i])];
  }
}
}  // namespace

void moe_forward(kernels::Backend& be, const MoeWeights& w, const float* h, int64_t T, int64_t d, float* out, LayerActs& a,
                 int64_t* expert_load) {
  const int E = w.router.n_experts, K = w.router.top_k;
  a.router_logits.resize(size_t(T * E));
  linear_forward(be, Linear{w.gate, Tensor()}, h, T, a.router_logits.data());
  a.route_idx.resize(size_t(T * K));
  a.route_w.resize(size_t(T * K));
  route_tokens(w.router, a.router_logits.data(), w.score_bias.raw() ? w.score_bias.data<float>() : nullptr, T,
               a.route_idx.data(), a.route_w.data());
  a.expert_rows.assign(size_t(E), {});
  for (int64_t t = 0; t < T; ++t)
    for (int j = 0; j < K; ++j) a.expert_rows[size_t(a.route_idx[size_t(t * K + j)])].push_back(int32_t(t * K + j));
  a.experts.assign(size_t(E), MlpActs{});
  std::memset(out, 0, size_t(T * d) * sizeof(float));
  std::vector<float> xe, wts;
  std::vector<int32_t> tok;
  for (int e = 0; e < E; ++e) {
    const auto& rows = a.expert_rows[size_t(e)];
    if (expert_load) expert_load[e] += int64_t(rows.size());
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size());
    expert_tokens(rows, K, a.route_w, tok, wts);
    xe.resize(size_t(n * d));
    be.gather_rows(xe.data(), h, DType::F32, tok.data(), n, d);
    MlpActs& ea = a.experts[size_t(e)];
    mlp_forward(be, w.experts[size_t(e)], xe.data(), n, d, ea);
    be.scatter_add_rows(out, tok.data(), ea.y.data(), wts.data(), n, d);  // out[t] += w * y, rows in order
  }
  if (w.has_shared) {
    mlp_forward(be, w.shared, h, T, d, a.shared);
    if (w.shared_gate.raw()) {
      a.shared_gate_logit.resize(static_cast<size_t>(T));
      linear_forward(be, Linear{w.shared_gate, Tensor()}, h, T, a.shared_gate_logit.data());
      for (int64_t t = 0; t < T; ++t) {
        const float g = sigmoid_f(a.shared_gate_logit[size_t(t)]);
        for (int64_t c = 0; c < d; ++c) out[t * d + c] += g * a.shared.y[size_t(t * d + c)];
      }
    } else {
      be.add_inplace(out, a.shared.y.data(), T * d);
    }
  }
}

double moe_seq_aux_loss(const RouterConfig& rc, const std::vector<float>& logits, const std::vector<int32_t>& idx,
                        const std::vector<int64_t>& seq_start, float alpha, float* dlogits, float scale) {
  const int E = rc.n_experts, K = rc.top_k;
  const bool sig = rc.scoring == RouterConfig::Scoring::Sigmoid;
  const size_t n_seq = seq_start.size() - 1;
  double total = 0;
  std::vector<double> f(static_cast<size_t>(E)), sc(static_cast<size_t>(E)), nrm(static_cast<size_t>(E));
  for (size_t s = 0; s < n_seq; ++s) {
    const int64_t b = seq_start[s], T = seq_start[s + 1] - b;
    std::fill(f.begin(), f.end(), 0.0);
    for (int64_t t = b; t < b + T; ++t)
      for (int j = 0; j < K; ++j) f[size_t(idx[size_t(t * K + j)])] += double(E) / (double(K) * double(T));
    for (int64_t t = b; t < b + T; ++t) {
      const float* lg = &logits[size_t(t * E)];
      double z = 0, mx = -INFINITY;
      if (!sig)
        for (int e = 0; e < E; ++e) mx = std::max(mx, double(lg[e]));
      for (int e = 0; e < E; ++e) z += (sc[size_t(e)] = sig ? 1.0 / (1.0 + std::exp(-double(lg[e]))) : std::exp(lg[e] - mx));
      double gdot = 0;
      for (int e = 0; e < E; ++e) {
        nrm[size_t(e)] = sc[size_t(e)] / z;
        total += alpha * f[size_t(e)] * nrm[size_t(e)] / double(T) / double(n_seq);
        gdot += alpha * f[size_t(e)] / double(T) / double(n_seq) * nrm[size_t(e)];
      }
      if (!dlogits) continue;
      float* dl = dlogits + t * E;
      for (int e = 0; e < E; ++e) {
        const double g = alpha * f[size_t(e)] / double(T) / double(n_seq);
        // d(s_e / sum s)/d s_j; then through the sigmoid (or exp for the softmax form)
        const double ds = (g - gdot) / z;
        dl[e] += float(scale * (sig ? ds * sc[size_t(e)] * (1.0 - sc[size_t(e)]) : ds * sc[size_t(e)]));
      }
    }
  }
  return total;
}

// MoE FFN backward: dh (+)= d/dh given dout. The top-k choice is a constant; the gradient
// reaches the router through the chosen experts' weights
//   w_j = rsf * r_j / S (normalised) or rsf * r_j,  S = sum_k r_k (+1e-20 for sigmoid scores),
//   r_j = softmax(logits)[e_j] or sigmoid_f(logits[e_j]).
void moe_backward(kernels::Backend& be, const MoeWeights& w, const float* h, int64_t T, int64_t d, const LayerActs& a, const float* dout,
                  float* dh, const ParamGrads& g, const std::vector<int64_t>& seq_start, float aux_alpha,
                  float aux_scale) {
  const RouterConfig& rc = w.router;
  const int E = rc.n_experts, K = rc.top_k;
  std::vector<float> dwt(size_t(T * K), 0.0f), xe, dy, dxe, wts;
  std::vector<int32_t> tok;
  for (int e = 0; e < E; ++e) {
    const auto& rows = a.expert_rows[size_t(e)];
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size());
    const MlpActs& ea = a.experts[size_t(e)];
    expert_tokens(rows, K, a.route_w, tok, wts);
    xe.resize(size_t(n * d));
    dy.resize(size_t(n * d));
    dxe.resize(size_t(n * d));
    be.gather_rows(xe.data(), h, DType::F32, tok.data(), n, d);
    for (int64_t i = 0; i < n; ++i) {  // dy = w * dout (the expert's share), dL/dw = dout . y
      const int64_t t = tok[size_t(i)];
      const float wt = wts[size_t(i)];
      double dot = 0;
      for (int64_t c = 0; c < d; ++c) {
        dy[size_t(i * d + c)] = wt * dout[t * d + c];
        dot += double(dout[t * d + c]) * ea.y[size_t(i * d + c)];
      }
      dwt[size_t(rows[size_t(i)])] = float(dot);
    }
    mlp_backward(be, w.experts[size_t(e)], xe.data(), n, ea, dy.data(), dxe.data(), false, g);
    be.scatter_add_rows(dh, tok.data(), dxe.data(), nullptr, n, d);
  }
  if (w.has_shared) {
    if (w.shared_gate.raw()) {
      // out += sigmoid_f(z) * y_shared, z = shared_expert_gate(h)
      std::vector<float> dys(size_t(T * d)), dz(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; ++t) {
        const float g = sigmoid_f(a.shared_gate_logit[size_t(t)]);
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) {
          dys[size_t(t * d + c)] = g * dout[t * d + c];
          dot += double(dout[t * d + c]) * a.shared.y[size_t(t * d + c)];
        }
        dz[size_t(t)] = float(dot) * g * (1.0f - g);
      }
      mlp_backward(be, w.shared, h, T, a.shared, dys.data(), dh, true, g);
      linear_backward(be, Linear{w.shared_gate, Tensor()}, h, dz.data(), T, dh, true, g);
    } else {
      mlp_backward(be, w.shared, h, T, a.shared, dout, dh, true, g);
    }
  }
  // Router.
  const bool sig = rc.scoring == RouterConfig::Scoring::Sigmoid;
  std::vector<float> dlogits(size_t(T * E), 0.0f), p(static_cast<size_t>(E)), r(static_cast<size_t>(K)), dr(static_cast<size_t>(K));
  for (int64_t t = 0; t < T; ++t) {
    const float* lg = &a.router_logits[size_t(t * E)];
    const int32_t* id = &a.route_idx[size_t(t * K)];
    float* dl = &dlogits[size_t(t * E)];
    if (!sig) {  // the forward's softmax, in float as route_tokens computes it
      float mx = -INFINITY;
      for (int e = 0; e < E; ++e) mx = std::max(mx, lg[e]);
      float z = 0.0f;
      for (int e = 0; e < E; ++e) z += (p[size_t(e)] = std::exp(lg[e] - mx));
      for (int e = 0; e < E; ++e) p[size_t(e)] /= z;
      for (int j = 0; j < K; ++j) r[size_t(j)] = p[size_t(id[j])];
    } else {
      for (int j = 0; j < K; ++j) r[size_t(j)] = sigmoid_f(lg[id[j]]);
    }
    for (int j = 0; j < K; ++j) dr[size_t(j)] = rc.routed_scaling_factor * dwt[size_t(t * K + j)];
    if (rc.norm_topk_prob) {
      double S = 0, dot = 0;
      for (int j = 0; j < K; ++j) {
        S += r[size_t(j)];
        dot += double(dr[size_t(j)]) * r[size_t(j)];
      }
      if (sig) S += 1e-20;
      for (int j = 0; j < K; ++j) dr[size_t(j)] = float((double(dr[size_t(j)]) - dot / S) / S);
    }
    if (!sig) {  // d p_e' / d z_e = p_e' (delta - p_e)
      double dot = 0;
      for (int j = 0; j < K; ++j) dot += double(dr[size_t(j)]) * r[size_t(j)];
      for (int e = 0; e < E; ++e) dl[e] = -p[size_t(e)] * float(dot);
      for (int j = 0; j < K; ++j) dl[id[j]] += p[size_t(id[j])] * dr[size_t(j)];
    } else {
      for (int j = 0; j < K; ++j) dl[id[j]] += dr[size_t(j)] * r[size_t(j)] * (1.0f - r[size_t(j)]);
    }
  }
  if (aux_alpha > 0.0f) moe_seq_aux_loss(rc, a.router_logits, a.route_idx, seq_start, aux_alpha, dlogits.data(), aux_scale);
  linear_backward(be, Linear{w.gate, Tensor()}, h, dlogits.data(), T, dh, true, g);
}

}  // namespace reason
