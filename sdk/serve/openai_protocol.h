// The OpenAI HTTP API's request and response bodies (chat completions, completions), as the
// `openai` Python package and vLLM's server read and write them: requests are checked field by
// field (an ApiError names the field, for a 400 with an OpenAI-style error object), rendered with
// the model's own chat template and tokenised; responses and stream chunks are built here.
// Threads: pure functions over their arguments.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "infer/batch_scheduler.h"
#include "model/generation_config.h"
#include "model/model.h"

namespace reason::serve {

// An error answered with `status` and {"error": {"message", "type", "param", "code"}}.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string param = "", std::string type = "invalid_request_error")
      : std::runtime_error(message), status(status), param(std::move(param)), type(std::move(type)) {}
  int status;
  std::string param, type;
};
nlohmann::json error_body(const ApiError& e);

// What the server fixes for every request.
struct ApiLimits {
  int32_t max_tokens = 4096;  // a request's max_tokens above it is refused
  int32_t max_n = 16;
  int32_t max_stop = 8;       // stop strings per request
};

struct ApiContext {
  std::string model_id;
  std::shared_ptr<const Model> model;
  GenerationDefaults defaults;  // generation_config.json (or the GGUF's sampling metadata)
  ApiLimits limits;
};

// A checked request, ready for the engine.
struct ApiRequest {
  bool chat = true;
  std::vector<int32_t> prompt;
  SamplingParams params;
  int32_t n = 1;
  bool stream = false, include_usage = false;
  bool logprobs = false;
  int32_t top_logprobs = 0;
  bool reasoning = true;       // split <think>...</think> into reasoning_content (chat only)
  bool prompt_opens_thinking = false;
  bool echo = false;           // completions: the prompt's text before each completion
  std::string prompt_text;     // the rendered prompt
};

// Parses and checks a /v1/chat/completions (chat) or /v1/completions body. Throws ApiError(400)
// naming the field.
ApiRequest parse_request(const nlohmann::json& body, bool chat, const ApiContext& ctx);
// Parses a request body's text (400 for invalid JSON or a body that is not an object).
nlohmann::json parse_body(const std::string& text);

// OpenAI's finish_reason for an engine finish ("stop", "length"; a cancelled one "abort").
const char* finish_reason_name(FinishReason f);

// One token as reported in logprobs (chat: {token, logprob, bytes, top_logprobs}).
struct TokenLogprob {
  std::string token;
  float logprob = 0.0f;
  std::vector<std::pair<std::string, float>> top;
};
nlohmann::json chat_logprob_entry(const TokenLogprob& t);

// A new unique id ("chatcmpl-..." / "cmpl-...").
std::string new_completion_id(bool chat);

}  // namespace reason::serve
