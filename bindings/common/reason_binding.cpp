#include "reason_binding.h"

#include <cmath>
#include <cstring>
#include <exception>

namespace reason_binding {

namespace {

Status status_of(reason_status s) {
  Status st;
  st.code = int(s);
  if (s != REASON_OK) st.message = reason_last_error();
  return st;
}

Status error(int code, const std::string& message) { return Status{code, message}; }

// The C options struct for `o`; the vectors it points into must outlive the call.
struct COptions {
  reason_sampling_options c = REASON_SAMPLING_OPTIONS_INIT;
  std::vector<const char*> stops;
  explicit COptions(const SamplingOptions& o) {
    c.temperature = o.temperature;
    c.top_k = o.top_k;
    c.top_p = o.top_p;
    c.min_p = o.min_p;
    c.repetition_penalty = o.repetition_penalty;
    c.max_new_tokens = o.max_new_tokens;
    c.seed = uint64_t(o.seed);
    c.stop_token_ids = o.stop_token_ids.empty() ? nullptr : o.stop_token_ids.data();
    c.n_stop_token_ids = o.stop_token_ids.size();
    for (const auto& s : o.stop_strings) stops.push_back(s.c_str());
    c.stop_strings = stops.empty() ? nullptr : stops.data();
    c.n_stop_strings = stops.size();
    c.ignore_eos = o.ignore_eos ? 1 : 0;
  }
};

int token_trampoline(void* user, size_t request, int32_t token, float logprob, const char* text) {
  auto* h = static_cast<TokenHandler*>(user);
  try {
    return h->on_token(int64_t(request), token, logprob, text) ? 0 : 1;
  } catch (...) {
    return 1;  // a handler that throws stops its request
  }
}

CompletionsResult collect(reason_status s, reason_generation* gen) {
  CompletionsResult r;
  r.status = status_of(s);
  if (s != REASON_OK) return r;
  for (size_t i = 0; i < reason_generation_count(gen); ++i) {
    const reason_completion* c = reason_generation_get(gen, i);
    Completion out;
    out.token_ids.assign(c->token_ids, c->token_ids + c->n_tokens);
    out.logprobs.assign(c->logprobs, c->logprobs + c->n_tokens);
    out.text = c->text;
    out.finish_reason = int(c->finish_reason);
    r.completions.push_back(std::move(out));
  }
  reason_generation_free(gen);
  return r;
}

}  // namespace

std::string version() { return reason_version(); }
int version_major() {
  int a = 0, b = 0, c = 0;
  reason_version_numbers(&a, &b, &c);
  return a;
}
int version_minor() {
  int a = 0, b = 0, c = 0;
  reason_version_numbers(&a, &b, &c);
  return b;
}
int version_patch() {
  int a = 0, b = 0, c = 0;
  reason_version_numbers(&a, &b, &c);
  return c;
}
int binding_version_major() { return REASON_VERSION_MAJOR; }
std::string status_name(int code) { return reason_status_name(reason_status(code)); }
void set_num_threads(int n) { reason_set_num_threads(n); }
void set_thread_num_threads(int n) { reason_set_thread_num_threads(n); }
int num_threads() { return reason_get_num_threads(); }

void mpi_finalize() { reason_mpi_finalize(); }

SamplingResult Model::sampling_defaults(const SamplingOptions& base) const {
  SamplingResult r;
  r.options = base;
  COptions c(base);
  r.status = status_of(reason_sampling_options_from_model(&c.c, m_));
  if (r.status.code != 0) return r;
  r.options.temperature = c.c.temperature;
  r.options.top_k = c.c.top_k;
  r.options.top_p = c.c.top_p;
  r.options.min_p = c.c.min_p;
  r.options.repetition_penalty = c.c.repetition_penalty;
  r.options.max_new_tokens = c.c.max_new_tokens;
  return r;
}

SamplingOptions SamplingOptions::r1() {
  SamplingOptions o;
  o.temperature = 0.6f;
  o.top_p = 0.95f;
  return o;
}

// ---- Tokenizer -------------------------------------------------------------------------------

Tokenizer::~Tokenizer() { close(); }

void Tokenizer::close() {
  if (owned_ && tok_) reason_tokenizer_free(const_cast<reason_tokenizer*>(tok_));
  tok_ = nullptr;
  owned_ = false;
}

void Tokenizer::borrow(const reason_tokenizer* t) {
  close();
  tok_ = t;
}

Status Tokenizer::load(const std::string& path) {
  close();
  reason_tokenizer* t = nullptr;
  Status s = status_of(reason_tokenizer_load(&t, path.c_str()));
  if (s.ok()) {
    tok_ = t;
    owned_ = true;
  }
  return s;
}

IdsResult Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  IdsResult r;
  if (!tok_) return {error(REASON_ERR_INVALID_ARGUMENT, "tokenizer is closed"), {}};
  int32_t* ids = nullptr;
  size_t n = 0;
  r.status = status_of(reason_tokenizer_encode(&ids, &n, tok_, text.data(), text.size(), add_special_tokens));
  if (r.status.ok()) r.ids.assign(ids, ids + n);
  reason_free(ids);
  return r;
}

