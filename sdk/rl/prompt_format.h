// How a dataset prompt becomes model input text: a template with "{prompt}" (R1-Zero style,
// e.g. "User: {prompt}\nAssistant:"), or the tokenizer's chat template with one user message
// (and an optional system message) plus the generation prompt. Value type; thread-safe.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace reason {

struct PromptFormat {
  std::string template_text = "{prompt}";  // used when chat is false
  bool chat = false;
  std::string system;                      // chat only
};

// The prompt text (what the model continues).
std::string format_prompt(const PromptFormat& f, const Tokenizer& tok, std::string_view prompt);

// The text's ids as generation sees them: no special tokens added for templates (a chat
// template's text already holds its BOS).
std::vector<int32_t> encode_prompt(const PromptFormat& f, const Tokenizer& tok, std::string_view prompt);

}  // namespace reason
