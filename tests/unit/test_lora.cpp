// LoRA adapters against PEFT + torch autograd: tests/fixtures/lora/<case>.safetensors
// (tests/fixtures/make_lora_fixtures.py) hold an SFT batch, the logits, per-token logprobs and
// loss of base + adapter, and the gradient of every lora_A / lora_B tensor, for an adapter PEFT
// saved in lora/<case>/adapter (all-linear with a per-module rank and alpha; attention-only with
// rsLoRA). The engine loads the base with that adapter (unmerged), runs LogprobPass, and must
// give the same logprobs, no gradient to any base weight, and PEFT's adapter gradients.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/error.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "infer/generator.h"
#include "model/gguf_export.h"
#include "model/model.h"
#include "train/logprob_pass.h"
#include "train/trainer.h"

using namespace reason;
namespace fs = std::filesystem;

namespace {

const std::string kFixtures = std::string(REASON_FIXTURES_DIR) + "/";
const char* kCases[] = {"qwen2_tied_all_linear", "llama_gqa2_attn_rslora", "qwen2_moe_attn_shared", "dsv3_mla_shared_rslora"};

std::vector<int64_t> read_i64(const SafetensorsFile& f, const std::string& name, std::vector<int64_t>& shape) {
  const auto* e = f.find(name);
  REQUIRE(e != nullptr);
  shape.assign(e->shape.begin(), e->shape.end());
  std::vector<int64_t> v(size_t(e->numel));
  std::memcpy(v.data(), e->data, size_t(e->numel) * 8);
  return v;
}

struct Batch {
  std::vector<std::vector<int32_t>> seqs;
  std::vector<uint8_t> on;  // per target token: in the loss
  int64_t n_masked = 0;
  int64_t T = 0;
};

Batch read_batch(const SafetensorsFile& f) {
  std::vector<int64_t> shp, s2, s3;
  const auto ids = read_i64(f, "input_ids", shp);
  const auto attn = read_i64(f, "attention_mask", s2);
  const auto mask = read_i64(f, "loss_mask", s3);
  Batch b;
  b.T = shp[1];
  for (int64_t i = 0; i < shp[0]; ++i) {
    std::vector<int32_t> s;
    for (int64_t t = 0; t < b.T && attn[size_t(i * b.T + t)]; ++t) s.push_back(int32_t(ids[size_t(i * b.T + t)]));
    for (size_t t = 1; t < s.size(); ++t) {
      b.on.push_back(mask[size_t(i * b.T) + t] != 0);
      b.n_masked += b.on.back();
    }
    b.seqs.push_back(std::move(s));
  }
  return b;
}

}  // namespace

