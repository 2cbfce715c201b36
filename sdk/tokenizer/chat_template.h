// Chat prompt formatting. The model's own template (tokenizer_config.json chat_template,
// chat_template.jinja, or a GGUF's tokenizer.chat_template) is rendered by the Jinja interpreter
// (jinja.h) exactly as transformers' apply_chat_template renders it. Two native renderings
// remain for callers that ask for a format by name (and for tokenizers without a template):
//
// DeepSeekR1 follows the chat_template of deepseek-ai/DeepSeek-R1's tokenizer_config.json:
//   bos_token + system contents (several joined by "\n\n", no markers)
//   user:      "<｜User｜>" + content
//   assistant: "<｜Assistant｜>" + content after the last "</think>" + "<｜end▁of▁sentence｜>"
//              (earlier turns drop their reasoning)
//   tool:      "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>" + content + "<｜tool▁output▁end｜>"
//              (later outputs of the same run: "<｜tool▁output▁begin｜>..."), closed by
//              "<｜tool▁outputs▁end｜>" before the next assistant turn or at the end
//   add_generation_prompt (unless the last turn was a tool output): "<｜Assistant｜><think>\n"
// ChatML follows Qwen3's tokenizer_config.json template for the case without tools and without
// enable_thinking=false: "<|im_start|>role\ncontent<|im_end|>\n" per message, no default system
// prompt (Qwen2.5's template would insert one), assistant turns after the last user query keep
// their reasoning as "<think>\n...\n</think>\n\n" and earlier ones lose it, tool outputs are
// wrapped in <tool_response> inside a user turn; generation prompt "<|im_start|>assistant\n".
#pragma once

#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "tokenizer/tokenizer.h"

namespace reason {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant" or "tool"
  std::string content;  // UTF-8
};

// Renders `messages` as prompt text. With fmt == ChatFormat::None and a tokenizer that has a
// chat template, that template (render_chat_template); a DeepSeek-R1 template whose generation
// prompt ends at "<｜Assistant｜>" (older R1 and V3 files) gets "<think>\n" appended, as the
// engine has always prompted R1. With an explicit format, or no template, the native rendering
// of fmt (None: tok.chat_format()). Encode the result with tok.encode(text,
// /*add_special_tokens=*/false): templates write their own BOS. Throws Error(InvalidArgument)
// for an unknown role (native) or a template's raise_exception, Error(Unsupported) when there
// is neither a template nor a format. Thread-safe.
std::string apply_chat_template(const Tokenizer& tok, std::span<const ChatMessage> messages,
                                bool add_generation_prompt, ChatFormat fmt = ChatFormat::None);

// The tokenizer's own template rendered as transformers' apply_chat_template renders it (JSON
// objects keep their key order, as the Python dicts transformers passes: parse messages with
// nlohmann::ordered_json), with
// the variables transformers passes: messages (an OpenAI-style JSON array of message objects:
// role, content, and optionally reasoning_content / tool_calls / ...; reasoning fields aliased
// as transformers aliases them), add_generation_prompt, bos_token / eos_token / pad_token from
// tokenizer_config.json, tools and documents none, plus `extra` (e.g. enable_thinking,
// date_string). Throws Unsupported when the tokenizer has no template or it uses Jinja outside
// the supported subset, Format for a template syntax error or malformed messages,
// InvalidArgument for the template's own raise_exception. Thread-safe.
std::string render_chat_template(const Tokenizer& tok, const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra = nlohmann::ordered_json::object());
// The same for template text with every variable but messages / add_generation_prompt given in
// `vars` (bos_token, eos_token, ...). `name` appears in errors.
std::string render_chat_template(const std::string& tmpl, const std::string& name, const nlohmann::ordered_json& messages,
                                 bool add_generation_prompt, const nlohmann::ordered_json& vars);

}  // namespace reason
