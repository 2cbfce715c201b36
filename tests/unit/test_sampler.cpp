// Sampler against transformers' logits processors (fixture made by
// tests/fixtures/make_sampler_fixtures.py), plus seeding, frequencies and bad parameters.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "infer/sampler.h"
#include "reason/kernels/backend.h"

using namespace reason;

namespace {

nlohmann::json fixture() {
  std::ifstream f(std::string(REASON_FIXTURES_DIR) + "/sampler/expected.json");
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}

SamplingParams params_of(const nlohmann::json& c) {
  SamplingParams p;
  p.temperature = c["temperature"].get<float>();
  p.top_k = c["top_k"].get<int>();
  p.top_p = c["top_p"].get<float>();
  p.min_p = c["min_p"].get<float>();
  p.repetition_penalty = c["repetition_penalty"].get<float>();
  return p;
}

}  // namespace

TEST_CASE("candidate distribution equals transformers' processed distribution", "[sampler]") {
  auto fx = fixture();
  int n = 0;
  for (const auto& c : fx["cases"]) {
    INFO("case " << n++ << ": " << c["params"].dump());
    const auto logits = c["logits"].get<std::vector<float>>();
    const auto history = c["history"].get<std::vector<int32_t>>();
    const auto want = c["probs"].get<std::vector<float>>();
    SamplerScratch s;
    const int64_t k = candidate_distribution(logits, params_of(c["params"]), history, s);
    std::vector<float> got(want.size(), 0.0f);
    for (int64_t i = 0; i < k; ++i) got[size_t(s.idx[size_t(i)])] = s.probs[size_t(i)];
    int64_t kept_ref = 0;
    for (size_t t = 0; t < want.size(); ++t) {
      kept_ref += want[t] > 0.0f;
      CHECK(std::fabs(got[t] - want[t]) < 1e-5f);
    }
    CHECK(k == kept_ref);
  }
}

TEST_CASE("logprob is log softmax(logits / T) of the raw logits", "[sampler]") {
  auto fx = fixture();
  for (const auto& c : fx["cases"]) {
    const auto logits = c["logits"].get<std::vector<float>>();
    const auto ref = c["log_softmax_t"].get<std::vector<float>>();
    const float T = c["params"]["temperature"].get<float>();
    for (int32_t t : {0, 7, 199}) CHECK(std::fabs(token_logprob(logits, t, T) - ref[size_t(t)]) < 1e-5f);
  }
}

TEST_CASE("sampled frequencies follow the distribution and seeds reproduce", "[sampler]") {
  auto fx = fixture();
  const auto& c = fx["cases"][3];  // temperature 0.7, top-k 20, top-p 0.8
  const auto logits = c["logits"].get<std::vector<float>>();
  const auto want = c["probs"].get<std::vector<float>>();
  SamplingParams p = params_of(c["params"]);
  SamplerScratch s;
  Rng rng(42);
  const int N = 200000;
  std::map<int32_t, int> counts;
  for (int i = 0; i < N; ++i) counts[sample(logits, p, {}, rng, s).token]++;
  for (auto [tok, cnt] : counts) {
    INFO("token " << tok);
    REQUIRE(want[size_t(tok)] > 0.0f);  // never outside the kept set
    const double pr = want[size_t(tok)], sd = std::sqrt(pr * (1 - pr) / N);
    CHECK(std::fabs(double(cnt) / N - pr) < 5 * sd + 1e-4);
  }
  Rng a(7), b(7), d(8);
  std::vector<int32_t> sa, sb, sd2;
  for (int i = 0; i < 50; ++i) {
    sa.push_back(sample(logits, p, {}, a, s).token);
    sb.push_back(sample(logits, p, {}, b, s).token);
    sd2.push_back(sample(logits, p, {}, d, s).token);
  }
  CHECK(sa == sb);
  CHECK(sa != sd2);
}

