#include "model/moe_router.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace reason {

namespace {

// Indices of the k largest values (descending; ties -> lower index first).
void top_k(const float* v, int n, int k, int32_t* out, std::vector<int32_t>& order) {
  order.resize(size_t(n));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [v](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  std::copy_n(order.begin(), k, out);
}

}  // namespace

void route_tokens(const RouterConfig& c, const float* logits, const float* bias, int64_t T, int32_t* idx,
                  float* weight) {
  const int E = c.n_experts, K = c.top_k;
  std::vector<float> p(static_cast<size_t>(E)), choice(static_cast<size_t>(E));
  std::vector<int32_t> order;
  for (int64_t t = 0; t < T; ++t) {
    const float* lg = logits + t * E;
    int32_t* id = idx + t * K;
    float* w = weight + t * K;
    if (c.scoring == RouterConfig::Scoring::Softmax) {
      float mx = -std::numeric_limits<float>::infinity();
      for (int e = 0; e < E; ++e) mx = std::max(mx, lg[e]);
      float z = 0.0f;
      for (int e = 0; e < E; ++e) z += (p[size_t(e)] = std::exp(lg[e] - mx));
      for (int e = 0; e < E; ++e) p[size_t(e)] /= z;
      top_k(p.data(), E, K, id, order);
      for (int j = 0; j < K; ++j) w[j] = p[size_t(id[j])];
    } else {
      for (int e = 0; e < E; ++e) {
        p[size_t(e)] = 1.0f / (1.0f + std::exp(-lg[e]));
        choice[size_t(e)] = p[size_t(e)] + (bias ? bias[e] : 0.0f);
      }
      if (c.n_group > 1) {
        const int per = E / c.n_group;
        std::vector<float> gscore(static_cast<size_t>(c.n_group));
        for (int g = 0; g < c.n_group; ++g) {
          // sum of the group's two best biased scores
          float a = -std::numeric_limits<float>::infinity(), b = a;
          for (int e = g * per; e < (g + 1) * per; ++e) {
            const float s = choice[size_t(e)];
            if (s > a) {
              b = a;
              a = s;
            } else if (s > b) {
              b = s;
            }
          }
          gscore[size_t(g)] = per >= 2 ? a + b : a;
        }
        std::vector<int32_t> keep(static_cast<size_t>(c.topk_group));
        top_k(gscore.data(), c.n_group, c.topk_group, keep.data(), order);
        std::vector<char> kept(static_cast<size_t>(c.n_group), 0);
        for (int32_t g : keep) kept[size_t(g)] = 1;
        for (int e = 0; e < E; ++e)
          if (!kept[size_t(e / per)]) choice[size_t(e)] = -std::numeric_limits<float>::infinity();
      }
      top_k(choice.data(), E, K, id, order);
      for (int j = 0; j < K; ++j) w[j] = p[size_t(id[j])];
    }
    if (c.norm_topk_prob) {
      float s = 0.0f;
      for (int j = 0; j < K; ++j) s += w[j];
      const float denom = c.scoring == RouterConfig::Scoring::Sigmoid ? s + 1e-20f : s;
      for (int j = 0; j < K; ++j) w[j] /= denom;
    }
    for (int j = 0; j < K; ++j) w[j] *= c.routed_scaling_factor;
  }
}

}  // namespace reason
