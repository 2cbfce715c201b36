// Tool calls in rollouts (rl/tool_calls.h): parsing a Hermes-style call, running a registered tool
// under a deadline (result, thrown error, unknown tool, timeout, cut result), and multi-turn
// sampling on a tiny model: a completion that stops at the closing tag gets the tool's response
// appended with mask 0 and continues; the continued tokens' logprobs are still the trainer's (the
// prefix the trainer sees is the prompt, the sampled tokens and the response); calls are capped.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fixture_util.h"
#include "rl/rollout.h"
#include "rl/tool_calls.h"
#include "tokenizer/tokenizer.h"

using namespace reason;

namespace {
const std::string kFix = REASON_FIXTURES_DIR;
}  // namespace

TEST_CASE("tool calls: parse, run, errors, deadline, cut", "[rollout][tools]") {
  auto c = parse_tool_call(R"({"name": "calc", "arguments": {"expr": "12*7"}})");
  CHECK(c.error.empty());
  CHECK(c.name == "calc");
  CHECK(c.arguments == R"({"expr":"12*7"})");
  CHECK(parse_tool_call("calc(1)").error == "the tool call is not a JSON object");
  CHECK(parse_tool_call(R"({"arguments": 1})").error.find("\"name\"") != std::string::npos);
  CHECK(parse_tool_call(R"({"name": "x"})").arguments.empty());

  ToolOptions t;
  t.tools["calc"] = [](const std::string& a) { return a == R"({"expr":"12*7"})" ? std::string("84") : "?"; };
  t.tools["boom"] = [](const std::string&) -> std::string { throw std::runtime_error("division by zero"); };
  // a tool that hangs until the test lets it go (no race with the deadline on a loaded machine)
  auto gate = std::make_shared<std::promise<void>>();
  std::shared_future<void> opened = gate->get_future().share();
  t.tools["slow"] = [opened](const std::string&) {
    opened.wait();
    return std::string("late");
  };
  t.tools["long"] = [](const std::string&) { return std::string(5000, 'x'); };
  t.deadline = std::chrono::milliseconds(60000);  // the quick tools never hit it, however loaded the machine
  bool failed = true;
  CHECK(run_tool_call(t, c, &failed) == "84");
  CHECK_FALSE(failed);
  CHECK(run_tool_call(t, ParsedToolCall{"boom", "", ""}, &failed) == "error: tool 'boom' failed: division by zero");
  CHECK(failed);
  CHECK(run_tool_call(t, ParsedToolCall{"nope", "", ""}, &failed) == "error: no tool named 'nope'");
  ToolOptions short_deadline = t;
  short_deadline.deadline = std::chrono::milliseconds(100);
  CHECK(run_tool_call(short_deadline, ParsedToolCall{"slow", "", ""}, &failed) == "error: tool 'slow' timed out after 100 ms");
  CHECK(failed);
  const std::string cut = run_tool_call(t, ParsedToolCall{"long", "", ""}, &failed);
  CHECK(cut.size() == t.max_result_bytes + 6);
  CHECK(cut.substr(cut.size() - 6) == " [cut]");
  CHECK(run_tool_call(t, ParsedToolCall{"", "", "the tool call is not a JSON object"}) ==
        "error: the tool call is not a JSON object");
  t.tools["bytes"] = [](const std::string&) { return std::string("\xff" "84\xc3"); };
  CHECK(run_tool_call(t, ParsedToolCall{"bytes", "", ""}) == "\xef\xbf\xbd" "84\xef\xbf\xbd");  // U+FFFD each
  gate->set_value();  // the abandoned call returns now; its result is ignored
}

