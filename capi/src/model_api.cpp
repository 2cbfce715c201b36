// C ABI: model load/free/info, generation and scoring.
#include <algorithm>
#include <climits>
#include <cstddef>
#include <string>
#include <vector>

#include "model/generation_config.h"

#include "capi_internal.h"
#include "core/log.h"
#include "handles.h"

using reason::capi::guard;

namespace {

// Reads a versioned options struct: fields beyond the caller's struct_size keep defaults.
template <typename T>
T read_options(const T* in, const T& defaults) {
  T out = defaults;
  if (!in) return out;
  size_t n = in->struct_size < sizeof(T) ? in->struct_size : sizeof(T);
  std::memcpy(&out, in, n);
  out.struct_size = sizeof(T);
  return out;
}

}  // namespace

namespace reason::capi {

reason_sampling_options sampling_options_or_default(const reason_sampling_options* in) {
  return read_options(in, reason_sampling_options REASON_SAMPLING_OPTIONS_INIT);
}

reason::SamplingParams sampling_params(const reason_sampling_options& o) {
  reason::SamplingParams p;
  p.temperature = o.temperature;
  p.top_k = o.top_k;
  p.top_p = o.top_p;
  p.min_p = o.min_p;
  p.repetition_penalty = o.repetition_penalty;
  p.max_new_tokens = o.max_new_tokens;
  p.seed = o.seed;
  if (o.n_stop_token_ids && !o.stop_token_ids)
    reason::fail(reason::ErrorCode::InvalidArgument, "sampling: stop_token_ids is NULL but n_stop_token_ids = {}", o.n_stop_token_ids);
  p.stop_token_ids.assign(o.stop_token_ids, o.stop_token_ids + o.n_stop_token_ids);
  for (size_t i = 0; i < o.n_stop_strings; ++i) {
    if (!o.stop_strings || !o.stop_strings[i])
      reason::fail(reason::ErrorCode::InvalidArgument, "sampling: stop string {} is NULL", i);
    p.stop_strings.emplace_back(o.stop_strings[i]);
  }
  p.ignore_eos = o.ignore_eos != 0;
  return p;
}

}  // namespace reason::capi

namespace {

reason_status run_generation(reason_generation** out, const reason_model* model, std::vector<reason::GenRequest> reqs,
                             reason_token_callback callback, void* user_data) {
  auto gen = std::make_unique<reason_generation>();
  reason::TokenCallback cb;
  if (callback)
    cb = [&](size_t req, int32_t tok, float lp, std::string_view text) {
      std::string s(text);
      return callback(user_data, req, tok, lp, s.c_str()) == 0;
    };
  {
    reason::capi::ModelLock::Read read(*model->lock);
    gen->results = reason::generate(*model->model, reqs, cb);
  }
  for (const auto& r : gen->results) {
    reason_completion c{};
    c.token_ids = r.tokens.data();
    c.logprobs = r.logprobs.data();
    c.n_tokens = r.tokens.size();
    c.text = r.text.c_str();
    c.finish_reason = static_cast<reason_finish_reason>(static_cast<int>(r.finish));
    gen->views.push_back(c);
  }
  *out = gen.release();
  return REASON_OK;
}

}  // namespace