TEST_CASE("greedy picks the argmax after the repetition penalty", "[sampler]") {
  std::vector<float> logits{1.0f, 3.0f, 2.9f, -1.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  SamplerScratch s;
  Rng rng(0);
  CHECK(sample(logits, p, {}, rng, s).token == 1);
  p.repetition_penalty = 1.5f;  // 3.0 / 1.5 = 2.0 < 2.9
  std::vector<int32_t> hist{1};
  auto r = sample(logits, p, hist, rng, s);
  CHECK(r.token == 2);
  CHECK(std::fabs(r.logprob - token_logprob(logits, 2, 1.0f)) < 1e-6f);
}

TEST_CASE("invalid sampling parameters and NaN logits are rejected", "[sampler][errors]") {
  SamplingParams p;
  p.top_p = 0.0f;
  CHECK_THROWS_AS(p.validate(), Error);
  p = {};
  p.temperature = -1.0f;
  CHECK_THROWS_AS(p.validate(), Error);
  p = {};
  p.max_new_tokens = 0;
  CHECK_THROWS_AS(p.validate(), Error);
  p = {};
  p.repetition_penalty = 0.0f;
  CHECK_THROWS_AS(p.validate(), Error);
  p = {};
  p.min_p = 1.5f;
  CHECK_THROWS_AS(p.validate(), Error);
  std::vector<float> nan_logits{0.0f, NAN, 1.0f};
  SamplerScratch s;
  Rng rng(0);
  CHECK_THROWS_WITH(sample(nan_logits, SamplingParams{}, {}, rng, s), Catch::Contains("NaN"));
}

TEST_CASE("Backend::sample_rows on many rows equals sampling each row alone", "[sampler][backend]") {
  // 37 rows of a 1,000-token vocabulary with every kind of setting; rows 5 and 6 read the same
  // logits row (a GRPO group forked from one prompt) with their own generators.
  const int64_t V = 1000, R = 37;
  std::vector<float> logits(size_t(R * V));
  Rng fill(42);
  for (auto& x : logits) x = float(fill.uniform() * 12.0 - 6.0);
  std::vector<int32_t> hist{3, 9, 3, 500, 999};
  std::vector<Rng> batch_rng, ref_rng;
  std::vector<SamplingParams> ps(static_cast<size_t>(R));
  for (int64_t i = 0; i < R; ++i) {
    SamplingParams& p = ps[size_t(i)];
    p.temperature = i % 7 == 0 ? 0.0f : 0.3f + 0.1f * float(i % 5);
    p.top_k = i % 3 == 0 ? int32_t(1 + i) : 0;
    p.top_p = i % 4 == 1 ? 0.9f : 1.0f;
    p.min_p = i % 5 == 2 ? 0.05f : 0.0f;
    p.repetition_penalty = i % 6 == 3 ? 1.3f : 1.0f;
    batch_rng.emplace_back(uint64_t(1000 + i));
    ref_rng.emplace_back(uint64_t(1000 + i));
  }
  std::vector<kernels::SampleRow> rows;
  for (int64_t i = 0; i < R; ++i) {
    rows.push_back(sample_row_of(ps[size_t(i)], hist, batch_rng[size_t(i)]));
    rows.back().row = i == 6 ? 5 : i;
  }
  for (int round = 0; round < 3; ++round) {  // the generators advance round after round
    kernels::SampleArgs a;
    a.logits = logits.data(), a.n = V, a.rows = rows.data(), a.n_rows = R;
    kernels::cpu_backend().sample_rows(a);
    SamplerScratch s;
    for (int64_t i = 0; i < R; ++i) {
      INFO("round " << round << " row " << i);
      const std::span<const float> row(logits.data() + rows[size_t(i)].row * V, size_t(V));
      const Sampled want = sample(row, ps[size_t(i)], hist, ref_rng[size_t(i)], s);
      CHECK(rows[size_t(i)].token == want.token);
      CHECK(rows[size_t(i)].logprob == want.logprob);
    }
  }
  // A NaN in one row is a BackendError naming the token; the other rows are still sampled.
  logits[size_t(9 * V + 17)] = NAN;
  kernels::SampleArgs a;
  a.logits = logits.data(), a.n = V, a.rows = rows.data(), a.n_rows = R;
  CHECK_THROWS_WITH(kernels::cpu_backend().sample_rows(a), Catch::Contains("NaN (token 17)"));
}

TEST_CASE("presence and frequency penalties count generated tokens only (vLLM's formula)", "[sampler]") {
  // vLLM: logits -= frequency * output_count + presence * (output_count > 0); the prompt does not count.
  const std::vector<float> logits{1.0f, 2.0f, 3.0f, 4.0f};
  const std::vector<int32_t> history{3, 1, 1, 2};  // prompt [3], generated [1, 1, 2]
  SamplingParams p;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  kernels::SamplerScratch s;
  Rng rng(1);
  kernels::SampleRow row = sample_row_of(p, history, rng, 1);
  const int64_t k = kernels::candidate_distribution(logits.data(), 4, row, s);
  REQUIRE(k == 4);
  const std::vector<double> want_logits{1.0, 2.0 - 0.5 - 2 * 0.25, 3.0 - 0.5 - 0.25, 4.0};
  double z = 0;
  for (double l : want_logits) z += std::exp(l);
  for (int64_t i = 0; i < k; ++i)
    CHECK(std::fabs(s.probs[size_t(i)] - std::exp(want_logits[size_t(s.idx[size_t(i)])]) / z) < 1e-6);
  p.presence_penalty = 3.0f;
  CHECK_THROWS_AS(p.validate(), Error);  // OpenAI's range is [-2, 2]
}

TEST_CASE("top logprobs are the most likely tokens of log softmax(logits / T)", "[sampler]") {
  auto fx = fixture();
  for (const auto& c : fx["cases"]) {
    const auto logits = c["logits"].get<std::vector<float>>();
    const auto ref = c["log_softmax_t"].get<std::vector<float>>();  // transformers' log_softmax(logits / T)
    SamplingParams p = params_of(c["params"]);
    p.repetition_penalty = 1.0f;  // top logprobs are of the raw distribution, as `logprob` is
    Rng rng(5);
    kernels::SampleRow row = sample_row_of(p, {}, rng);
    std::vector<int32_t> ids(5);
    std::vector<float> lps(5);
    row.top_n = 5;
    row.top_ids = ids.data();
    row.top_logprobs = lps.data();
    kernels::SamplerScratch s;
    kernels::sample_row(logits.data(), int64_t(logits.size()), row, s);
    std::vector<float> sorted = ref;
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    for (size_t i = 0; i < 5; ++i) {
      CHECK(std::fabs(lps[i] - sorted[i]) < 1e-5f);
      CHECK(std::fabs(ref[size_t(ids[i])] - lps[i]) < 1e-5f);
    }
  }
}
