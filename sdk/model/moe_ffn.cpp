#include "model/moe_ffn.h"

#include <cmath>
#include <cstring>

#include "reason/kernels/backend.h"

namespace reason {

void moe_forward(const MoeWeights& w, const float* h, int64_t T, int64_t d, float* out, MoeScratch& s,
                 int64_t* expert_load) {
  const int E = w.router.n_experts, K = w.router.top_k;
  s.logits.resize(size_t(T * E));
  Linear router{w.gate, Tensor()};
  linear_forward(router, h, T, s.logits.data());
  s.idx.resize(size_t(T * K));
  s.weights.resize(size_t(T * K));
  route_tokens(w.router, s.logits.data(), w.score_bias.raw() ? w.score_bias.data<float>() : nullptr, T,
               s.idx.data(), s.weights.data());

  // Group the (token, weight) pairs by expert so each expert runs one matmul over its tokens.
  s.rows.resize(size_t(E));
  for (auto& r : s.rows) r.clear();
  for (int64_t t = 0; t < T; ++t)
    for (int j = 0; j < K; ++j) s.rows[size_t(s.idx[size_t(t * K + j)])].emplace_back(int32_t(t), s.weights[size_t(t * K + j)]);

  std::memset(out, 0, size_t(T * d) * sizeof(float));
  for (int e = 0; e < E; ++e) {
    const auto& rows = s.rows[size_t(e)];
    if (expert_load) expert_load[e] += int64_t(rows.size());
    if (rows.empty()) continue;
    const int64_t n = int64_t(rows.size());
    const SwiGLU& ex = w.experts[size_t(e)];
    const int64_t ffn = ex.gate.w.dim(0);
    s.xe.resize(size_t(n * d));
    s.ye.resize(size_t(n * d));
    s.ge.resize(size_t(n * ffn));
    s.ue.resize(size_t(n * ffn));
    for (int64_t i = 0; i < n; ++i) std::memcpy(&s.xe[size_t(i * d)], h + rows[size_t(i)].first * d, size_t(d) * 4);
    swiglu_forward(ex, s.xe.data(), n, s.ye.data(), s.ge.data(), s.ue.data());
    for (int64_t i = 0; i < n; ++i) {
      float* o = out + rows[size_t(i)].first * d;
      const float* y = &s.ye[size_t(i * d)];
      const float wt = rows[size_t(i)].second;
      for (int64_t c = 0; c < d; ++c) o[c] += wt * y[c];
    }
  }

  if (w.has_shared) {
    const int64_t ffn = w.shared.gate.w.dim(0);
    s.shared_out.resize(size_t(T * d));
    s.ge.resize(size_t(T * ffn));
    s.ue.resize(size_t(T * ffn));
    swiglu_forward(w.shared, h, T, s.shared_out.data(), s.ge.data(), s.ue.data());
    if (w.shared_gate.raw()) {
      s.sg.resize(size_t(T));
      linear_forward(Linear{w.shared_gate, Tensor()}, h, T, s.sg.data());
      for (int64_t t = 0; t < T; ++t) {
        const float g = 1.0f / (1.0f + std::exp(-s.sg[size_t(t)]));
        for (int64_t c = 0; c < d; ++c) out[t * d + c] += g * s.shared_out[size_t(t * d + c)];
      }
    } else {
      kernels::cpu_backend().add_inplace(out, s.shared_out.data(), T * d);
    }
  }
}

}  // namespace reason
