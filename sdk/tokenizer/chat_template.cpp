// The model's chat template through the Jinja interpreter, and native renderings of the
// DeepSeek-R1 and Qwen3 (ChatML) templates; see chat_template.h.
// Each branch below mirrors one branch of the Jinja template it replaces.
#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "tokenizer/jinja.h"

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

// transformers' _alias_reasoning_fields: with r the first non-null of reasoning_content /
// thinking / reasoning, the message becomes {"thinking": r, **message, "reasoning_content": r}
// (Python dict order: "thinking" first, the message's keys, "reasoning_content" last if new).
nlohmann::ordered_json alias_reasoning(const nlohmann::ordered_json& messages, const std::string& name) {
  using oj = nlohmann::ordered_json;
  if (!messages.is_array()) fail(ErrorCode::Format, "{}: messages must be a JSON array of message objects", name);
  oj out = oj::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (!m.is_object()) fail(ErrorCode::Format, "{}: messages[{}] is not an object", name, i);
    if (!m.contains("role") || !m["role"].is_string())
      fail(ErrorCode::Format, "{}: messages[{}] has no string \"role\"", name, i);
    const oj* r = nullptr;
    for (const char* key : {"reasoning_content", "thinking", "reasoning"})
      if (m.contains(key) && !m[key].is_null()) {
        r = &m[key];
        break;
      }
    if (!r) {
      out.push_back(m);
      continue;
    }
    oj msg = oj::object();
    msg["thinking"] = *r;
    for (const auto& [k, v] : m.items()) msg[k] = v;
    msg["reasoning_content"] = *r;
    out.push_back(std::move(msg));
  }
  return out;
}

}  // namespace

std::string render_chat_template(const std::string& tmpl, const std::string& name, const nlohmann::ordered_json& messages,
                                 bool add_generation_prompt, const nlohmann::ordered_json& vars) {
  nlohmann::ordered_json ctx = vars.is_object() ? vars : nlohmann::ordered_json::object();
  ctx["messages"] = alias_reasoning(messages, name);
  ctx["add_generation_prompt"] = add_generation_prompt;
  if (!ctx.contains("tools")) ctx["tools"] = nullptr;
  if (!ctx.contains("documents")) ctx["documents"] = nullptr;
  return jinja::Template::parse(tmpl, name)->render(ctx);
}

std::string render_chat_template(const Tokenizer& tok, const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra) {
  if (tok.chat_template().empty()) fail(ErrorCode::Unsupported, "{}: the tokenizer has no chat template", tok.source());
  nlohmann::ordered_json vars = nlohmann::ordered_json::object();
  for (auto [key, id] : {std::pair{"bos_token", tok.bos_id()}, {"eos_token", tok.eos_id()}, {"pad_token", tok.pad_id()}})
    if (id) vars[key] = tok.id_to_token(*id);
  if (extra.is_object())
    for (const auto& [k, v] : extra.items()) vars[k] = v;
  return render_chat_template(tok.chat_template(), tok.source() + " chat_template", messages, add_generation_prompt, vars);
}

std::string apply_chat_template(const Tokenizer& tok, std::span<const ChatMessage> messages, bool add_generation_prompt,
                                ChatFormat fmt) {
  if (fmt == ChatFormat::None && !tok.chat_template().empty()) {
    nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
    for (const ChatMessage& m : messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
    std::string out = render_chat_template(tok, msgs, add_generation_prompt);
    const std::string_view assistant = "<｜Assistant｜>";
    if (add_generation_prompt && tok.chat_format() == ChatFormat::DeepSeekR1 && ends_with(out, assistant)) out += "<think>\n";
    return out;
  }
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
