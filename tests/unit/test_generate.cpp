// Continuous batching (sdk/infer/generator.h) against one request at a time: prompts longer than
// the prefill budget (chunked prefill, dense GQA and DeepSeek-V3 MLA), more requests than
// max_active, mixed prompt lengths, greedy and seeded sampling side by side, stop strings that
// span a token boundary, and a streaming callback that stops one request mid-batch while the others
// go on. The one-at-a-time reference itself is anchored to transformers: its greedy tokens equal
// the fixtures' `greedy_<i>` (tests/fixtures/dense, tests/fixtures/moe).
//
// What must be equal, and the tolerance on logprobs (derived, then measured):
// - Tokens: identical. Greedy picks the argmax and the fixtures' models were drawn with a top1-top2
//   logit gap >= 0.02 on these prompts, four orders of magnitude above the rounding below; seeded
//   sampling draws with each request's own RNG stream, so batch composition cannot change the
//   draw, only (by rounding) the CDF it is compared with (a draw would have to fall within ~1e-6
//   of a CDF boundary, probability ~1e-6 per token, and the result is deterministic for a build).
// - Logprobs: a batch changes the matmul shapes (M = rows of the step), so oneDNN may block the
//   f32 dot products differently; each logit is then a different rounding of the same sum. A
//   dot product of length k whose result has magnitude |z| differs by ~sqrt(k) ulp(|z|)
//   (random-walk rounding). The widest reduction here is k = 64 (FFN), |z| < 16 (logit std ~2),
//   so ulp(|z|) <= 2^-20; allowing that per layer and for the LM head (3 stages for these 2-layer
//   models) gives 3 * sqrt(64) * 2^-20 = 2.3e-5 per logit, and a logprob z/T - logsumexp(z/T)
//   moves by at most twice the largest logit change divided by T:
//       tol(T) = 2 * 3 * 8 * 2^-20 / T = 4.6e-5 / T   (T = 1 for greedy).
//   Measured worst on this AVX2 machine (Zen 3): 1.8e-5 dense (sampled requests at T = 0.8 included),
//   8.8e-6 MLA; the WARN lines print it on every run so a kernel change shows up.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "fixture_util.h"
#include "infer/generator.h"
#include "model/model.h"

using namespace reason;

namespace {

const std::string kFix = std::string(REASON_FIXTURES_DIR);
// Logprob tolerance at temperature T (see the top of this file).
float logprob_tol(float T) { return 48.0f * 0x1p-20f / (T > 0.0f ? T : 1.0f); }

struct Worst {
  float logprob = 0.0f;
};

// Each request alone, its whole prompt in one forward step.
std::vector<GenResult> one_at_a_time(const Model& m, const std::vector<GenRequest>& reqs) {
  std::vector<GenResult> out;
  for (const auto& r : reqs) {
    GenerateOptions o;
    o.max_active = 1;
    o.prefill_token_budget = 1 << 20;
    auto res = generate(m, std::span<const GenRequest>(&r, 1), {}, o);
    REQUIRE(res.size() == 1);
    out.push_back(std::move(res[0]));
  }
  return out;
}

void check_same(const GenResult& got, const GenResult& want, float T, Worst& w) {
  CHECK(got.tokens == want.tokens);
  CHECK(got.text == want.text);
  CHECK(got.finish == want.finish);
  REQUIRE(got.logprobs.size() == want.logprobs.size());
  for (size_t t = 0; t < got.logprobs.size(); ++t) {
    const float d = std::fabs(got.logprobs[t] - want.logprobs[t]);
    CHECK(d <= logprob_tol(T));
    w.logprob = std::max(w.logprob, d);
  }
}

GenRequest request(std::vector<int32_t> prompt, int max_new, float temperature, uint64_t seed) {
  GenRequest r;
  r.prompt = std::move(prompt);
  r.params.temperature = temperature;
  r.params.max_new_tokens = max_new;
  r.params.seed = seed;
  r.params.ignore_eos = true;  // fixed lengths: the fixtures' greedy runs disable EOS too
  return r;
}

// Toy prompt of `len` ordinary tokens (ids 3..302).
std::vector<int32_t> toy(int i, int len) {
  std::vector<int32_t> p;
  for (int t = 0; t < len; ++t) p.push_back(int32_t(3 + (i * 7 + t * 13) % 300));
  return p;
}

}  // namespace

