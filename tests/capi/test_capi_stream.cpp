// Pull-style streaming through the C ABI: the pulled tokens equal reason_generate_text's for the
// same seed, freeing a stream mid-way stops it, several streams run at once, bad arguments.
#include <catch2/catch.hpp>

#include <string>
#include <thread>
#include <vector>

#include "reason.h"

namespace {

const std::string kModel = std::string(REASON_FIXTURES_DIR) + "/dense/qwen2_tied";

struct Pulled {
  std::vector<int32_t> ids;
  std::string text;
  reason_finish_reason finish = REASON_FINISH_LENGTH;
};

Pulled pull_all(reason_stream* s) {
  Pulled p;
  for (;;) {
    reason_stream_event ev{};
    ev.struct_size = sizeof ev;
    REQUIRE(reason_stream_next(s, &ev) == REASON_OK);
    if (ev.done) {
      p.finish = ev.finish_reason;
      // The end repeats.
      REQUIRE(reason_stream_next(s, &ev) == REASON_OK);
      CHECK(ev.done == 1);
      return p;
    }
    p.ids.push_back(ev.token_id);
    p.text.append(ev.text, ev.text_len);
  }
}

}  // namespace

TEST_CASE("a pulled stream equals reason_generate_text", "[capi][stream]") {
  reason_model* m = nullptr;
  REQUIRE(reason_model_load(&m, kModel.c_str(), nullptr) == REASON_OK);
  reason_sampling_options o = REASON_SAMPLING_OPTIONS_INIT;
  o.max_new_tokens = 40;
  o.seed = 11;
  const char* prompt = "Hello there, how";
  reason_generation* g = nullptr;
  REQUIRE(reason_generate_text(&g, m, &prompt, 1, &o, nullptr, nullptr) == REASON_OK);
  const reason_completion* c = reason_generation_get(g, 0);

  reason_stream* s = nullptr;
  REQUIRE(reason_stream_start(&s, m, prompt, &o) == REASON_OK);
  Pulled p = pull_all(s);
  reason_stream_free(s);
  CHECK(p.ids == std::vector<int32_t>(c->token_ids, c->token_ids + c->n_tokens));
  // c->text is a C string: it ends at the first NUL byte the (random) model generated, if any.
  CHECK(p.text.substr(0, p.text.find('\0')) == c->text);
  CHECK(p.text.size() >= std::string(c->text).size());
  CHECK(p.finish == c->finish_reason);
  reason_generation_free(g);

  SECTION("freeing a stream mid-way stops it") {
    o.max_new_tokens = 100000;
    o.ignore_eos = 1;
    REQUIRE(reason_stream_start(&s, m, prompt, &o) == REASON_OK);
    reason_stream_event ev{};
    ev.struct_size = sizeof ev;
    for (int i = 0; i < 3; ++i) REQUIRE(reason_stream_next(s, &ev) == REASON_OK);
    reason_stream_free(s);  // returns promptly (the test would time out otherwise)
  }
  SECTION("streams on several threads at once") {
    std::vector<Pulled> got(4);
    std::vector<std::thread> th;
    for (int i = 0; i < 4; ++i)
      th.emplace_back([&, i] {
        reason_sampling_options oi = o;
        oi.seed = 11;
        reason_stream* si = nullptr;
        if (reason_stream_start(&si, m, prompt, &oi) != REASON_OK) return;
        for (;;) {
          reason_stream_event ev{};
          ev.struct_size = sizeof ev;
          if (reason_stream_next(si, &ev) != REASON_OK || ev.done) break;
          got[size_t(i)].ids.push_back(ev.token_id);
        }
        reason_stream_free(si);
      });
    for (auto& t : th) t.join();
    for (const auto& gi : got) CHECK(gi.ids == p.ids);
  }
  SECTION("bad arguments") {
    CHECK(reason_stream_start(nullptr, m, prompt, &o) == REASON_ERR_INVALID_ARGUMENT);
    CHECK(reason_stream_start(&s, nullptr, prompt, &o) == REASON_ERR_INVALID_ARGUMENT);
    CHECK(reason_stream_start(&s, m, nullptr, &o) == REASON_ERR_INVALID_ARGUMENT);
    reason_sampling_options bad = o;
    bad.top_p = 7;
    CHECK(reason_stream_start(&s, m, prompt, &bad) == REASON_ERR_INVALID_ARGUMENT);
    CHECK(s == nullptr);
    reason_stream_event ev{};
    CHECK(reason_stream_next(nullptr, &ev) == REASON_ERR_INVALID_ARGUMENT);
    reason_stream_free(nullptr);
  }
  reason_model_free(m);
}
