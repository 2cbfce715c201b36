#include "model/generation_config.h"

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "io/gguf.h"
#include "io/json_file.h"
#include "model/gguf_model.h"

namespace reason {

namespace {

using nlohmann::json;

const json* field(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::optional<double> number(const json& j, const char* key, const std::string& src, double lo, double hi, bool lo_open) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) fail(ErrorCode::Format, "{}: '{}' must be a number (got {})", src, key, v->dump());
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || (lo_open && x == lo) || x > hi)
    fail(ErrorCode::Format, "{}: '{}' = {} is out of range ({}{}, {}]", src, key, x, lo_open ? "(" : "[", lo, hi);
  return x;
}

std::optional<int64_t> integer(const json& j, const char* key, const std::string& src, int64_t lo) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) fail(ErrorCode::Format, "{}: '{}' must be an integer (got {})", src, key, v->dump());
  const int64_t x = v->get<int64_t>();
  if (x < lo) fail(ErrorCode::Format, "{}: '{}' = {} must be >= {}", src, key, x, lo);
  return x;
}

}  // namespace

GenerationDefaults generation_defaults_from_json(const nlohmann::json& j, const std::string& path) {
  GenerationDefaults d;
  if (!j.is_object()) fail(ErrorCode::Format, "{}: not a JSON object", path);
  if (const json* v = field(j, "do_sample")) {
    if (!v->is_boolean()) fail(ErrorCode::Format, "{}: 'do_sample' must be true or false (got {})", path, v->dump());
    d.do_sample = v->get<bool>();
  }
  d.temperature = number(j, "temperature", path, 0.0, 1e6, false);
  d.top_p = number(j, "top_p", path, 0.0, 1.0, true);
  d.top_k = integer(j, "top_k", path, 0);
  d.min_p = number(j, "min_p", path, 0.0, 1.0, false);
  d.repetition_penalty = number(j, "repetition_penalty", path, 0.0, 1e6, true);
  d.max_new_tokens = integer(j, "max_new_tokens", path, 1);
  return d;
}

GenerationDefaults read_generation_defaults(const std::string& model_dir) {
  if (is_gguf_file(model_dir))
    return generation_defaults_from_json(gguf_generation_config(*GgufFile::open(model_dir)), model_dir + " (general.sampling)");
  const std::string path = (std::filesystem::path(model_dir) / "generation_config.json").string();
  if (!std::filesystem::is_regular_file(path)) return GenerationDefaults{};
  return generation_defaults_from_json(read_json_file(path, size_t(1) << 20), path);
}

nlohmann::json to_json(const GenerationDefaults& d) {
  json j = json::object();
  if (d.do_sample) j["do_sample"] = *d.do_sample;
  if (d.temperature) j["temperature"] = *d.temperature;
  if (d.top_p) j["top_p"] = *d.top_p;
  if (d.top_k) j["top_k"] = *d.top_k;
  if (d.min_p) j["min_p"] = *d.min_p;
  if (d.repetition_penalty) j["repetition_penalty"] = *d.repetition_penalty;
  if (d.max_new_tokens) j["max_new_tokens"] = *d.max_new_tokens;
  return j;
}

}  // namespace reason