TEST_CASE("the one-at-a-time reference reproduces transformers' greedy tokens", "[generate]") {
  for (const char* dir : {"/dense/qwen2_tied", "/moe/dsv3_qlora_group"}) {
    INFO(dir);
    auto m = Model::load(kFix + dir);
    test::Fixture fx(kFix + dir + "/expected.safetensors");
    const int n = std::stoi(fx.meta("n_prompts"));
    std::vector<GenRequest> reqs;
    for (int i = 0; i < n; ++i) {
      const auto g = fx.ids("greedy_" + std::to_string(i));
      reqs.push_back(request(fx.ids("prompt_" + std::to_string(i)), int(g.size()), 0.0f, 0));
    }
    const auto ref = one_at_a_time(*m, reqs);
    for (int i = 0; i < n; ++i) CHECK(ref[size_t(i)].tokens == fx.ids("greedy_" + std::to_string(i)));
  }
}

TEST_CASE("batched generation equals one request at a time: mixed lengths, chunked prefill, more requests than slots",
          "[generate]") {
  auto m = Model::load(kFix + "/dense/qwen2_tied");
  test::Fixture fx(kFix + "/dense/qwen2_tied/expected.safetensors");
  std::vector<GenRequest> reqs;
  // The fixture prompts (3, 9, 18, 39 tokens), greedy, plus toy prompts of other lengths, greedy
  // and sampled (temperature, top-p, top-k, repetition penalty, own seeds), different max_new.
  for (int i = 0; i < 4; ++i) reqs.push_back(request(fx.ids("prompt_" + std::to_string(i)), 12, 0.0f, 0));
  for (int i = 0; i < 5; ++i) {
    GenRequest r = request(toy(i, 1 + 11 * i), 6 + 3 * i, i % 2 ? 0.8f : 0.0f, 1000 + uint64_t(i));
    if (i == 3) {
      r.params.top_p = 0.9f;
      r.params.top_k = 40;
      r.params.repetition_penalty = 1.2f;
    }
    reqs.push_back(r);
  }
  const auto ref = one_at_a_time(*m, reqs);
  Worst w;
  // (max_active, prefill budget): 9 requests through 2..9 slots; budgets smaller than most prompts
  // (the 39-token prompt takes 5 steps at 8) and 1 (one prompt token per step).
  for (auto [slots, budget] : {std::pair{2, 8}, std::pair{3, 1}, std::pair{4, 17}, std::pair{9, 512}, std::pair{5, 40}}) {
    INFO("max_active " << slots << ", prefill budget " << budget);
    GenerateStats st;
    GenerateOptions o;
    o.max_active = slots;
    o.prefill_token_budget = budget;
    o.stats = &st;
    const auto got = generate(*m, reqs, {}, o);
    REQUIRE(got.size() == reqs.size());
    for (size_t k = 0; k < reqs.size(); ++k) {
      INFO("request " << k << " (prompt " << reqs[k].prompt.size() << " tokens)");
      check_same(got[k], ref[k], reqs[k].params.temperature, w);
    }
    int64_t prompt_tokens = 0, gen = 0;
    for (size_t k = 0; k < reqs.size(); ++k) {
      prompt_tokens += int64_t(reqs[k].prompt.size());
      gen += reqs[k].params.max_new_tokens;
    }
    CHECK(st.prompt_tokens_computed == prompt_tokens);  // every prompt token once, chunks included
    CHECK(st.generated_tokens == gen);
    // Never more than `budget` prompt tokens per step: at least ceil(prompt_tokens / budget) steps.
    CHECK(st.forward_calls >= (prompt_tokens + budget - 1) / budget);
  }
  WARN("dense batched vs one-at-a-time: worst |dlogprob| " << w.logprob);
}

