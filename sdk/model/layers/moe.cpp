#include "model/layers/moe.h"

#include <algorithm>
#include <cmath>

#include "model/layers/mlp.h"
#include "reason/kernels/backend.h"

namespace reason {

void moe_forward(kernels::Backend& be, const MoeWeights& w, const float* h, int64_t T, int64_t d, float* out, LayerActs& a,
                 int64_t* expert_load, bool exact) {
  const int E = w.router.n_experts, K = w.router.top_k;
  a.router_logits.resize(be, size_t(T * E));
  linear_forward(be, Linear{w.gate, Tensor()}, h, T, a.router_logits.data());
  a.route_idx.resize(be, size_t(T * K));
  a.route_w.resize(be, size_t(T * K));
  be.moe_route(route_args(w.router, a.router_logits.data(), w.score_bias.raw() ? w.score_bias.data<float>() : nullptr,
                          T, a.route_idx.data(), a.route_w.data()));
  const size_t slots = size_t(T * K);
  a.expert_off.resize(be, size_t(E + 1));
  a.expert_slot.resize(be, slots);
  a.expert_tok.resize(be, slots);
  a.expert_w.resize(be, slots);
  be.moe_group_rows(a.route_idx.data(), a.route_w.data(), T, K, E, a.expert_off.data(), a.expert_slot.data(),
                    a.expert_tok.data(), a.expert_w.data());
  // The one download of the block: how many rows each expert's matmuls take.
  a.expert_off_host = a.expert_off.download();
  a.experts.resize(size_t(E));
  be.fill_zero(out, size_t(T * d) * sizeof(float));
  DevF xe;
  for (int e = 0; e < E; ++e) {
    const int64_t p0 = a.expert_off_host[size_t(e)], n = a.expert_off_host[size_t(e) + 1] - p0;
    if (expert_load) expert_load[e] += n;
    MlpActs& ea = a.experts[size_t(e)];
    if (n == 0) {  // no rows: its buffers go (memory stays one layer's routed rows)
      ea = MlpActs{};
      continue;
    }
    xe.resize(be, size_t(n * d));
    be.gather_rows(xe.data(), h, DType::F32, a.expert_tok.data() + p0, n, d);
    mlp_forward(be, w.experts[size_t(e)], xe.data(), n, d, ea, nullptr, exact);
    // out[t] += w * y, in slot order
    be.scatter_add_rows(out, a.expert_tok.data() + p0, ea.y.data(), a.expert_w.data() + p0, n, d);
  }
  if (w.has_shared) {
    mlp_forward(be, w.shared, h, T, d, a.shared, nullptr, exact);
    if (w.shared_gate.w.raw()) {
      a.shared_gate_logit.resize(be, static_cast<size_t>(T));
      linear_forward(be, w.shared_gate, h, T, a.shared_gate_logit.data(), exact);
      be.sigmoid_gate_add(out, a.shared_gate_logit.data(), a.shared.y.data(), T, d);
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
//   r_j = softmax(logits)[e_j] or sigmoid(logits[e_j]) (Backend::moe_route_bwd).
void moe_backward(kernels::Backend& be, const MoeWeights& w, const float* h, int64_t T, int64_t d, const LayerActs& a, const float* dout,
                  float* dh, const ParamGrads& g, const std::vector<int64_t>& seq_start, float aux_alpha,
                  float aux_scale) {
  const RouterConfig& rc = w.router;
  const int E = rc.n_experts, K = rc.top_k;
  DevF dwt, xe, dy, dxe, dots;
  dwt.zeros(be, size_t(T * K));
  for (int e = 0; e < E; ++e) {
    const int64_t p0 = a.expert_off_host[size_t(e)], n = a.expert_off_host[size_t(e) + 1] - p0;
    if (n == 0) continue;
    const int32_t* tok = a.expert_tok.data() + p0;
    const MlpActs& ea = a.experts[size_t(e)];
    xe.resize(be, size_t(n * d));
    dy.resize(be, size_t(n * d));
    dxe.resize(be, size_t(n * d));
    dots.resize(be, size_t(n));
    be.gather_rows(xe.data(), h, DType::F32, tok, n, d);
    // dy = w * dout (the expert's share), dL/dw = dout . y (into the expert's routing slots)
    be.gather_scale_dot(dy.data(), dots.data(), dout, tok, a.expert_w.data() + p0, ea.y.data(), n, d);
    be.scatter_add_rows(dwt.data(), a.expert_slot.data() + p0, dots.data(), nullptr, n, 1);
    mlp_backward(be, w.experts[size_t(e)], xe.data(), n, ea, dy.data(), dxe.data(), false, g);
    be.scatter_add_rows(dh, tok, dxe.data(), nullptr, n, d);
  }
  if (w.has_shared) {
    if (w.shared_gate.w.raw()) {
      // out += sigmoid(z) * y_shared, z = shared_expert_gate(h)
      DevF dys(be, size_t(T * d)), dz(be, static_cast<size_t>(T));
      be.sigmoid_gate_bwd(dys.data(), dz.data(), a.shared_gate_logit.data(), a.shared.y.data(), dout, T, d);
      mlp_backward(be, w.shared, h, T, a.shared, dys.data(), dh, true, g);
      linear_backward(be, w.shared_gate, h, dz.data(), T, dh, true, g);
    } else {
      mlp_backward(be, w.shared, h, T, a.shared, dout, dh, true, g);
    }
  }
  // Router: the chosen experts' weights back to the logits (the choice itself is a constant).
  DevF dlogits(be, size_t(T * E));
  // (moe_route_bwd only reads idx; the args struct names it as moe_route's output)
  be.moe_route_bwd(route_args(rc, a.router_logits.data(), nullptr, T, const_cast<int32_t*>(a.route_idx.data()),
                              const_cast<float*>(a.route_w.data())),
                   dwt.data(), dlogits.data());
  if (aux_alpha > 0.0f) {
    // The balance loss's gradient, on the host (a few values per token; downloaded, added, uploaded).
    std::vector<float> dl = dlogits.download();
    moe_seq_aux_loss(rc, a.router_logits.download(), a.route_idx.download(), seq_start, aux_alpha, dl.data(), aux_scale);
    dlogits.upload(be, dl);
  }
  linear_backward(be, Linear{w.gate, Tensor()}, h, dlogits.data(), T, dh, true, g);
}

}  // namespace reason
