// The reasoning split of `reason serve` (serve/reasoning_parser.h): the text between <think> and
// </think> is reasoning, the rest content, as vLLM's deepseek_r1 parser splits a whole completion
// (reasoning = text before "</think>", minus a leading "<think>"; content = text after it; no
// "</think>" yet in a forced-open completion: all reasoning). Streaming must give the same split
// for every way of cutting the completion into pieces.
#include <catch2/catch.hpp>

#include <string>

#include "serve/reasoning_parser.h"

using reason::serve::ReasoningParser;

namespace {

// The split of `text` fed in pieces cut at `cuts` (byte offsets), then flushed.
std::pair<std::string, std::string> split(bool open, const std::string& text, std::vector<size_t> cuts) {
  ReasoningParser p(open);
  std::string r, c;
  size_t at = 0;
  cuts.push_back(text.size());
  for (size_t cut : cuts) {
    auto d = p.push(text.substr(at, cut - at));
    r += d.reasoning;
    c += d.content;
    at = cut;
  }
  auto d = p.flush();
  return {r + d.reasoning, c + d.content};
}

void every_cut(bool open, const std::string& text, const std::string& want_r, const std::string& want_c) {
  for (size_t i = 0; i <= text.size(); ++i)
    for (size_t j = i; j <= text.size(); ++j) {
      INFO("cuts " << i << ", " << j << " of " << text);
      auto [r, c] = split(open, text, {i, j});
      CHECK(r == want_r);
      CHECK(c == want_c);
    }
}

}  // namespace

TEST_CASE("reasoning parser: R1's forced-open thinking, a completion that opens it, and none", "[serve]") {
  // DeepSeek-R1: the prompt ends with "<think>\n", the completion has only the closing tag.
  every_cut(true, "Let me add. 12+30=42\n</think>\n\nThe answer is 42.", "Let me add. 12+30=42\n", "\n\nThe answer is 42.");
  every_cut(true, "still thinking </thi", "still thinking </thi", "");  // cut off (length): all reasoning
  // A completion that opens the block itself (after whitespace).
  every_cut(false, " <think> 12+30 </think> \\boxed{42}", " 12+30 ", " \\boxed{42}");
  // Content only: no thinking block, or a tag that is not at the start.
  every_cut(false, "The answer is <think>42</think>", "", "The answer is <think>42</think>");
  every_cut(false, "<thin", "", "<thin");
  every_cut(false, "", "", "");
  // After the block, a second "</think>" is content.
  every_cut(false, "<think>a</think>b</think>", "a", "b</think>");
}

TEST_CASE("reasoning parser: which prompts leave thinking open", "[serve]") {
  CHECK(ReasoningParser::prompt_opens_thinking("<｜Assistant｜><think>\n"));
  CHECK(ReasoningParser::prompt_opens_thinking("Assistant: <think>"));
  CHECK_FALSE(ReasoningParser::prompt_opens_thinking("Assistant:"));
  CHECK_FALSE(ReasoningParser::prompt_opens_thinking("<think>x</think>\n"));
  CHECK_FALSE(ReasoningParser::prompt_opens_thinking(""));
}
