#include "train/logprob_pass.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "core/error.h"
#include "model/moe_router.h"
#include "reason/kernels/backend.h"
#include "reason/kernels/cpu_math.h"

namespace reason {

namespace {

kernels::Backend& be() { return kernels::cpu_backend(); }

const float* f32(const Tensor& t) { return t.data<float>(); }

// y[m, n] = x[m, k] . W[n, k]^T (+ b)
void lin_fwd(const Linear& l, const float* x, int64_t m, float* y) { linear_forward(l, x, m, y); }

// dx[m, k] (+)= dy[m, n] . W[n, k];  dW[n, k] += dy^T . x;  db[n] += sum_rows dy
void lin_bwd(const Linear& l, const float* x, const float* dy, int64_t m, float* dx, bool accumulate_dx,
             float* dw, float* db) {
  const int64_t n = l.w.dim(0), k = l.w.dim(1);
  if (m == 0) return;
  if (dx) be().gemm_f32(false, false, m, k, n, 1.0f, dy, n, f32(l.w), k, accumulate_dx ? 1.0f : 0.0f, dx, k);
  be().gemm_f32(true, false, n, k, m, 1.0f, dy, n, x, k, 1.0f, dw, k);
  if (db)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) db[j] += dy[i * n + j];
}

void rms_fwd(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t d, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += double(xr[i]) * xr[i];
    const float rs = 1.0f / std::sqrt(float(ss / double(d)) + eps);
    rstd[r] = rs;
    for (int64_t i = 0; i < d; ++i) y[r * d + i] = w[i] * (xr[i] * rs);
  }
}

// y = w * x * r, r = (mean(x^2) + eps)^-1/2:  dx += r * (w*dy) - x * r^3 / d * sum(w*dy*x);  dw += dy * x * r
void rms_bwd(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw, int64_t rows,
             int64_t d) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    const float* g = dy + r * d;
    const float rs = rstd[r];
    double dot = 0;
    for (int64_t i = 0; i < d; ++i) dot += double(w[i]) * g[i] * xr[i];
    const float coef = float(dot) * rs * rs * rs / float(d);
    for (int64_t i = 0; i < d; ++i) {
      dx[r * d + i] += rs * w[i] * g[i] - coef * xr[i];
      dw[i] += g[i] * xr[i] * rs;
    }
  }
}

// Inverse (transpose) of the rotate-half rotation on the first rot dims of each head
// (token t head h at dx + t * stride + h * hd).
void rope_bwd(float* dx, int64_t T, int64_t heads, int64_t hd, int64_t rot, int64_t stride, const int32_t* pos,
              const RopeTable& rope) {
  const int64_t half = rot / 2;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const float ang = float(pos[t]) * rope.inv_freq[size_t(i)];
      const float c = std::cos(ang) * rope.attn_factor, s = std::sin(ang) * rope.attn_factor;
      for (int64_t h = 0; h < heads; ++h) {
        float* v = dx + t * stride + h * hd;
        const float ga = v[i], gb = v[i + half];
        v[i] = ga * c + gb * s;
        v[i + half] = -ga * s + gb * c;
      }
    }
}

