// Gradients of the training pass: central finite differences on every parameter tensor of tiny
// dense, MoE and MLA models. The torch autograd comparison is test_train_fixtures.cpp. (Training
// and inference run the same layer forward, sdk/model/layers/, so there is no second forward
// to compare against.)
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "model/model.h"
#include "train/logprob_pass.h"

using namespace reason;

namespace {

const std::string kFixtures = std::string(REASON_FIXTURES_DIR) + "/";

// The models the training pass must support, as paths under tests/fixtures.
const char* const kGradModels[] = {
    "dense/qwen2_tied",   "dense/llama_gqa2_llama3rope", "dense/llama_mha",          "moe/qwen2_moe",
    "moe/qwen2_moe_norm", "moe/qwen3_moe",               "moe/mixtral",              "moe/dsv3_qlora_group",
    "moe/dsv3_noqlora_nogroup", "dense/qwen3_sliding",
    "dense/llama_gelu_tanh", "dense/qwen2_gelu"};

// Each token's chosen experts as a set (the order within a token does not change the function).
std::vector<std::vector<int32_t>> route_sets(const LogprobPass& p, const Model& m) {
  std::vector<std::vector<int32_t>> out = p.routes();
  const size_t K = size_t(m.config().n_experts_per_tok);
  if (K == 0) return out;
  for (auto& r : out)
    for (size_t i = 0; i + K <= r.size(); i += K) std::sort(r.begin() + long(i), r.begin() + long(i + K));
  return out;
}

// L = sum_t w_t * logp_t for fixed random weights w; also returns the routes taken.
double weighted_loss(const Model& m, const std::vector<std::vector<int32_t>>& seqs, const std::vector<float>& w, float T,
                     std::vector<std::vector<int32_t>>* routes) {
  LogprobPass pass;
  auto lp = pass.forward(m, seqs, T);
  double L = 0;
  for (size_t i = 0; i < lp.size(); ++i) L += double(w[i]) * lp[i];
  if (routes) *routes = route_sets(pass, m);
  return L;
}

}  // namespace

TEST_CASE("analytic gradients match central finite differences", "[train][grad]") {
  for (const char* name : kGradModels) {
    INFO("model " << name);
    auto m = Model::load(kFixtures + name);
    const bool moe = m->config().n_experts > 0;
    std::vector<std::vector<int32_t>> seqs{{3, 17, 250, 9, 44, 101}, {7, 7, 300, 2}};
    const float T = 0.8f;
    LogprobPass pass;
    auto lp = pass.forward(*m, seqs, T);
    REQUIRE(lp.size() == 5 + 3);
    const auto routes0 = route_sets(pass, *m);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    std::vector<float> w(lp.size());
    for (float& x : w) x = nd(rng);
    Gradients g = Gradients::zeros_like(*m);
    pass.backward(w, g);
    int checked = 0, skipped = 0;
    double worst = 0;
    std::string worst_at;
    for (auto& [pname, t] : m->parameters()) {
      INFO("parameter " << pname);
      float* data = t.data<float>();
      const float* grad = g.at(pname).data<float>();
      // the 3 entries of largest |grad| plus a random one
      std::vector<int64_t> idx(size_t(t.numel()));
      for (int64_t i = 0; i < t.numel(); ++i) idx[size_t(i)] = i;
      std::partial_sort(idx.begin(), idx.begin() + std::min<int64_t>(3, t.numel()), idx.end(),
                        [&](int64_t a, int64_t b) { return std::fabs(grad[a]) > std::fabs(grad[b]); });
      idx.resize(size_t(std::min<int64_t>(3, t.numel())));
      idx.push_back(int64_t(rng() % uint64_t(t.numel())));
      for (int64_t i : idx) {
        const float orig = data[i];
        // Small enough that a perturbation rarely crosses a routing boundary, large enough
        // for the f32 forward's rounding (~1e-7 relative) to stay well below the tolerance.
        const float h = 2e-3f * std::max(1.0f, std::fabs(orig));
        std::vector<std::vector<int32_t>> r_plus, r_minus;
        data[i] = orig + h;
        const double lp1 = weighted_loss(*m, seqs, w, T, moe ? &r_plus : nullptr);
        data[i] = orig - h;
        const double lm1 = weighted_loss(*m, seqs, w, T, moe ? &r_minus : nullptr);
        data[i] = orig;
        const double fd = (lp1 - lm1) / (2.0 * h);
        if (moe && (r_plus != routes0 || r_minus != routes0)) {
          // The loss is only piecewise smooth: across a change of the chosen experts the
          // difference quotient measures the jump, not the derivative.
          WARN(name << ": " << pname << "[" << i << "]: +-" << h
                    << " changes a token's top-k experts; finite difference skipped (analytic " << grad[i]
                    << ", difference quotient " << fd << ")");
          ++skipped;
          continue;
        }
        INFO("index " << i << " analytic " << grad[i] << " finite difference " << fd);
        const double err = std::fabs(grad[i] - fd) / std::max(1.0, std::fabs(fd));
        if (err > worst) {
          worst = err;
          worst_at = pname + "[" + std::to_string(i) + "]";
        }
        CHECK(err <= 2e-2);
        ++checked;
      }
    }
    // Skipping must stay the exception, or the check would pass vacuously.
    CHECK(skipped * 10 <= checked);
    WARN(name << ": " << checked << " entries checked, " << skipped << " skipped for a route change, worst relative error "
              << worst << " at " << worst_at);
  }
}

