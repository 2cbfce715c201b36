// Generation and scoring on bad or large input: sequences are capped at max_position_embeddings,
// scoring computes logprobs in blocks of positions (same values as a log-softmax over the full
// logits, logits memory bounded by block x vocab), and stop strings are found in a bounded
// window, also when a stop string is split across tokens.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "expect_error.h"
#include "core/error.h"
#include "infer/generator.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

using namespace reason;
namespace fs = std::filesystem;

namespace {

const fs::path kFixtures = fs::path(REASON_FIXTURES_DIR);
// A small model trained on additions (its text is ASCII digits and words), max_position_embeddings 256.
const std::string kBase = (kFixtures / "pipeline" / "addition-base").string();

std::shared_ptr<const Model> base_model() {
  static auto m = Model::load(kBase);
  return m;
}

std::vector<int32_t> ids_of_length(int64_t n, int64_t vocab, uint32_t seed = 7) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint32_t x = seed;
  for (auto& t : ids) {
    x = x * 1664525u + 1013904223u;
    t = int32_t((x >> 8) % uint32_t(vocab));
  }
  return ids;
}

template <typename F>
void expect_invalid(F&& f, const std::vector<std::string>& words) {
  test::expect_error(f, ErrorCode::InvalidArgument, words);
}

}  // namespace

TEST_CASE("generation is capped at max_position_embeddings", "[generate][limits]") {
  auto m = base_model();
  const int64_t P = m->config().max_position_embeddings;
  REQUIRE(P == 256);
  GenRequest r;
  r.params.temperature = 0;
  r.params.ignore_eos = true;
  r.params.max_new_tokens = 100000;  // far past the model's context

  SECTION("prompt + completion stop at max_position_embeddings with finish Length") {
    r.prompt = ids_of_length(200, m->config().vocab_size);
    std::vector<GenRequest> reqs{r, r};
    reqs[1].share_prefix_with = 0;  // the shared-prefix path is capped the same way
    GenerateStats st;
    GenerateOptions go;
    go.stats = &st;
    auto res = generate(*m, reqs, {}, go);
    for (const auto& g : res) {
      CHECK(int64_t(g.tokens.size()) == P - 200);
      CHECK(g.finish == FinishReason::Length);
    }
    CHECK(st.generated_tokens == 2 * (P - 200));
  }
  SECTION("one position left: one token") {
    r.prompt = ids_of_length(P - 1, m->config().vocab_size);
    auto res = generate(*m, std::vector<GenRequest>{r});
    CHECK(res[0].tokens.size() == 1);
    CHECK(res[0].finish == FinishReason::Length);
  }
  SECTION("max_new_tokens still ends a request first when it comes first") {
    r.prompt = ids_of_length(10, m->config().vocab_size);
    r.params.max_new_tokens = 5;
    auto res = generate(*m, std::vector<GenRequest>{r});
    CHECK(res[0].tokens.size() == 5);
  }
  SECTION("a prompt that fills the context is refused before any work") {
    r.prompt = ids_of_length(P, m->config().vocab_size);
    std::vector<GenRequest> reqs{r};
    reqs[0].prompt.resize(10);
    reqs.push_back(r);
    expect_invalid([&] { generate(*m, reqs); }, {"request 1", "256 tokens", "max_position_embeddings is 256"});
    reqs[1].prompt = ids_of_length(P + 1000, m->config().vocab_size);
    expect_invalid([&] { generate(*m, reqs); }, {"request 1", "1256 tokens", "max_position_embeddings"});
  }
}

TEST_CASE("score computes logprobs in blocks, equal to a log-softmax over the full logits", "[score][limits]") {
  auto m = Model::load((kFixtures / "dense" / "qwen2_tied").string());
  const int64_t V = m->config().vocab_size;
  const int64_t n = std::min<int64_t>(100, m->config().max_position_embeddings);
  const auto ids = ids_of_length(n, V);

  // The reference: every position's logits at once, then a log-softmax in double.
  std::vector<float> direct(size_t(n - 1));
  {
    KVCache cache = m->make_cache();
    ForwardScratch scratch;
    std::vector<float> logits;
    SeqChunk ch{cache.add_sequence(), ids.data(), n, true};
    m->forward(std::span<const SeqChunk>(&ch, 1), cache, logits, scratch);
    REQUIRE(int64_t(logits.size()) == n * V);
    for (int64_t t = 0; t + 1 < n; ++t) {
      const float* row = logits.data() + t * V;
      const double mx = *std::max_element(row, row + V);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
      direct[size_t(t)] = float(double(row[ids[size_t(t + 1)]]) - mx - std::log(sum));
    }
  }
  for (int64_t chunk : {int64_t(1), int64_t(7), int64_t(64), n + 5}) {
    DYNAMIC_SECTION("chunk_rows " << chunk) {
      ScoreStats st;
      ScoreOptions so;
      so.chunk_rows = chunk;
      so.stats = &st;
      const auto got = score(*m, ids, so);
      REQUIRE(got.size() == direct.size());
      for (size_t t = 0; t < got.size(); ++t) {
        INFO("position " << t);
        CHECK(std::fabs(got[t] - direct[t]) <= 2e-5f);
      }
      // Peak logits memory: one block of at most chunk_rows x vocab floats.
      const int64_t rows = std::min(chunk, n);
      CHECK(st.chunk_rows == chunk);
      CHECK(st.blocks == (n + chunk - 1) / chunk);
      CHECK(st.max_block_rows == rows);
      CHECK(st.logits_capacity == rows * V);
    }
  }
  SECTION("the default block is 64 positions") {
    ScoreStats st;
    ScoreOptions so;
    so.stats = &st;
    score(*m, ids, so);
    CHECK(st.chunk_rows == 64);
    CHECK(st.logits_capacity <= 64 * V);
  }
  SECTION("bad input") {
    const int64_t P = m->config().max_position_embeddings;
    const auto too_long = ids_of_length(P + 1, V);
    expect_invalid([&] { score(*m, too_long); }, {"max_position_embeddings"});
    ScoreOptions so;
    so.chunk_rows = 0;
    expect_invalid([&] { score(*m, ids, so); }, {"chunk_rows"});
    expect_invalid([&] { score(*m, std::vector<int32_t>{1}); }, {"at least 2"});
  }
}