// MLA rope dims stored as interleaved pairs (x0,x1),(x2,x3)... -> [evens | odds] (rotate-half
// layout), and the transpose of that permutation (for gradients).
void deinterleave(float* x, int64_t r, float* tmp) {
  const int64_t half = r / 2;
  for (int64_t i = 0; i < half; ++i) {
    tmp[i] = x[2 * i];
    tmp[half + i] = x[2 * i + 1];
  }
  std::memcpy(x, tmp, size_t(r) * sizeof(float));
}
void reinterleave(float* x, int64_t r, float* tmp) {
  const int64_t half = r / 2;
  for (int64_t i = 0; i < half; ++i) {
    tmp[2 * i] = x[i];
    tmp[2 * i + 1] = x[half + i];
  }
  std::memcpy(x, tmp, size_t(r) * sizeof(float));
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// Where each head's vectors live: query head h reads key/value head h / group; token row t of
// head h at base + t * ld + h * hs (the head strides are dk for q/k and dv for v/out).
struct AttnShape {
  int64_t heads = 0, group = 1;
  int64_t dk = 0, dv = 0;  // q/k and v values per head
  int64_t q_ld = 0, k_ld = 0, v_ld = 0, o_ld = 0;
  int64_t q_hs = 0, k_hs = 0, v_hs = 0, o_hs = 0;
};

kernels::FlashAttnArgs flash_args(const AttnShape& sh, const std::vector<int64_t>& seq_start, float scale,
                                  const float* qb, const float* kb, const float* vb, float* out, float* lse) {
  if (sh.q_hs != sh.dk || sh.k_hs != sh.dk || sh.v_hs != sh.dv || sh.o_hs != sh.dv)
    fail(ErrorCode::Internal, "attention: head strides must equal the head dims");
  kernels::FlashAttnArgs f;
  f.q = qb, f.k = kb, f.v = vb, f.o = out, f.lse = lse;
  f.seq_start = seq_start.data();
  f.n_seqs = int(seq_start.size()) - 1;
  f.n_heads = int(sh.heads), f.n_kv_heads = int(sh.heads / sh.group), f.dk = int(sh.dk), f.dv = int(sh.dv);
  f.q_stride = sh.q_ld, f.k_stride = sh.k_ld, f.v_stride = sh.v_ld, f.o_stride = sh.o_ld;
  f.scale = scale;
  return f;
}

// Causal attention within each sequence (FlashAttention-2, kernels/: no [T x T] matrix); out is
// overwritten, and lse keeps the row log-sum-exp per (token, head) for the backward.
void attn_fwd(const AttnShape& sh, const std::vector<int64_t>& seq_start, float scale, const float* qb,
              const float* kb, const float* vb, float* out, std::vector<float>& lse) {
  lse.resize(size_t(seq_start.back() * sh.heads));
  be().attention_fwd_train(flash_args(sh, seq_start, scale, qb, kb, vb, out, lse.data()));
}

// dq, dk, dv (laid out as q, k, v; overwritten) from dout (laid out as out), recomputing the
// probabilities tile by tile from the forward's out and lse.
void attn_bwd(const AttnShape& sh, const std::vector<int64_t>& seq_start, float scale, const float* qb,
              const float* kb, const float* vb, const float* out, const std::vector<float>& lse, const float* dout,
              float* dqb, float* dkb, float* dvb) {
  kernels::FlashAttnBwdArgs b;
  b.fwd = flash_args(sh, seq_start, scale, qb, kb, vb, const_cast<float*>(out), const_cast<float*>(lse.data()));
  std::vector<float> delta(lse.size());
  b.dout = dout, b.dq = dqb, b.dk = dkb, b.dv = dvb, b.delta = delta.data();
  be().attention_bwd(b);
}

// The gradient accumulator of each parameter tensor, found by the tensor's storage (tied
// embeddings share one, which is model.embed_tokens.weight's).
class GradSink {
 public:
  GradSink(const Model& m, Gradients& g) {
    for (auto& [name, t] : m.parameters()) by_ptr_.emplace(t.raw(), g.at(name).data<float>());
  }
  float* w(const Tensor& t) const {
    auto it = by_ptr_.find(t.raw());
    if (it == by_ptr_.end()) fail(ErrorCode::Internal, "training backward: a weight of shape {} is not a parameter", t.shape_str());
    return it->second;
  }
  float* b(const Linear& l) const { return l.b.raw() ? w(l.b) : nullptr; }

 private:
  std::unordered_map<const void*, float*> by_ptr_;
};

}  // namespace

namespace {

using train_detail::LayerActs;
using train_detail::MlpActs;

// y = down(silu(gate(x)) * up(x)) over n rows, keeping the activations.
void mlp_fwd(const SwiGLU& m, const float* x, int64_t n, int64_t d, MlpActs& a) {
  const int64_t ffn = m.gate.w.dim(0);
  a.gate.resize(size_t(n * ffn));
  a.up.resize(size_t(n * ffn));
  a.act.resize(size_t(n * ffn));
  a.y.resize(size_t(n * d));
  lin_fwd(m.gate, x, n, a.gate.data());
  lin_fwd(m.up, x, n, a.up.data());
  for (int64_t i = 0; i < n * ffn; ++i) {
    const float g = a.gate[size_t(i)];
    a.act[size_t(i)] = g / (1.0f + std::exp(-g)) * a.up[size_t(i)];
  }
  lin_fwd(m.down, a.act.data(), n, a.y.data());
}

// dx (+)= d/dx of the MLP given dy; weight gradients accumulate.
void mlp_bwd(const SwiGLU& m, const float* x, int64_t n, const MlpActs& a, const float* dy, float* dx,
             bool accumulate_dx, const GradSink& gs) {
  const int64_t ffn = m.gate.w.dim(0);
  std::vector<float> dact(size_t(n * ffn)), dgate(size_t(n * ffn)), dup(size_t(n * ffn));
  lin_bwd(m.down, a.act.data(), dy, n, dact.data(), false, gs.w(m.down.w), gs.b(m.down));
  for (int64_t i = 0; i < n * ffn; ++i) {
    const float g = a.gate[size_t(i)], sg = sigmoid(g);
    dup[size_t(i)] = dact[size_t(i)] * g * sg;
    dgate[size_t(i)] = dact[size_t(i)] * a.up[size_t(i)] * sg * (1.0f + g * (1.0f - sg));
  }
  lin_bwd(m.gate, x, dgate.data(), n, dx, accumulate_dx, gs.w(m.gate.w), gs.b(m.gate));
  lin_bwd(m.up, x, dup.data(), n, dx, true, gs.w(m.up.w), gs.b(m.up));
}

// MoE FFN forward, as moe_forward computes it (same routing function, same summation order).
void moe_fwd(const MoeWeights& w, const float* h, int64_t T, int64_t d, float* out, LayerActs& a) {
  const int E = w.router.n_experts, K = w.router.top_k;
  a.router_logits.resize(size_t(T * E));
  lin_fwd(Linear{w.gate, Tensor()}, h, T, a.router_logits.data());
  a.route_idx.resize(size_t(T * K));
  a.route_w.resize(size_t(T * K));
  route_tokens(w.router, a.router_logits.data(), w.score_bias.raw() ? w.score_bias.data<float>() : nullptr, T,
               a.route_idx.data(), a.route_w.data());
  a.expert_rows.assign(size_t(E), {});
  for (int64_t t = 0; t < T; ++t)
    for (int j = 0; j < K; ++j) a.expert_rows[size_t(a.route_idx[size_t(t * K + j)])].push_back(int32_t(t * K + j));
  a.experts.assign(size_t(E), MlpActs{});
  std::memset(out, 0, size_t(T * d) * sizeof(float));
  std::vector<float> xe;
  for (int e = 0; e < E; ++e) {
    const auto& rows = a.expert_rows[size_t(e)];
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size());
    xe.resize(size_t(n * d));
    for (int64_t i = 0; i < n; ++i) std::memcpy(&xe[size_t(i * d)], h + (rows[size_t(i)] / K) * d, size_t(d) * 4);
    MlpActs& ea = a.experts[size_t(e)];
    mlp_fwd(w.experts[size_t(e)], xe.data(), n, d, ea);
    for (int64_t i = 0; i < n; ++i) {
      float* o = out + (rows[size_t(i)] / K) * d;
      const float* y = &ea.y[size_t(i * d)];
      const float wt = a.route_w[size_t(rows[size_t(i)])];
      for (int64_t c = 0; c < d; ++c) o[c] += wt * y[c];
    }
  }
  if (w.has_shared) {
    mlp_fwd(w.shared, h, T, d, a.shared);
    if (w.shared_gate.raw()) {
      a.shared_gate_logit.resize(static_cast<size_t>(T));
      lin_fwd(Linear{w.shared_gate, Tensor()}, h, T, a.shared_gate_logit.data());
      for (int64_t t = 0; t < T; ++t) {
        const float g = sigmoid(a.shared_gate_logit[size_t(t)]);
        for (int64_t c = 0; c < d; ++c) out[t * d + c] += g * a.shared.y[size_t(t * d + c)];
      }
    } else {
      for (int64_t i = 0; i < T * d; ++i) out[i] += a.shared.y[size_t(i)];
    }
  }
}