TEST_CASE("chunked MLA prefill (DeepSeek-V3) equals one request at a time", "[generate][mla]") {
  for (const char* dir : {"/moe/dsv3_qlora_group", "/moe/dsv3_noqlora_nogroup"}) {
    INFO(dir);
    auto m = Model::load(kFix + dir);
    test::Fixture fx(kFix + dir + "/expected.safetensors");
    std::vector<GenRequest> reqs;
    for (int i = 0; i < 2; ++i) reqs.push_back(request(fx.ids("prompt_" + std::to_string(i)), 8, 0.0f, 0));
    for (int i = 0; i < 3; ++i) reqs.push_back(request(toy(i, 4 + 9 * i), 7, i == 1 ? 0.7f : 0.0f, 77 + uint64_t(i)));
    const auto ref = one_at_a_time(*m, reqs);
    for (int i = 0; i < 2; ++i) CHECK(ref[size_t(i)].tokens == fx.ids("greedy_" + std::to_string(i)));
    Worst w;
    for (auto [slots, budget] : {std::pair{2, 5}, std::pair{5, 3}, std::pair{3, 16}}) {
      INFO("max_active " << slots << ", prefill budget " << budget);
      GenerateOptions o;
      o.max_active = slots;
      o.prefill_token_budget = budget;
      const auto got = generate(*m, reqs, {}, o);
      REQUIRE(got.size() == reqs.size());
      for (size_t k = 0; k < reqs.size(); ++k) {
        INFO("request " << k << " (prompt " << reqs[k].prompt.size() << " tokens)");
        check_same(got[k], ref[k], reqs[k].params.temperature, w);
      }
    }
    WARN(dir << " batched vs one-at-a-time: worst |dlogprob| " << w.logprob);
  }
}

TEST_CASE("stop strings that span a token boundary end a request inside a batch", "[generate][stop]") {
  auto m = Model::load(kFix + "/dense/qwen2_tied");
  REQUIRE(m->tokenizer());
  std::vector<GenRequest> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(request(toy(i, 5 + 4 * i), 24, i % 2 ? 0.9f : 0.0f, 500 + uint64_t(i)));
  // The streamed pieces of the reference say where each token's text ends.
  std::vector<std::vector<size_t>> ends(reqs.size());
  std::vector<GenResult> ref;
  for (size_t k = 0; k < reqs.size(); ++k) {
    GenerateOptions o;
    o.max_active = 1;
    size_t len = 0;
    auto r = generate(*m, std::span<const GenRequest>(&reqs[k], 1),
                      [&](size_t, int32_t, float, std::string_view piece) {
                        len += piece.size();
                        ends[k].push_back(len);
                        return true;
                      },
                      o);
    ref.push_back(r[0]);
  }
  // For each request, a stop string made of the last 2 bytes of one token's text and the first 2
  // of a later token's text (so it spans a boundary), at the first boundary where both sides
  // have >= 2 bytes; the expected result cuts the reference there.
  struct Expect {
    std::string stop;
    std::vector<int32_t> tokens;
    std::string text;
  };
  std::vector<Expect> expect(reqs.size());
  int with_stop = 0;
  for (size_t k = 0; k < reqs.size(); ++k) {
    const std::string& text = ref[k].text;
    const auto& e = ends[k];
    for (size_t j = 1; j + 1 < e.size(); ++j) {
      const size_t b = e[j - 1];  // boundary between token j-1's text and token j's
      if (b < 2 || b + 2 > text.size() || e[j] == b) continue;
      if (b - (j >= 2 ? e[j - 2] : 0) < 1) continue;
      const std::string ss = text.substr(b - 2, 4);
      if (!std::all_of(ss.begin(), ss.end(), [](char ch) { return ch >= ' ' && ch < 127; })) continue;  // printable ASCII
      const size_t at = text.find(ss);  // the engine cuts at the first occurrence
      size_t done = 0;                  // the token whose text completes that occurrence
      while (e[done] < at + ss.size()) ++done;
      if (done == 0 || e[done] - (done ? e[done - 1] : 0) >= ss.size()) continue;  // must span tokens
      expect[k].stop = ss;
      expect[k].tokens.assign(ref[k].tokens.begin(), ref[k].tokens.begin() + long(done) + 1);
      expect[k].text = text.substr(0, at);
      break;
    }
    if (!expect[k].stop.empty()) {
      ++with_stop;
      reqs[k].params.stop_strings = {"never appears \x01", expect[k].stop};
    }
  }
  INFO("requests with a stop string: " << with_stop);
  REQUIRE(with_stop >= 3);
  GenerateOptions o;
  o.max_active = 3;
  o.prefill_token_budget = 4;
  std::vector<std::string> streamed(reqs.size());
  const auto got = generate(*m, reqs,
                            [&](size_t r, int32_t, float, std::string_view piece) {
                              streamed[r] += piece;
                              return true;
                            },
                            o);
  Worst w;
  for (size_t k = 0; k < reqs.size(); ++k) {
    INFO("request " << k << " stop \"" << expect[k].stop << "\" in \"" << ref[k].text << "\"");
    // The stream shows the final text; it may also have shown the first bytes of the stop string
    // (those that came with the tokens before the one that completed it): a piece, once
    // streamed, cannot be taken back, and the engine does not hold back possible stop prefixes.
    CHECK(streamed[k].compare(0, got[k].text.size(), got[k].text) == 0);
    CHECK(streamed[k].size() < got[k].text.size() + (expect[k].stop.empty() ? 1 : expect[k].stop.size()));
    if (expect[k].stop.empty()) {
      check_same(got[k], ref[k], reqs[k].params.temperature, w);
      continue;
    }
    CHECK(got[k].finish == FinishReason::Stop);
    CHECK(got[k].tokens == expect[k].tokens);
    CHECK(got[k].text == expect[k].text);
    CHECK(got[k].text.find(expect[k].stop) == std::string::npos);
    REQUIRE(got[k].logprobs.size() == got[k].tokens.size());
    for (size_t t = 0; t < got[k].logprobs.size(); ++t) {
      CHECK(std::fabs(got[k].logprobs[t] - ref[k].logprobs[t]) <= logprob_tol(reqs[k].params.temperature));
      w.logprob = std::max(w.logprob, std::fabs(got[k].logprobs[t] - ref[k].logprobs[t]));
    }
  }
  WARN("stop strings: worst |dlogprob| " << w.logprob);
}

