#include "rl/prompt_format.h"

#include "tokenizer/chat_template.h"

namespace reason {

std::string format_prompt(const PromptFormat& f, const Tokenizer& tok, std::string_view prompt) {
  if (f.chat) {
    std::vector<ChatMessage> msgs;
    if (!f.system.empty()) msgs.push_back({"system", f.system});
    msgs.push_back({"user", std::string(prompt)});
    return apply_chat_template(tok, msgs, /*add_generation_prompt=*/true);
  }
  std::string out = f.template_text;
  const size_t at = out.find("{prompt}");
  if (at == std::string::npos) return out + std::string(prompt);
  out.replace(at, 8, prompt);
  return out;
}

std::vector<int32_t> encode_prompt(const PromptFormat& f, const Tokenizer& tok, std::string_view prompt) {
  return tok.encode(format_prompt(f, tok, prompt), /*add_special_tokens=*/false);
}

}  // namespace reason
