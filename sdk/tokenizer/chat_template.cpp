// Native renderings of the DeepSeek-R1 and Qwen3 (ChatML) chat templates; see chat_template.h.
// Each branch below mirrors one branch of the Jinja template it replaces.
#include "tokenizer/chat_template.h"

#include "core/error.h"

namespace reason {
namespace {

constexpr std::string_view kThinkEnd = "</think>";

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) { return s.size() >= p.size() && s.substr(s.size() - p.size()) == p; }

// Python's str.lstrip('\n') / rstrip('\n') / strip('\n').
std::string_view lstrip_nl(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && s[i] == '\n') ++i;
  return s.substr(i);
}
std::string_view rstrip_nl(std::string_view s) {
  size_t n = s.size();
  while (n > 0 && s[n - 1] == '\n') --n;
  return s.substr(0, n);
}
std::string_view strip_nl(std::string_view s) { return rstrip_nl(lstrip_nl(s)); }

void check_role(const ChatMessage& m, size_t i) {
  if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool")
    fail(ErrorCode::InvalidArgument, "apply_chat_template: messages[{}] has role \"{}\" (expected system, user, assistant or tool)", i, m.role);
}

std::string render_deepseek_r1(const Tokenizer& tok, std::span<const ChatMessage> msgs, bool add_generation_prompt) {
  std::string out;
  if (auto bos = tok.bos_id()) out += tok.id_to_token(*bos);
  bool first_system = true;
  for (const auto& m : msgs) {
    if (m.role != "system") continue;
    if (!first_system) out += "\n\n";
    out += m.content;
    first_system = false;
  }
  bool is_tool = false, is_output_first = true;
  for (const auto& m : msgs) {
    if (m.role == "user") {
      is_tool = false;
      out += "<｜User｜>";
      out += m.content;
    } else if (m.role == "assistant") {
      if (is_tool) {
        out += "<｜tool▁outputs▁end｜>";
        out += m.content;
        out += "<｜end▁of▁sentence｜>";
        is_tool = false;
      } else {
        std::string_view content = m.content;
        if (size_t p = content.rfind(kThinkEnd); p != std::string_view::npos) content = content.substr(p + kThinkEnd.size());
        out += "<｜Assistant｜>";
        out += content;
        out += "<｜end▁of▁sentence｜>";
      }
    } else if (m.role == "tool") {
      is_tool = true;
      out += is_output_first ? "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>" : "<｜tool▁output▁begin｜>";
      out += m.content;
      out += "<｜tool▁output▁end｜>";
      is_output_first = false;
    }
  }
  if (is_tool) out += "<｜tool▁outputs▁end｜>";
  if (add_generation_prompt && !is_tool) out += "<｜Assistant｜><think>\n";
  return out;
}

std::string render_chatml_qwen3(std::span<const ChatMessage> msgs, bool add_generation_prompt) {
  std::string out;
  const size_t n = msgs.size();
  if (n > 0 && msgs[0].role == "system") {
    out += "<|im_start|>system\n";
    out += msgs[0].content;
    out += "<|im_end|>\n";
  }
  // Index of the last user message that is a real query (not a wrapped tool response).
  size_t last_query = n == 0 ? 0 : n - 1;
  for (size_t k = n; k-- > 0;) {
    const auto& c = msgs[k].content;
    if (msgs[k].role == "user" && !(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) {
      last_query = k;
      break;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role == "user" || (m.role == "system" && i != 0)) {
      out += "<|im_start|>";
      out += m.role;
      out += "\n";
      out += m.content;
      out += "<|im_end|>\n";
    } else if (m.role == "assistant") {
      std::string_view content = m.content, reasoning;
      if (size_t last = content.rfind(kThinkEnd); last != std::string_view::npos) {
        std::string_view full = m.content;
        content = lstrip_nl(full.substr(last + kThinkEnd.size()));
        std::string_view before = rstrip_nl(full.substr(0, full.find(kThinkEnd)));
        if (size_t open = before.rfind("<think>"); open != std::string_view::npos) before = before.substr(open + 7);
        reasoning = lstrip_nl(before);
      }
      out += "<|im_start|>assistant\n";
      if (i > last_query && (i + 1 == n || !reasoning.empty())) {
        out += "<think>\n";
        out += strip_nl(reasoning);
        out += "\n</think>\n\n";
        out += lstrip_nl(content);
      } else {
        out += content;
      }
      out += "<|im_end|>\n";
    } else if (m.role == "tool") {
      if (i == 0 || msgs[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n";
      out += m.content;
      out += "\n</tool_response>";
      if (i + 1 == n || msgs[i + 1].role != "tool") out += "<|im_end|>\n";
    }
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace

std::string apply_chat_template(const Tokenizer& tok, std::span<const ChatMessage> messages, bool add_generation_prompt,
                                ChatFormat fmt) {
  for (size_t i = 0; i < messages.size(); ++i) check_role(messages[i], i);
  if (fmt == ChatFormat::None) fmt = tok.chat_format();
  switch (fmt) {
    case ChatFormat::DeepSeekR1: return render_deepseek_r1(tok, messages, add_generation_prompt);
    case ChatFormat::ChatML: return render_chatml_qwen3(messages, add_generation_prompt);
    case ChatFormat::None: break;
  }
  fail(ErrorCode::Unsupported, "apply_chat_template: {} has no recognised chat template (DeepSeek-R1 or ChatML)", tok.source());
}

}  // namespace reason