TextResult Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  TextResult r;
  if (!tok_) return {error(REASON_ERR_INVALID_ARGUMENT, "tokenizer is closed"), {}};
  char* text = nullptr;
  r.status = status_of(reason_tokenizer_decode(&text, tok_, ids.data(), ids.size(), skip_special_tokens));
  if (r.status.ok()) r.text = text;
  reason_free(text);
  return r;
}

TextResult Tokenizer::chat_prompt(const std::string& user, const std::string& system) const {
  TextResult r;
  if (!tok_) return {error(REASON_ERR_INVALID_ARGUMENT, "tokenizer is closed"), {}};
  std::vector<reason_chat_message> msgs;
  if (!system.empty()) msgs.push_back({"system", system.c_str()});
  msgs.push_back({"user", user.c_str()});
  char* text = nullptr;
  r.status = status_of(reason_tokenizer_apply_chat(&text, tok_, msgs.data(), msgs.size(), 1, REASON_CHAT_AUTO));
  if (r.status.ok()) r.text = text;
  reason_free(text);
  return r;
}

int32_t Tokenizer::vocab_size() const { return tok_ ? reason_tokenizer_vocab_size(tok_) : 0; }

// ---- Model -------------------------------------------------------------------------------------

Model::~Model() { close(); }

void Model::close() {
  reason_model_free(m_);
  m_ = nullptr;
}

Status Model::load(const std::string& dir, const std::string& dtype) { return load_on(dir, dtype, "cpu", "auto"); }

Status Model::load_on(const std::string& dir, const std::string& dtype, const std::string& device,
                      const std::string& kv_dtype) {
  return load_quantized(dir, dtype, device, kv_dtype, "none");
}

Status Model::load_quantized(const std::string& dir, const std::string& dtype, const std::string& device,
                             const std::string& kv_dtype, const std::string& quantize) {
  return load_adapter(dir, "", dtype, device, kv_dtype, quantize);
}

Status Model::save_adapter(const std::string& dir) const {
  if (!m_) return error(REASON_ERR_INVALID_ARGUMENT, "model is closed");
  return status_of(reason_model_save_adapter(m_, dir.c_str()));
}

Status Model::load_adapter(const std::string& dir, const std::string& adapter_dir, const std::string& dtype,
                           const std::string& device, const std::string& kv_dtype, const std::string& quantize) {
  close();
  reason_model_options o = REASON_MODEL_OPTIONS_INIT;
  if (dtype == "bf16")
    o.compute_dtype = REASON_DTYPE_BF16;
  else if (dtype == "f32" || dtype.empty())
    o.compute_dtype = REASON_DTYPE_F32;
  else
    return error(REASON_ERR_INVALID_ARGUMENT, "dtype must be \"f32\" or \"bf16\" (got \"" + dtype + "\")");
  reason_device dev = REASON_DEVICE_CPU;
  if (device == "cuda")
    dev = REASON_DEVICE_CUDA;
  else if (device != "cpu" && !device.empty())
    return error(REASON_ERR_INVALID_ARGUMENT, "device must be \"cpu\" or \"cuda\" (got \"" + device + "\")");
  reason_dtype kv = REASON_DTYPE_AUTO;
  if (kv_dtype == "f32")
    kv = REASON_DTYPE_F32;
  else if (kv_dtype == "bf16")
    kv = REASON_DTYPE_BF16;
  else if (kv_dtype != "auto" && !kv_dtype.empty())
    return error(REASON_ERR_INVALID_ARGUMENT, "kv_dtype must be \"auto\", \"f32\" or \"bf16\" (got \"" + kv_dtype + "\")");
  reason_weight_quant q = REASON_QUANT_NONE;
  if (quantize == "stored")
    q = REASON_QUANT_STORED;
  else if (quantize == "q8_0")
    q = REASON_QUANT_Q8_0;
  else if (quantize == "q4_k")
    q = REASON_QUANT_Q4_K;
  else if (quantize != "none" && !quantize.empty())
    return error(REASON_ERR_INVALID_ARGUMENT,
                 "quantize must be \"none\", \"stored\", \"q8_0\" or \"q4_k\" (got \"" + quantize + "\")");
  return status_of(reason_model_load_adapter(&m_, dir.c_str(), adapter_dir.empty() ? nullptr : adapter_dir.c_str(), &o, dev,
                                             kv, q));
}

