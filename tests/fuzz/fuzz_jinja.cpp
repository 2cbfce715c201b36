// Fuzz target: the chat-template Jinja interpreter on arbitrary template text. Every input must
// render or throw reason::Error (syntax errors, unsupported constructs, type errors, the step,
// depth and output limits); a crash, a hang past the limits, a sanitizer report or any other
// exception is a bug. The template is rendered with a fixed conversation (system, user,
// assistant with reasoning and a tool call, tool output) and transformers' variables.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/jinja.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "What is 12+30?"},
      {"role": "assistant", "content": "<think>\nadd\n</think>\n\n42", "reasoning_content": "add",
       "tool_calls": [{"type": "function", "function": {"name": "calc", "arguments": {"x": 1}}}]},
      {"role": "tool", "content": "{\"r\": 42}"},
      {"role": "user", "content": ["not", "a", "string"]}
    ],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>", "tools": null, "documents": null
  })");
  const std::string tmpl(reinterpret_cast<const char*>(data), size);
  try {
    volatile size_t sink = reason::jinja::Template::parse(tmpl, "fuzz")->render(ctx).size();
    (void)sink;
  } catch (const reason::Error&) {
    // Rejected template: expected.
  }
  return 0;
}
