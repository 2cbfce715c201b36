// Splits a reasoning model's completion into its reasoning and its answer, as vLLM's and
// SGLang's `deepseek_r1` reasoning parsers and llama.cpp's `--reasoning-format deepseek` do: the
// text between `<think>` and `</think>` is reasoning_content, the rest content. DeepSeek-R1's
// template opens `<think>` in the prompt, so its completions hold only the closing tag ("forced
// open": everything before `</think>` is reasoning, all of it while the tag has not come yet); a
// completion that itself starts with `<think>` is split the same way; any other completion is
// content only. Works on streamed pieces: a piece that may be the start of a tag is held back
// until the next piece decides it.
// Threads: one object per completion, used by one thread.
#pragma once
#include <string>
#include <string_view>

namespace reason::serve {

class ReasoningParser {
 public:
  // `open`: the prompt ends inside a thinking block (its rendered text ends with `<think>` and
  // optional whitespace).
  explicit ReasoningParser(bool open) : state_(open ? State::Reasoning : State::Start) {}
  struct Delta {
    std::string reasoning, content;
  };
  // The reasoning and content that `piece` completes (either may be empty).
  Delta push(std::string_view piece);
  // What is still held back, at the end of the completion.
  Delta flush();

  // Whether a rendered prompt leaves a thinking block open.
  static bool prompt_opens_thinking(std::string_view prompt);

 private:
  enum class State { Start, Reasoning, Content };
  State state_;
  std::string held_;  // text that may be the start of a tag (or leading whitespace at Start)
};

}  // namespace reason::serve
