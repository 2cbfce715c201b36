// Model's LoRA adapter: attached at load (a PEFT directory, or new adapters for training), listed
// by PEFT's names, saved in PEFT's format.
#include <algorithm>
#include <filesystem>
#include <random>
#include <unordered_map>

#include "core/error.h"
#include "io/atomic_write.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "model/model.h"

namespace reason {

namespace {

constexpr const char* kAdapterConfig = "adapter_config.json";
constexpr const char* kAdapterWeights = "adapter_model.safetensors";

// Every Linear a LoRA adapter may sit on (not MLA's derived per-head matrices, not routers).
template <typename F>
void visit_linears(DecoderLayer& ly, F&& f) {
  for (Linear* l : {&ly.q, &ly.k, &ly.v, &ly.o, &ly.q_a, &ly.q_b, &ly.kv_a, &ly.kv_b}) f(*l);
  auto mlp = [&](SwiGLU& m) {
    f(m.gate);
    f(m.up);
    f(m.down);
  };
  mlp(ly.mlp);
  for (SwiGLU& m : ly.moe.experts) mlp(m);
  mlp(ly.moe.shared);
  f(ly.moe.shared_gate);
}

Tensor on_backend(Tensor host, kernels::Backend& be) { return be.host_addressable() ? host : host.on(be); }

// lora_A: U(-1/sqrt(in), 1/sqrt(in)) (torch's kaiming_uniform_(a=sqrt(5)) as PEFT initialises it).
Tensor init_lora_a(int64_t r, int64_t in, std::mt19937_64& rng) {
  Tensor a = Tensor::empty(DType::F32, {r, in});
  const float bound = 1.0f / std::sqrt(float(in));
  std::uniform_real_distribution<float> u(-bound, bound);
  float* p = a.data<float>();
  for (int64_t i = 0; i < r * in; ++i) p[i] = u(rng);
  return a;
}

Tensor read_f32(const SafetensorsFile& f, const std::string& name, const std::string& path) {
  const auto* e = f.find(name);
  if (!e) fail(ErrorCode::Format, "{}: no tensor {}", path, name);
  Tensor t = f.tensor(*e);
  if (t.ndim() != 2) fail(ErrorCode::Format, "{}: {} has shape {}, not a matrix", path, name, t.shape_str());
  return t.to(DType::F32);
}

}  // namespace

std::vector<std::pair<std::string, Linear*>> Model::named_linears() const {
  std::unordered_map<const void*, Linear*> by_storage;
  // The layers hold the Linears; attaching, training and merging write their adapters (as
  // trainers write weights through parameters()).
  for (DecoderLayer& ly : const_cast<std::vector<DecoderLayer>&>(layers_))
    visit_linears(ly, [&](Linear& l) {
      if (l.w.raw()) by_storage.emplace(l.w.raw(), &l);
    });
  std::vector<std::pair<std::string, Linear*>> out;
  const std::string suffix = ".weight";
  for (auto& [name, t] : parameters()) {
    auto it = by_storage.find(t.raw());
    if (it == by_storage.end() || name.size() <= suffix.size()) continue;
    out.emplace_back(name.substr(0, name.size() - suffix.size()), it->second);
  }
  return out;
}

void Model::attach_adapter(const LoadOptions& opts) {
  if (opts.adapter.empty() && !opts.new_adapter) return;
  if (!opts.adapter.empty() && opts.new_adapter)
    fail(ErrorCode::InvalidArgument, "load: give an adapter directory or a new adapter, not both");
  const bool load = !opts.adapter.empty();
  const std::string cfg_path = (std::filesystem::path(opts.adapter) / kAdapterConfig).string();
  const std::string w_path = (std::filesystem::path(opts.adapter) / kAdapterWeights).string();
  LoraSpec spec = load ? lora_spec_from_json(read_ordered_json_file(cfg_path), cfg_path) : *opts.new_adapter;
  std::shared_ptr<const SafetensorsFile> file = load ? SafetensorsFile::open(w_path) : nullptr;
  std::mt19937_64 rng(spec.seed);
  size_t attached = 0;
  lora_seed_ = std::make_shared<std::atomic<uint64_t>>(0);
  const auto linears = named_linears();
  for (auto& [module, lin] : linears) {
    const int64_t out = lin->w.dim(0), in = lin->w.dim(1);
    Tensor a, b;
    if (load) {
      if (!file->has(peft_lora_a_name(module)) && !file->has(peft_lora_b_name(module))) continue;
      a = read_f32(*file, peft_lora_a_name(module), w_path);
      b = read_f32(*file, peft_lora_b_name(module), w_path);
      const int64_t r = a.dim(0);
      if (a.dim(1) != in || b.dim(0) != out || b.dim(1) != r)
        fail(ErrorCode::Format, "{}: {}'s adapter has lora_A {} and lora_B {}, but the layer is [{}, {}]", w_path, module,
             a.shape_str(), b.shape_str(), out, in);
      if (r != spec.rank_of(module))
        fail(ErrorCode::Format, "{}: {}'s adapter has rank {} but adapter_config.json gives it rank {}", w_path, module, r,
             spec.rank_of(module));
    } else {
      // all-linear is PEFT's on transformers 5 models: routed experts are fused parameters there
      // (not Linear modules), so they get adapters only when named (e.g. "experts.0.up_proj", "up_proj").
      if (!spec.targets(module) || (spec.all_linear && module.find(".experts.") != std::string::npos)) continue;
      const int64_t r = spec.rank_of(module);
      a = init_lora_a(r, in, rng);
      b = Tensor::zeros(DType::F32, {out, r});
    }
    if (!std::isfinite(spec.scale_of(module))) fail(ErrorCode::InvalidArgument, "LoRA: {}'s scale is not finite", module);
    lin->lora = LoraAdapter{on_backend(a, *backend_), on_backend(b, *backend_), spec.scale_of(module), spec.dropout,
                            uint64_t(attached), lora_seed_};
    ++attached;
  }
  if (load && attached * 2 != file->entries().size())
    fail(ErrorCode::Format, "{}: {} tensors, but only {} modules of {} match them (a tensor names a module the model lacks)",
         w_path, file->entries().size(), attached, dir_);
  if (attached == 0)
    fail(ErrorCode::InvalidArgument, "LoRA: target_modules match no linear layer of {} (names look like {})", dir_,
         linears.empty() ? std::string("?") : linears.front().first);
  adapter_ = spec;
}

std::vector<std::pair<std::string, Tensor>> Model::adapter_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  if (!adapter_) return out;
  for (auto& [module, lin] : named_linears()) {
    if (!lin->lora.active()) continue;
    out.emplace_back(peft_lora_a_name(module), lin->lora.a);
    out.emplace_back(peft_lora_b_name(module), lin->lora.b);
  }
  return out;
}