ModelInfo Model::info() const {
  ModelInfo out;
  if (!m_) return out;
  reason_model_info i{};
  i.struct_size = sizeof i;
  if (reason_model_get_info(&i, m_) != REASON_OK) return out;
  out.architecture = i.architecture ? i.architecture : "";
  out.vocab_size = i.vocab_size;
  out.hidden_size = i.hidden_size;
  out.num_layers = i.n_layers;
  out.num_params = i.n_params;
  out.num_experts = i.n_experts;
  out.device = reason_model_device(m_) == REASON_DEVICE_CUDA ? "cuda" : "cpu";
  out.kv_dtype = i.kv_dtype == REASON_DTYPE_BF16 ? "bf16" : "f32";
  const char* q = reason_model_quantized_weights(m_);
  out.quantized_weights = q ? q : "";
  out.adapter_modules = reason_model_adapter_modules(m_);
  return out;
}

Status Model::tokenizer(Tokenizer& out) const {
  if (!m_) return error(REASON_ERR_INVALID_ARGUMENT, "model is closed");
  const reason_tokenizer* t = reason_model_tokenizer(m_);
  if (!t) return error(REASON_ERR_INVALID_ARGUMENT, "the model has no tokenizer.json");
  out.borrow(t);
  return {};
}

CompletionsResult Model::generate(const std::vector<std::string>& prompts, const SamplingOptions& opts,
                                  TokenHandler* handler) const {
  if (!m_) return {error(REASON_ERR_INVALID_ARGUMENT, "model is closed"), {}};
  COptions o(opts);
  std::vector<const char*> ps;
  for (const auto& p : prompts) ps.push_back(p.c_str());
  reason_generation* gen = nullptr;
  reason_status s = reason_generate_text(&gen, m_, ps.data(), ps.size(), &o.c, handler ? token_trampoline : nullptr,
                                         handler);
  return collect(s, gen);
}

CompletionsResult Model::generate_ids(const std::vector<std::vector<int32_t>>& prompts, const SamplingOptions& opts,
                                      TokenHandler* handler) const {
  if (!m_) return {error(REASON_ERR_INVALID_ARGUMENT, "model is closed"), {}};
  COptions o(opts);
  std::vector<const int32_t*> ps;
  std::vector<size_t> lens;
  for (const auto& p : prompts) {
    ps.push_back(p.data());
    lens.push_back(p.size());
  }
  reason_generation* gen = nullptr;
  reason_status s = reason_generate(&gen, m_, ps.data(), lens.data(), ps.size(), &o.c,
                                    handler ? token_trampoline : nullptr, handler);
  return collect(s, gen);
}

FloatsResult Model::score(const std::vector<int32_t>& ids) const {
  FloatsResult r;
  if (!m_) return {error(REASON_ERR_INVALID_ARGUMENT, "model is closed"), {}};
  if (ids.size() < 2) return {error(REASON_ERR_INVALID_ARGUMENT, "score needs at least 2 token ids"), {}};
  r.values.resize(ids.size() - 1);
  r.status = status_of(reason_score(r.values.data(), m_, ids.data(), ids.size()));
  if (!r.status.ok()) r.values.clear();
  return r;
}

// ---- Stream ------------------------------------------------------------------------------------

Stream::~Stream() { close(); }

void Stream::close() {
  reason_stream_free(s_);
  s_ = nullptr;
}

Status Stream::start(const Model& model, const std::string& prompt, const SamplingOptions& opts) {
  close();
  if (!model.raw()) return error(REASON_ERR_INVALID_ARGUMENT, "model is closed");
  COptions o(opts);
  return status_of(reason_stream_start(&s_, model.raw(), prompt.c_str(), &o.c));
}