// Sequence-wise balance loss of one MoE layer (see LogprobPass::set_aux_loss): returns its
// value and, when dlogits is non-null, adds scale * dL/dlogits (router logits [T, E]).
double seq_aux_loss(const RouterConfig& rc, const std::vector<float>& logits, const std::vector<int32_t>& idx,
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
//   r_j = softmax(logits)[e_j] or sigmoid(logits[e_j]).
void moe_bwd(const MoeWeights& w, const float* h, int64_t T, int64_t d, const LayerActs& a, const float* dout,
             float* dh, const GradSink& gs, const std::vector<int64_t>& seq_start, float aux_alpha, float aux_scale) {
  const RouterConfig& rc = w.router;
  const int E = rc.n_experts, K = rc.top_k;
  std::vector<float> dwt(size_t(T * K), 0.0f), xe, dy, dxe;
  for (int e = 0; e < E; ++e) {
    const auto& rows = a.expert_rows[size_t(e)];
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size());
    const MlpActs& ea = a.experts[size_t(e)];
    xe.resize(size_t(n * d));
    dy.resize(size_t(n * d));
    dxe.resize(size_t(n * d));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = rows[size_t(i)] / K;
      std::memcpy(&xe[size_t(i * d)], h + t * d, size_t(d) * 4);
      const float wt = a.route_w[size_t(rows[size_t(i)])];
      double dot = 0;
      for (int64_t c = 0; c < d; ++c) {
        dy[size_t(i * d + c)] = wt * dout[t * d + c];
        dot += double(dout[t * d + c]) * ea.y[size_t(i * d + c)];
      }
      dwt[size_t(rows[size_t(i)])] = float(dot);
    }
    mlp_bwd(w.experts[size_t(e)], xe.data(), n, ea, dy.data(), dxe.data(), false, gs);
    for (int64_t i = 0; i < n; ++i) {
      float* dst = dh + (rows[size_t(i)] / K) * d;
      for (int64_t c = 0; c < d; ++c) dst[c] += dxe[size_t(i * d + c)];
    }
  }
  if (w.has_shared) {
    if (w.shared_gate.raw()) {
      // out += sigmoid(z) * y_shared, z = shared_expert_gate(h)
      std::vector<float> dys(size_t(T * d)), dz(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; ++t) {
        const float g = sigmoid(a.shared_gate_logit[size_t(t)]);
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) {
          dys[size_t(t * d + c)] = g * dout[t * d + c];
          dot += double(dout[t * d + c]) * a.shared.y[size_t(t * d + c)];
        }
        dz[size_t(t)] = float(dot) * g * (1.0f - g);
      }
      mlp_bwd(w.shared, h, T, a.shared, dys.data(), dh, true, gs);
      lin_bwd(Linear{w.shared_gate, Tensor()}, h, dz.data(), T, dh, true, gs.w(w.shared_gate), nullptr);
    } else {
      mlp_bwd(w.shared, h, T, a.shared, dout, dh, true, gs);
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
      for (int j = 0; j < K; ++j) r[size_t(j)] = sigmoid(lg[id[j]]);
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
  if (aux_alpha > 0.0f) seq_aux_loss(rc, a.router_logits, a.route_idx, seq_start, aux_alpha, dlogits.data(), aux_scale);
  lin_bwd(Linear{w.gate, Tensor()}, h, dlogits.data(), T, dh, true, gs.w(w.gate), nullptr);
}