TEST_CASE("A PEFT adapter runs unmerged: logprobs and adapter gradients equal PEFT + torch autograd", "[lora][fixtures]") {
  for (const char* name : kCases) {
    INFO("case " << name);
    auto f = SafetensorsFile::open(kFixtures + "lora/" + name + ".safetensors");
    const auto& md = f->metadata();
    LoadOptions o;
    o.adapter = kFixtures + md.at("adapter");
    auto m = Model::load(kFixtures + md.at("model"), o);
    REQUIRE(m->adapter() != nullptr);
    const Batch b = read_batch(*f);

    LogprobPass pass;
    const auto lp = pass.forward(*m, b.seqs, 1.0f);
    const Tensor ref = f->tensor("per_token_logprobs");
    std::vector<float> dlogp(lp.size());
    double loss = 0, max_err = 0;
    size_t k = 0;
    for (size_t i = 0; i < b.seqs.size(); ++i)
      for (size_t t = 0; t + 1 < b.seqs[i].size(); ++t, ++k) {
        const float r = ref.data<float>()[int64_t(i) * (b.T - 1) + int64_t(t)];
        max_err = std::max(max_err, double(std::fabs(lp[k] - r)));
        dlogp[k] = b.on[k] ? -1.0f / float(b.n_masked) : 0.0f;
        loss -= b.on[k] ? lp[k] : 0.0;
      }
    // Logprobs of magnitude ~8 (the adapter moves logits by up to 13). DeepSeek-V3's tiny model
    // grows hidden states to |h| ~ 40, where f32 rounding alone is 3e-5 (test_train_fixtures).
    CHECK(max_err <= (std::string(name).rfind("dsv3", 0) == 0 ? 4e-5 : 2e-5));
    CHECK(std::fabs(loss / double(b.n_masked) - f->tensor("loss").data<float>()[0]) <= 1e-5);
    {  // the inference forward (KV cache, unmerged adapter) gives PEFT's logits
      const Tensor want = f->tensor("logits");
      const int64_t V = want.dim(2);
      KVCache cache = m->make_cache();
      ForwardScratch scratch;
      std::vector<SeqChunk> chunks;
      for (const auto& s : b.seqs) chunks.push_back(SeqChunk{cache.add_sequence(), s.data(), int64_t(s.size()), true});
      std::vector<float> logits;
      m->forward(chunks, cache, logits, scratch);
      float worst = 0;
      size_t row = 0;
      for (size_t i = 0; i < b.seqs.size(); ++i)
        for (size_t t = 0; t < b.seqs[i].size(); ++t, ++row)
          for (int64_t v = 0; v < V; ++v)
            worst = std::max(worst, std::fabs(logits[row * size_t(V) + size_t(v)] -
                                              want.data<float>()[(int64_t(i) * b.T + int64_t(t)) * V + v]));
      CHECK(worst <= (std::string(name).rfind("dsv3", 0) == 0 ? 3e-4f : 1e-4f));
    }

    // Accumulators exist for the adapter only: every base weight is frozen.
    Gradients g = Gradients::zeros_like(*m);
    CHECK(g.by_name.size() == m->adapter_parameters().size());
    for (const auto& [pname, t] : m->parameters()) CHECK(g.by_name.count(pname) == 0);
    pass.backward(dlogp, g);
    size_t checked = 0;
    const float rel = std::string(name).rfind("dsv3", 0) == 0 ? 3e-4f : 1e-4f;  // as the logprobs above
    for (const auto& e : f->entries()) {
      if (e.name.rfind("grad.", 0) != 0) continue;
      const std::string pname = e.name.substr(5);
      INFO("gradient of " << pname);
      REQUIRE(g.by_name.count(pname) == 1);
      const Tensor want = f->tensor(e);
      const Tensor got = g.at(pname).host();
      REQUIRE(got.numel() == want.numel());
      float scale = 0;
      for (int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::fabs(want.data<float>()[i]));
      for (int64_t i = 0; i < want.numel(); ++i)
        REQUIRE(std::fabs(got.data<float>()[i] - want.data<float>()[i]) <= rel * scale + 1e-6f);
      ++checked;
    }
    CHECK(checked == g.by_name.size());
  }
}

