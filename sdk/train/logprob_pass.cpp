#include "train/logprob_pass.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "reason/kernels/backend.h"

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

// Inverse (transpose) of the rotate-half rotation on the first rot dims of each head.
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

std::vector<float> LogprobPass::forward(const Model& model, std::span<const std::vector<int32_t>> seqs,
                                        float temperature) {
  const ModelConfig& c = model.config();
  if (c.mla || c.n_experts > 0)
    fail(ErrorCode::Unsupported, "training passes support dense Llama/Qwen2 models so far, not {}", c.architecture);
  if (model.compute_dtype() != DType::F32)
    fail(ErrorCode::Unsupported, "training needs the model loaded in f32 (its master weights)");
  if (!(temperature > 0.0f)) fail(ErrorCode::InvalidArgument, "training temperature must be > 0 (got {})", temperature);
  model_ = &model;
  temperature_ = temperature;
  const int64_t d = c.hidden_size, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads, V = c.vocab_size;
  const int64_t qd = nh * hd, kvd = nkv * hd, ffn = c.intermediate_size, group = nh / nkv;

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
  if (T == 0) fail(ErrorCode::InvalidArgument, "training batch is empty");

  std::vector<float> x(static_cast<size_t>(T * d));
  for (int64_t t = 0; t < T; ++t) std::memcpy(&x[size_t(t * d)], f32(model.embed()) + tokens_[size_t(t)] * d, size_t(d) * 4);

  const float scale = c.attention_scale();
  acts_.assign(size_t(c.n_layers), LayerActs{});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const DecoderLayer& ly = model.layers()[size_t(l)];
    LayerActs& a = acts_[size_t(l)];
    a.x_in = x;
    a.rstd1.resize(size_t(T));
    a.h1.resize(size_t(T * d));
    rms_fwd(x.data(), f32(ly.attn_norm), a.h1.data(), a.rstd1.data(), T, d, c.rms_norm_eps);
    a.q.resize(size_t(T * qd));
    a.k.resize(size_t(T * kvd));
    a.v.resize(size_t(T * kvd));
    lin_fwd(ly.q, a.h1.data(), T, a.q.data());
    lin_fwd(ly.k, a.h1.data(), T, a.k.data());
    lin_fwd(ly.v, a.h1.data(), T, a.v.data());
    const RopeTable& rope = model.rope();
    be().rope(a.q.data(), T, int(nh), int(hd), int(hd), qd, pos_.data(), rope.inv_freq.data(), rope.attn_factor);
    be().rope(a.k.data(), T, int(nkv), int(hd), int(hd), kvd, pos_.data(), rope.inv_freq.data(), rope.attn_factor);
    // Causal attention within each sequence; keep the probabilities for backward.
    a.att.assign(size_t(T * qd), 0.0f);
    size_t prob_size = 0;
    for (size_t s = 0; s + 1 < seq_start_.size(); ++s) {
      const int64_t n = seq_start_[s + 1] - seq_start_[s];
      prob_size += size_t(nh * n * n);
    }
    a.probs.assign(prob_size, 0.0f);
    size_t poff = 0;
    for (size_t s = 0; s + 1 < seq_start_.size(); ++s) {
      const int64_t b = seq_start_[s], n = seq_start_[s + 1] - b;
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t g = h / group;
        float* P = &a.probs[poff + size_t(h * n * n)];
        for (int64_t t = 0; t < n; ++t) {
          const float* q = &a.q[size_t((b + t) * qd + h * hd)];
          float mx = -INFINITY;
          for (int64_t u = 0; u <= t; ++u) {
            const float* k = &a.k[size_t((b + u) * kvd + g * hd)];
            float sc = 0;
            for (int64_t i = 0; i < hd; ++i) sc += q[i] * k[i];
            P[t * n + u] = sc * scale;
            mx = std::max(mx, P[t * n + u]);
          }
          float z = 0;
          for (int64_t u = 0; u <= t; ++u) z += (P[t * n + u] = std::exp(P[t * n + u] - mx));
          float* o = &a.att[size_t((b + t) * qd + h * hd)];
          for (int64_t u = 0; u <= t; ++u) {
            P[t * n + u] /= z;
            const float* v = &a.v[size_t((b + u) * kvd + g * hd)];
            for (int64_t i = 0; i < hd; ++i) o[i] += P[t * n + u] * v[i];
          }
        }
      }
      poff += size_t(nh * n * n);
    }
    std::vector<float> tmp(static_cast<size_t>(T * d));
    lin_fwd(ly.o, a.att.data(), T, tmp.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
    a.x_mid = x;
    a.rstd2.resize(size_t(T));
    a.h2.resize(size_t(T * d));
    rms_fwd(x.data(), f32(ly.mlp_norm), a.h2.data(), a.rstd2.data(), T, d, c.rms_norm_eps);
    a.gate.resize(size_t(T * ffn));
    a.up.resize(size_t(T * ffn));
    a.act.resize(size_t(T * ffn));
    lin_fwd(ly.mlp.gate, a.h2.data(), T, a.gate.data());
    lin_fwd(ly.mlp.up, a.h2.data(), T, a.up.data());
    for (int64_t i = 0; i < T * ffn; ++i) {
      const float g = a.gate[size_t(i)];
      a.act[size_t(i)] = g / (1.0f + std::exp(-g)) * a.up[size_t(i)];
    }
    lin_fwd(ly.mlp.down, a.act.data(), T, tmp.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
  }
  x_final_ = x;
  rstd_f_.resize(size_t(T));
  h_final_.resize(size_t(T * d));
  rms_fwd(x.data(), f32(model.final_norm()), h_final_.data(), rstd_f_.data(), T, d, c.rms_norm_eps);

  // Chunked LM head + log-softmax: only kVocabChunkRows x V logits at a time.
  const int64_t N = int64_t(target_row_.size());
  std::vector<float> out(static_cast<size_t>(N));
  entropy_.assign(size_t(N), 0.0f);
  std::vector<float> hc(size_t(kVocabChunkRows * d)), logits(size_t(kVocabChunkRows * V));
  const float inv_t = 1.0f / temperature;
  for (int64_t c0 = 0; c0 < N; c0 += kVocabChunkRows) {
    const int64_t m = std::min(kVocabChunkRows, N - c0);
    for (int64_t i = 0; i < m; ++i)
      std::memcpy(&hc[size_t(i * d)], &h_final_[size_t(target_row_[size_t(c0 + i)] * d)], size_t(d) * 4);
    lin_fwd(Linear{model.lm_head(), Tensor()}, hc.data(), m, logits.data());
    for (int64_t i = 0; i < m; ++i) {
      float* z = &logits[size_t(i * V)];
      float mx = -INFINITY;
      for (int64_t j = 0; j < V; ++j) mx = std::max(mx, z[j] * inv_t);
      double sum = 0;
      for (int64_t j = 0; j < V; ++j) sum += std::exp(double(z[j] * inv_t - mx));
      const double lse = double(mx) + std::log(sum);
      double ent = 0;
      for (int64_t j = 0; j < V; ++j) {
        const double lp = double(z[j] * inv_t) - lse;
        ent -= std::exp(lp) * lp;
      }
      out[size_t(c0 + i)] = float(double(z[target_id_[size_t(c0 + i)]] * inv_t) - lse);
      entropy_[size_t(c0 + i)] = float(ent);
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
  const int64_t qd = nh * hd, kvd = nkv * hd, ffn = c.intermediate_size, group = nh / nkv;
  const int64_t T = int64_t(tokens_.size()), N = int64_t(target_row_.size());
  const float inv_t = 1.0f / temperature_;
  const std::string head_name = c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";

  // LM head and log-softmax, chunk by chunk: dz = dlogp * (onehot - softmax), dlogits = dz / T.
  std::vector<float> dh(size_t(T * d), 0.0f);
  {
    std::vector<float> hc(size_t(kVocabChunkRows * d)), logits(size_t(kVocabChunkRows * V)), dhc(size_t(kVocabChunkRows * d));
    std::vector<float> rowlp(size_t(row_grad ? V : 0)), rowg(size_t(row_grad ? V : 0));
    const Linear head{model.lm_head(), Tensor()};
    float* dW = grads.at(head_name).data<float>();
    for (int64_t c0 = 0; c0 < N; c0 += kVocabChunkRows) {
      const int64_t m = std::min(kVocabChunkRows, N - c0);
      for (int64_t i = 0; i < m; ++i)
        std::memcpy(&hc[size_t(i * d)], &h_final_[size_t(target_row_[size_t(c0 + i)] * d)], size_t(d) * 4);
      lin_fwd(head, hc.data(), m, logits.data());
      for (int64_t i = 0; i < m; ++i) {
        float* z = &logits[size_t(i * V)];
        float mx = -INFINITY;
        for (int64_t j = 0; j < V; ++j) mx = std::max(mx, z[j] * inv_t);
        double sum = 0;
        for (int64_t j = 0; j < V; ++j) sum += std::exp(double(z[j] * inv_t - mx));
        if (row_grad) {
          // dz_j = (g_j - p_j * sum_k g_k) / T for an arbitrary dL/dlogprob row g.
          const float lse = float(double(mx) + std::log(sum));
          for (int64_t j = 0; j < V; ++j) rowlp[size_t(j)] = z[j] * inv_t - lse;
          std::fill(rowg.begin(), rowg.end(), 0.0f);
          (*row_grad)(c0 + i, rowlp.data(), rowg.data());
          double gsum = 0;
          for (int64_t j = 0; j < V; ++j) gsum += rowg[size_t(j)];
          for (int64_t j = 0; j < V; ++j) z[j] = float((rowg[size_t(j)] - std::exp(double(rowlp[size_t(j)])) * gsum) * inv_t);
          continue;
        }
        const float g = dlogp[size_t(c0 + i)];
        for (int64_t j = 0; j < V; ++j) {
          const float p = float(std::exp(double(z[j] * inv_t - mx)) / sum);
          z[j] = -g * p * inv_t;
        }
        z[target_id_[size_t(c0 + i)]] += g * inv_t;
      }
      lin_bwd(head, hc.data(), logits.data(), m, dhc.data(), false, dW, nullptr);
      for (int64_t i = 0; i < m; ++i) {
        float* dst = &dh[size_t(target_row_[size_t(c0 + i)] * d)];
        for (int64_t j = 0; j < d; ++j) dst[j] += dhc[size_t(i * d + j)];
      }
    }
  }
  std::vector<float> dx(size_t(T * d), 0.0f);
  rms_bwd(x_final_.data(), f32(model.final_norm()), rstd_f_.data(), dh.data(), dx.data(),
          grads.at("model.norm.weight").data<float>(), T, d);

  std::vector<float> dtmp, dact(size_t(T * ffn)), dgate(size_t(T * ffn)), dup(size_t(T * ffn));
  std::vector<float> dh2(size_t(T * d)), datt(size_t(T * qd)), dq(size_t(T * qd)), dk(size_t(T * kvd)), dv(size_t(T * kvd));
  for (int64_t l = c.n_layers - 1; l >= 0; --l) {
    const DecoderLayer& ly = model.layers()[size_t(l)];
    const LayerActs& a = acts_[size_t(l)];
    const std::string p = "model.layers." + std::to_string(l);
    auto gptr = [&](const std::string& n) { return grads.at(n).data<float>(); };
    auto bptr = [&](const Linear& lin, const std::string& n) { return lin.b.raw() ? gptr(n) : nullptr; };
    // MLP: x += down(silu(gate(h2)) * up(h2))
    lin_bwd(ly.mlp.down, a.act.data(), dx.data(), T, dact.data(), false, gptr(p + ".mlp.down_proj.weight"),
            bptr(ly.mlp.down, p + ".mlp.down_proj.bias"));
    for (int64_t i = 0; i < T * ffn; ++i) {
      const float g = a.gate[size_t(i)], sg = 1.0f / (1.0f + std::exp(-g));
      dup[size_t(i)] = dact[size_t(i)] * g * sg;
      dgate[size_t(i)] = dact[size_t(i)] * a.up[size_t(i)] * sg * (1.0f + g * (1.0f - sg));
    }
    lin_bwd(ly.mlp.gate, a.h2.data(), dgate.data(), T, dh2.data(), false, gptr(p + ".mlp.gate_proj.weight"),
            bptr(ly.mlp.gate, p + ".mlp.gate_proj.bias"));
    lin_bwd(ly.mlp.up, a.h2.data(), dup.data(), T, dh2.data(), true, gptr(p + ".mlp.up_proj.weight"),
            bptr(ly.mlp.up, p + ".mlp.up_proj.bias"));
    rms_bwd(a.x_mid.data(), f32(ly.mlp_norm), a.rstd2.data(), dh2.data(), dx.data(),
            gptr(p + ".post_attention_layernorm.weight"), T, d);
    // Attention: x += o(attn(rope(q(h1)), rope(k(h1)), v(h1)))
    lin_bwd(ly.o, a.att.data(), dx.data(), T, datt.data(), false, gptr(p + ".self_attn.o_proj.weight"),
            bptr(ly.o, p + ".self_attn.o_proj.bias"));
    std::fill(dq.begin(), dq.end(), 0.0f);
    std::fill(dk.begin(), dk.end(), 0.0f);
    std::fill(dv.begin(), dv.end(), 0.0f);
    const float scale = c.attention_scale();
    size_t poff = 0;
    std::vector<float> dP;
    for (size_t s = 0; s + 1 < seq_start_.size(); ++s) {
      const int64_t b = seq_start_[s], n = seq_start_[s + 1] - b;
      dP.resize(size_t(n));
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t g = h / group;
        const float* P = &a.probs[poff + size_t(h * n * n)];
        for (int64_t t = 0; t < n; ++t) {
          const float* go = &datt[size_t((b + t) * qd + h * hd)];
          float dot = 0;
          for (int64_t u = 0; u <= t; ++u) {
            const float* v = &a.v[size_t((b + u) * kvd + g * hd)];
            float* gv = &dv[size_t((b + u) * kvd + g * hd)];
            float dp = 0;
            for (int64_t i = 0; i < hd; ++i) {
              dp += go[i] * v[i];
              gv[i] += P[t * n + u] * go[i];
            }
            dP[size_t(u)] = dp;
            dot += P[t * n + u] * dp;
          }
          const float* q = &a.q[size_t((b + t) * qd + h * hd)];
          float* gq = &dq[size_t((b + t) * qd + h * hd)];
          for (int64_t u = 0; u <= t; ++u) {
            const float ds = P[t * n + u] * (dP[size_t(u)] - dot) * scale;
            const float* k = &a.k[size_t((b + u) * kvd + g * hd)];
            float* gk = &dk[size_t((b + u) * kvd + g * hd)];
            for (int64_t i = 0; i < hd; ++i) {
              gq[i] += ds * k[i];
              gk[i] += ds * q[i];
            }
          }
        }
      }
      poff += size_t(nh * n * n);
    }
    rope_bwd(dq.data(), T, nh, hd, hd, qd, pos_.data(), model.rope());
    rope_bwd(dk.data(), T, nkv, hd, hd, kvd, pos_.data(), model.rope());
    std::vector<float> dh1(static_cast<size_t>(T * d));
    lin_bwd(ly.q, a.h1.data(), dq.data(), T, dh1.data(), false, gptr(p + ".self_attn.q_proj.weight"),
            bptr(ly.q, p + ".self_attn.q_proj.bias"));
    lin_bwd(ly.k, a.h1.data(), dk.data(), T, dh1.data(), true, gptr(p + ".self_attn.k_proj.weight"),
            bptr(ly.k, p + ".self_attn.k_proj.bias"));
    lin_bwd(ly.v, a.h1.data(), dv.data(), T, dh1.data(), true, gptr(p + ".self_attn.v_proj.weight"),
            bptr(ly.v, p + ".self_attn.v_proj.bias"));
    rms_bwd(a.x_in.data(), f32(ly.attn_norm), a.rstd1.data(), dh1.data(), dx.data(),
            gptr(p + ".input_layernorm.weight"), T, d);
  }
  float* dE = grads.at("model.embed_tokens.weight").data<float>();
  for (int64_t t = 0; t < T; ++t) {
    float* row = dE + int64_t(tokens_[size_t(t)]) * d;
    for (int64_t j = 0; j < d; ++j) row[j] += dx[size_t(t * d + j)];
  }
}

}  // namespace reason
