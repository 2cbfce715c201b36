#include "serve/openai_protocol.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <random>

#include "core/error.h"
#include "serve/reasoning_parser.h"
#include "tokenizer/chat_template.h"

namespace reason::serve {

using nlohmann::json;

namespace {

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::optional<double> number(const json& body, const char* name, double lo, double hi, bool lo_open = false) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) throw ApiError(400, fmt::format("'{}' must be a number", name), name);
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || (lo_open && x == lo) || x > hi)
    throw ApiError(400, fmt::format("'{}' must be in {}{}, {}] (got {})", name, lo_open ? "(" : "[", lo, hi, x), name);
  return x;
}

std::optional<int64_t> integer(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) throw ApiError(400, fmt::format("'{}' must be an integer", name), name);
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) throw ApiError(400, fmt::format("'{}' must be in [{}, {}] (got {})", name, lo, hi, x), name);
  return x;
}

std::optional<bool> boolean(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) throw ApiError(400, fmt::format("'{}' must be a boolean", name), name);
  return v->get<bool>();
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts (joined).
std::string content_text(const json& content, size_t i) {
  const std::string param = fmt::format("messages[{}].content", i);
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) throw ApiError(400, "'" + param + "' must be a string or an array of text parts", param);
  std::string out;
  for (size_t k = 0; k < content.size(); ++k) {
    const json& part = content[k];
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      throw ApiError(400, fmt::format("'{}[{}]' must be a {{\"type\": \"text\", \"text\": ...}} part (only text is supported)", param, k),
                     param);
    out += part["text"].get<std::string>();
  }
  return out;
}

json chat_messages(const json& body) {
  const json* m = field(body, "messages");
  if (!m) throw ApiError(400, "'messages' is required", "messages");
  if (!m->is_array() || m->empty()) throw ApiError(400, "'messages' must be a non-empty array", "messages");
  json out = json::array();
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string param = fmt::format("messages[{}]", i);
    if (!msg.is_object()) throw ApiError(400, "'" + param + "' must be an object", param);
    if (!msg.contains("role") || !msg["role"].is_string()) throw ApiError(400, "'" + param + ".role' must be a string", param + ".role");
    const std::string role = msg["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "developer" && role != "tool")
      throw ApiError(400, fmt::format("'{}.role' must be system, developer, user, assistant or tool (got '{}')", param, role),
                     param + ".role");
    out.push_back({{"role", role == "developer" ? "system" : role}, {"content", content_text(msg.value("content", json()), i)}});
  }
  return out;
}

std::vector<std::string> stop_strings(const json& body, int32_t max_stop) {
  const json* v = field(body, "stop");
  if (!v) return {};
  std::vector<std::string> out;
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    for (const json& s : *v) {
      if (!s.is_string()) throw ApiError(400, "'stop' must be a string or an array of strings", "stop");
      out.push_back(s.get<std::string>());
    }
  } else {
    throw ApiError(400, "'stop' must be a string or an array of strings", "stop");
  }
  if (int32_t(out.size()) > max_stop) throw ApiError(400, fmt::format("'stop' has more than {} strings", max_stop), "stop");
  for (const auto& s : out)
    if (s.empty()) throw ApiError(400, "'stop' strings must not be empty", "stop");
  return out;
}

// The completions API's prompt: a string, an array of one string, or token ids.
std::vector<int32_t> completion_prompt(const json& body, const Tokenizer& tok, int64_t vocab, std::string& text) {
  const json* p = field(body, "prompt");
  if (!p) throw ApiError(400, "'prompt' is required", "prompt");
  if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
  if (p->is_string()) {
    text = p->get<std::string>();
    return tok.encode(text, true);
  }
  if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) {
    std::vector<int32_t> ids;
    for (const json& t : *p) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= vocab)
        throw ApiError(400, fmt::format("'prompt' token ids must be integers in [0, {})", vocab), "prompt");
      ids.push_back(int32_t(t.get<int64_t>()));
    }
    text = tok.decode(ids);
    return ids;
  }
  throw ApiError(400, "'prompt' must be a string, an array of one string, or an array of token ids (one prompt per request)",
                 "prompt");
}

void sampling_fields(const json& body, const ApiContext& ctx, ApiRequest& r) {
  SamplingParams& p = r.params;
  const GenerationDefaults& d = ctx.defaults;
  p.temperature = d.do_sample && !*d.do_sample ? 0.0f : float(d.temperature.value_or(1.0));
  p.top_p = float(d.top_p.value_or(1.0));
  p.top_k = int32_t(std::min<int64_t>(d.top_k.value_or(0), INT32_MAX));
  p.min_p = float(d.min_p.value_or(0.0));
  p.repetition_penalty = float(d.repetition_penalty.value_or(1.0));
  if (auto v = number(body, "temperature", 0.0, 2.0)) p.temperature = float(*v);
  if (auto v = number(body, "top_p", 0.0, 1.0, true)) p.top_p = float(*v);
  if (auto v = integer(body, "top_k", -1, INT32_MAX)) p.top_k = int32_t(std::max<int64_t>(0, *v));  // vLLM: -1 = off
  if (auto v = number(body, "min_p", 0.0, 1.0)) p.min_p = float(*v);
  if (auto v = number(body, "repetition_penalty", 0.0, 100.0, true)) p.repetition_penalty = float(*v);
  if (auto v = number(body, "presence_penalty", -2.0, 2.0)) p.presence_penalty = float(*v);
  if (auto v = number(body, "frequency_penalty", -2.0, 2.0)) p.frequency_penalty = float(*v);
  const int32_t cap = ctx.limits.max_tokens;
  p.max_new_tokens = cap;
  if (auto v = integer(body, "max_tokens", 1, cap)) p.max_new_tokens = int32_t(*v);
  if (auto v = integer(body, "max_completion_tokens", 1, cap)) p.max_new_tokens = int32_t(*v);
  if (auto v = integer(body, "seed", INT64_MIN, INT64_MAX)) {
    p.seed = uint64_t(*v);
  } else {
    static std::atomic<uint64_t> counter{std::random_device{}()};
    p.seed = counter.fetch_add(0x9e3779b97f4a7c15ull) ^ uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  p.stop_strings = stop_strings(body, ctx.limits.max_stop);
  if (auto v = boolean(body, "ignore_eos")) p.ignore_eos = *v;
}

}  // namespace