TEST_CASE("An adapter the engine saves is PEFT's format and reloads to the same logprobs", "[lora]") {
  const fs::path dir = fs::temp_directory_path() / ("reason_test_lora_save_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto f = SafetensorsFile::open(kFixtures + "lora/qwen2_tied_all_linear.safetensors");
  LoadOptions o;
  o.adapter = kFixtures + f->metadata().at("adapter");
  auto m = Model::load(kFixtures + f->metadata().at("model"), o);
  m->save_adapter(dir.string());
  // The same tensor names, shapes and values as PEFT's file; the config's fields PEFT reads.
  auto peft = SafetensorsFile::open(o.adapter + "/adapter_model.safetensors");
  auto ours = SafetensorsFile::open((dir / "adapter_model.safetensors").string());
  REQUIRE(ours->size() == peft->size());
  for (const auto& e : peft->entries()) {
    INFO(e.name);
    REQUIRE(ours->has(e.name));
    const Tensor a = peft->tensor(e), b = ours->tensor(e.name);
    REQUIRE(a.shape() == b.shape());
    CHECK(std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
  }
  const auto j = read_json_file((dir / "adapter_config.json").string());
  const auto pj = read_json_file(o.adapter + "/adapter_config.json");
  for (const char* key : {"peft_type", "r", "lora_alpha", "rank_pattern", "alpha_pattern", "use_rslora", "bias", "target_modules"})
    CHECK(j.at(key) == pj.at(key));

  LoadOptions o2;
  o2.adapter = dir.string();
  auto m2 = Model::load(kFixtures + f->metadata().at("model"), o2);
  const Batch b = read_batch(*f);
  LogprobPass p1, p2;
  CHECK(p1.forward(*m, b.seqs, 1.0f) == p2.forward(*m2, b.seqs, 1.0f));
  fs::remove_all(dir);
}

TEST_CASE("merge_adapter gives PEFT's merge_and_unload weights", "[lora][fixtures]") {
  for (const char* name : kCases) {
    INFO("case " << name);
    auto f = SafetensorsFile::open(kFixtures + "lora/" + name + ".safetensors");
    LoadOptions o;
    o.adapter = kFixtures + f->metadata().at("adapter");
    auto m = Model::load(kFixtures + f->metadata().at("model"), o);
    const Batch b = read_batch(*f);
    LogprobPass p1, p2;
    const auto before = p1.forward(*m, b.seqs, 1.0f);
    const size_t adapted = m->adapter_parameters().size() / 2;
    m->merge_adapter();
    CHECK(m->adapter() == nullptr);
    size_t checked = 0;
    for (const auto& [pname, t] : m->parameters()) {
      const auto* e = f->find("merged." + pname);
      if (!e) continue;
      INFO(pname);
      const Tensor want = f->tensor(*e), got = t.host();
      for (int64_t i = 0; i < want.numel(); ++i)
        REQUIRE(std::fabs(got.data<float>()[i] - want.data<float>()[i]) <= 1e-6f);
      ++checked;
    }
    CHECK(checked == adapted);
    const auto after = p2.forward(*m, b.seqs, 1.0f);
    for (size_t i = 0; i < before.size(); ++i) CHECK(std::fabs(after[i] - before[i]) <= 1e-4f);
  }
  // A bf16 base cannot be merged in place: refused before any change.
  LoadOptions o;
  o.adapter = kFixtures + "lora/qwen2_tied_all_linear/adapter";
  o.compute_dtype = DType::BF16;
  auto m = Model::load(kFixtures + "dense/qwen2_tied", o);
  CHECK_THROWS_WITH(m->merge_adapter(), Catch::Contains("load the base with dtype f32"));
  CHECK(m->adapter() != nullptr);
}

TEST_CASE("New adapters start as the base model and train only themselves", "[lora]") {
  const std::string base = kFixtures + "dense/qwen2_tied";
  LoadOptions o;
  LoraSpec s;
  s.r = 4;
  s.alpha = 8;
  s.all_linear = true;
  s.rank_pattern = {{"down_proj", 2}};
  s.seed = 7;
  o.new_adapter = s;
  auto m = Model::load(base, o);
  auto plain = Model::load(base);
  const std::vector<std::vector<int32_t>> seqs = {{5, 17, 33, 2, 9, 41, 8}};
  LogprobPass a, c;
  CHECK(a.forward(*m, seqs, 1.0f) == c.forward(*plain, seqs, 1.0f));  // lora_B = 0
  // 2 layers x 7 linear modules, lora_A and lora_B each; down_proj at rank 2
  const auto params = m->adapter_parameters();
  CHECK(params.size() == 28);
  for (const auto& [n, t] : params)
    if (n.find("down_proj.lora_A") != std::string::npos) CHECK(t.dim(0) == 2);

  std::vector<Tensor> before;
  for (const auto& [n, t] : m->parameters()) before.push_back(t.host().to(DType::F32));
  TrainerConfig tc;
  tc.optim.lr = 1e-2f;
  Trainer tr(m, tc);
  SftExample ex{{5, 17, 33, 2, 9, 41, 8}, {0, 0, 0, 1, 1, 1, 1}};
  const std::vector<std::vector<SftExample>> mbs = {{ex}};
  const float l0 = tr.sft_step(mbs).loss;
  for (int i = 0; i < 5; ++i) tr.sft_step(mbs);
  const float l1 = tr.sft_step(mbs).loss;
  CHECK(l1 < l0 - 0.1f);
  size_t i = 0;
  for (const auto& [n, t] : m->parameters()) {  // the base is untouched
    INFO(n);
    CHECK(std::memcmp(t.host().raw(), before[i++].raw(), t.nbytes()) == 0);
  }
}

TEST_CASE("QLoRA: a quantised base gives the adapter the gradients of its dequantised weights", "[lora][qlora]") {
  // The base written as a Q8_0 (and a Q4_K_M) GGUF, loaded twice with the same PEFT adapter: with
  // the quantised tensors as stored, and dequantised to f32. Training passes multiply quantised
  // weights as dequantised f32 (no int8-rounded activations: MatmulArgs::exact), so both loads
  // give the same logprobs and adapter gradients to f32 summation order, on every ISA path.
  const fs::path dir = fs::temp_directory_path() / ("reason_test_qlora_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto f = SafetensorsFile::open(kFixtures + "lora/qwen2_tied_all_linear.safetensors");
  const Batch b = read_batch(*f);
  LoadOptions plain;
  plain.quantize = WeightQuant::None;
  auto base = Model::load(kFixtures + "dense/qwen2_tied", plain);
  for (GgufOutType type : {GgufOutType::Q8_0, GgufOutType::Q4_K_M}) {
    INFO("type " << int(type));
    const std::string gguf = (dir / "base.gguf").string();
    write_gguf_model(*base, gguf, type);
    auto run = [&](WeightQuant q, std::vector<float>& lp) {
      LoadOptions o;
      o.quantize = q;
      o.adapter = kFixtures + "lora/qwen2_tied_all_linear/adapter";
      auto m = Model::load(gguf, o);
      CHECK(m->quantized_weights().has_value() == (q == WeightQuant::AsStored));
      LogprobPass pass;
      lp = pass.forward(*m, b.seqs, 1.0f);
      std::vector<float> dl(lp.size());
      for (size_t k = 0; k < dl.size(); ++k) dl[k] = b.on[k] ? -1.0f / float(b.n_masked) : 0.0f;
      Gradients g = Gradients::zeros_like(*m);
      pass.backward(dl, g);
      return g;
    };
    std::vector<float> lq, lf;
    Gradients gq = run(WeightQuant::AsStored, lq), gf = run(WeightQuant::None, lf);
    for (size_t k = 0; k < lq.size(); ++k) CHECK(std::fabs(lq[k] - lf[k]) <= 1e-4f);
    REQUIRE(gq.by_name.size() == 28);
    for (auto& [name, t] : gf.by_name) {
      INFO(name);
      const Tensor a = gq.at(name).host(), c = t.host();
      float scale = 0, err = 0;
      for (int64_t i = 0; i < a.numel(); ++i) {
        scale = std::max(scale, std::fabs(c.data<float>()[i]));
        err = std::max(err, std::fabs(a.data<float>()[i] - c.data<float>()[i]));
      }
      CHECK(err <= 1e-4f * scale + 1e-6f);
    }
  }
  fs::remove_all(dir);
}

TEST_CASE("Adapters on routed experts, and decoding with adapters equals decoding the merged model", "[lora][moe]") {
  // Routed experts get adapters when named (here every up_proj / down_proj: the experts' and the
  // shared expert's). A few SFT steps move lora_B off zero; then the unmerged model (MLA's
  // expanded path for an adapted kv_b) and the merged one (absorbed decode) score and decode alike.
  for (const char* base : {"moe/qwen2_moe", "moe/dsv3_qlora_group"}) {
    INFO(base);
    LoadOptions o;
    LoraSpec s;
    s.r = 4;
    s.alpha = 16;
    s.target_modules = {"up_proj", "down_proj", "kv_b_proj", "q_proj", "q_b_proj"};
    s.seed = 3;
    o.new_adapter = s;
    auto m = Model::load(kFixtures + base, o);
    size_t experts = 0;
    for (const auto& [n, t] : m->adapter_parameters()) experts += n.find(".experts.") != std::string::npos;
    CHECK(experts > 0);
    TrainerConfig tc;
    tc.optim.lr = 5e-2f;
    Trainer tr(m, tc);
    SftExample ex{{5, 17, 33, 2, 9, 41, 8, 12, 19}, {0, 0, 0, 1, 1, 1, 1, 1, 1}};
    const std::vector<std::vector<SftExample>> mbs = {{ex}};
    const float l0 = tr.sft_step(mbs).loss;
    for (int i = 0; i < 4; ++i) tr.sft_step(mbs);
    CHECK(tr.sft_step(mbs).loss < l0);
    const std::vector<int32_t> prompt{5, 17, 33, 2};
    std::vector<GenRequest> req(1);
    req[0].prompt = prompt;
    req[0].params.temperature = 0;
    req[0].params.max_new_tokens = 8;
    req[0].params.ignore_eos = true;
    const auto with = generate(*m, req);
    const auto lp_with = score(*m, ex.tokens);
    m->merge_adapter();
    const auto merged = generate(*m, req);
    const auto lp_merged = score(*m, ex.tokens);
    CHECK(with[0].tokens == merged[0].tokens);
    for (size_t i = 0; i < lp_with.size(); ++i) CHECK(std::fabs(lp_with[i] - lp_merged[i]) <= 2e-4f);
  }
}

TEST_CASE("LoRA dropout: masks recomputed in backward give the gradient of the dropped forward", "[lora][dropout]") {
  // lora_dropout 0.3 on the PEFT adapter; with a fixed mask seed the forward is a deterministic
  // function of the adapter's weights, so central differences of the loss must equal the
  // backward's gradient (which recomputes the masks instead of storing them).
  auto f = SafetensorsFile::open(kFixtures + "lora/qwen2_tied_all_linear.safetensors");
  const Batch b = read_batch(*f);
  const fs::path dir = fs::temp_directory_path() / ("reason_test_lora_dropout_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string peft = kFixtures + "lora/qwen2_tied_all_linear/adapter";
  auto cfg = read_json_file(peft + "/adapter_config.json");
  cfg["lora_dropout"] = 0.3;
  std::ofstream(dir / "adapter_config.json") << cfg.dump();
  fs::copy_file(peft + "/adapter_model.safetensors", dir / "adapter_model.safetensors");
  LoadOptions o;
  o.adapter = dir.string();
  auto m = Model::load(kFixtures + "dense/qwen2_tied", o);
  auto loss_of = [&](std::vector<float>* dlogp_out, LogprobPass& pass) {
    const auto lp = pass.forward(*m, b.seqs, 1.0f);
    double loss = 0;
    std::vector<float> dl(lp.size());
    for (size_t k = 0; k < lp.size(); ++k) {
      dl[k] = b.on[k] ? -1.0f / float(b.n_masked) : 0.0f;
      loss -= b.on[k] ? double(lp[k]) / double(b.n_masked) : 0.0;
    }
    if (dlogp_out) *dlogp_out = dl;
    return loss;
  };
  LogprobPass p0;
  m->set_lora_dropout_seed(0);
  const double plain = loss_of(nullptr, p0);
  CHECK(std::fabs(plain - f->tensor("loss").data<float>()[0]) <= 1e-5);  // seed 0: no dropout, PEFT's loss
  m->set_lora_dropout_seed(12345);
  LogprobPass pass;
  std::vector<float> dl;
  const double dropped = loss_of(&dl, pass);
  CHECK(std::fabs(dropped - plain) > 1e-3);  // the masks act
  Gradients g = Gradients::zeros_like(*m);
  pass.backward(dl, g);
  for (const char* pname : {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                            "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight",
                            "base_model.model.model.layers.1.mlp.up_proj.lora_B.weight"}) {
    INFO(pname);
    Tensor w;
    for (auto& [n, t] : m->adapter_parameters())
      if (n == pname) w = t;
    REQUIRE(w.raw());
    const Tensor grad = g.at(pname).host();
    // the 3 largest entries of the gradient
    std::vector<int64_t> idx(size_t(grad.numel()));
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + 3, idx.end(), [&](int64_t x, int64_t y) {
      return std::fabs(grad.data<float>()[x]) > std::fabs(grad.data<float>()[y]);
    });
    for (int q = 0; q < 3; ++q) {
      float* e = w.data<float>() + idx[size_t(q)];
      // small steps: this tiny model with a large adapter is strongly curved in q_proj's A (at
      // h = 3e-3 central differences are 40% off even without dropout)
      const float keep = *e, h = 2e-4f;
      *e = keep + h;
      LogprobPass a;
      const double up = loss_of(nullptr, a);
      *e = keep - h;
      LogprobPass c;
      const double down = loss_of(nullptr, c);
      *e = keep;
      const double fd = (up - down) / (2.0 * double(h)), an = grad.data<float>()[idx[size_t(q)]];
      CHECK(std::fabs(fd - an) <= 0.02 * std::fabs(an) + 1e-4);
    }
  }
  // Training with dropout lowers the loss; the step leaves the seed cleared (no dropout outside steps).
  TrainerConfig tc;
  tc.optim.lr = 1e-2f;
  Trainer tr(m, tc);
  SftExample ex{b.seqs[0], std::vector<uint8_t>(b.seqs[0].size(), 1)};
  ex.mask[0] = 0;
  const std::vector<std::vector<SftExample>> mbs = {{ex}};
  const float l0 = tr.sft_step(mbs).loss;
  for (int i = 0; i < 8; ++i) tr.sft_step(mbs);
  CHECK(tr.sft_step(mbs).loss < l0);
  LogprobPass x1, x2;
  CHECK(x1.forward(*m, b.seqs, 1.0f) == x2.forward(*m, b.seqs, 1.0f));
  fs::remove_all(dir);
}

TEST_CASE("Backend dropout_scale keeps 1 - p of the elements, scaled, with the same mask every call", "[lora][dropout]") {
  auto m = Model::load(kFixtures + "dense/qwen2_tied");
  kernels::Backend& be = m->backend();  // the CPU backend: host memory
  const int64_t rows = 64, cols = 100, ldx = 128;
  const float p = 0.25f;
  std::vector<float> x(size_t(rows * ldx)), y(size_t(rows * cols)), y2(y.size()), acc(y.size(), 1.0f);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i % 97) + 1.0f;
  be.dropout_scale(y.data(), x.data(), rows, cols, ldx, p, 777, false);
  be.dropout_scale(y2.data(), x.data(), rows, cols, ldx, p, 777, false);
  be.dropout_scale(acc.data(), x.data(), rows, cols, ldx, p, 777, true);
  CHECK(y == y2);
  int64_t kept = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float v = y[size_t(r * cols + c)];
      if (v != 0.0f) {
        ++kept;
        CHECK(v == Approx(x[size_t(r * ldx + c)] / (1.0f - p)));
      }
      CHECK(acc[size_t(r * cols + c)] == Approx(1.0f + v));
    }
  CHECK(double(kept) / double(rows * cols) == Approx(0.75).margin(0.02));
  be.dropout_scale(y2.data(), x.data(), rows, cols, ldx, p, 778, false);
  CHECK(y != y2);  // another seed, another mask
  CHECK_THROWS(be.dropout_scale(y.data(), x.data(), rows, cols, ldx, 1.0f, 1, false));
}

TEST_CASE("Rank and alpha patterns follow PEFT's get_pattern_key: the first listed key that matches", "[lora]") {
  const auto j = nlohmann::ordered_json::parse(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
      "rank_pattern": {"mlp.down_proj": 2}, "alpha_pattern": {"q_proj": 32, "layers.0.self_attn.q_proj": 12}})");
  const LoraSpec s = lora_spec_from_json(j, "adapter_config.json");
  CHECK(s.scale_of("model.layers.0.self_attn.q_proj") == Approx(32.0f / 4));  // "q_proj" is listed first
  CHECK(s.scale_of("model.layers.1.self_attn.q_proj") == Approx(32.0f / 4));
  CHECK(s.rank_of("model.layers.1.mlp.down_proj") == 2);
  CHECK(s.scale_of("model.layers.1.mlp.down_proj") == Approx(8.0f / 2));  // its key has no alpha: lora_alpha
  CHECK(s.scale_of("model.layers.1.self_attn.k_proj") == Approx(8.0f / 4));
  // written back in the same order (PEFT reads it so)
  CHECK(lora_spec_to_json(s, {}, "b")["alpha_pattern"].dump() == R"({"q_proj":32.0,"layers.0.self_attn.q_proj":12.0})");
}

