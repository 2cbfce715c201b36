#include "model/lora.h"

#include <cmath>
#include <filesystem>
#include <regex>

#include "core/error.h"
#include "io/json_file.h"

namespace reason {

namespace {

// PEFT's get_pattern_key: re.match(rf"(.*\.)?({key})$", module).
bool pattern_matches(const std::string& key, const std::string& module) {
  try {
    return std::regex_match(module, std::regex("(.*\\.)?(" + key + ")"));
  } catch (const std::regex_error&) {
    fail(ErrorCode::InvalidArgument, "LoRA: pattern '{}' is not a valid regular expression", key);
  }
}

template <typename T>
const T* value_of(const std::vector<std::pair<std::string, T>>& patterns, const std::string& key) {
  for (const auto& [k, v] : patterns)
    if (k == key) return &v;
  return nullptr;
}

}  // namespace

bool LoraSpec::targets(const std::string& module) const {
  if (all_linear) return true;
  if (!target_regex.empty()) {
    try {
      return std::regex_match(module, std::regex(target_regex));
    } catch (const std::regex_error&) {
      fail(ErrorCode::InvalidArgument, "LoRA: target_modules '{}' is not a valid regular expression", target_regex);
    }
  }
  for (const std::string& t : target_modules)
    if (module == t || (module.size() > t.size() && module.compare(module.size() - t.size(), t.size(), t) == 0 &&
                        module[module.size() - t.size() - 1] == '.'))
      return true;
  return false;
}

std::string LoraSpec::pattern_key(const std::string& module) const {
  for (const auto& [key, v] : rank_pattern)
    if (pattern_matches(key, module)) return key;
  for (const auto& [key, v] : alpha_pattern)
    if (pattern_matches(key, module)) return key;
  return "";
}

int64_t LoraSpec::rank_of(const std::string& module) const {
  const int64_t* p = value_of(rank_pattern, pattern_key(module));
  return p ? *p : r;
}

float LoraSpec::scale_of(const std::string& module) const {
  const float* a = value_of(alpha_pattern, pattern_key(module));
  const float al = a ? *a : alpha;
  const int64_t rk = rank_of(module);
  return use_rslora ? al / std::sqrt(float(rk)) : al / float(rk);
}

LoraSpec lora_spec_from_json(const nlohmann::ordered_json& j, const std::string& where) {
  if (!j.is_object()) fail(ErrorCode::Format, "{}: not a JSON object", where);
  auto get = [&](const char* key) -> const nlohmann::ordered_json* {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  auto refuse_if = [&](bool bad, const char* field, const char* why) {
    if (bad) fail(ErrorCode::Unsupported, "{}: {} {}", where, field, why);
  };
  try {
    LoraSpec s;
    if (const auto* t = get("peft_type")) refuse_if(*t != "LORA", "peft_type", "is not LORA");
    if (const auto* v = get("use_dora")) refuse_if(v->get<bool>(), "use_dora", "(DoRA) is not supported");
    if (const auto* v = get("fan_in_fan_out")) refuse_if(v->get<bool>(), "fan_in_fan_out", "is not supported");
    if (const auto* v = get("bias")) refuse_if(*v != "none", "bias", "must be \"none\"");
    if (const auto* v = get("modules_to_save")) refuse_if(!v->empty(), "modules_to_save", "is not supported");
    refuse_if(get("layers_to_transform") != nullptr, "layers_to_transform", "is not supported");
    if (const auto* v = get("trainable_token_indices")) refuse_if(!v->empty(), "trainable_token_indices", "is not supported");
    if (const auto* v = get("target_parameters")) refuse_if(!v->empty(), "target_parameters", "is not supported");
    if (const auto* v = get("r")) s.r = v->get<int64_t>();
    if (const auto* v = get("lora_alpha")) s.alpha = v->get<float>();
    if (const auto* v = get("lora_dropout")) s.dropout = v->get<float>();
    if (const auto* v = get("use_rslora")) s.use_rslora = v->get<bool>();
    if (const auto* t = get("target_modules")) {
      if (t->is_string()) {
        const std::string v = t->get<std::string>();
        if (v == "all-linear") s.all_linear = true;
        else s.target_regex = v;
      } else {
        s.target_modules = t->get<std::vector<std::string>>();
      }
    }
    if (const auto* p = get("rank_pattern"))
      for (const auto& [k, v] : p->items()) s.rank_pattern.emplace_back(k, v.get<int64_t>());
    if (const auto* p = get("alpha_pattern"))
      for (const auto& [k, v] : p->items()) s.alpha_pattern.emplace_back(k, v.get<float>());
    if (s.r <= 0) fail(ErrorCode::InvalidArgument, "{}: r must be > 0 (got {})", where, s.r);
    for (const auto& [k, v] : s.rank_pattern)
      if (v <= 0) fail(ErrorCode::InvalidArgument, "{}: rank_pattern[{}] must be > 0 (got {})", where, k, v);
    if (!std::isfinite(s.alpha)) fail(ErrorCode::InvalidArgument, "{}: lora_alpha is not finite", where);
    if (!(s.dropout >= 0.0f && s.dropout < 1.0f)) fail(ErrorCode::InvalidArgument, "{}: lora_dropout must be in [0, 1)", where);
    return s;
  } catch (const nlohmann::ordered_json::exception& e) {
    fail(ErrorCode::Format, "{}: a field has the wrong type ({})", where, e.what());
  }
}

nlohmann::ordered_json lora_spec_to_json(const LoraSpec& s, const std::vector<std::string>& modules, const std::string& base) {
  nlohmann::ordered_json j;
  j["peft_type"] = "LORA";
  j["task_type"] = "CAUSAL_LM";
  j["base_model_name_or_path"] = base;
  j["r"] = s.r;
  j["lora_alpha"] = s.alpha;
  j["lora_dropout"] = s.dropout;
  j["use_rslora"] = s.use_rslora;
  j["use_dora"] = false;
  j["fan_in_fan_out"] = false;
  j["bias"] = "none";
  j["init_lora_weights"] = true;
  j["inference_mode"] = true;
  j["modules_to_save"] = nullptr;
  j["target_modules"] = modules;
  j["rank_pattern"] = nlohmann::ordered_json::object();  // in order: PEFT tries the keys in it
  for (const auto& [k, v] : s.rank_pattern) j["rank_pattern"][k] = v;
  j["alpha_pattern"] = nlohmann::ordered_json::object();
  for (const auto& [k, v] : s.alpha_pattern) j["alpha_pattern"][k] = v;
  return j;
}

std::optional<std::string> adapter_base_model(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec) || !fs::exists(fs::path(dir) / "adapter_config.json", ec) ||
      fs::exists(fs::path(dir) / "config.json", ec))
    return std::nullopt;
  const std::string path = (fs::path(dir) / "adapter_config.json").string();
  const nlohmann::json j = read_json_file(path);
  auto it = j.find("base_model_name_or_path");
  if (it == j.end() || !it->is_string() || it->get<std::string>().empty())
    fail(ErrorCode::Format, "{}: a LoRA adapter without base_model_name_or_path; load its base with this adapter", path);
  fs::path base = it->get<std::string>();
  if (base.is_relative()) base = fs::path(dir) / base;
  if (!fs::exists(base, ec))
    fail(ErrorCode::Io, "{}: the adapter's base model {} does not exist; load the base with this adapter", path, base.string());
  return base.string();
}

std::string peft_lora_a_name(const std::string& module) { return "base_model.model." + module + ".lora_A.weight"; }
std::string peft_lora_b_name(const std::string& module) { return "base_model.model." + module + ".lora_B.weight"; }

}  // namespace reason