// Multi-head Latent Attention, the expanded path (attention_mla.cpp), keeping activations:
// a.q [T, H*qk] (rope dims de-interleaved and roped), a.k [T, H*qk] = [W_UK c | kr] per head,
// a.v [T, H*v] = W_UV c, a.att [T, H*v].
void mla_fwd(const ModelConfig& c, const DecoderLayer& ly, const RopeTable& rt, const int32_t* pos,
             const std::vector<int64_t>& seq_start, int64_t T, LayerActs& a) {
  const int64_t H = c.n_heads, nope = c.qk_nope_head_dim, rd = c.qk_rope_head_dim, vd = c.v_head_dim;
  const int64_t qk = nope + rd, L = c.kv_lora_rank, R = L + rd, ql = c.q_lora_rank, kvw = nope + vd;
  a.q.resize(size_t(T * H * qk));
  if (ql > 0) {
    a.qa_raw.resize(size_t(T * ql));
    a.qa_n.resize(size_t(T * ql));
    a.qa_rstd.resize(static_cast<size_t>(T));
    lin_fwd(ly.q_a, a.h1.data(), T, a.qa_raw.data());
    rms_fwd(a.qa_raw.data(), f32(ly.q_a_norm), a.qa_n.data(), a.qa_rstd.data(), T, ql, c.rms_norm_eps);
    lin_fwd(ly.q_b, a.qa_n.data(), T, a.q.data());
  } else {
    lin_fwd(ly.q, a.h1.data(), T, a.q.data());
  }
  std::vector<float> ckv(size_t(T * R)), kr(size_t(T * rd)), tmp(static_cast<size_t>(rd));
  lin_fwd(ly.kv_a, a.h1.data(), T, ckv.data());
  a.lat_raw.resize(size_t(T * L));
  a.lat.resize(size_t(T * L));
  a.lat_rstd.resize(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    std::memcpy(&a.lat_raw[size_t(t * L)], &ckv[size_t(t * R)], size_t(L) * 4);
    std::memcpy(&kr[size_t(t * rd)], &ckv[size_t(t * R + L)], size_t(rd) * 4);
  }
  rms_fwd(a.lat_raw.data(), f32(ly.kv_a_norm), a.lat.data(), a.lat_rstd.data(), T, L, c.rms_norm_eps);
  if (c.rope_interleave)
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) deinterleave(&a.q[size_t((t * H + h) * qk + nope)], rd, tmp.data());
      deinterleave(&kr[size_t(t * rd)], rd, tmp.data());
    }
  be().rope(a.q.data() + nope, T, int(H), int(qk), int(rd), H * qk, pos, rt.inv_freq.data(), rt.attn_factor);
  be().rope(kr.data(), T, 1, int(rd), int(rd), rd, pos, rt.inv_freq.data(), rt.attn_factor);
  std::vector<float> kvb(size_t(T * H * kvw));
  lin_fwd(ly.kv_b, a.lat.data(), T, kvb.data());
  a.k.resize(size_t(T * H * qk));
  a.v.resize(size_t(T * H * vd));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      const float* src = &kvb[size_t((t * H + h) * kvw)];
      float* kd = &a.k[size_t((t * H + h) * qk)];
      std::memcpy(kd, src, size_t(nope) * 4);
      std::memcpy(kd + nope, &kr[size_t(t * rd)], size_t(rd) * 4);
      std::memcpy(&a.v[size_t((t * H + h) * vd)], src + nope, size_t(vd) * 4);
    }
  AttnShape sh{H, 1, qk, vd, H * qk, H * qk, H * vd, H * vd, qk, qk, vd, vd};
  a.att.assign(size_t(T * H * vd), 0.0f);
  attn_fwd(sh, seq_start, c.attention_scale(), a.q.data(), a.k.data(), a.v.data(), a.att.data(), a.lse);
}