TEST_CASE("What an adapter cannot do is refused by name", "[lora]") {
  LoadOptions o;
  o.adapter = kFixtures + "lora/qwen2_tied_all_linear/adapter";
  auto m = Model::load(kFixtures + "dense/qwen2_tied", o);
  const fs::path g = fs::temp_directory_path() / ("reason_test_lora_gguf_" + std::to_string(::getpid()) + ".gguf");
  CHECK_THROWS_WITH(write_gguf_model(*m, g.string(), GgufOutType::F16), Catch::Contains("merge it first"));
  CHECK_FALSE(fs::exists(g));
  TrainerConfig tc;
  tc.bias_update_speed = 0.01f;
  CHECK_THROWS_WITH(Trainer(m, tc), Catch::Contains("bias_update_speed"));
  tc = TrainerConfig{};
  tc.frozen_prefixes = {"model.layers.0"};
  CHECK_THROWS_WITH(Trainer(m, tc), Catch::Contains("frozen prefixes"));
  CHECK_THROWS_WITH(m->save_adapter(kFixtures + "dense/qwen2_tied"), Catch::Contains("holds a model"));
  // A quantised model without an adapter runs forward passes (a GRPO reference, a teacher) but
  // takes no gradients.
  LoadOptions q;
  q.quantize = WeightQuant::Q8_0;
  auto qm = Model::load(kFixtures + "dense/qwen2_tied", q);
  REQUIRE(qm->quantized_weights().has_value());
  LogprobPass pass;
  const auto lp = pass.forward(*qm, std::vector<std::vector<int32_t>>{{5, 17, 33, 2}}, 1.0f);
  CHECK(lp.size() == 3);
  Gradients gr = Gradients::zeros_like(*qm);
  CHECK_THROWS_WITH(pass.backward(std::vector<float>(3, -1.0f), gr), Catch::Contains("training needs unquantised weights"));
}

