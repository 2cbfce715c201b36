// reason_train_mem_bench: peak memory (and time) of one SFT step on one long sequence.
// Not a test: run by bench/run_train_memory.sh, one process per sequence length (ru_maxrss is the
// process's high-water mark).
//
//   reason_train_mem_bench --seq-len N [--layers 4 --heads 8 --hidden 256 --ffn 768]
//                          [--tokenizer DIR] [--recompute] [--threads T]
//
// A Qwen2-shaped model is initialised from scratch (reason::write_initial_model, seed 1, vocab from
// the tokenizer: the addition task's by default) in a temporary directory, loaded in f32, and one
// Trainer::sft_step runs on one sequence of N random token ids whose first N/4 tokens are prompt.
// Prints one JSON line: seq_len, peak RSS (ru_maxrss and /proc/self/status VmHWM), RSS after load,
// step seconds, loss.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "model/model.h"
#include "reason/kernels/backend.h"
#include "train/model_init.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace {

long vm_hwm_kib() {
  std::ifstream f("/proc/self/status");
  std::string k;
  long v = -1;
  while (f >> k) {
    if (k == "VmHWM:") {
      f >> v;
      return v;
    }
  }
  return -1;
}

long maxrss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t n = 4096, layers = 4, heads = 8, hidden = 256, ffn = 768;
  int threads = 0;
  bool recompute = false;
  std::string tok = std::string(REASON_SOURCE_DIR) + "/examples/pipelines/assets/addition-tokenizer";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--seq-len") n = std::atoll(next().c_str());
    else if (a == "--layers") layers = std::atoll(next().c_str());
    else if (a == "--heads") heads = std::atoll(next().c_str());
    else if (a == "--hidden") hidden = std::atoll(next().c_str());
    else if (a == "--ffn") ffn = std::atoll(next().c_str());
    else if (a == "--tokenizer") tok = next();
    else if (a == "--threads") threads = std::atoi(next().c_str());
    else if (a == "--recompute") recompute = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  try {
    if (threads > 0) reason::kernels::set_cpu_threads(threads);
    const fs::path dir = fs::temp_directory_path() / ("reason_train_mem_" + std::to_string(::getpid()));
    reason::ModelInitOptions mo;
    mo.hidden_size = hidden, mo.intermediate_size = ffn, mo.num_layers = layers, mo.num_heads = heads;
    mo.max_position_embeddings = std::max<int64_t>(n, 512);
    mo.tokenizer_dir = tok;
    reason::write_initial_model(dir.string(), mo, 1);
    reason::LoadOptions lo;
    lo.compute_dtype = reason::DType::F32;
    lo.load_tokenizer = false;
    std::shared_ptr<const reason::Model> model = reason::Model::load(dir.string(), lo);
    fs::remove_all(dir);
    const long rss_loaded = maxrss_kib();
    const int64_t V = model->config().vocab_size;
    reason::SftExample ex;
    std::mt19937 rng(7);
    for (int64_t t = 0; t < n; ++t) {
      ex.tokens.push_back(int32_t(rng() % uint32_t(V)));
      ex.mask.push_back(t >= n / 4 ? 1 : 0);
    }
    reason::TrainerConfig tc;
    tc.optim.lr = 1e-5f;
    tc.recompute_activations = recompute;
    reason::Trainer trainer(model, tc);
    std::vector<std::vector<reason::SftExample>> batch{{ex}};
    const auto t0 = std::chrono::steady_clock::now();
    const reason::StepMetrics m = trainer.sft_step(batch);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("{\"seq_len\": %lld, \"layers\": %lld, \"heads\": %lld, \"hidden\": %lld, \"ffn\": %lld, \"vocab\": %lld, "
                "\"params\": %lld, \"recompute\": %s, \"threads\": %d, \"peak_rss_mib\": %.1f, \"vm_hwm_mib\": %.1f, "
                "\"rss_after_load_mib\": %.1f, \"step_s\": %.2f, \"loss\": %.4f}\n",
                (long long)n, (long long)layers, (long long)heads, (long long)hidden, (long long)ffn, (long long)V,
                (long long)model->n_params(), recompute ? "true" : "false", reason::kernels::cpu_threads(),
                double(maxrss_kib()) / 1024.0, double(vm_hwm_kib()) / 1024.0, double(rss_loaded) / 1024.0, secs,
                double(m.loss));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reason_train_mem_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
