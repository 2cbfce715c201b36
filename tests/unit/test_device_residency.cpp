// The engine on a device the host cannot touch (GuardedBackend: the CPU kernels behind memory that
// is PROT_NONE between ops, and ops that refuse host pointers). Every model family's generation,
// scoring and expert counts, and the SFT, GRPO and distillation steps, run there and must equal
// the same run on the CPU backend bit for bit (the same kernels in the same order). A host loop over
// an activation, a weight, a KV block, a gradient or optimizer state between ops would fault, and a
// host array handed to an op would throw: this is what a CUDA run needs, checked without a GPU.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "guarded_backend.h"
#include "infer/generator.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

using namespace reason;

namespace {

const std::string kFix = std::string(REASON_FIXTURES_DIR);
const char* const kModels[] = {"dense/qwen2_tied",       "dense/llama_gqa4_odd", "dense/qwen2_bf16",
                               "moe/mixtral",            "moe/qwen2_moe",        "moe/qwen3_moe",
                               "moe/dsv3_qlora_group",   "moe/dsv3_noqlora_nogroup"};

std::shared_ptr<const Model> load(const std::string& rel, kernels::Backend* be, DType dtype = DType::F32) {
  LoadOptions o;
  o.backend = be;
  o.compute_dtype = dtype;
  o.load_tokenizer = false;
  return Model::load(kFix + "/" + rel, o);
}

std::vector<GenRequest> requests(int64_t vocab) {
  std::vector<GenRequest> r(3);
  for (size_t i = 0; i < r.size(); ++i) {
    for (int t = 0; t < 5 + 3 * int(i); ++t) r[i].prompt.push_back(int32_t((17 * i + 29 * t + 3) % vocab));
    r[i].params.max_new_tokens = 6;
    r[i].params.ignore_eos = true;
    r[i].params.temperature = i == 0 ? 0.0f : 0.8f;
    r[i].params.top_p = 0.9f;
    r[i].params.seed = 7 + i;
  }
  r.push_back(r[1]);  // a second sample of request 1's prompt, sharing its KV blocks
  r.back().share_prefix_with = 1;
  r.back().params.seed = 99;
  return r;
}

std::vector<float> weights(const Model& m) {
  std::vector<float> out;
  for (const auto& [name, t] : m.parameters()) {
    const Tensor h = t.host().to(DType::F32);
    out.insert(out.end(), h.data<float>(), h.data<float>() + h.numel());
  }
  return out;
}

std::vector<SftExample> sft_batch(int64_t vocab) {
  std::vector<SftExample> b(2);
  for (size_t i = 0; i < b.size(); ++i) {
    for (int t = 0; t < 9 + int(i); ++t) b[i].tokens.push_back(int32_t((31 * i + 7 * t + 5) % vocab));
    b[i].mask.assign(b[i].tokens.size(), 1);
    b[i].mask[0] = b[i].mask[1] = 0;
  }
  return b;
}

std::vector<GrpoSample> grpo_batch(int64_t vocab) {
  std::vector<GrpoSample> b(4);
  for (size_t i = 0; i < b.size(); ++i) {
    b[i].prompt = {int32_t(3 % vocab), int32_t(11 % vocab), int32_t((5 + i / 2) % vocab)};
    for (int t = 0; t < 3 + int(i); ++t) b[i].completion.push_back(int32_t((13 * i + 5 * t + 1) % vocab));
    b[i].reward = float(i % 2);
    for (size_t t = 0; t < b[i].completion.size(); ++t) {
      b[i].old_logprobs.push_back(-4.0f + 0.1f * float(t));
      b[i].ref_logprobs.push_back(-4.2f + 0.05f * float(i));
    }
  }
  return b;
}

}  // namespace

TEST_CASE("inference on a device the host cannot touch equals the CPU's", "[device]") {
  for (const char* rel : kModels) {
    INFO(rel);
    test::GuardedBackend g;
    auto dev = load(rel, &g, std::string(rel) == "dense/qwen2_bf16" ? DType::BF16 : DType::F32);
    auto cpu = load(rel, nullptr, dev->compute_dtype());
    REQUIRE(&dev->backend() == &g);
    const int64_t V = cpu->config().vocab_size;
    const auto req = requests(V);
    GenerateStats sd, sc;
    GenerateOptions od, oc;
    od.stats = &sd;
    oc.stats = &sc;
    od.prefill_token_budget = oc.prefill_token_budget = 8;  // prompts split over forward steps
    const auto rd = generate(*dev, req, {}, od);
    const auto rc = generate(*cpu, req, {}, oc);
    REQUIRE(rd.size() == rc.size());
    for (size_t i = 0; i < rd.size(); ++i) {
      CHECK(rd[i].tokens == rc[i].tokens);
      CHECK(rd[i].logprobs == rc[i].logprobs);
    }
    CHECK(sd.prompt_tokens_shared == sc.prompt_tokens_shared);
    CHECK(sd.prompt_tokens_shared > 0);
    CHECK(sd.kv_peak_bytes == sc.kv_peak_bytes);
    const std::vector<int32_t> ids = req[2].prompt;
    CHECK(score(*dev, ids) == score(*cpu, ids));
    if (cpu->config().n_experts > 0) CHECK(expert_load(*dev, ids) == expert_load(*cpu, ids));
    CHECK(g.ops() > 100);
  }
}

