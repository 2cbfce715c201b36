#include "train/checkpoint.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/atomic_write.h"
#include "io/json_file.h"
#include "io/safetensors.h"

namespace reason {

namespace fs = std::filesystem;

namespace {

constexpr const char* kMarker = "DONE";
constexpr const char* kFormat = "libreason-checkpoint-1";

void fsync_dir(const fs::path& d) {
  int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) fail(ErrorCode::Io, "{}: cannot open directory to fsync: {}", d.string(), std::strerror(errno));
  ::fsync(fd);
  ::close(fd);
}

void copy_if_exists(const fs::path& from, const fs::path& to) {
  if (!fs::exists(from)) return;
  std::ifstream in(from, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  atomic_write_file(to.string(), bytes);
}

}  // namespace

void save_checkpoint(const std::string& dir, const Model& model, const AdamW* opt, const nlohmann::json& state,
                     const SaveOptions& opts) {
  const fs::path final_dir = fs::path(dir);
  if (final_dir.filename().empty()) fail(ErrorCode::InvalidArgument, "checkpoint directory '{}' has no name", dir);
  const bool adapter = model.adapter() != nullptr;  // LoRA: the adapter (PEFT format) instead of the weights
  if (auto q = model.quantized_weights(); q && !adapter)
    fail(ErrorCode::Unsupported,
         "{}: the model has {} weights, which safetensors cannot hold: load it with quantize none to save a "
         "checkpoint, or write a quantised GGUF with `reason quantize`", dir, kernels::dtype_name(*q));
  const fs::path parent = fs::absolute(final_dir).parent_path();
  fs::create_directories(parent);
  const fs::path tmp = parent / (final_dir.filename().string() + ".tmp." + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  auto stage = [&](const char* s) {
    if (opts.on_stage) opts.on_stage(s);
  };
  try {
    // config.json: the source config, minus FP8 quantisation (weights are written dequantised).
    nlohmann::json cfg = model.config_json();
    if (model.config().fp8) {
      cfg.erase("quantization_config");
      cfg["torch_dtype"] = "bfloat16";
    }
    if (!adapter) atomic_write_file((tmp / "config.json").string(), cfg.dump(2));
    if (fs::is_directory(model.dir())) {
      for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"})
        copy_if_exists(fs::path(model.dir()) / f, tmp / f);
    } else {  // a model loaded from GGUF: the files made from its metadata
      for (const auto& [name, text] : model.derived_files()) atomic_write_file((tmp / name).string(), text);
    }
    stage("config");

    if (adapter) {
      model.save_adapter(tmp.string());
    } else {
      std::vector<std::pair<std::string, Tensor>> tensors;
      for (auto list : {model.parameters(), model.buffers()})
        for (auto& [name, t] : list) {
          DType dt = model.stored_dtype(name);
          if (dt == DType::F8_E4M3) dt = DType::BF16;
          const Tensor h = t.host();  // downloaded when the weights live on a device
          tensors.emplace_back(name, h.dtype() == dt ? h : h.to(dt));
        }
      write_safetensors((tmp / "model.safetensors").string(), tensors, {{"format", "pt"}});
    }
    stage("model");

    if (opt) {
      std::vector<std::pair<std::string, Tensor>> st;
      for (auto& [name, mv] : const_cast<AdamW*>(opt)->state()) {
        st.emplace_back("exp_avg." + name, mv.first.host());
        st.emplace_back("exp_avg_sq." + name, mv.second.host());
      }
      write_safetensors((tmp / "optimizer.safetensors").string(), st, {{"format", kFormat}});
    }
    stage("optimizer");
    if (!opts.model_only) {
      nlohmann::json ts;
      ts["format"] = kFormat;
      ts["step"] = opt ? opt->steps() : 0;
      ts["has_optimizer"] = opt != nullptr;
      ts["state"] = state;
      atomic_write_file((tmp / "trainer_state.json").string(), ts.dump(2));
      stage("state");
      atomic_write_file((tmp / kMarker).string(), "complete\n");
    }
    fsync_dir(tmp);
    stage("marker");

    // Swap into place.
    if (fs::exists(final_dir)) {
      if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) != 0)
        fail(ErrorCode::Io, "{}: cannot swap in the new checkpoint: {}", dir, std::strerror(errno));
      fs::remove_all(tmp);  // now the previous checkpoint
    } else if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
      fail(ErrorCode::Io, "{}: cannot rename the new checkpoint into place: {}", dir, std::strerror(errno));
    }
    fsync_dir(parent);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

bool checkpoint_complete(const std::string& dir) { return fs::exists(fs::path(dir) / kMarker); }

nlohmann::json load_optimizer_state(const std::string& dir, const Model& model, AdamW& opt) {
  if (!checkpoint_complete(dir)) fail(ErrorCode::Format, "{}: not a complete checkpoint (no {} marker)", dir, kMarker);
  const std::string sp = (fs::path(dir) / "trainer_state.json").string();
  nlohmann::json ts = read_json_file(sp);
  if (!ts.is_object() || ts.value("format", "") != kFormat || !ts.contains("step") || !ts["step"].is_number_integer())
    fail(ErrorCode::Format, "{}: not a {} trainer state", sp, kFormat);
  opt.state().clear();
  if (ts.value("has_optimizer", false)) {
    auto f = SafetensorsFile::open((fs::path(dir) / "optimizer.safetensors").string());
    for (auto& [name, p] : model.adapter() ? model.adapter_parameters() : model.parameters()) {
      const auto* m = f->find("exp_avg." + name);
      const auto* v = f->find("exp_avg_sq." + name);
      if (!m && !v) continue;  // frozen or never updated
      if (!m || !v) fail(ErrorCode::Format, "{}: optimizer state of '{}' is incomplete", f->name(), name);
      Tensor mt = f->tensor(*m), vt = f->tensor(*v);
      if (mt.shape() != p.shape() || vt.shape() != p.shape() || mt.dtype() != DType::F32 || vt.dtype() != DType::F32)
        fail(ErrorCode::Format, "{}: optimizer state of '{}' is not f32 {}", f->name(), name, p.shape_str());
      opt.state().emplace(name, std::make_pair(mt.on(model.backend()), vt.on(model.backend())));
    }
  }
  opt.set_steps(ts["step"].get<int64_t>());
  return ts.value("state", nlohmann::json::object());
}

nlohmann::json trainer_extra_state(const Trainer& trainer) {
  const EntropyControl& e = trainer.entropy_control();
  if (!e.started) return nlohmann::json::object();
  nlohmann::json j = {{"coef", e.coef}};
  if (std::isfinite(e.last_entropy)) j["last_entropy"] = e.last_entropy;
  return {{"entropy_control", j}};
}

void restore_trainer_extra_state(Trainer& trainer, const nlohmann::json& state) {
  if (!state.is_object() || !state.contains("entropy_control")) return;
  const auto& j = state["entropy_control"];
  if (!j.is_object() || !j.contains("coef") || !j["coef"].is_number())
    fail(ErrorCode::Format, "trainer_state.json: entropy_control needs a numeric coef");
  EntropyControl e;
  e.started = true;
  e.coef = j["coef"].get<float>();
  e.last_entropy = j.contains("last_entropy") && j["last_entropy"].is_number() ? j["last_entropy"].get<double>() : INFINITY;
  trainer.set_entropy_control(e);
}

}  // namespace reason
