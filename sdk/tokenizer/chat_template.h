// Chat prompt formatting for the two template families the engine serves, implemented natively
// (no Jinja interpreter) and checked against transformers' apply_chat_template output.
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

#include <span>
#include <string>

#include "tokenizer/tokenizer.h"

namespace reason {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant" or "tool"
  std::string content;  // UTF-8
};

// Renders `messages` as the prompt text of format `fmt` (ChatFormat::None means
// tok.chat_format()). Encode the result with tok.encode(text, /*add_special_tokens=*/false):
// the DeepSeek text already starts with the BOS token. Throws Error(InvalidArgument) for an
// unknown role and Error(Unsupported) when no format is given or detected. Thread-safe.
std::string apply_chat_template(const Tokenizer& tok, std::span<const ChatMessage> messages,
                                bool add_generation_prompt, ChatFormat fmt = ChatFormat::None);

}  // namespace reason
