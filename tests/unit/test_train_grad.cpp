// Gradients of the training pass: finite differences on every parameter tensor of tiny dense
// models (this file), and torch autograd fixtures (tests/fixtures/train, when present).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/model.h"
#include "train/logprob_pass.h"

using namespace reason;
namespace fs = std::filesystem;

namespace {

const std::string kDense = std::string(REASON_FIXTURES_DIR) + "/dense/";
const std::string kTrain = std::string(REASON_FIXTURES_DIR) + "/train/";

// L = sum_t w_t * logp_t for fixed random weights w.
double weighted_loss(const Model& m, const std::vector<std::vector<int32_t>>& seqs, const std::vector<float>& w, float T) {
  LogprobPass pass;
  auto lp = pass.forward(m, seqs, T);
  double L = 0;
  for (size_t i = 0; i < lp.size(); ++i) L += double(w[i]) * lp[i];
  return L;
}

}  // namespace

TEST_CASE("analytic gradients match central finite differences", "[train][grad]") {
  for (const char* name : {"qwen2_tied", "llama_gqa2_llama3rope", "llama_mha"}) {
    INFO("model " << name);
    auto m = Model::load(kDense + name);
    std::vector<std::vector<int32_t>> seqs{{3, 17, 250, 9, 44, 101}, {7, 7, 300, 2}};
    const float T = 0.8f;
    LogprobPass pass;
    auto lp = pass.forward(*m, seqs, T);
    REQUIRE(lp.size() == 5 + 3);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    std::vector<float> w(lp.size());
    for (float& x : w) x = nd(rng);
    Gradients g = Gradients::zeros_like(*m);
    pass.backward(w, g);
    for (auto& [pname, t] : m->parameters()) {
      INFO("parameter " << pname);
      float* data = t.data<float>();
      const float* grad = g.at(pname).data<float>();
      // the 3 entries of largest |grad| plus 2 random ones
      std::vector<int64_t> idx(size_t(t.numel()));
      for (int64_t i = 0; i < t.numel(); ++i) idx[size_t(i)] = i;
      std::partial_sort(idx.begin(), idx.begin() + std::min<int64_t>(3, t.numel()), idx.end(),
                        [&](int64_t a, int64_t b) { return std::fabs(grad[a]) > std::fabs(grad[b]); });
      idx.resize(size_t(std::min<int64_t>(3, t.numel())));
      idx.push_back(int64_t(rng() % uint64_t(t.numel())));
      for (int64_t i : idx) {
        const float orig = data[i];
        const float h = 2e-3f * std::max(1.0f, std::fabs(orig));
        data[i] = orig + h;
        const double lp1 = weighted_loss(*m, seqs, w, T);
        data[i] = orig - h;
        const double lm1 = weighted_loss(*m, seqs, w, T);
        data[i] = orig;
        const double fd = (lp1 - lm1) / (2.0 * h);
        INFO("index " << i << " analytic " << grad[i] << " finite difference " << fd);
        CHECK(std::fabs(grad[i] - fd) <= 2e-2 * std::max(1.0, std::fabs(fd)));
      }
    }
  }
}

TEST_CASE("training logprobs equal the inference engine's scoring", "[train]") {
  auto m = Model::load(kDense + "llama_gqa4_odd");
  std::vector<std::vector<int32_t>> seqs{{1, 2, 3, 4, 5, 6, 7, 8}};
  LogprobPass pass;
  auto lp = pass.forward(*m, seqs, 1.0f);
  KVCache cache = m->make_cache();
  ForwardScratch s;
  std::vector<float> logits;
  SeqChunk ch{cache.add_sequence(), seqs[0].data(), int64_t(seqs[0].size()), true};
  m->forward(std::span<const SeqChunk>(&ch, 1), cache, logits, s);
  const int64_t V = m->config().vocab_size;
  for (size_t t = 0; t + 1 < seqs[0].size(); ++t) {
    const float* z = &logits[t * size_t(V)];
    double mx = -1e30, sum = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double(z[j]));
    for (int64_t j = 0; j < V; ++j) sum += std::exp(z[j] - mx);
    CHECK(std::fabs(lp[t] - float(z[seqs[0][t + 1]] - mx - std::log(sum))) < 1e-4f);
  }
}