StreamEventResult Stream::next() {
  StreamEventResult r;
  if (!s_) return {error(REASON_ERR_INVALID_ARGUMENT, "stream is closed"), {}};
  reason_stream_event ev{};
  ev.struct_size = sizeof ev;
  r.status = status_of(reason_stream_next(s_, &ev));
  if (!r.status.ok()) return r;
  r.event.done = ev.done != 0;
  r.event.token_id = ev.token_id;
  r.event.logprob = ev.logprob;
  r.event.text = ev.text ? std::string(ev.text, ev.text_len) : std::string();
  r.event.finish_reason = int(ev.finish_reason);
  return r;
}

// ---- Trainer -----------------------------------------------------------------------------------

Trainer::~Trainer() { close(); }

void Trainer::close() {
  reason_trainer_free(t_);
  t_ = nullptr;
}

Status Trainer::create(Model& policy, const Model* reference, const std::string& config) {
  close();
  if (!policy.raw()) return error(REASON_ERR_INVALID_ARGUMENT, "policy model is closed");
  return status_of(reason_trainer_create(&t_, policy.raw(), reference ? reference->raw() : nullptr, config.data(),
                                         config.size(), 0));
}

namespace {
StepMetrics metrics_of(const reason_step_metrics& m) {
  StepMetrics o;
  o.step = m.step;
  o.loss = m.loss;
  o.grad_norm = m.grad_norm;
  o.lr = m.lr;
  o.tokens = m.tokens;
  o.kl = m.kl;
  o.clip_low = m.clip_low;
  o.clip_high = m.clip_high;
  o.entropy = m.entropy;
  o.reward_mean = m.reward_mean;
  o.reward_std = m.reward_std;
  return o;
}
}  // namespace

MetricsResult Trainer::sft_step(const std::vector<std::vector<int32_t>>& tokens,
                                const std::vector<std::vector<uint8_t>>& masks) {
  if (!t_) return {error(REASON_ERR_INVALID_ARGUMENT, "trainer is closed"), {}};
  if (tokens.size() != masks.size())
    return {error(REASON_ERR_INVALID_ARGUMENT, "sft_step: tokens and masks have different counts"), {}};
  std::vector<const int32_t*> tp;
  std::vector<const uint8_t*> mp;
  std::vector<size_t> lens;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].size() != masks[i].size())
      return {error(REASON_ERR_INVALID_ARGUMENT, "sft_step: example " + std::to_string(i) + " has a mask of another length"), {}};
    tp.push_back(tokens[i].data());
    mp.push_back(masks[i].data());
    lens.push_back(tokens[i].size());
  }
  reason_step_metrics m = REASON_STEP_METRICS_INIT;
  MetricsResult r;
  r.status = status_of(reason_trainer_sft_step(&m, t_, tp.data(), lens.data(), mp.data(), tp.size()));
  r.metrics = metrics_of(m);
  return r;
}

MetricsResult Trainer::grpo_step(const std::vector<GrpoSample>& batch) {
  if (!t_) return {error(REASON_ERR_INVALID_ARGUMENT, "trainer is closed"), {}};
  std::vector<reason_grpo_sample> c(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const GrpoSample& b = batch[i];
    if (!b.old_logprobs.empty() && b.old_logprobs.size() != b.completion.size())
      return {error(REASON_ERR_INVALID_ARGUMENT, "grpo_step: sample " + std::to_string(i) +
                                                     " has old_logprobs of another length than its completion"), {}};
    c[i].prompt = b.prompt.data();
    c[i].prompt_len = b.prompt.size();
    c[i].completion = b.completion.data();
    c[i].completion_len = b.completion.size();
    c[i].reward = b.reward;
    c[i].old_logprobs = b.old_logprobs.empty() ? nullptr : b.old_logprobs.data();
    c[i].ref_logprobs = nullptr;
    c[i].truncated = b.truncated ? 1 : 0;
  }
  reason_step_metrics m = REASON_STEP_METRICS_INIT;
  MetricsResult r;
  r.status = status_of(reason_trainer_grpo_step(&m, t_, c.data(), c.size()));
  r.metrics = metrics_of(m);
  return r;
}

Status Trainer::save(const std::string& dir) {
  if (!t_) return error(REASON_ERR_INVALID_ARGUMENT, "trainer is closed");
  return status_of(reason_trainer_save(t_, dir.c_str()));
}

Status Trainer::load_state(const std::string& dir) {
  if (!t_) return error(REASON_ERR_INVALID_ARGUMENT, "trainer is closed");
  return status_of(reason_trainer_load_state(t_, dir.c_str()));
}

// ---- Rewards and pipelines ---------------------------------------------------------------------