json error_body(const ApiError& e) {
  return {{"error",
           {{"message", e.what()}, {"type", e.type}, {"param", e.param.empty() ? json() : json(e.param)}, {"code", json()}}}};
}

json parse_body(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return j;
}

ApiRequest parse_request(const json& body, bool chat, const ApiContext& ctx) {
  ApiRequest r;
  r.chat = chat;
  const Model& m = *ctx.model;
  auto tok = m.tokenizer();
  if (!tok) throw ApiError(500, "the model has no tokenizer", "", "server_error");
  if (const json* v = field(body, "model"); v && !v->is_string()) throw ApiError(400, "'model' must be a string", "model");
  if (chat) {
    const json messages = chat_messages(body);
    try {
      r.prompt_text = render_chat_template(*tok, nlohmann::ordered_json(messages), true);
    } catch (const Error& e) {
      throw ApiError(400, fmt::format("the model's chat template refused the messages: {}", e.what()), "messages");
    }
    r.prompt = tok->encode(r.prompt_text, false);  // templates write their own BOS
    r.prompt_opens_thinking = ReasoningParser::prompt_opens_thinking(r.prompt_text);
  } else {
    r.prompt = completion_prompt(body, *tok, m.config().vocab_size, r.prompt_text);
    if (auto v = boolean(body, "echo")) r.echo = *v;
  }
  if (r.prompt.empty()) throw ApiError(400, "the prompt is empty", chat ? "messages" : "prompt");
  const int64_t max_pos = m.config().max_position_embeddings;
  if (int64_t(r.prompt.size()) >= max_pos)
    throw ApiError(400,
                   fmt::format("the prompt has {} tokens; the model's context is {} tokens, which leaves no room to generate",
                               r.prompt.size(), max_pos),
                   chat ? "messages" : "prompt");
  sampling_fields(body, ctx, r);
  if (auto v = integer(body, "n", 1, ctx.limits.max_n)) r.n = int32_t(*v);
  if (auto v = boolean(body, "stream")) r.stream = *v;
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) throw ApiError(400, "'stream_options' must be an object", "stream_options");
    if (auto v = boolean(*so, "include_usage")) r.include_usage = *v;
  }
  if (chat) {
    if (auto v = boolean(body, "logprobs")) r.logprobs = *v;
    if (auto v = integer(body, "top_logprobs", 0, GenRequest::kMaxTopLogprobs)) {
      if (!r.logprobs && *v > 0) throw ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs");
      r.top_logprobs = int32_t(*v);
    }
  } else if (auto v = integer(body, "logprobs", 0, 5)) {  // the legacy API: the number of top logprobs
    r.logprobs = true;
    r.top_logprobs = int32_t(*v);
  }
  if (const json* v = field(body, "reasoning_format")) {  // llama.cpp's per-request switch
    if (!v->is_string() || (v->get<std::string>() != "deepseek" && v->get<std::string>() != "none"))
      throw ApiError(400, "'reasoning_format' must be \"deepseek\" (split <think>) or \"none\" (raw text)", "reasoning_format");
    r.reasoning = v->get<std::string>() == "deepseek";
  }
  if (field(body, "tools") || field(body, "functions"))
    throw ApiError(400, "tool calling is not supported by this server", field(body, "tools") ? "tools" : "functions");
  try {
    r.params.validate();
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
  return r;
}

const char* finish_reason_name(FinishReason f) {
  switch (f) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Callback: return "abort";
  }
  return "stop";
}

json chat_logprob_entry(const TokenLogprob& t) {
  auto bytes = [](const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(int(c));
    return b;
  };
  json top = json::array();
  for (const auto& [tok, lp] : t.top) top.push_back({{"token", tok}, {"logprob", lp}, {"bytes", bytes(tok)}});
  return {{"token", t.token}, {"logprob", t.logprob}, {"bytes", bytes(t.token)}, {"top_logprobs", top}};
}

std::string new_completion_id(bool chat) {
  static std::atomic<uint64_t> n{0};
  static const uint64_t salt = std::random_device{}();
  return fmt::format("{}-{:016x}{:08x}", chat ? "chatcmpl" : "cmpl", salt, n.fetch_add(1));
}

}  // namespace reason::serve