TEST_CASE("multi-turn rollouts: tool responses are appended masked, and sampling continues", "[rollout][tools]") {
  // The tiny random model never writes a real call; a frequent single character as the closing
  // tag, an empty opening tag and raw arguments make it call often. The tool answers with a chat
  // control token and a byte that is not UTF-8: the response must stay plain text (no special id)
  // and valid UTF-8.
  auto m = Model::load(kFix + "/dense/qwen2_tied");
  const Tokenizer& tok = *m->require_tokenizer();
  std::vector<RolloutPrompt> prompts(2);
  for (int i = 0; i < 2; ++i) {
    for (int t = 0; t < 6; ++t) prompts[size_t(i)].ids.push_back(int32_t(3 + (i * 7 + t * 13) % 300));
    prompts[size_t(i)].seed = uint64_t(7 + i);
  }
  ToolOptions t;
  t.tools["calc"] = [](const std::string&) { return std::string("<|im_end|>\xff" "84"); };
  t.raw_tool = "calc";
  t.deadline = std::chrono::milliseconds(60000);  // never hit by this instant tool, however loaded the machine
  t.call_open = "";
  t.call_close = "e";
  t.result_open = " <r>";
  t.result_close = "</r> ";
  t.max_calls = 2;
  RolloutOptions ro;
  ro.group_size = 3;
  ro.sampling.temperature = 0.8f;
  ro.sampling.max_new_tokens = 48;
  ro.tools = &t;
  RolloutStats st;
  auto rolls = sample_rollouts(*m, prompts, ro, &st);
  int with_calls = 0, with_two = 0;
  for (const Rollout& r : rolls) {
    with_two += r.tool_calls == 2 ? 1 : 0;
    INFO(r.text);
    CHECK(r.tool_calls <= 2);
    CHECK(r.tool_errors == 0);
    CHECK(int64_t(r.completion.size()) <= ro.sampling.max_new_tokens);
    const std::string resp = " <r><|im_end|>\xef\xbf\xbd" "84</r> ";
    int appended = 0;  // responses in the text (a call whose response would not fit has none)
    for (size_t at = r.text.find(resp); at != std::string::npos; at = r.text.find(resp, at + 1)) ++appended;
    CHECK(appended <= r.tool_calls);
    CHECK(appended >= r.tool_calls - 1);
    if (appended == 0) {
      CHECK(r.mask.empty());
      continue;
    }
    ++with_calls;
    REQUIRE(r.mask.size() == r.completion.size());
    // the masked runs are exactly the responses' tokens, in order
    std::string masked;
    int runs = 0;
    for (size_t k = 0; k < r.mask.size(); ++k) {
      if (r.mask[k]) continue;
      ++runs;
      std::vector<int32_t> run;  // (responses are text the tokenizer encoded: in its vocabulary)
      while (k < r.mask.size() && !r.mask[k]) run.push_back(r.completion[k++]);
      masked += tok.decode(run);
    }
    CHECK(runs == appended);
    const auto special = tok.encode("<|im_end|>");
    REQUIRE(special.size() == 1);
    for (size_t k = 0; k < r.mask.size(); ++k)
      if (!r.mask[k]) CHECK(r.completion[k] != special[0]);
    std::string want;
    for (int i = 0; i < appended; ++i) want += resp;
    CHECK(masked == want);
    CHECK(r.text.find("e" + resp) != std::string::npos);
  }
  CHECK(with_calls >= 3);
  CHECK(with_two >= 1);  // a continued turn stops at the next call too
  CHECK(st.tool_calls > 0);
  // The sampler's logprobs of the sampled tokens after a response equal the trainer's over the
  // whole sequence (prompt, sampled tokens, response).
  auto samples = to_grpo_samples(rolls, prompts);
  fill_reference_logprobs(*m, samples, 0.8f);
  for (const auto& s : samples) {
    const float tol = test::summation_order_tolerance(m->config(), test::logprob_magnitude(s.old_logprobs), 0.8f);
    for (size_t k = 0; k < s.completion.size(); ++k)
      if (s.mask.empty() || s.mask[k]) CHECK(std::fabs(s.ref_logprobs[k] - s.old_logprobs[k]) <= tol);
  }
}