TEST_CASE("Bad adapters are refused with the reason", "[lora]") {
  const fs::path dir = fs::temp_directory_path() / ("reason_test_lora_bad_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string peft = kFixtures + "lora/qwen2_tied_all_linear/adapter";
  auto load_with = [&](const std::string& cfg_text) {
    std::ofstream(dir / "adapter_config.json") << cfg_text;
    fs::copy_file(peft + "/adapter_model.safetensors", dir / "adapter_model.safetensors", fs::copy_options::overwrite_existing);
    LoadOptions o;
    o.adapter = dir.string();
    Model::load(kFixtures + "dense/qwen2_tied", o);
  };
  CHECK_THROWS_WITH(load_with(R"({"peft_type": "LORA", "r": 4, "use_dora": true})"), Catch::Contains("use_dora"));
  CHECK_THROWS_WITH(load_with(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8})"),
                    Catch::Contains("down_proj's adapter has rank 2 but adapter_config.json gives it rank 4"));
  CHECK_THROWS_WITH(load_with(R"({"peft_type": "LORA", "r": "four"})"), Catch::Contains("wrong type"));
  CHECK_THROWS_WITH(load_with("not json"), Catch::Contains("adapter_config.json"));
  // an adapter for another model: shapes that do not fit
  LoadOptions o;
  o.adapter = kFixtures + "lora/llama_gqa2_attn_rslora/adapter";
  CHECK_THROWS_WITH(Model::load(kFixtures + "dense/qwen3_bias_untied", o), Catch::Contains("but the layer is"));
  LoadOptions n;
  LoraSpec s;
  s.target_modules = {"no_such_proj"};
  n.new_adapter = s;
  CHECK_THROWS_WITH(Model::load(kFixtures + "dense/qwen2_tied", n), Catch::Contains("match no linear layer"));
  fs::remove_all(dir);
}
