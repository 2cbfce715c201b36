// generation_config.json: the sampling defaults a model ships with (DeepSeek-R1: do_sample true,
// temperature 0.6, top_p 0.95), which `reason generate` uses where the command line does not
// set a value, and `reason info` prints. Pure functions: safe from any thread.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace reason {

// The fields read, each empty when absent or null. Others (bos/eos ids, transformers_version,
// ...) are not sampling settings and are ignored.
struct GenerationDefaults {
  std::optional<bool> do_sample;      // false: greedy, as transformers' generate
  std::optional<double> temperature;  // >= 0
  std::optional<double> top_p;        // (0, 1]
  std::optional<int64_t> top_k;       // >= 0 (0: off)
  std::optional<double> min_p;        // [0, 1]
  std::optional<double> repetition_penalty;  // > 0
  std::optional<int64_t> max_new_tokens;    // > 0
};

// Reads <model_dir>/generation_config.json, or a GGUF file's general.sampling.* metadata when
// model_dir is a .gguf file; no file gives all fields empty. Throws reason::Error(Format) naming
// the file and the field for a wrong type or an out-of-range value.
GenerationDefaults read_generation_defaults(const std::string& model_dir);
// The same checks on a generation_config.json object; `path` names it in messages.
GenerationDefaults generation_defaults_from_json(const nlohmann::json& j, const std::string& path);

// The fields that are set, as a JSON object (for `reason info`).
nlohmann::json to_json(const GenerationDefaults& d);

}  // namespace reason