extern "C" {

REASON_API void reason_model_options_init(reason_model_options* opts) {
  if (opts) *opts = reason_model_options REASON_MODEL_OPTIONS_INIT;
}

REASON_API void reason_set_num_threads(int n) { reason::kernels::set_cpu_threads(n); }
REASON_API int reason_get_num_threads(void) { return reason::kernels::cpu_threads(); }
REASON_API void reason_set_thread_num_threads(int n) { reason::kernels::set_thread_cpu_threads(n); }

static_assert(int(reason::LogLevel::Debug) == REASON_LOG_DEBUG && int(reason::LogLevel::Info) == REASON_LOG_INFO &&
                  int(reason::LogLevel::Warning) == REASON_LOG_WARNING && int(reason::LogLevel::Error) == REASON_LOG_ERROR,
              "reason::LogLevel and reason_log_level differ");

REASON_API void reason_set_log_callback(reason_log_callback callback, void* user_data) {
  if (!callback) {
    reason::set_log_sink({});
    return;
  }
  reason::set_log_sink([callback, user_data](reason::LogLevel level, std::string_view message) {
    const std::string m(message);
    callback(user_data, static_cast<reason_log_level>(static_cast<int>(level)), m.c_str());
  });
}

REASON_API reason_status reason_model_load(reason_model** out, const char* dir, const reason_model_options* opts) {
  return reason_model_load_on(out, dir, opts, REASON_DEVICE_CPU, REASON_DTYPE_AUTO);
}

REASON_API reason_status reason_model_load_on(reason_model** out, const char* dir, const reason_model_options* opts,
                                              reason_device device, reason_dtype kv_dtype) {
  return reason_model_load_quantized(out, dir, opts, device, kv_dtype, REASON_QUANT_NONE);
}

REASON_API reason_status reason_model_load_quantized(reason_model** out, const char* dir,
                                                     const reason_model_options* opts, reason_device device,
                                                     reason_dtype kv_dtype, reason_weight_quant quantize) {
  return reason_model_load_adapter(out, dir, nullptr, opts, device, kv_dtype, quantize);
}

REASON_API reason_status reason_model_load_adapter(reason_model** out, const char* dir, const char* adapter_dir,
                                                   const reason_model_options* opts, reason_device device,
                                                   reason_dtype kv_dtype, reason_weight_quant quantize) {
  REASON_CHECK_ARG(out, "reason_model_load", "out is NULL");
  REASON_CHECK_ARG(dir, "reason_model_load", "dir is NULL");
  REASON_CHECK_ARG(!opts || opts->struct_size >= sizeof(uint32_t), "reason_model_load", "opts->struct_size is not set");
  return guard("reason_model_load", [&] {
    const reason_model_options o = read_options(opts, reason_model_options REASON_MODEL_OPTIONS_INIT);
    reason::LoadOptions lo;
    switch (o.compute_dtype) {
      case REASON_DTYPE_AUTO:
      case REASON_DTYPE_F32: lo.compute_dtype = reason::DType::F32; break;
      case REASON_DTYPE_BF16: lo.compute_dtype = reason::DType::BF16; break;
      default: reason::fail(reason::ErrorCode::InvalidArgument, "unknown compute_dtype {}", int(o.compute_dtype));
    }
    switch (kv_dtype) {
      case REASON_DTYPE_AUTO: break;
      case REASON_DTYPE_F32: lo.kv_dtype = reason::DType::F32; break;
      case REASON_DTYPE_BF16: lo.kv_dtype = reason::DType::BF16; break;
      default: reason::fail(reason::ErrorCode::InvalidArgument, "unknown kv_dtype {}", int(kv_dtype));
    }
    switch (device) {
      case REASON_DEVICE_CPU: lo.device = reason::Device::Cpu; break;
      case REASON_DEVICE_CUDA: lo.device = reason::Device::Cuda; break;
      default: reason::fail(reason::ErrorCode::InvalidArgument, "unknown device {}", int(device));
    }
    switch (quantize) {
      case REASON_QUANT_STORED: lo.quantize = reason::WeightQuant::AsStored; break;
      case REASON_QUANT_NONE: lo.quantize = reason::WeightQuant::None; break;
      case REASON_QUANT_Q8_0: lo.quantize = reason::WeightQuant::Q8_0; break;
      case REASON_QUANT_Q4_K: lo.quantize = reason::WeightQuant::Q4_K_M; break;
      default: reason::fail(reason::ErrorCode::InvalidArgument, "unknown weight quantisation {}", int(quantize));
    }
    lo.load_tokenizer = o.load_tokenizer != 0;
    if (adapter_dir) lo.adapter = adapter_dir;
    auto m = std::make_unique<reason_model>();
    m->model = reason::Model::load(dir, lo);
    m->tokenizer.tok = m->model->tokenizer();
    *out = m.release();
  });
}

REASON_API reason_status reason_model_save_adapter(const reason_model* model, const char* dir) {
  REASON_CHECK_ARG(model && model->model, "reason_model_save_adapter", "model is NULL");
  REASON_CHECK_ARG(dir && *dir, "reason_model_save_adapter", "dir is NULL or empty");
  return guard("reason_model_save_adapter", [&] {
    reason::capi::ModelLock::Read read(*model->lock);
    model->model->save_adapter(dir);
  });
}

REASON_API int64_t reason_model_adapter_modules(const reason_model* model) {
  if (!model || !model->model || !model->model->adapter()) return 0;
  return int64_t(model->model->adapter_parameters().size() / 2);
}

REASON_API const char* reason_model_quantized_weights(const reason_model* model) {
  if (!model || !model->model) return nullptr;
  const std::optional<reason::DType> q = model->model->quantized_weights();
  if (!q) return nullptr;
  switch (*q) {  // ggml's names
    case reason::DType::Q8_0: return "Q8_0";
    case reason::DType::Q4_0: return "Q4_0";
    case reason::DType::Q4_1: return "Q4_1";
    case reason::DType::Q4_K: return "Q4_K";
    case reason::DType::Q5_K: return "Q5_K";
    case reason::DType::Q6_K: return "Q6_K";
    case reason::DType::Q5_0: return "Q5_0";
    case reason::DType::Q5_1: return "Q5_1";
    default: return "?";
  }
}

REASON_API void reason_model_free(reason_model* model) { delete model; }

REASON_API const reason_tokenizer* reason_model_tokenizer(const reason_model* model) {
  return model && model->tokenizer.tok ? &model->tokenizer : nullptr;
}

REASON_API reason_status reason_model_get_info(reason_model_info* out, const reason_model* model) {
  REASON_CHECK_ARG(out, "reason_model_get_info", "out is NULL");
  REASON_CHECK_ARG(model && model->model, "reason_model_get_info", "model is NULL");
  REASON_CHECK_ARG(out->struct_size >= sizeof(uint32_t), "reason_model_get_info", "out->struct_size is not set");
  return guard("reason_model_get_info", [&] {
    const auto& c = model->model->config();
    reason_model_info i{};
    i.struct_size = sizeof(reason_model_info);
    i.architecture = c.architecture.c_str();
    i.vocab_size = int32_t(c.vocab_size);
    i.hidden_size = int32_t(c.hidden_size);
    i.n_layers = int32_t(c.n_layers);
    i.n_heads = int32_t(c.n_heads);
    i.n_kv_heads = int32_t(c.n_kv_heads);
    i.head_dim = int32_t(c.head_dim);
    i.max_position_embeddings = int32_t(c.max_position_embeddings);
    i.n_params = model->model->n_params();
    i.kv_bytes_per_token = model->model->kv_bytes_per_token();
    i.compute_dtype = model->model->compute_dtype() == reason::DType::BF16 ? REASON_DTYPE_BF16 : REASON_DTYPE_F32;
    i.n_experts = int32_t(c.n_experts);
    i.n_experts_per_tok = int32_t(c.n_experts_per_tok);
    for (int64_t l = 0; l < c.n_layers; ++l) i.n_moe_layers += c.is_moe_layer(l) ? 1 : 0;
    i.n_mtp_modules = int32_t(model->model->n_mtp_modules());
    i.mla = c.mla ? 1 : 0;
    i.kv_dtype = model->model->kv_dtype() == reason::DType::BF16 ? REASON_DTYPE_BF16 : REASON_DTYPE_F32;
    const size_t n = out->struct_size < sizeof(i) ? out->struct_size : sizeof(i);
    const uint32_t caller_size = out->struct_size;
    std::memcpy(out, &i, n);
    out->struct_size = caller_size;
  });
}

REASON_API reason_device reason_model_device(const reason_model* model) {
  if (!model || !model->model) return REASON_DEVICE_CPU;
  return model->model->backend().kind() == reason::kernels::DeviceKind::CUDA ? REASON_DEVICE_CUDA : REASON_DEVICE_CPU;
}

REASON_API reason_status reason_model_expert_load(int64_t* out_counts, size_t n_counts, const reason_model* model,
                                                  const int32_t* ids, size_t n) {
  REASON_CHECK_ARG(out_counts, "reason_model_expert_load", "out_counts is NULL");
  REASON_CHECK_ARG(model && model->model, "reason_model_expert_load", "model is NULL");
  REASON_CHECK_ARG(ids || n == 0, "reason_model_expert_load", "ids is NULL");
  return guard("reason_model_expert_load", [&] {
    const auto& c = model->model->config();
    const size_t need = size_t(c.n_layers * c.n_experts);
    if (n_counts < need)
      reason::fail(reason::ErrorCode::InvalidArgument, "out_counts has room for {} values but {} layers x {} experts = {}",
                   n_counts, c.n_layers, c.n_experts, need);
    reason::capi::ModelLock::Read read(*model->lock);
    std::vector<int64_t> load = reason::expert_load(*model->model, std::span<const int32_t>(ids, n));
    std::memcpy(out_counts, load.data(), load.size() * sizeof(int64_t));
  });
}

REASON_API void reason_sampling_options_init(reason_sampling_options* opts) {
  if (opts) *opts = reason_sampling_options REASON_SAMPLING_OPTIONS_INIT;
}

REASON_API reason_status reason_sampling_options_from_model(reason_sampling_options* opts, const reason_model* model) {
  REASON_CHECK_ARG(opts, "reason_sampling_options_from_model", "opts is NULL");
  REASON_CHECK_ARG(model && model->model, "reason_sampling_options_from_model", "model is NULL");
  REASON_CHECK_ARG(opts->struct_size >= offsetof(reason_sampling_options, max_new_tokens) + sizeof(int32_t),
                   "reason_sampling_options_from_model", "opts->struct_size is too small (call reason_sampling_options_init)");
  return guard("reason_sampling_options_from_model", [&] {
    const reason::Model& m = *model->model;
    const auto& derived = m.derived_files();  // a GGUF's settings, read when it was loaded
    const auto it = derived.find("generation_config.json");
    const reason::GenerationDefaults d =
        it != derived.end() ? reason::generation_defaults_from_json(nlohmann::json::parse(it->second), m.dir())
        : derived.empty()   ? reason::read_generation_defaults(m.dir())
                            : reason::GenerationDefaults{};
    if (d.temperature) opts->temperature = float(*d.temperature);
    if (d.do_sample && !*d.do_sample) opts->temperature = 0.0f;  // transformers: do_sample false is greedy
    if (d.top_p) opts->top_p = float(*d.top_p);
    if (d.top_k) opts->top_k = int32_t(std::min<int64_t>(*d.top_k, INT32_MAX));
    if (d.min_p) opts->min_p = float(*d.min_p);
    if (d.repetition_penalty) opts->repetition_penalty = float(*d.repetition_penalty);
    if (d.max_new_tokens) opts->max_new_tokens = int32_t(std::min<int64_t>(*d.max_new_tokens, INT32_MAX));
  });
}

REASON_API void reason_sampling_options_r1(reason_sampling_options* opts) {
  if (!opts) return;
  *opts = reason_sampling_options REASON_SAMPLING_OPTIONS_INIT;
  opts->temperature = 0.6f;
  opts->top_p = 0.95f;
  opts->max_new_tokens = 32768;
}

REASON_API reason_status reason_generate(reason_generation** out, const reason_model* model,
                                         const int32_t* const* prompts, const size_t* prompt_lens, size_t n_prompts,
                                         const reason_sampling_options* opts, reason_token_callback callback,
                                         void* user_data) {
  REASON_CHECK_ARG(out, "reason_generate", "out is NULL");
  REASON_CHECK_ARG(model && model->model, "reason_generate", "model is NULL");
  REASON_CHECK_ARG(n_prompts == 0 || (prompts && prompt_lens), "reason_generate", "prompts or prompt_lens is NULL");
  REASON_CHECK_ARG(!opts || opts->struct_size >= sizeof(uint32_t), "reason_generate", "opts->struct_size is not set");
  return guard("reason_generate", [&] {
    const reason_sampling_options o = read_options(opts, reason_sampling_options REASON_SAMPLING_OPTIONS_INIT);
    const reason::SamplingParams base = reason::capi::sampling_params(o);
    std::vector<reason::GenRequest> reqs(n_prompts);
    for (size_t i = 0; i < n_prompts; ++i) {
      if (!prompts[i] && prompt_lens[i]) reason::fail(reason::ErrorCode::InvalidArgument, "prompt {} is NULL", i);
      reqs[i].prompt.assign(prompts[i], prompts[i] + prompt_lens[i]);
      reqs[i].params = base;
      reqs[i].params.seed = base.seed + i;
    }
    run_generation(out, model, std::move(reqs), callback, user_data);
  });
}

REASON_API reason_status reason_generate_text(reason_generation** out, const reason_model* model,
                                              const char* const* prompts, size_t n_prompts,
                                              const reason_sampling_options* opts, reason_token_callback callback,
                                              void* user_data) {
  REASON_CHECK_ARG(out, "reason_generate_text", "out is NULL");
  REASON_CHECK_ARG(model && model->model, "reason_generate_text", "model is NULL");
  REASON_CHECK_ARG(model->tokenizer.tok, "reason_generate_text", "the model was loaded without a tokenizer");
  REASON_CHECK_ARG(n_prompts == 0 || prompts, "reason_generate_text", "prompts is NULL");
  REASON_CHECK_ARG(!opts || opts->struct_size >= sizeof(uint32_t), "reason_generate_text", "opts->struct_size is not set");
  return guard("reason_generate_text", [&] {
    const reason_sampling_options o = read_options(opts, reason_sampling_options REASON_SAMPLING_OPTIONS_INIT);
    const reason::SamplingParams base = reason::capi::sampling_params(o);
    std::vector<reason::GenRequest> reqs(n_prompts);
    for (size_t i = 0; i < n_prompts; ++i) {
      if (!prompts[i]) reason::fail(reason::ErrorCode::InvalidArgument, "prompt {} is NULL", i);
      reqs[i].prompt = model->tokenizer.tok->encode(prompts[i], true);
      reqs[i].params = base;
      reqs[i].params.seed = base.seed + i;
    }
    run_generation(out, model, std::move(reqs), callback, user_data);
  });
}

REASON_API size_t reason_generation_count(const reason_generation* gen) { return gen ? gen->views.size() : 0; }

REASON_API const reason_completion* reason_generation_get(const reason_generation* gen, size_t i) {
  if (!gen || i >= gen->views.size()) return nullptr;
  return &gen->views[i];
}

REASON_API void reason_generation_free(reason_generation* gen) { delete gen; }

REASON_API reason_status reason_score(float* out_logprobs, const reason_model* model, const int32_t* ids, size_t n) {
  REASON_CHECK_ARG(out_logprobs, "reason_score", "out_logprobs is NULL");
  REASON_CHECK_ARG(model && model->model, "reason_score", "model is NULL");
  REASON_CHECK_ARG(ids, "reason_score", "ids is NULL");
  return guard("reason_score", [&] {
    reason::capi::ModelLock::Read read(*model->lock);
    std::vector<float> lp = reason::score(*model->model, std::span<const int32_t>(ids, n));
    std::memcpy(out_logprobs, lp.data(), lp.size() * sizeof(float));
  });
}

}  // extern "C"