void Model::merge_adapter() const {
  if (!adapter_) fail(ErrorCode::InvalidArgument, "merge: {} has no LoRA adapter", dir_);
  const auto linears = named_linears();
  for (const auto& [module, lin] : linears)
    if (lin->lora.active() && lin->w.dtype() != DType::F32)
      fail(ErrorCode::Unsupported, "merge: {} is {}; load the base with dtype f32 and quantize none to merge", module,
           kernels::dtype_name(lin->w.dtype()));
  for (const auto& [module, lin] : linears) {
    LoraAdapter& a = lin->lora;
    if (!a.active()) continue;
    const int64_t out = lin->w.dim(0), in = lin->w.dim(1), r = a.rank();
    backend_->gemm_f32(false, false, out, in, r, a.scale, a.b.data<float>(), r, a.a.data<float>(), in, 1.0f,
                       lin->w.data<float>(), in);
    a = LoraAdapter{};
  }
  refresh_absorbed_weights();
  const_cast<std::optional<LoraSpec>&>(adapter_).reset();
}

void Model::save_adapter(const std::string& dir) const {
  if (!adapter_) fail(ErrorCode::InvalidArgument, "save_adapter: {} has no LoRA adapter", dir_);
  if (std::filesystem::exists(std::filesystem::path(dir) / "config.json"))
    fail(ErrorCode::InvalidArgument, "save_adapter: {} holds a model (config.json); an adapter there would not load as one", dir);
  std::filesystem::create_directories(dir);
  std::vector<std::string> modules;
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, t] : adapter_parameters()) {
    tensors.emplace_back(name, t.host());
    const std::string suffix = ".lora_A.weight", prefix = "base_model.model.";
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      modules.push_back(name.substr(prefix.size(), name.size() - prefix.size() - suffix.size()));
  }
  std::sort(modules.begin(), modules.end());
  write_safetensors((std::filesystem::path(dir) / kAdapterWeights).string(), tensors, {{"format", "pt"}});
  atomic_write_file((std::filesystem::path(dir) / kAdapterConfig).string(),
                    lora_spec_to_json(*adapter_, modules, std::filesystem::absolute(dir_).string()).dump(2) + "\n");
}

}  // namespace reason