TEST_CASE("SFT, GRPO and distillation steps on a device the host cannot touch equal the CPU's", "[device][train]") {
  for (const char* rel : {"dense/qwen2_tied", "moe/qwen2_moe", "moe/dsv3_qlora_group"}) {
    INFO(rel);
    test::GuardedBackend g;
    auto dev = load(rel, &g);
    auto cpu = load(rel, nullptr);
    const int64_t V = cpu->config().vocab_size;
    TrainerConfig tc;
    tc.optim.lr = 1e-3f;
    tc.optim.max_grad_norm = 1.0f;
    tc.aux_loss_alpha = cpu->config().n_experts > 0 ? 0.01f : 0.0f;
    tc.bias_update_speed = cpu->config().n_experts > 0 ? 0.001f : 0.0f;
    Trainer td(dev, tc), tcpu(cpu, tc);
    const std::vector<std::vector<SftExample>> sft{sft_batch(V)};
    GrpoConfig gc;
    gc.group_size = 2;
    gc.beta = 0.04f;
    gc.epsilon_high = 0.28f;
    const auto gb = grpo_batch(V);
    DistillConfig dc;
    auto teacher_dev = load(rel, &g);
    auto teacher_cpu = load(rel, nullptr);
    for (int step = 0; step < 2; ++step) {
      const StepMetrics a = td.sft_step(sft), b = tcpu.sft_step(sft);
      CHECK(a.loss == b.loss);
      CHECK(a.grad_norm == b.grad_norm);
      const StepMetrics c = td.grpo_step(gb, gc), d = tcpu.grpo_step(gb, gc);
      CHECK(c.loss == d.loss);
      CHECK(c.grad_norm == d.grad_norm);
      CHECK(td.last_token_grads() == tcpu.last_token_grads());
      const StepMetrics e = td.distill_step(*teacher_dev, sft, dc), f = tcpu.distill_step(*teacher_cpu, sft, dc);
      CHECK(e.loss == f.loss);
      CHECK(e.grad_norm == f.grad_norm);
    }
    CHECK(weights(*dev) == weights(*cpu));
    for (const auto& [name, t] : td.gradients().by_name) REQUIRE(t.backend() == &g);

    // A checkpoint written from the device holds the same tensors as the CPU's, and its optimizer
    // state goes back onto the device.
    namespace fs = std::filesystem;
    const fs::path root = fs::temp_directory_path() / ("reason_device_ckpt_" + std::to_string(::getpid()));
    save_checkpoint((root / "dev").string(), *dev, &td.optimizer());
    save_checkpoint((root / "cpu").string(), *cpu, &tcpu.optimizer());
    for (const char* f : {"model.safetensors", "optimizer.safetensors"}) {
      auto a = SafetensorsFile::open((root / "dev" / f).string()), b = SafetensorsFile::open((root / "cpu" / f).string());
      REQUIRE(a->entries().size() == b->entries().size());
      for (const auto& e : a->entries()) {
        const auto* o = b->find(e.name);
        REQUIRE(o != nullptr);
        CHECK(std::memcmp(e.data, o->data, e.nbytes) == 0);
      }
    }
    AdamW back(tc.optim);
    load_optimizer_state((root / "dev").string(), *dev, back);
    REQUIRE(!back.state().empty());
    for (const auto& [name, mv] : back.state()) REQUIRE(mv.first.backend() == &g);
    fs::remove_all(root);
  }
}

TEST_CASE("distillation from a teacher on another device is refused before any work", "[device][train]") {
  test::GuardedBackend g;
  auto student = load("dense/qwen2_tied", &g);
  auto teacher = load("dense/qwen2_tied", nullptr);
  Trainer tr(student, TrainerConfig{});
  const std::vector<std::vector<SftExample>> sft{sft_batch(student->config().vocab_size)};
  const std::vector<float> before = weights(*student);
  CHECK_THROWS_WITH(tr.distill_step(*teacher, sft, DistillConfig{}),
                    Catch::Contains("the teacher runs on cpu but the student on guarded-cpu"));
  CHECK(weights(*student) == before);
}

TEST_CASE("a NaN on the device stops the step with a clear error and leaves the weights unchanged", "[device][train]") {
  test::GuardedBackend g;
  auto dev = load("dense/qwen2_tied", &g);
  Trainer tr(dev, TrainerConfig{});
  auto batch = grpo_batch(dev->config().vocab_size);
  for (auto& s : batch) s.old_logprobs[0] = -1e30f;  // the ratio overflows on the device: an inf / NaN loss
  GrpoConfig gc;
  gc.group_size = 2;
  const std::vector<float> before = weights(*dev);
  CHECK_THROWS_WITH(tr.grpo_step(batch, gc), Catch::Contains("not finite"));
  batch[0].old_logprobs[0] = NAN;  // a NaN input is refused before any work, naming it
  CHECK_THROWS_WITH(tr.grpo_step(batch, gc), Catch::Contains("sample 0 has a non-finite old logprobs value at token 0"));
  CHECK(weights(*dev) == before);
  CHECK(tr.step_count() == 0);
}

TEST_CASE("the guarded backend catches host memory handed to an op and host reads of its memory", "[device]") {
  test::GuardedBackend g;
  std::vector<float> host(8, 1.0f);
  DeviceArray<float> d(g, 8);
  CHECK_THROWS_WITH(g.add_inplace(d.data(), host.data(), 8), Catch::Contains("add_inplace: x is host memory"));
  d.upload(g, host);
  CHECK_THROWS_WITH(g.upload(d.data(), d.data(), 4), Catch::Contains("upload: src is device memory"));
  g.add_inplace(d.data(), d.data(), 8);
  CHECK(d.download() == std::vector<float>(8, 2.0f));
  std::vector<float> mirror;
  CHECK(d.read(mirror).size() == 8);  // read() downloads: the host never dereferences d.data()
  CHECK(mirror == std::vector<float>(8, 2.0f));
}