TEST_CASE("a streaming callback stops one request mid-batch; the others are unaffected", "[generate][cancel]") {
  auto m = Model::load(kFix + "/dense/qwen2_tied");
  std::vector<GenRequest> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(request(toy(i, 3 + 5 * i), 10, i % 2 ? 0.7f : 0.0f, 900 + uint64_t(i)));
  const auto ref = one_at_a_time(*m, reqs);
  const size_t victim = 2;      // stopped after its 3rd token
  const size_t queued_victim = 5;  // starts later (max_active 3): stopped at its first token
  std::vector<int> calls(reqs.size(), 0);
  GenerateOptions o;
  o.max_active = 3;
  o.prefill_token_budget = 6;
  const auto got = generate(*m, reqs,
                            [&](size_t r, int32_t, float, std::string_view) {
                              ++calls[r];
                              if (r == victim) return calls[r] < 3;
                              if (r == queued_victim) return false;
                              return true;
                            },
                            o);
  Worst w;
  for (size_t k = 0; k < reqs.size(); ++k) {
    INFO("request " << k);
    if (k == victim || k == queued_victim) {
      const size_t n = k == victim ? 3 : 1;
      CHECK(got[k].finish == FinishReason::Callback);
      CHECK(calls[k] == int(n));  // no callback after it said stop
      REQUIRE(got[k].tokens.size() == n);
      CHECK(std::equal(got[k].tokens.begin(), got[k].tokens.end(), ref[k].tokens.begin()));
      for (size_t t = 0; t < n; ++t) CHECK(std::fabs(got[k].logprobs[t] - ref[k].logprobs[t]) <= logprob_tol(reqs[k].params.temperature));
      continue;
    }
    CHECK(calls[k] == 10);
    check_same(got[k], ref[k], reqs[k].params.temperature, w);
  }
  WARN("cancel: worst |dlogprob| " << w.logprob);
}