// MLA backward from datt [T, H*v]: dh1 = gradient w.r.t. the normed layer input (overwritten).
void mla_bwd(const ModelConfig& c, const DecoderLayer& ly, const RopeTable& rt, const int32_t* pos,
             const std::vector<int64_t>& seq_start, int64_t T, const LayerActs& a, const float* datt, float* dh1,
             const GradSink& gs) {
  const int64_t H = c.n_heads, nope = c.qk_nope_head_dim, rd = c.qk_rope_head_dim, vd = c.v_head_dim;
  const int64_t qk = nope + rd, L = c.kv_lora_rank, R = L + rd, ql = c.q_lora_rank, kvw = nope + vd;
  AttnShape sh{H, 1, qk, vd, H * qk, H * qk, H * vd, H * vd, qk, qk, vd, vd};
  std::vector<float> dq(size_t(T * H * qk), 0.0f), dk(size_t(T * H * qk), 0.0f), dv(size_t(T * H * vd), 0.0f);
  attn_bwd(sh, seq_start, c.attention_scale(), a.q.data(), a.k.data(), a.v.data(), a.att.data(), a.lse, datt, dq.data(),
           dk.data(), dv.data());
  // Keys and values back to kv_b's output and the shared rope key.
  std::vector<float> dkvb(size_t(T * H * kvw)), dkr(size_t(T * rd), 0.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) {
      float* dst = &dkvb[size_t((t * H + h) * kvw)];
      const float* gk = &dk[size_t((t * H + h) * qk)];
      std::memcpy(dst, gk, size_t(nope) * 4);
      std::memcpy(dst + nope, &dv[size_t((t * H + h) * vd)], size_t(vd) * 4);
      for (int64_t i = 0; i < rd; ++i) dkr[size_t(t * rd + i)] += gk[nope + i];
    }
  std::vector<float> dlat(size_t(T * L)), dckv(size_t(T * R), 0.0f), tmp(static_cast<size_t>(rd));
  lin_bwd(ly.kv_b, a.lat.data(), dkvb.data(), T, dlat.data(), false, gs.w(ly.kv_b.w), gs.b(ly.kv_b));
  // RoPE and the de-interleaving, transposed.
  rope_bwd(dq.data() + nope, T, H, qk, rd, H * qk, pos, rt);
  rope_bwd(dkr.data(), T, 1, rd, rd, rd, pos, rt);
  if (c.rope_interleave)
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) reinterleave(&dq[size_t((t * H + h) * qk + nope)], rd, tmp.data());
      reinterleave(&dkr[size_t(t * rd)], rd, tmp.data());
    }
  // kv_a_layernorm on the latent; [dc | dkr] back through kv_a_proj_with_mqa.
  std::vector<float> dlat_raw(size_t(T * L), 0.0f);
  rms_bwd(a.lat_raw.data(), f32(ly.kv_a_norm), a.lat_rstd.data(), dlat.data(), dlat_raw.data(), gs.w(ly.kv_a_norm), T, L);
  for (int64_t t = 0; t < T; ++t) {
    std::memcpy(&dckv[size_t(t * R)], &dlat_raw[size_t(t * L)], size_t(L) * 4);
    std::memcpy(&dckv[size_t(t * R + L)], &dkr[size_t(t * rd)], size_t(rd) * 4);
  }
  lin_bwd(ly.kv_a, a.h1.data(), dckv.data(), T, dh1, false, gs.w(ly.kv_a.w), gs.b(ly.kv_a));
  if (ql > 0) {
    std::vector<float> dqa_n(size_t(T * ql)), dqa(size_t(T * ql), 0.0f);
    lin_bwd(ly.q_b, a.qa_n.data(), dq.data(), T, dqa_n.data(), false, gs.w(ly.q_b.w), gs.b(ly.q_b));
    rms_bwd(a.qa_raw.data(), f32(ly.q_a_norm), a.qa_rstd.data(), dqa_n.data(), dqa.data(), gs.w(ly.q_a_norm), T, ql);
    lin_bwd(ly.q_a, a.h1.data(), dqa.data(), T, dh1, true, gs.w(ly.q_a.w), gs.b(ly.q_a));
  } else {
    lin_bwd(ly.q, a.h1.data(), dq.data(), T, dh1, true, gs.w(ly.q.w), gs.b(ly.q));
  }
}

}  // namespace

Gradients Gradients::zeros_like(const Model& m) {
  Gradients g;
  for (auto& [name, t] : m.parameters()) g.by_name.emplace(name, Tensor::zeros(DType::F32, t.shape()));
  return g;
}

Tensor& Gradients::at(const std::string& name) {
  auto it = by_name.find(name);
  if (it == by_name.end()) fail(ErrorCode::Internal, "no gradient accumulator for parameter '{}'", name);
  return it->second;
}

