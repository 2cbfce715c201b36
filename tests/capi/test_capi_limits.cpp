// The C ABI's documented caps: generation stops at max_position_embeddings (finish LENGTH), a
// prompt that fills the context and scoring past it are REASON_ERR_INVALID_ARGUMENT, and
// reason_score (computed in blocks) equals a direct log-softmax of the model's logits.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "reason.h"

namespace fs = std::filesystem;

namespace {

const fs::path kModel = fs::path(REASON_FIXTURES_DIR) / "dense" / "qwen2_tied";

std::vector<int32_t> ids_of_length(size_t n, int32_t vocab) {
  std::vector<int32_t> ids(n);
  uint32_t x = 11;
  for (auto& t : ids) {
    x = x * 1664525u + 1013904223u;
    t = int32_t((x >> 8) % uint32_t(vocab));
  }
  return ids;
}

struct Loaded {
  reason_model* m = nullptr;
  reason_model_info info{};
  Loaded() {
    REQUIRE(reason_model_load(&m, kModel.string().c_str(), nullptr) == REASON_OK);
    info.struct_size = sizeof info;
    REQUIRE(reason_model_get_info(&info, m) == REASON_OK);
  }
  ~Loaded() { reason_model_free(m); }
};

}  // namespace

TEST_CASE("reason_generate stops at max_position_embeddings", "[capi][limits]") {
  Loaded l;
  const size_t P = size_t(l.info.max_position_embeddings);
  REQUIRE(P > 20);
  reason_sampling_options o = REASON_SAMPLING_OPTIONS_INIT;
  o.temperature = 0;
  o.ignore_eos = 1;
  o.max_new_tokens = 32768;  // the R1 preset's length, far past this model's context
  const auto prompt = ids_of_length(P - 20, l.info.vocab_size);
  const int32_t* p[] = {prompt.data()};
  size_t lens[] = {prompt.size()};
  reason_generation* g = nullptr;
  REQUIRE(reason_generate(&g, l.m, p, lens, 1, &o, nullptr, nullptr) == REASON_OK);
  const reason_completion* c = reason_generation_get(g, 0);
  CHECK(c->n_tokens == 20);
  CHECK(c->finish_reason == REASON_FINISH_LENGTH);
  reason_generation_free(g);

  const auto full = ids_of_length(P, l.info.vocab_size);
  const int32_t* pf[] = {full.data()};
  size_t lf[] = {full.size()};
  g = nullptr;
  CHECK(reason_generate(&g, l.m, pf, lf, 1, &o, nullptr, nullptr) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("max_position_embeddings"));
  CHECK(g == nullptr);
}

TEST_CASE("reason_score: capped at max_position_embeddings, equal to a direct log-softmax", "[capi][limits]") {
  Loaded l;
  const size_t P = size_t(l.info.max_position_embeddings);
  const auto too_long = ids_of_length(P + 1, l.info.vocab_size);
  std::vector<float> lp(P);
  CHECK(reason_score(lp.data(), l.m, too_long.data(), too_long.size()) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("max_position_embeddings"));

  // Scoring all P positions (more than one 64-position block) equals scoring each prefix's last
  // token alone, whose logits come from a one-row forward.
  const auto ids = ids_of_length(P, l.info.vocab_size);
  REQUIRE(reason_score(lp.data(), l.m, ids.data(), ids.size()) == REASON_OK);
  for (size_t t : {size_t(0), size_t(1), size_t(63), size_t(64), size_t(65), P - 2}) {
    std::vector<float> prefix(t + 1);
    REQUIRE(reason_score(prefix.data(), l.m, ids.data(), t + 2) == REASON_OK);
    INFO("position " << t);
    CHECK(std::fabs(prefix[t] - lp[t]) <= 2e-4f);
    CHECK(std::isfinite(lp[t]));
    CHECK(lp[t] <= 0.0f);
  }
}