TEST_CASE("MoE gradients reach exactly the routed experts", "[train][grad][moe]") {
  // An expert no (predicting) token was routed to gets an exactly zero gradient; every routed
  // one a nonzero one.
  for (const char* name : {"moe/qwen2_moe", "moe/mixtral", "moe/dsv3_qlora_group"}) {
    INFO("model " << name);
    auto m = Model::load(kFixtures + name);
    const ModelConfig& c = m->config();
    std::vector<std::vector<int32_t>> seqs{{3, 17, 250, 9, 44, 101}, {7, 7, 300, 2}};
    LogprobPass pass;
    auto lp = pass.forward(*m, seqs, 1.0f);
    std::vector<float> w(lp.size(), -1.0f);
    Gradients g = Gradients::zeros_like(*m);
    pass.backward(w, g);
    const std::string blk = c.arch == Arch::Mixtral ? ".block_sparse_moe" : ".mlp";
    const std::string down = c.arch == Arch::Mixtral ? ".w2.weight" : ".down_proj.weight";
    int routed = 0, unrouted = 0;
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const auto& r = pass.routes()[size_t(l)];
      if (r.empty()) continue;
      for (int64_t e = 0; e < c.n_experts; ++e) {
        // Rows 5 and 9 (each sequence's last token) reach no logprob: their experts get no gradient.
        bool used = false;
        const int64_t K = c.n_experts_per_tok;
        for (int64_t row : {0, 1, 2, 3, 4, 6, 7, 8})
          for (int64_t j = 0; j < K; ++j) used |= r[size_t(row * K + j)] == int32_t(e);
        const Tensor& t = g.at("model.layers." + std::to_string(l) + blk + ".experts." + std::to_string(e) + down);
        double norm = 0;
        for (int64_t i = 0; i < t.numel(); ++i) norm += std::fabs(t.data<float>()[i]);
        INFO("layer " << l << " expert " << e);
        if (used) {
          CHECK(norm > 0);
          ++routed;
        } else {
          CHECK(norm == 0);
          ++unrouted;
        }
      }
    }
    CHECK(routed > 0);
  }
}

TEST_CASE("training rejects models not loaded in f32", "[train]") {
  LoadOptions o;
  o.compute_dtype = DType::BF16;
  auto m = Model::load(kFixtures + "moe/qwen3_moe", o);
  std::vector<std::vector<int32_t>> seqs{{1, 2, 3}};
  LogprobPass pass;
  CHECK_THROWS_WITH(pass.forward(*m, seqs, 1.0f), Catch::Contains("f32"));
}