void LogprobPass::layer_forward(int64_t l, std::vector<float>& x, std::vector<float>& tmp, bool record) {
  const Model& model = *model_;
  const ModelConfig& c = model.config();
  const int64_t d = c.hidden_size, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads;
  const int64_t qd = nh * hd, kvd = nkv * hd;
  const int64_t T = int64_t(tokens_.size());
  const float scale = c.attention_scale();
  const RopeTable& rope = model.rope();
    const DecoderLayer& ly = model.layers()[size_t(l)];
    LayerActs& a = acts_[size_t(l)];
    a.x_in = x;
    a.rstd1.resize(static_cast<size_t>(T));
    a.h1.resize(size_t(T * d));
    rms_fwd(x.data(), f32(ly.attn_norm), a.h1.data(), a.rstd1.data(), T, d, c.rms_norm_eps);
    if (c.mla) {
      mla_fwd(c, ly, rope, pos_.data(), seq_start_, T, a);
    } else {
      a.q.resize(size_t(T * qd));
      a.k.resize(size_t(T * kvd));
      a.v.resize(size_t(T * kvd));
      lin_fwd(ly.q, a.h1.data(), T, a.q.data());
      lin_fwd(ly.k, a.h1.data(), T, a.k.data());
      lin_fwd(ly.v, a.h1.data(), T, a.v.data());
      if (ly.q_norm.raw()) {  // Qwen3: RMSNorm of each head's q and k, before RoPE
        a.q_raw = a.q;
        a.k_raw = a.k;
        a.q_rstd.resize(size_t(T * nh));
        a.k_rstd.resize(size_t(T * nkv));
        rms_fwd(a.q_raw.data(), f32(ly.q_norm), a.q.data(), a.q_rstd.data(), T * nh, hd, c.rms_norm_eps);
        rms_fwd(a.k_raw.data(), f32(ly.k_norm), a.k.data(), a.k_rstd.data(), T * nkv, hd, c.rms_norm_eps);
      }
      be().rope(a.q.data(), T, int(nh), int(hd), int(hd), qd, pos_.data(), rope.inv_freq.data(), rope.attn_factor);
      be().rope(a.k.data(), T, int(nkv), int(hd), int(hd), kvd, pos_.data(), rope.inv_freq.data(), rope.attn_factor);
      AttnShape sh{nh, nh / nkv, hd, hd, qd, kvd, kvd, qd, hd, hd, hd, hd};
      a.att.assign(size_t(T * qd), 0.0f);
      attn_fwd(sh, seq_start_, scale, a.q.data(), a.k.data(), a.v.data(), a.att.data(), a.lse);
    }
    lin_fwd(ly.o, a.att.data(), T, tmp.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
    a.x_mid = x;
    a.rstd2.resize(static_cast<size_t>(T));
    a.h2.resize(size_t(T * d));
    rms_fwd(x.data(), f32(ly.mlp_norm), a.h2.data(), a.rstd2.data(), T, d, c.rms_norm_eps);
    if (ly.is_moe) {
      moe_fwd(ly.moe, a.h2.data(), T, d, tmp.data(), a);
      if (record && aux_alpha_ > 0.0f)
        aux_loss_ += seq_aux_loss(ly.moe.router, a.router_logits, a.route_idx, seq_start_, aux_alpha_, nullptr, 0.0f);
      if (record) routes_[size_t(l)] = a.route_idx;
      for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
    } else {
      mlp_fwd(ly.mlp, a.h2.data(), T, d, a.mlp);
      for (size_t i = 0; i < x.size(); ++i) x[i] += a.mlp.y[i];
    }
}

std::vector<float> LogprobPass::forward(const Model& model, std::span<const std::vector<int32_t>> seqs,
                                        float temperature) {
  const ModelConfig& c = model.config();
  if (model.compute_dtype() != DType::F32)
    fail(ErrorCode::Unsupported, "training needs the model loaded in f32 (its master weights)");
  if (!(temperature > 0.0f)) fail(ErrorCode::InvalidArgument, "training temperature must be > 0 (got {})", temperature);
  model_ = &model;
  temperature_ = temperature;
  const int64_t d = c.hidden_size, V = c.vocab_size;

  tokens_.clear();
  pos_.clear();
  seq_start_.clear();
  target_row_.clear();
  target_id_.clear();
  for (size_t s = 0; s < seqs.size(); ++s) {
    if (seqs[s].size() < 2) fail(ErrorCode::InvalidArgument, "training sequence {} has fewer than 2 tokens", s);
    seq_start_.push_back(int64_t(tokens_.size()));
    for (size_t t = 0; t < seqs[s].size(); ++t) {
      const int32_t id = seqs[s][t];
      if (id < 0 || id >= V)
        fail(ErrorCode::InvalidArgument, "sequence {}: token id {} at position {} is outside the vocabulary [0, {})", s, id, t, V);
      if (t + 1 < seqs[s].size()) {
        target_row_.push_back(int64_t(tokens_.size()));
        target_id_.push_back(seqs[s][t + 1]);
      }
      tokens_.push_back(id);
      pos_.push_back(int32_t(t));
    }
  }
  const int64_t T = int64_t(tokens_.size());
  seq_start_.push_back(T);
  aux_loss_ = 0.0;
  if (T == 0) fail(ErrorCode::InvalidArgument, "training batch is empty");

  std::vector<float> x(static_cast<size_t>(T * d));
  for (int64_t t = 0; t < T; ++t) std::memcpy(&x[size_t(t * d)], f32(model.embed()) + tokens_[size_t(t)] * d, size_t(d) * 4);

  acts_.assign(size_t(c.n_layers), LayerActs{});
  routes_.assign(size_t(c.n_layers), {});
  std::vector<float> tmp(static_cast<size_t>(T * d));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    layer_forward(l, x, tmp, true);
    // With recomputation only the layer's input is kept; backward() runs the layer again.
    if (recompute_) {
      std::vector<float> x_in = std::move(acts_[size_t(l)].x_in);
      acts_[size_t(l)] = LayerActs{};
      acts_[size_t(l)].x_in = std::move(x_in);
    }
  }
  x_final_ = x;
  rstd_f_.resize(static_cast<size_t>(T));
  h_final_.resize(size_t(T * d));
  rms_fwd(x.data(), f32(model.final_norm()), h_final_.data(), rstd_f_.data(), T, d, c.rms_norm_eps);

  // Chunked LM head + log-softmax: only kVocabChunkRows x V logits at a time.
  const int64_t N = int64_t(target_row_.size());
  std::vector<float> out(static_cast<size_t>(N));
  entropy_.assign(size_t(N), 0.0f);
  lse_.assign(size_t(N), 0.0f);
  std::vector<float> hc(size_t(kVocabChunkRows * d)), logits(size_t(kVocabChunkRows * V));
  const float inv_t = 1.0f / temperature;
  for (int64_t c0 = 0; c0 < N; c0 += kVocabChunkRows) {
    const int64_t m = std::min(kVocabChunkRows, N - c0);
    for (int64_t i = 0; i < m; ++i)
      std::memcpy(&hc[size_t(i * d)], &h_final_[size_t(target_row_[size_t(c0 + i)] * d)], size_t(d) * 4);
    lin_fwd(Linear{model.lm_head(), Tensor()}, hc.data(), m, logits.data());
#pragma omp parallel for num_threads(kernels::cpu_threads()) schedule(static)
    for (int64_t i = 0; i < m; ++i) {
      const float* z = &logits[size_t(i * V)];
      // lse = mx + log sum exp(s - mx), s = z / T; entropy = lse - sum p s.
      const float mx = kernels::row_max(z, V) * inv_t;  // T > 0, so max(z)/T = max(z/T)
      double dot = 0;
      const double sum = kernels::scaled_exp_sum(z, V, inv_t, mx, nullptr, &dot);
      const double lse = double(mx) + std::log(sum);
      lse_[size_t(c0 + i)] = float(lse);
      out[size_t(c0 + i)] = float(double(z[target_id_[size_t(c0 + i)]] * inv_t) - lse);
      entropy_[size_t(c0 + i)] = float(lse - dot / sum);
    }
  }
  return out;
}

