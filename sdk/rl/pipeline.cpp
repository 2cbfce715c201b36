// The pipeline runner: config parsing and up-front validation, the output directory, resume,
// and the stage loop (stages themselves live in stage_*.cpp).
#include "rl/pipeline.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/text_format.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "io/atomic_write.h"
#include "io/json_file.h"
#include "model/gguf_model.h"
#include "model/lora.h"
#include "reason/kernels/backend.h"
#include "rl/pipeline_stage.h"
#include "rl/svg_plot.h"
#include "rl/synthetic_task.h"
#include "train/model_init.h"
#include "train/trainer_config.h"

namespace reason {

namespace fs = std::filesystem;
using namespace pipeline_detail;
using google::protobuf::TextFormat;

namespace {

class ParseErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
    if (text.empty()) text = fmt::format("{}:{}:{}: {}", file, line + 1, column + 1, message);
  }
  void AddWarning(int, google::protobuf::io::ColumnNumber, const std::string&) override {}
  std::string file, text;
};

const char* stage_kind(const proto::Stage& s) {
  switch (s.kind_case()) {
    case proto::Stage::kSft: return "sft";
    case proto::Stage::kGrpo: return "grpo";
    case proto::Stage::kRejectionSampling: return "rejection_sampling";
    case proto::Stage::kDistill: return "distill";
    case proto::Stage::kEval: return "eval";
    default: return "";
  }
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::Io, "cannot read pipeline config {}", path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

// A parsed, validated config with everything resolved.
struct Plan {
  std::string config_path, base_dir, text;
  proto::PipelineConfig cfg;
  google::protobuf::TextFormat::ParseInfoTree tree;
  std::vector<std::string> stage_names;
  std::vector<std::string> stage_where;  // "CONFIG:LINE: stage 'NAME' (kind): "
  std::map<std::string, const proto::ModelSpec*> models;
  std::map<std::string, const proto::DatasetSpec*> datasets;
  std::map<std::string, std::string> dataset_paths;  // resolved file (path or OUT/data or stage output)

  std::string resolve(const std::string& p) const {
    if (p.empty() || fs::path(p).is_absolute()) return p;
    return (fs::path(base_dir) / p).lexically_normal().string();
  }
  // 1-based line of field `name` (index i for repeated fields) inside `tree`, or 0.
  static int line_in(const TextFormat::ParseInfoTree* tree, const google::protobuf::Message& m, const char* name,
                     int i = -1) {
    if (!tree) return 0;
    const auto* f = m.GetDescriptor()->FindFieldByName(name);
    if (!f) return 0;
    auto loc = tree->GetLocation(f, i);
    return loc.line >= 0 ? loc.line + 1 : 0;
  }
  static const TextFormat::ParseInfoTree* nested(const TextFormat::ParseInfoTree* tree,
                                                 const google::protobuf::Message& m, const char* name, int i = -1) {
    if (!tree) return nullptr;
    const auto* f = m.GetDescriptor()->FindFieldByName(name);
    return f ? tree->GetTreeForNested(f, i) : nullptr;
  }
  std::string at(int line) const { return line > 0 ? fmt::format("{}:{}: ", config_path, line) : config_path + ": "; }
};

void require(bool ok, const std::string& where, const std::string& what) {
  if (!ok) fail(ErrorCode::InvalidArgument, "{}{}", where, what);
}

// Model, dataset and stage names become path components under OUT (models/NAME,
// data/NAME.jsonl, stages/NN-NAME), so they must be plain identifiers: no separator, no
// absolute path, no "..", nothing hidden.
constexpr size_t kMaxNameLength = 64;
bool is_plain_name(const std::string& s) {
  if (s.empty() || s.size() > kMaxNameLength) return false;
  auto word = [](char c) {  // ASCII only, whatever the locale
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  if (!word(s[0])) return false;
  for (char c : s)
    if (!word(c) && c != '-' && c != '.') return false;
  return true;
}
void require_plain_name(const std::string& name, const std::string& where, const char* field) {
  require(is_plain_name(name), where,
          fmt::format("{} '{}' is not a plain identifier (letters, digits, '_', '-' and '.', starting with a letter, "
                      "digit or '_', at most {} characters): it names a directory under the output directory",
                      field, name, kMaxNameLength));
}

// OUT/rel, refused unless it stays inside OUT once symbolic links are resolved: a name is a
// plain identifier, but OUT/models/NAME could be a link to elsewhere, and the runner replaces
// and removes directories there.
fs::path path_under_out(const fs::path& out, const fs::path& rel) {
  const fs::path p = out / rel;
  const fs::path root = fs::weakly_canonical(fs::absolute(out));
  const fs::path real = fs::weakly_canonical(fs::absolute(p));
  const fs::path inside = real.lexically_relative(root);
  if (rel.is_absolute() || inside.empty() || *inside.begin() == ".." || inside == ".")
    fail(ErrorCode::InvalidArgument, "{} resolves to {}, which is not inside the output directory {}", p.string(),
         real.string(), root.string());
  return p;
}

void check_sampling(const proto::SamplingSpec& s, const std::string& where) {
  require(!s.has_temperature() || (std::isfinite(s.temperature()) && s.temperature() >= 0), where,
          fmt::format("sampling.temperature must be >= 0 (got {})", s.temperature()));
  require(!s.has_top_p() || (s.top_p() > 0 && s.top_p() <= 1), where,
          fmt::format("sampling.top_p must be in (0, 1] (got {})", s.top_p()));
  require(s.top_k() >= 0, where, "sampling.top_k must be >= 0");
  require(s.max_new_tokens() >= 0, where, "sampling.max_new_tokens must be >= 0");
}

ModelInitOptions init_options(const proto::InitSpec& in, const Plan& plan) {
  ModelInitOptions o;
  if (!in.architecture().empty()) o.architecture = in.architecture();
  o.hidden_size = in.hidden_size();
  o.intermediate_size = in.intermediate_size();
  o.num_layers = in.num_layers();
  o.num_heads = in.num_heads();
  o.num_kv_heads = in.num_kv_heads();
  if (in.max_position_embeddings() > 0) o.max_position_embeddings = in.max_position_embeddings();
  if (in.has_rope_theta()) o.rope_theta = in.rope_theta();
  if (in.has_tie_word_embeddings()) o.tie_word_embeddings = in.tie_word_embeddings();
  if (in.has_initializer_range()) o.initializer_range = in.initializer_range();
  o.tokenizer_dir = plan.resolve(in.tokenizer());
  o.vocab_size = in.vocab_size();
  return o;
}

AdditionTaskOptions task_options(const proto::SyntheticData& s) {
  AdditionTaskOptions o;
  if (s.min_digits() > 0) o.min_digits = s.min_digits();
  if (s.max_digits() > 0) o.max_digits = s.max_digits();
  o.held_out = s.held_out();
  if (s.has_direct_fraction()) o.direct_fraction = s.direct_fraction();
  if (s.has_mistake_fraction()) o.mistake_fraction = s.mistake_fraction();
  return o;
}

DatasetFields fields_of(const proto::DatasetSpec& d) {
  DatasetFields f;
  if (!d.prompt_field().empty()) f.prompt = d.prompt_field();
  if (!d.answer_field().empty()) f.answer = d.answer_field();
  if (!d.completion_field().empty()) f.completion = d.completion_field();
  if (!d.text_field().empty()) f.text = d.text_field();
  return f;
}

// Parses and validates; throws naming the config line and field.
std::unique_ptr<Plan> make_plan(const std::string& config_path, const PipelineOptions& opts) {
  auto plan = std::make_unique<Plan>();
  plan->config_path = config_path;
  plan->base_dir = fs::absolute(config_path).parent_path().string();
  plan->text = read_text(config_path);
  TextFormat::Parser parser;
  ParseErrors errors;
  errors.file = config_path;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(&plan->tree);
  if (!parser.ParseFromString(plan->text, &plan->cfg))
    fail(ErrorCode::InvalidArgument, "{}", errors.text.empty() ? config_path + ": not valid text format" : errors.text);
  const auto& cfg = plan->cfg;
  const auto* root = &plan->tree;
  Plan& p = *plan;

  require(cfg.checkpoint_every() >= 0, p.at(Plan::line_in(root, cfg, "checkpoint_every")), "checkpoint_every must be >= 0");
  require(cfg.threads() >= 0, p.at(Plan::line_in(root, cfg, "threads")), "threads must be >= 0");
  require(!cfg.models().empty(), p.at(0), "no models: add at least one `models { name: ... }`");
  require(!cfg.stages().empty(), p.at(0), "no stages: add at least one `stages { ... }`");

  // Models.
  for (int i = 0; i < cfg.models_size(); ++i) {
    const auto& m = cfg.models(i);
    const std::string w = p.at(Plan::line_in(root, cfg, "models", i)) + fmt::format("models[{}]: ", i);
    require(!m.name().empty(), w, "name is required");
    require_plain_name(m.name(), w, "model name");
    require(p.models.emplace(m.name(), &m).second, w, fmt::format("duplicate model name '{}'", m.name()));
    if (!m.quantize().empty()) {
      try {
        parse_weight_quant(m.quantize());
      } catch (const Error& e) {
        fail(ErrorCode::InvalidArgument, "{}quantize: {}", w, e.what());
      }
    }
    switch (m.source_case()) {
      case proto::ModelSpec::kPath: {
        const std::string dir = p.resolve(m.path());
        // a Hugging Face directory, a GGUF file, or a PEFT adapter directory (its base + it)
        const bool adapter = fs::exists(fs::path(dir) / "adapter_config.json");
        require(fs::exists(fs::path(dir) / "config.json") || is_gguf_file(dir) || adapter, w,
                fmt::format("path: no config.json (nor adapter_config.json) in '{}', and not a GGUF file", dir));
        if (adapter) {
          try {
            adapter_base_model(dir);
          } catch (const Error& e) {
            fail(ErrorCode::InvalidArgument, "{}path: {}", w, e.what());
          }
        }
        break;
      }
      case proto::ModelSpec::kInit: {
        ModelInitOptions o = init_options(m.init(), p);
        try {
          check_model_init_options(o);
        } catch (const Error& e) {
          fail(ErrorCode::InvalidArgument, "{}{}", w, e.what());
        }
        require(fs::exists(fs::path(o.tokenizer_dir) / "tokenizer.json"), w,
                fmt::format("init.tokenizer: no tokenizer.json in '{}'", o.tokenizer_dir));
        break;
      }
      default: require(false, w, "needs a source: `path` or `init`");
    }
  }

  // Stage names first (datasets may refer to stages).
  std::map<std::string, int> stage_index;
  for (int i = 0; i < cfg.stages_size(); ++i) {
    const auto& s = cfg.stages(i);
    const int line = Plan::line_in(root, cfg, "stages", i);
    const char* kind = stage_kind(s);
    require(*kind, p.at(line), fmt::format("stages[{}] has no stage type (one of sft, grpo, rejection_sampling, "
                                           "distill, eval)", i));
    std::string name = s.name().empty() ? fmt::format("{}{}", kind, i) : s.name();
    require_plain_name(name, p.at(line), "stage name");
    require(stage_index.emplace(name, i).second, p.at(line), fmt::format("duplicate stage name '{}'", name));
    p.stage_names.push_back(name);
    p.stage_where.push_back(p.at(line) + fmt::format("stage '{}' ({}): ", name, kind));
  }

  // Datasets.
  std::map<std::string, int> dataset_producer;  // name -> stage index producing it
  for (int i = 0; i < cfg.datasets_size(); ++i) {
    const auto& d = cfg.datasets(i);
    const std::string w = p.at(Plan::line_in(root, cfg, "datasets", i)) + fmt::format("datasets[{}]: ", i);
    require(!d.name().empty(), w, "name is required");
    require_plain_name(d.name(), w, "dataset name");
    require(p.datasets.emplace(d.name(), &d).second, w, fmt::format("duplicate dataset name '{}'", d.name()));
    switch (d.source_case()) {
      case proto::DatasetSpec::kPath:
        p.dataset_paths[d.name()] = p.resolve(d.path());
        require(fs::is_regular_file(p.dataset_paths[d.name()]), w,
                fmt::format("path: no such file '{}'", p.dataset_paths[d.name()]));
        break;
      case proto::DatasetSpec::kSynthetic: {
        const auto& sy = d.synthetic();
        require(sy.count() > 0, w, fmt::format("synthetic.count must be > 0 (got {})", sy.count()));
        try {
          check_addition_request(sy.count(), task_options(sy));
        } catch (const Error& e) {
          fail(ErrorCode::InvalidArgument, "{}synthetic: {}", w, e.what());
        }
        break;
      }
      case proto::DatasetSpec::kFromStage: {
        auto it = stage_index.find(d.from_stage());
        require(it != stage_index.end(), w, fmt::format("from_stage: no stage named '{}'", d.from_stage()));
        require(cfg.stages(it->second).has_rejection_sampling(), w,
                fmt::format("from_stage: stage '{}' is not a rejection_sampling stage", d.from_stage()));
        dataset_producer[d.name()] = it->second;
        break;
      }
      default: require(false, w, "needs a source: `path`, `synthetic` or `from_stage`");
    }
  }

  // Stages.
  std::set<std::string> evals_before;
  for (int i = 0; i < cfg.stages_size(); ++i) {
    const auto& s = cfg.stages(i);
    const auto* st = Plan::nested(root, cfg, "stages", i);
    const std::string& w = p.stage_where[size_t(i)];
    auto sub_where = [&](const google::protobuf::Message& kind_msg, const char* kind_field, const char* field) {
      const auto* kt = Plan::nested(st, s, kind_field);
      int line = Plan::line_in(kt, kind_msg, field);
      if (!line) line = Plan::line_in(st, s, kind_field);
      return p.at(line) + fmt::format("stage '{}' ({}): ", p.stage_names[size_t(i)], kind_field);
    };
    auto need_model = [&](const std::string& m, const char* field) {
      require(!m.empty(), w, fmt::format("{} is required", field));
      require(p.models.count(m), w, fmt::format("{}: no model named '{}'", field, m));
    };
    // A quantised model is a frozen base: only LoRA (QLoRA) trains it.
    auto trainable = [&](const std::string& m, bool lora, const char* field) {
      const std::string& q = p.models.at(m)->quantize();
      require(lora || q.empty() || q == "none", w,
              fmt::format("{}: model '{}' is quantised ({}): train it with `lora {{ }}` (QLoRA) or load it with quantize none",
                          field, m, q));
    };
    auto need_dataset = [&](const std::string& d, DatasetUse use) {
      require(!d.empty(), w, "dataset is required");
      require(p.datasets.count(d), w, fmt::format("dataset: no dataset named '{}'", d));
      if (auto it = dataset_producer.find(d); it != dataset_producer.end())
        require(it->second < i, w, fmt::format("dataset '{}' comes from stage '{}', which runs later", d,
                                               p.stage_names[size_t(it->second)]));
      // Check the lines of file datasets now, for this use.
      if (p.datasets[d]->has_path()) {
        try {
          load_jsonl_dataset(p.dataset_paths[d], d, fields_of(*p.datasets[d]), use);
        } catch (const Error& e) {
          fail(ErrorCode::InvalidArgument, "{}dataset '{}': {}", w, d, e.what());
        }
      }
      if (p.datasets[d]->has_synthetic()) {
        const bool corpus = p.datasets[d]->synthetic().kind() == proto::SyntheticData::CORPUS;
        require(corpus == (use == DatasetUse::Sft), w,
                fmt::format("dataset '{}' is a synthetic {}, which this stage cannot use", d,
                            corpus ? "CORPUS (text only)" : "PROBLEMS set"));
      }
    };
    switch (s.kind_case()) {
      case proto::Stage::kSft: {
        const auto& k = s.sft();
        need_model(k.model(), "sft.model");
        trainable(k.model(), k.has_lora(), "sft.model");
        need_dataset(k.dataset(), DatasetUse::Sft);
        require(k.steps() > 0 || k.epochs() > 0, sub_where(k, "sft", "steps"), "sft.steps (or epochs) must be > 0");
        require(k.steps() >= 0 && k.epochs() >= 0 && k.batch_size() >= 0 && k.max_length() >= 0 && k.micro_batch() >= 0,
                sub_where(k, "sft", "batch_size"), "sft: steps, epochs, batch_size, max_length, micro_batch must be >= 0");
        adamw_from_proto(k.optimizer(), sub_where(k, "sft", "optimizer"));
        if (k.has_lora()) lora_from_proto(k.lora(), sub_where(k, "sft", "lora"));
        schedule_from_proto(k.schedule(), sub_where(k, "sft", "schedule"));
        break;
      }
      case proto::Stage::kGrpo: {
        const auto& k = s.grpo();
        need_model(k.model(), "grpo.model");
        trainable(k.model(), k.has_lora(), "grpo.model");
        need_dataset(k.dataset(), DatasetUse::PromptsAndAnswers);
        require(k.steps() > 0, sub_where(k, "grpo", "steps"), fmt::format("grpo.steps must be > 0 (got {})", k.steps()));
        require(k.prompts_per_step() >= 0, sub_where(k, "grpo", "prompts_per_step"), "grpo.prompts_per_step must be >= 0");
        const GrpoConfig gc = grpo_from_proto(k.grpo(), true, sub_where(k, "grpo", "grpo"));
        adamw_from_proto(k.optimizer(), sub_where(k, "grpo", "optimizer"));
        if (k.has_lora()) lora_from_proto(k.lora(), sub_where(k, "grpo", "lora"));
        require(!k.has_lora() || k.bias_update_speed() == 0.0f, sub_where(k, "grpo", "bias_update_speed"),
                "grpo.bias_update_speed must be 0 with lora (it changes the frozen base's expert biases)");
        schedule_from_proto(k.schedule(), sub_where(k, "grpo", "schedule"));
        check_sampling(k.sampling(), sub_where(k, "grpo", "sampling"));
        require(!k.sampling().has_temperature() || k.sampling().temperature() == gc.temperature,
                sub_where(k, "grpo", "sampling"),
                "grpo: sampling.temperature must equal grpo.temperature (the trainer's logprobs use it)");
        for (const auto& t : k.reward().terms()) {
          if (!t.callback().empty())
            require(opts.rewards.count(t.callback()), sub_where(k, "grpo", "reward"),
                    fmt::format("reward callback '{}' is not registered by this program", t.callback()));
          require(!t.has_weight() || std::isfinite(t.weight()), sub_where(k, "grpo", "reward"), "reward weight must be finite");
        }
        require(k.reward().deadline_ms() >= 0, sub_where(k, "grpo", "reward"), "reward.deadline_ms must be >= 0");
        require(k.micro_batch() >= 0, sub_where(k, "grpo", "micro_batch"), "grpo.micro_batch must be >= 0");
        for (const auto& name : k.tools().callbacks())
          require(opts.tools.count(name), sub_where(k, "grpo", "tools"),
                  fmt::format("tool callback '{}' is not registered by this program", name));
        require(k.tools().max_calls() >= 0 && k.tools().deadline_ms() >= 0 && k.tools().max_result_bytes() >= 0,
                sub_where(k, "grpo", "tools"), "tools.max_calls, deadline_ms and max_result_bytes must be >= 0");
        require(!k.tools().has_call_close() || !k.tools().call_close().empty(), sub_where(k, "grpo", "tools"),
                "tools.call_close must not be empty");
        require(!k.tools().raw() || k.tools().callbacks_size() == 1, sub_where(k, "grpo", "tools"),
                "tools.raw needs exactly one callback");
        break;
      }
      case proto::Stage::kRejectionSampling: {
        const auto& k = s.rejection_sampling();
        need_model(k.model(), "rejection_sampling.model");
        need_dataset(k.dataset(), DatasetUse::PromptsAndAnswers);
        require(k.samples_per_prompt() >= 0 && k.keep_per_prompt() >= 0 && k.max_prompts() >= 0,
                sub_where(k, "rejection_sampling", "samples_per_prompt"),
                "rejection_sampling: samples_per_prompt, keep_per_prompt, max_prompts must be >= 0");
        check_sampling(k.sampling(), sub_where(k, "rejection_sampling", "sampling"));
        break;
      }
      case proto::Stage::kDistill: {
        const auto& k = s.distill();
        need_model(k.teacher(), "distill.teacher");
        need_model(k.student(), "distill.student");
        trainable(k.student(), k.has_lora(), "distill.student");
        require(k.teacher() != k.student(), w, "distill.teacher and distill.student must be different models");
        need_dataset(k.dataset(), k.mode() == proto::DistillStage::LOGIT ? DatasetUse::Sft : DatasetUse::Prompts);
        require(k.steps() > 0 || k.epochs() > 0, sub_where(k, "distill", "steps"), "distill.steps (or epochs) must be > 0");
        adamw_from_proto(k.optimizer(), sub_where(k, "distill", "optimizer"));
        if (k.has_lora()) lora_from_proto(k.lora(), sub_where(k, "distill", "lora"));
        schedule_from_proto(k.schedule(), sub_where(k, "distill", "schedule"));
        distill_from_proto(k.distill(), sub_where(k, "distill", "distill"));
        check_sampling(k.sampling(), sub_where(k, "distill", "sampling"));
        break;
      }
      case proto::Stage::kEval: {
        const auto& k = s.eval();
        need_model(k.model(), "eval.model");
        need_dataset(k.dataset(), DatasetUse::PromptsAndAnswers);
        require(k.samples() >= 0 && k.max_prompts() >= 0, sub_where(k, "eval", "samples"),
                "eval: samples and max_prompts must be >= 0");
        check_sampling(k.sampling(), sub_where(k, "eval", "sampling"));
        if (!k.compare_to().empty())
          require(evals_before.count(k.compare_to()), sub_where(k, "eval", "compare_to"),
                  fmt::format("eval.compare_to: '{}' is not an earlier eval stage", k.compare_to()));
        evals_before.insert(p.stage_names[size_t(i)]);
        break;
      }
      default: break;
    }
  }
  return plan;
}

nlohmann::json read_json_or_null(const fs::path& p) {
  if (!fs::exists(p)) return nullptr;
  return read_json_file(p.string());
}

}  // namespace

nlohmann::json check_pipeline(const std::string& config_path, const PipelineOptions& opts) {
  auto plan = make_plan(config_path, opts);
  nlohmann::json out;
  out["stages"] = plan->stage_names;
  out["models"] = nlohmann::json::array();
  for (const auto& m : plan->cfg.models()) out["models"].push_back(m.name());
  out["datasets"] = nlohmann::json::array();
  for (const auto& d : plan->cfg.datasets()) out["datasets"].push_back(d.name());
  return out;
}

nlohmann::json run_pipeline(const std::string& config_path, const PipelineOptions& opts) {
  auto plan_ptr = make_plan(config_path, opts);
  Plan& plan = *plan_ptr;
  const auto& cfg = plan.cfg;
  require(!opts.out_dir.empty(), "", "the output directory is required (--out DIR)");
  const fs::path out(opts.out_dir);
  PipelineOptions eff = opts;
  if (!eff.comm) eff.comm = default_communicator();
  Communicator& comm = *eff.comm;
  // Rank 0 reports; the other ranks' progress and messages would repeat it.
  std::unique_ptr<FILE, int (*)(FILE*)> devnull(comm.rank() == 0 ? nullptr : std::fopen("/dev/null", "w"), &std::fclose);
  FILE* log = devnull ? devnull.get() : opts.log ? opts.log : stderr;
  eff.log = log;
  eff.progress = opts.progress && comm.rank() == 0;
  eff.load.quantize = WeightQuant::None;
  on_rank0(comm, [&] { fs::create_directories(out / "stages"); });
  if (comm.size() > 1)
    std::fprintf(log, "data-parallel run: %d ranks (%s)\n", comm.size(), comm.name());

  // The run's identity: refuse to resume with another config.
  // The run's identity is the parsed config (comments and layout may change).
  std::string canonical;
  {
    google::protobuf::io::StringOutputStream sos(&canonical);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    cfg.SerializeToCodedStream(&cos);
  }
  const std::string hash = fmt::format("{:016x}", fnv1a(canonical));
  on_rank0(comm, [&] {
    if (auto pj = read_json_or_null(out / "pipeline.json"); !pj.is_null()) {
      if (pj.value("config_hash", "") != hash)
        fail(ErrorCode::InvalidArgument,
             "{} holds a run of a different config (hash {} != {}); use another --out directory or delete it",
             opts.out_dir, pj.value("config_hash", ""), hash);
      std::fprintf(log, "resuming the run in %s\n", opts.out_dir.c_str());
    } else {
      atomic_write_file((out / "pipeline.json").string(),
                        nlohmann::json{{"config", fs::absolute(config_path).string()}, {"config_hash", hash}}.dump(2));
    }
  });
  // The config's thread count applies to this run's calling thread only (the program's other
  // threads, and its own count after the run, are left alone).
  kernels::ScopedCpuThreads run_threads(cfg.threads());

  // Synthetic datasets and models initialised from scratch (deterministic; kept across resumes).
  PromptFormat pf;
  if (!cfg.prompt_format().template_().empty()) pf.template_text = cfg.prompt_format().template_();
  pf.chat = cfg.prompt_format().chat();
  pf.system = cfg.prompt_format().system();
  for (const auto& d : cfg.datasets()) {
    if (!d.has_synthetic()) continue;
    const fs::path f = path_under_out(out, fs::path("data") / (d.name() + ".jsonl"));
    plan.dataset_paths[d.name()] = f.string();
    on_rank0(comm, [&] {  // written by rank 0, read by every rank after it
      if (fs::exists(f)) return;
      fs::create_directories(f.parent_path());
      const auto& sy = d.synthetic();
      const uint64_t seed = sy.seed() ? sy.seed() : mix_seed(cfg.seed(), fnv1a(d.name()));
      const AdditionTaskOptions o = task_options(sy);
      std::vector<nlohmann::json> lines;
      if (sy.kind() == proto::SyntheticData::CORPUS) {
        for (auto& t : make_addition_corpus(sy.count(), seed, o, pf.template_text)) lines.push_back({{"text", t}});
      } else {
        for (const auto& pr : make_addition_problems(sy.count(), seed, o))
          lines.push_back({{"prompt", addition_prompt(pr)}, {"answer", addition_answer(pr)}});
      }
      write_jsonl(f.string(), lines);
    });
  }
  std::map<std::string, std::string> model_dirs;
  for (const auto& m : cfg.models()) {
    if (m.has_path()) {
      model_dirs[m.name()] = plan.resolve(m.path());
      continue;
    }
    const fs::path dir = path_under_out(out, fs::path("models") / m.name());
    model_dirs[m.name()] = dir.string();
    on_rank0(comm, [&] {
      if (!fs::exists(dir / "model.safetensors"))
        write_initial_model(dir.string(), init_options(m.init(), plan), mix_seed(cfg.seed(), fnv1a(m.name())));
    });
  }

  std::map<std::string, Dataset> loaded;
  auto dataset = [&](const std::string& name) -> const Dataset& {
    if (auto it = loaded.find(name); it != loaded.end()) return it->second;
    const auto& spec = *plan.datasets.at(name);
    return loaded[name] = load_jsonl_dataset(plan.dataset_paths.at(name), name, fields_of(spec), DatasetUse::Any);
  };

  nlohmann::json summary = {{"config", config_path}, {"stages", nlohmann::json::array()}};
  std::map<std::string, nlohmann::json> eval_results;
  const auto t_start = std::chrono::steady_clock::now();
  for (int i = 0; i < cfg.stages_size(); ++i) {
    const auto& s = cfg.stages(i);
    StageEnv env;
    env.cfg = &cfg;
    env.stage = &s;
    env.index = size_t(i);
    env.name = plan.stage_names[size_t(i)];
    env.where = plan.stage_where[size_t(i)];
    env.dir = path_under_out(out, fs::path("stages") / fmt::format("{:02d}-{}", i, env.name)).string();
    env.seed = mix_seed(cfg.seed(), uint64_t(i));
    env.checkpoint_every = cfg.checkpoint_every() > 0 ? cfg.checkpoint_every() : 50;
    env.prompt_format = pf;
    env.opts = &eff;
    env.comm = eff.comm;
    env.model_dir = [&](const std::string& m) { return model_dirs.at(m); };
    env.load_options = [&](const std::string& m) {
      LoadOptions lo = eff.load;
      lo.quantize = parse_weight_quant(plan.models.at(m)->quantize().empty() ? "none" : plan.models.at(m)->quantize());
      return lo;
    };
    env.dataset = dataset;
    env.fields = [&](const std::string& d) { return fields_of(*plan.datasets.at(d)); };
    const fs::path done = fs::path(env.dir) / "stage.json";
    nlohmann::json record;
    if (fs::exists(done)) {
      record = read_json_file(done.string());
      std::fprintf(log, "== stage %d/%d: %s '%s': complete, skipped\n", i + 1, cfg.stages_size(), stage_kind(s),
                   env.name.c_str());
    } else {
      std::fprintf(log, "== stage %d/%d: %s '%s'\n", i + 1, cfg.stages_size(), stage_kind(s), env.name.c_str());
      std::fflush(log);
      on_rank0(comm, [&] { fs::create_directories(env.dir); });
      const auto t0 = std::chrono::steady_clock::now();
      StageResult r;
      switch (s.kind_case()) {
        case proto::Stage::kSft: r = run_sft_stage(env); break;
        case proto::Stage::kGrpo: r = run_grpo_stage(env); break;
        case proto::Stage::kRejectionSampling: r = run_rejection_sampling_stage(env); break;
        case proto::Stage::kDistill: r = run_distill_stage(env); break;
        case proto::Stage::kEval: r = run_eval_stage(env); break;
        default: break;
      }
      if (s.has_eval() && !s.eval().compare_to().empty()) {
        const auto& base = eval_results.at(s.eval().compare_to());
        r.summary["compare_to"] = s.eval().compare_to();
        for (const char* k : {"pass@1", "cons@k", "greedy", "format"})
          if (r.summary[k].is_number() && base[k].is_number())
            r.summary[std::string("delta_") + k] = r.summary[k].get<double>() - base[k].get<double>();
      }
      r.summary["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      record = {{"name", env.name}, {"kind", stage_kind(s)}, {"models", r.models}, {"summary", r.summary}};
      on_rank0(comm, [&] { atomic_write_file(done.string(), record.dump(2) + "\n"); });
    }
    for (auto& [m, dir] : record["models"].items()) model_dirs[m] = dir.get<std::string>();
    if (s.has_rejection_sampling())
      for (const auto& d : cfg.datasets())
        if (d.from_stage() == env.name) plan.dataset_paths[d.name()] = (fs::path(env.dir) / "samples.jsonl").string();
    if (s.has_eval()) {
      eval_results[env.name] = record["summary"];
      if (record["summary"].contains("compare_to")) {
        const auto& r = record["summary"];
        std::fprintf(log, "%s vs %s: pass@1 %+.1f points, greedy %+.1f points\n", env.name.c_str(),
                     r["compare_to"].get<std::string>().c_str(), 100 * r.value("delta_pass@1", 0.0),
                     100 * r.value("delta_greedy", 0.0));
      }
    }
    summary["stages"].push_back(record);
  }
  summary["seconds_this_run"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  summary["models"] = model_dirs;

  // Evaluation results of the whole run, one point per eval stage.
  if (!eval_results.empty()) {
    Plot pl;
    pl.title = "held-out accuracy per eval stage";
    pl.x_label = "eval stage (in run order)";
    pl.y_label = "accuracy";
    PlotSeries p1{"pass@1", {}, {}}, gr{"greedy", {}, {}}, cons{"cons@k", {}, {}};
    std::string order;
    int x = 0;
    for (const auto& st : summary["stages"]) {
      if (st["kind"] != "eval") continue;
      const auto& r = st["summary"];
      ++x;
      order += fmt::format("{}{}={}", order.empty() ? "" : ", ", x, st["name"].get<std::string>());
      p1.x.push_back(x);
      p1.y.push_back(r.value("pass@1", 0.0));
      gr.x.push_back(x);
      gr.y.push_back(r["greedy"].is_number() ? r["greedy"].get<double>() : std::nan(""));
      cons.x.push_back(x);
      cons.y.push_back(r.value("cons@k", 0.0));
    }
    pl.title += " (" + order + ")";
    pl.series = {p1, gr, cons};
    on_rank0(comm, [&] { atomic_write_file((out / "plots.svg").string(), render_svg(pl, 1100, 440)); });
  }
  on_rank0(comm, [&] { atomic_write_file((out / "summary.json").string(), summary.dump(2) + "\n"); });

  if (!eval_results.empty())
    std::fprintf(log, "\n%-24s %-8s %8s %8s %8s %8s\n", "eval stage", "model", "pass@1", "cons@k", "greedy", "format");
  for (const auto& st : summary["stages"]) {
    if (st["kind"] != "eval") continue;
    const auto& r = st["summary"];
    std::fprintf(log, "%-24s %-8s %7.1f%% %7.1f%% %7.1f%% %7.1f%%\n", st["name"].get<std::string>().c_str(),
                 r.value("model", "").c_str(), 100 * r.value("pass@1", 0.0), 100 * r.value("cons@k", 0.0),
                 r["greedy"].is_number() ? 100 * r["greedy"].get<double>() : 0.0, 100 * r.value("format", 0.0));
  }
  std::fflush(log);
  return summary;
}

}  // namespace reason