namespace {

struct Streamed {
  GenResult result;
  std::vector<std::string> pieces;  // what the callback received, one per token
  GenerateStats stats;
};

Streamed run(const Model& m, const GenRequest& r) {
  Streamed s;
  GenerateOptions go;
  go.stats = &s.stats;
  auto res = generate(
      m, std::vector<GenRequest>{r},
      [&](size_t, int32_t, float, std::string_view text) {
        s.pieces.emplace_back(text);
        return true;
      },
      go);
  s.result = res[0];
  return s;
}

GenRequest greedy_request(const Model& m, int32_t max_new_tokens) {
  GenRequest r;
  r.prompt = m.require_tokenizer()->encode("12+34=");
  r.params.temperature = 0;
  r.params.ignore_eos = true;
  r.params.max_new_tokens = max_new_tokens;
  return r;
}

}  // namespace

TEST_CASE("a stop string split across tokens ends the request at the token that completes it", "[generate][stop]") {
  auto m = base_model();
  const GenRequest plain = greedy_request(*m, 60);
  const Streamed full = run(*m, plain);
  const std::string& text = full.result.text;
  REQUIRE(full.pieces.size() == full.result.tokens.size());
  // End offset of each token's text.
  std::vector<size_t> end(full.pieces.size());
  size_t acc = 0;
  for (size_t i = 0; i < full.pieces.size(); ++i) end[i] = acc += full.pieces[i].size();
  REQUIRE(acc == text.size());
  // A stop string that starts inside one token's text and ends inside a later token's text.
  size_t k = 0;
  for (size_t i = 2; i + 3 < end.size(); ++i)
    if (end[i] >= 2 && end[i] + 2 <= text.size() && full.pieces[i].size() >= 1 && full.pieces[i + 1].size() >= 1) {
      k = i;
      break;
    }
  REQUIRE(k > 0);
  const std::string stop = text.substr(end[k] - 2, 4);
  INFO("text: " << text << "\nstop: '" << stop << "'");
  const size_t cut = text.find(stop);
  REQUIRE(cut != std::string::npos);
  // The token whose text completes the first occurrence.
  size_t last = 0;
  while (end[last] < cut + stop.size()) ++last;

  GenRequest r = plain;
  r.params.stop_strings = {"never-in-this-text", stop};
  const Streamed s = run(*m, r);
  CHECK(s.result.finish == FinishReason::Stop);
  CHECK(s.result.text == text.substr(0, cut));
  CHECK(s.result.tokens.size() == last + 1);
  CHECK(std::equal(s.result.tokens.begin(), s.result.tokens.end(), full.result.tokens.begin()));
  // Streaming: pieces already sent before the stop string was complete stay sent; the token that
  // completes it sends only what precedes the stop string.
  REQUIRE(last > 0);
  CHECK(std::accumulate(s.pieces.begin(), s.pieces.end(), std::string()) == text.substr(0, std::max(cut, end[last - 1])));
}

TEST_CASE("stop strings are searched in a bounded window over a long generation", "[generate][stop]") {
  auto m = base_model();
  const int64_t P = m->config().max_position_embeddings;
  GenRequest r = greedy_request(*m, 100000);  // runs to the end of the context
  r.params.temperature = 1.0f;                // varied text
  r.params.seed = 3;
  const Streamed plain = run(*m, r);
  REQUIRE(int64_t(r.prompt.size() + plain.result.tokens.size()) == P);
  CHECK(plain.stats.stop_window_max_bytes == 0);  // no stop strings: no search

  const std::string longest = "a stop string that is never generated";
  r.params.stop_strings = {"zz#", longest, "@@"};
  const Streamed s = run(*m, r);
  // Same output as without stop strings (none matches).
  CHECK(s.result.tokens == plain.result.tokens);
  CHECK(s.result.text == plain.result.text);
  CHECK(s.result.finish == FinishReason::Length);
  // Each search scanned at most the longest stop string - 1 bytes of old text plus one piece,
  // never the whole completion.
  size_t max_piece = 0;
  for (const auto& p : s.pieces) max_piece = std::max(max_piece, p.size());
  REQUIRE(s.result.text.size() > 2 * (longest.size() + max_piece));
  CHECK(s.stats.stop_window_max_bytes > 0);
  CHECK(size_t(s.stats.stop_window_max_bytes) <= longest.size() - 1 + max_piece);
}