void LogprobPass::row_logprobs(int64_t i0, int64_t n, std::vector<float>& out) const {
  if (!model_) fail(ErrorCode::InvalidArgument, "LogprobPass::row_logprobs called before forward");
  const int64_t d = model_->config().hidden_size, V = model_->config().vocab_size;
  if (i0 < 0 || n < 0 || i0 + n > int64_t(target_row_.size())) fail(ErrorCode::InvalidArgument, "row_logprobs: rows out of range");
  std::vector<float> hc(size_t(n * d));
  for (int64_t i = 0; i < n; ++i) std::memcpy(&hc[size_t(i * d)], &h_final_[size_t(target_row_[size_t(i0 + i)] * d)], size_t(d) * 4);
  out.resize(size_t(n * V));
  lin_fwd(Linear{model_->lm_head(), Tensor()}, hc.data(), n, out.data());
  const float inv_t = 1.0f / temperature_;
  for (int64_t i = 0; i < n; ++i) {
    float* z = &out[size_t(i * V)];
    float mx = -INFINITY;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, z[j] * inv_t);
    double sum = 0;
    for (int64_t j = 0; j < V; ++j) sum += std::exp(double(z[j] * inv_t - mx));
    const float lse = float(double(mx) + std::log(sum));
    for (int64_t j = 0; j < V; ++j) z[j] = z[j] * inv_t - lse;
  }
}

void LogprobPass::backward(std::span<const float> dlogp, Gradients& grads) {
  if (dlogp.size() != target_row_.size())
    fail(ErrorCode::InvalidArgument, "backward: {} gradients for {} target tokens", dlogp.size(), target_row_.size());
  backward_impl(nullptr, dlogp, grads);
}

void LogprobPass::backward_rows(const RowGrad& row_grad, Gradients& grads) { backward_impl(&row_grad, {}, grads); }