namespace {


float reward_trampoline(void* user, size_t, const char* completion, const char* answer) {
  auto* f = static_cast<RewardFunction*>(user);
  try {
    return f->score("", completion, answer ? answer : "");
  } catch (...) {
    return NAN;
  }
}

float pipeline_trampoline(void* user, const char* prompt, const char* completion, const char* answer, const char*) {
  auto* f = static_cast<RewardFunction*>(user);
  try {
    return f->score(prompt, completion, answer);
  } catch (...) {
    return NAN;
  }
}

int tool_trampoline(void* user, const char* arguments, reason_tool_result* result) {
  auto* f = static_cast<ToolFunction*>(user);
  ToolReply r;
  try {
    f->call(arguments ? arguments : "", r);
  } catch (const std::exception& e) {
    r = {e.what(), true};
  } catch (...) {
    r = {"the tool threw", true};
  }
  reason_tool_result_set(result, r.text.data(), r.text.size());
  return r.failed ? 1 : 0;
}

}  // namespace

RewardsResult compute_rewards(const Tokenizer& tok, const std::vector<std::vector<int32_t>>& completions,
                              const std::vector<std::string>& answers, RewardFunction& fn) {
  RewardsResult r;
  if (!tok.raw()) return {error(REASON_ERR_INVALID_ARGUMENT, "tokenizer is closed"), {}, 0};
  if (!answers.empty() && answers.size() != completions.size())
    return {error(REASON_ERR_INVALID_ARGUMENT, "compute_rewards: answers and completions have different counts"), {}, 0};
  std::vector<const int32_t*> cp;
  std::vector<size_t> lens;
  std::vector<const char*> ap;
  for (size_t i = 0; i < completions.size(); ++i) {
    cp.push_back(completions[i].data());
    lens.push_back(completions[i].size());
    if (!answers.empty()) ap.push_back(answers[i].c_str());
  }
  r.rewards.resize(completions.size());
  size_t failed = 0;
  r.status = status_of(reason_compute_rewards(r.rewards.data(), &failed, tok.raw(), cp.data(), lens.data(),
                                              answers.empty() ? nullptr : ap.data(), cp.size(), reward_trampoline, &fn));
  r.failed = int64_t(failed);
  if (!r.status.ok()) r.rewards.clear();
  return r;
}

FloatsResult builtin_reward(int kind, const std::string& completion, const std::string& arg) {
  FloatsResult r;
  float v = 0;
  r.status = status_of(reason_builtin_reward(&v, reason_reward_kind(kind), completion.c_str(), arg.c_str()));
  if (r.status.ok()) r.values.push_back(v);
  return r;
}

TextResult run_pipeline(const std::string& config_path, const std::string& out_dir, bool progress,
                        const std::vector<std::string>& reward_names, const std::vector<RewardFunction*>& rewards,
                        const std::vector<std::string>& tool_names, const std::vector<ToolFunction*>& tools) {
  TextResult r;
  if (reward_names.size() != rewards.size())
    return {error(REASON_ERR_INVALID_ARGUMENT, "run_pipeline: reward_names and rewards have different counts"), {}};
  if (tool_names.size() != tools.size())
    return {error(REASON_ERR_INVALID_ARGUMENT, "run_pipeline: tool_names and tools have different counts"), {}};
  std::vector<reason_pipeline_reward> rw;
  for (size_t i = 0; i < rewards.size(); ++i) {
    if (!rewards[i]) return {error(REASON_ERR_INVALID_ARGUMENT, "run_pipeline: reward " + reward_names[i] + " is null"), {}};
    rw.push_back({reward_names[i].c_str(), pipeline_trampoline, rewards[i]});
  }
  std::vector<reason_pipeline_tool> tl;
  for (size_t i = 0; i < tools.size(); ++i) {
    if (!tools[i]) return {error(REASON_ERR_INVALID_ARGUMENT, "run_pipeline: tool " + tool_names[i] + " is null"), {}};
    tl.push_back({tool_names[i].c_str(), tool_trampoline, tools[i]});
  }
  reason_pipeline_options o = REASON_PIPELINE_OPTIONS_INIT;
  o.progress = progress ? 1 : 0;
  o.rewards = rw.empty() ? nullptr : rw.data();
  o.n_rewards = rw.size();
  o.tools = tl.empty() ? nullptr : tl.data();
  o.n_tools = tl.size();
  char* summary = nullptr;
  r.status = status_of(reason_pipeline_run(config_path.c_str(), out_dir.c_str(), &o, &summary));
  if (summary) r.text = summary;
  reason_free(summary);
  return r;
}

}  // namespace reason_binding