void LogprobPass::backward_impl(const RowGrad* row_grad, std::span<const float> dlogp, Gradients& grads) {
  if (!model_) fail(ErrorCode::InvalidArgument, "LogprobPass::backward called before forward");
  const Model& model = *model_;
  const ModelConfig& c = model.config();
  const int64_t d = c.hidden_size, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads, V = c.vocab_size;
  const int64_t qd = nh * hd, kvd = nkv * hd;
  const int64_t T = int64_t(tokens_.size()), N = int64_t(target_row_.size());
  const float inv_t = 1.0f / temperature_;
  const GradSink gs(model, grads);

  // LM head and log-softmax, chunk by chunk: dz = dlogp * (onehot - softmax), dlogits = dz / T.
  std::vector<float> dh(size_t(T * d), 0.0f);
  {
    std::vector<float> hc(size_t(kVocabChunkRows * d)), logits(size_t(kVocabChunkRows * V)), dhc(size_t(kVocabChunkRows * d));
    std::vector<float> rowlp(size_t(row_grad ? V : 0)), rowg(size_t(row_grad ? V : 0));
    const Linear head{model.lm_head(), Tensor()};
    float* dW = gs.w(model.lm_head());
    for (int64_t c0 = 0; c0 < N; c0 += kVocabChunkRows) {
      const int64_t m = std::min(kVocabChunkRows, N - c0);
      for (int64_t i = 0; i < m; ++i)
        std::memcpy(&hc[size_t(i * d)], &h_final_[size_t(target_row_[size_t(c0 + i)] * d)], size_t(d) * 4);
      lin_fwd(head, hc.data(), m, logits.data());
      if (row_grad) {
        for (int64_t i = 0; i < m; ++i) {
          float* z = &logits[size_t(i * V)];
          // dz_j = (g_j - p_j * sum_k g_k) / T for an arbitrary dL/dlogprob row g.
          const float lse = lse_[size_t(c0 + i)];
          for (int64_t j = 0; j < V; ++j) rowlp[size_t(j)] = z[j] * inv_t - lse;
          std::fill(rowg.begin(), rowg.end(), 0.0f);
          (*row_grad)(c0 + i, rowlp.data(), rowg.data());
          double gsum = 0;
          for (int64_t j = 0; j < V; ++j) gsum += rowg[size_t(j)];
          for (int64_t j = 0; j < V; ++j) z[j] = float((rowg[size_t(j)] - std::exp(double(rowlp[size_t(j)])) * gsum) * inv_t);
        }
      } else {
#pragma omp parallel for num_threads(kernels::cpu_threads()) schedule(static)
        for (int64_t i = 0; i < m; ++i) {
          float* z = &logits[size_t(i * V)];
          // dz = g (onehot - p) / T with p = exp(z / T - lse) from the forward.
          const float g = dlogp[size_t(c0 + i)];
          kernels::scaled_exp_sum(z, V, inv_t, lse_[size_t(c0 + i)], z, nullptr);
          const float c = -g * inv_t;
          for (int64_t j = 0; j < V; ++j) z[j] *= c;
          z[target_id_[size_t(c0 + i)]] += g * inv_t;
        }
      }
      lin_bwd(head, hc.data(), logits.data(), m, dhc.data(), false, dW, nullptr);
      for (int64_t i = 0; i < m; ++i) {
        float* dst = &dh[size_t(target_row_[size_t(c0 + i)] * d)];
        for (int64_t j = 0; j < d; ++j) dst[j] += dhc[size_t(i * d + j)];
      }
    }
  }
  std::vector<float> dx(size_t(T * d), 0.0f);
  rms_bwd(x_final_.data(), f32(model.final_norm()), rstd_f_.data(), dh.data(), dx.data(), gs.w(model.final_norm()), T, d);

  const float scale = c.attention_scale();
  const RopeTable& rope = model.rope();
  std::vector<float> dh2(size_t(T * d)), dh1(size_t(T * d)), datt;
  for (int64_t l = c.n_layers - 1; l >= 0; --l) {
    const DecoderLayer& ly = model.layers()[size_t(l)];
    if (recompute_) {  // rebuild this layer's activations from its saved input; drop the layer above's
      if (l + 1 < c.n_layers) {
        std::vector<float> keep = std::move(acts_[size_t(l + 1)].x_in);
        acts_[size_t(l + 1)] = LayerActs{};
        acts_[size_t(l + 1)].x_in = std::move(keep);
      }
      std::vector<float> xr = acts_[size_t(l)].x_in, tmp(xr.size());
      layer_forward(l, xr, tmp, false);
    }
    const LayerActs& a = acts_[size_t(l)];
    // FFN: x += ffn(rmsnorm(x))
    if (ly.is_moe) {
      std::fill(dh2.begin(), dh2.end(), 0.0f);
      moe_bwd(ly.moe, a.h2.data(), T, d, a, dx.data(), dh2.data(), gs, seq_start_, aux_alpha_, aux_weight_);
    } else {
      mlp_bwd(ly.mlp, a.h2.data(), T, a.mlp, dx.data(), dh2.data(), false, gs);
    }
    rms_bwd(a.x_mid.data(), f32(ly.mlp_norm), a.rstd2.data(), dh2.data(), dx.data(), gs.w(ly.mlp_norm), T, d);
    // Attention: x += o(attn(rmsnorm(x)))
    datt.resize(a.att.size());
    lin_bwd(ly.o, a.att.data(), dx.data(), T, datt.data(), false, gs.w(ly.o.w), gs.b(ly.o));
    if (c.mla) {
      mla_bwd(c, ly, rope, pos_.data(), seq_start_, T, a, datt.data(), dh1.data(), gs);
    } else {
      std::vector<float> dq(size_t(T * qd), 0.0f), dk(size_t(T * kvd), 0.0f), dv(size_t(T * kvd), 0.0f);
      AttnShape sh{nh, nh / nkv, hd, hd, qd, kvd, kvd, qd, hd, hd, hd, hd};
      attn_bwd(sh, seq_start_, scale, a.q.data(), a.k.data(), a.v.data(), a.att.data(), a.lse, datt.data(), dq.data(), dk.data(),
               dv.data());
      rope_bwd(dq.data(), T, nh, hd, hd, qd, pos_.data(), rope);
      rope_bwd(dk.data(), T, nkv, hd, hd, kvd, pos_.data(), rope);
      if (ly.q_norm.raw()) {
        std::vector<float> dq_raw(dq.size(), 0.0f), dk_raw(dk.size(), 0.0f);
        rms_bwd(a.q_raw.data(), f32(ly.q_norm), a.q_rstd.data(), dq.data(), dq_raw.data(), gs.w(ly.q_norm), T * nh, hd);
        rms_bwd(a.k_raw.data(), f32(ly.k_norm), a.k_rstd.data(), dk.data(), dk_raw.data(), gs.w(ly.k_norm), T * nkv, hd);
        dq.swap(dq_raw);
        dk.swap(dk_raw);
      }
      lin_bwd(ly.q, a.h1.data(), dq.data(), T, dh1.data(), false, gs.w(ly.q.w), gs.b(ly.q));
      lin_bwd(ly.k, a.h1.data(), dk.data(), T, dh1.data(), true, gs.w(ly.k.w), gs.b(ly.k));
      lin_bwd(ly.v, a.h1.data(), dv.data(), T, dh1.data(), true, gs.w(ly.v.w), gs.b(ly.v));
    }
    rms_bwd(a.x_in.data(), f32(ly.attn_norm), a.rstd1.data(), dh1.data(), dx.data(), gs.w(ly.attn_norm), T, d);
  }
  float* dE = gs.w(model.embed());
  for (int64_t t = 0; t < T; ++t) {
    float* row = dE + int64_t(tokens_[size_t(t)]) * d;
    for (int64_t j = 0; j < d; ++j) row[j] += dx[size_t(t * d + j)];
  }
}

}  // namespace reason
