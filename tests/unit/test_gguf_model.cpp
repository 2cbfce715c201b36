// GGUF model files (model/gguf_model.h): tiny GGUFs written the way llama.cpp's converter writes
// them (tests/fixtures/make_gguf_model_fixtures.py, gguf-py) must give the logits and greedy
// tokens of the transformers checkpoints they were made from, a quantised one transformers'
// values on the same file, the tokenizer and chat template from the metadata, and every file the
// engine cannot run faithfully must be refused by name.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "expect_error.h"
#include "fixture_util.h"
#include "infer/generator.h"
#include "io/gguf.h"
#include "io/gguf_write.h"
#include "model/generation_config.h"
#include "model/gguf_export.h"
#include "model/gguf_model.h"
#include "model/model.h"
#include "reason/kernels/quant.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"

using namespace reason;
namespace fs = std::filesystem;

namespace {

const std::string kFix = std::string(REASON_FIXTURES_DIR) + "/";
const std::string kGguf = kFix + "gguf_models/";

struct Case {
  const char* gguf;
  const char* src;  // the Hugging Face fixture it was converted from
  int prompts;
};
const Case kCases[] = {
    {"llama_gqa2_llama3rope.gguf", "dense/llama_gqa2_llama3rope", 4},
    {"qwen3_bias_untied.gguf", "dense/qwen3_bias_untied", 4},
    {"qwen2_moe.gguf", "moe/qwen2_moe", 2},
    {"dsv3_qlora_group.gguf", "moe/dsv3_qlora_group", 2},
    {"dsv3_noqlora_nogroup.gguf", "moe/dsv3_noqlora_nogroup", 2},
};

// Greedy tokens of every prompt, decoded together.
std::vector<std::vector<int32_t>> greedy(const Model& m, const std::vector<std::vector<int32_t>>& prompts, int n) {
  std::vector<GenRequest> reqs(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    reqs[i].prompt = prompts[i];
    reqs[i].params.temperature = 0.0f;
    reqs[i].params.max_new_tokens = n;
    reqs[i].params.ignore_eos = true;
  }
  std::vector<std::vector<int32_t>> out;
  for (auto& r : generate(m, reqs)) out.push_back(r.tokens);
  return out;
}

void check_against(const Model& m, const test::Fixture& ex, int prompts) {
  std::vector<std::vector<int32_t>> ps;
  for (int i = 0; i < prompts; ++i) {
    INFO("prompt " << i);
    ps.push_back(ex.ids("prompt_" + std::to_string(i)));
    const auto want = ex.floats("logits_" + std::to_string(i));
    const auto got = test::prefill_logits(m, ps.back());
    REQUIRE(got.size() == want.size());
    CHECK(test::max_abs_diff(got.data(), want.data(), got.size()) < 1e-4f);
  }
  const auto g = greedy(m, ps, int(ex.ids("greedy_0").size()));
  for (int i = 0; i < prompts; ++i) CHECK(g[size_t(i)] == ex.ids("greedy_" + std::to_string(i)));
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "reason_gguf_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// A copy of GGUF `src` with metadata and tensors edited by the callbacks, written to `path`.
using Meta = std::vector<std::pair<std::string, GgufValue>>;
void rewrite(const std::string& src, const std::string& path, const std::function<void(Meta&)>& edit_meta,
             const std::function<void(std::vector<GgufWriteTensor>&)>& edit_tensors = {}) {
  auto f = GgufFile::open(src);
  Meta meta;
  for (const auto& [k, v] : f->metadata())
    if (k != "general.alignment") meta.emplace_back(k, v);
  std::vector<GgufWriteTensor> ts;
  for (const auto& t : f->tensors())
    ts.push_back({t.name, t.dims, t.type, [f, &t](const auto& sink) { sink(t.data, size_t(t.nbytes)); }});
  edit_meta(meta);
  if (edit_tensors) edit_tensors(ts);
  write_gguf(path, meta, ts);
}
void set(Meta& m, const std::string& key, GgufValue v) {
  for (auto& [k, old] : m)
    if (k == key) {
      old = std::move(v);
      return;
    }
  m.emplace_back(key, std::move(v));
}
void drop(Meta& m, const std::string& key) {
  std::erase_if(m, [&](const auto& kv) { return kv.first == key; });
}

}  // namespace

TEST_CASE("GGUF files give the logits and greedy tokens of the checkpoints they were converted from", "[gguf]") {
  for (const Case& c : kCases) {
    INFO(c.gguf);
    auto m = Model::load(kGguf + c.gguf);
    auto hf = Model::load(kFix + c.src);
    CHECK(m->config().architecture == hf->config().architecture);
    CHECK(m->config().n_experts == hf->config().n_experts);
    CHECK(m->config().rope_scaling.type == hf->config().rope_scaling.type);
    CHECK(m->config().eos_token_ids == hf->config().eos_token_ids);
    if (hf->n_mtp_modules() == 0) CHECK(m->n_params() == hf->n_params());  // (GGUF files carry no MTP layers)
    check_against(*m, test::Fixture(kFix + c.src + "/expected.safetensors"), c.prompts);
  }
}

TEST_CASE("a quantised GGUF gives transformers' logits on the same file", "[gguf]") {
  // Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16 and BF16 weights, dequantised at load (quantize none) as
  // gguf-py does.
  LoadOptions o;
  o.quantize = WeightQuant::None;
  auto m = Model::load(kGguf + "llama_mha_quant.gguf", o);
  check_against(*m, test::Fixture(kGguf + "expected_quant.safetensors"), 4);
  CHECK(m->stored_dtype("model.layers.0.mlp.up_proj.weight") == DType::F16);
  CHECK(m->stored_dtype("lm_head.weight") == DType::BF16);
  CHECK(m->stored_dtype("model.layers.0.self_attn.q_proj.weight") == DType::F32);
  CHECK_FALSE(m->quantized_weights().has_value());
}

TEST_CASE("a quantised GGUF's tensors are used as stored, viewing the mapped file", "[gguf][quant]") {
  LoadOptions exact;
  exact.quantize = WeightQuant::None;
  const auto deq = Model::load(kGguf + "llama_mha_quant.gguf", exact);
  const auto m = Model::load(kGguf + "llama_mha_quant.gguf");  // quantize: stored (the default)
  std::map<std::string, Tensor> p, d;
  for (const auto& [n, t] : m->parameters()) p[n] = t;
  for (const auto& [n, t] : deq->parameters()) d[n] = t;
  const std::string l0 = "model.layers.0.";
  CHECK(kernels::dtype_block_format(p[l0 + "self_attn.q_proj.weight"].dtype()) == DType::Q4_0);  // rows put back in HF order
  CHECK(kernels::dtype_block_format(p[l0 + "self_attn.k_proj.weight"].dtype()) == DType::Q4_1);
  CHECK(kernels::dtype_block_format(p[l0 + "mlp.gate_proj.weight"].dtype()) == DType::Q8_0);
  CHECK(kernels::dtype_block_format(p["model.embed_tokens.weight"].dtype()) == DType::Q8_0);
  CHECK(kernels::dtype_block_format(p[l0 + "self_attn.v_proj.weight"].dtype()) == DType::Q5_0);
  CHECK(kernels::dtype_block_format(p[l0 + "self_attn.o_proj.weight"].dtype()) == DType::Q5_1);
  CHECK(p[l0 + "mlp.up_proj.weight"].dtype() == DType::F32);  // F16 -> the compute dtype
  CHECK(m->stored_dtype(l0 + "mlp.gate_proj.weight") == DType::Q8_0);
  // The same values as the dequantised model, row for row (the permuted Q rows included).
  for (const char* n : {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                        "self_attn.o_proj.weight", "mlp.gate_proj.weight"}) {
    INFO(n);
    const Tensor a = p[l0 + n].to(DType::F32), b = d[l0 + n];
    REQUIRE(a.shape() == b.shape());
    CHECK(std::memcmp(a.raw(), b.raw(), b.nbytes()) == 0);
  }
  // On the CPU backend Q8_0 ... Q5_1 matrices of whole groups of 8 rows are held in their x8
  // layouts (the file's pages released once copied): the same bytes, 8 rows interleaved.
  auto file = GgufFile::open(kGguf + "llama_mha_quant.gguf");
  const Tensor& gate = p[l0 + "mlp.gate_proj.weight"];
  CHECK(gate.dtype() == DType::Q8_0x8);
  std::vector<uint8_t> unpacked(gate.nbytes());
  REQUIRE(kernels::unpack_x8(gate.dtype(), gate.raw(), unpacked.data(), gate.dim(0), gate.dim(1)));
  CHECK(std::memcmp(unpacked.data(), file->find_tensor("blk.0.ffn_gate.weight")->data, gate.nbytes()) == 0);
  CHECK(m->n_params() == deq->n_params());
}

TEST_CASE("the tokenizer and chat template come from the GGUF metadata", "[gguf]") {
  for (const Case& c : kCases) {
    INFO(c.gguf);
    auto m = Model::load(kGguf + c.gguf);
    auto tok = m->require_tokenizer();
    auto ref = Tokenizer::load(kFix + c.src);  // the fixture's tokenizer.json (checked against HF elsewhere)
    for (const char* text : {"Hello world, how are you?", "<|im_start|>user\nWhat is 12+30?<|im_end|>\n<think>\nok</think>",
                             "  spaces\tand\nnewlines\n\n", "don't stop: naïve café"}) {
      INFO(text);
      CHECK(tok->encode(text, false) == ref->encode(text, false));
      const auto ids = tok->encode(text, false);
      CHECK(tok->decode(ids) == text);
    }
    CHECK(tok->chat_format() == ref->chat_format());
  }
}

TEST_CASE("a model loaded from GGUF saves as a Hugging Face directory that loads the same", "[gguf]") {
  TempDir tmp;
  auto m = Model::load(kGguf + "qwen2_moe.gguf");
  const std::string dir = (tmp.path / "hf").string();
  save_checkpoint(dir, *m, nullptr);
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors"})
    CHECK(fs::exists(fs::path(dir) / f));
  auto back = Model::load(dir);
  check_against(*back, test::Fixture(kFix + "moe/qwen2_moe/expected.safetensors"), 2);
  const std::string text = "<|im_start|>user\nHi there<|im_end|>";
  CHECK(back->require_tokenizer()->encode(text, false) == m->require_tokenizer()->encode(text, false));
}

TEST_CASE("GGUF sampling metadata are generation defaults", "[gguf]") {
  TempDir tmp;
  const std::string path = (tmp.path / "s.gguf").string();
  rewrite(kGguf + "qwen3_bias_untied.gguf", path, [](Meta& m) {
    set(m, "general.sampling.temp", gguf_f32(0.6f));
    set(m, "general.sampling.top_p", gguf_f32(0.95f));
    set(m, "general.sampling.top_k", gguf_i32(20));
  });
  const GenerationDefaults d = read_generation_defaults(path);
  REQUIRE(d.temperature);
  CHECK(*d.temperature == Approx(0.6));
  CHECK(*d.top_p == Approx(0.95));
  CHECK(*d.top_k == 20);
  CHECK(*d.do_sample);
  CHECK(!read_generation_defaults(kGguf + "qwen3_bias_untied.gguf").temperature);
}

TEST_CASE("GGUF files the engine cannot run faithfully are refused by name", "[gguf][errors]") {
  TempDir tmp;
  const std::string path = (tmp.path / "bad.gguf").string();
  using test::expect_error;
  auto load_with = [&](const std::string& src, const std::function<void(Meta&)>& em,
                       const std::function<void(std::vector<GgufWriteTensor>&)>& et = {}) {
    rewrite(kGguf + src, path, em, et);
    Model::load(path);
  };
  expect_error([&] { load_with("qwen3_bias_untied.gguf", [](Meta& m) { set(m, "general.architecture", gguf_string("gemma2")); }); },
               ErrorCode::Unsupported, {"bad.gguf", "architecture \"gemma2\" is not supported"});
  expect_error([&] { load_with("qwen3_bias_untied.gguf", [](Meta& m) { drop(m, "qwen3.block_count"); }); },
               ErrorCode::Format, {"bad.gguf", "qwen3.block_count"});
  expect_error([&] { load_with("qwen3_bias_untied.gguf", [](Meta& m) { set(m, "qwen3.block_count", gguf_u32(5)); }); },
               ErrorCode::Format, {"num_hidden_layers", "model.layers.4"});
  expect_error([&] { load_with("qwen3_bias_untied.gguf", [](Meta& m) { set(m, "qwen3.attention.head_count", gguf_u32(9)); }); },
               ErrorCode::Format, {"q_proj", "shape"});
  expect_error([&] { load_with("qwen3_bias_untied.gguf", [](Meta& m) { set(m, "qwen3.attention.sliding_window", gguf_u32(64)); }); },
               ErrorCode::Unsupported, {"sliding_window"});
  expect_error([&] { load_with("qwen3_bias_untied.gguf", [](Meta& m) { set(m, "qwen3.rope.dimension_count", gguf_u32(4)); }); },
               ErrorCode::Unsupported, {"partial rotary"});
  expect_error([&] { load_with("qwen3_bias_untied.gguf", [](Meta& m) { set(m, "tokenizer.ggml.pre", gguf_string("chatglm-bpe")); }); },
               ErrorCode::Unsupported, {"tokenizer.ggml.pre \"chatglm-bpe\""});
  expect_error([&] { load_with("qwen3_bias_untied.gguf", [](Meta& m) { set(m, "tokenizer.ggml.model", gguf_string("llama")); }); },
               ErrorCode::Unsupported, {"tokenizer.ggml.model \"llama\""});
  expect_error([&] { load_with("qwen3_bias_untied.gguf", [](Meta& m) { set(m, "tokenizer.ggml.eos_token_id", gguf_u32(100000)); }); },
               ErrorCode::Format, {"eos_token_id"});
  expect_error([&] { load_with("qwen3_bias_untied.gguf", [](Meta& m) { set(m, "tokenizer.ggml.token_type", gguf_i32_array({1, 1})); }); },
               ErrorCode::Format, {"tokenizer.ggml.token_type"});
  expect_error([&] { load_with("qwen3_bias_untied.gguf", [](Meta& m) {
    GgufValue toks = [&] { for (auto& [k, v] : m) if (k == "tokenizer.ggml.tokens") return v; return GgufValue{}; }();
    toks.items[5].s = std::string("\xff\xfe");
    set(m, "tokenizer.ggml.tokens", toks);
  }); }, ErrorCode::Format, {"tokenizer.ggml.tokens[5] is not valid UTF-8"});
  expect_error([&] { load_with("dsv3_qlora_group.gguf", [](Meta& m) { set(m, "deepseek2.expert_gating_func", gguf_u32(1)); }); },
               ErrorCode::Unsupported, {"softmax expert gating"});
  // A tensor the engine does not know (math it would skip), and a stacked expert tensor that is not 3-D.
  expect_error([&] {
    load_with("qwen3_bias_untied.gguf", [](Meta&) {}, [](std::vector<GgufWriteTensor>& ts) {
      GgufWriteTensor t = ts.back();
      t.name = "blk.0.attn_sinks.weight";
      ts.push_back(t);
    });
  }, ErrorCode::Unsupported, {"blk.0.attn_sinks.weight", "qwen3"});
  expect_error([&] {
    load_with("qwen2_moe.gguf", [](Meta&) {}, [](std::vector<GgufWriteTensor>& ts) {
      for (auto& t : ts)
        if (t.name == "blk.0.ffn_up_exps.weight") {
          t.dims = {t.dims[0], t.dims[1] * t.dims[2]};
        }
    });
  }, ErrorCode::Format, {"blk.0.ffn_up_exps.weight", "3-D"});
  // rope_freqs.weight that are not Llama 3's factors.
  expect_error([&] {
    load_with("llama_gqa2_llama3rope.gguf", [](Meta&) {}, [](std::vector<GgufWriteTensor>& ts) {
      for (auto& t : ts)
        if (t.name == "rope_freqs.weight")
          t.write = [n = t.dims[0]](const auto& sink) {
            std::vector<float> v(size_t(n), 1.5f);
            v[0] = 3.0f;
            sink(v.data(), v.size() * 4);
          };
    });
  }, ErrorCode::Unsupported, {"rope_freqs.weight", "not Llama 3"});
  // Not a GGUF at all, and a truncated one.
  {
    std::ofstream(path, std::ios::binary) << "GGUF\x03";
    expect_error([&] { Model::load(path); }, ErrorCode::Format, {"bad.gguf"});
  }
  // A failed load leaves nothing behind and the good file still loads.
  CHECK_NOTHROW(Model::load(kGguf + "qwen3_bias_untied.gguf"));
}

namespace {

// Tensor `name` of two GGUF files: same dims, type and bytes.
void check_same_tensor(const GgufFile& a, const GgufFile& b, const std::string& name) {
  INFO(name);
  const auto* x = a.find_tensor(name);
  const auto* y = b.find_tensor(name);
  REQUIRE(x != nullptr);
  REQUIRE(y != nullptr);
  CHECK(x->type == y->type);
  // gguf-py keeps a [1, d] shared-expert gate as 2-D; the engine writes it 1-D as llama.cpp reads it
  if (name.find("ffn_gate_inp_shexp") == std::string::npos) CHECK(x->dims == y->dims);
  REQUIRE(x->nbytes == y->nbytes);
  if (name == "rope_freqs.weight") {  // the converter computes the factors in torch f32: within 1 ulp
    REQUIRE(x->type == uint32_t(GgmlType::F32));
    for (int64_t i = 0; i < x->numel; ++i) {
      float u, v;
      std::memcpy(&u, x->data + 4 * i, 4);
      std::memcpy(&v, y->data + 4 * i, 4);
      CHECK(std::fabs(u - v) <= 2e-7f * std::fabs(v));
    }
    return;
  }
  CHECK(std::memcmp(x->data, y->data, x->nbytes) == 0);
}

}  // namespace

TEST_CASE("convert to GGUF writes what llama.cpp's converter writes, and loads back as the checkpoint", "[gguf][convert]") {
  TempDir tmp;
  LoadOptions f32;
  for (const Case& c : kCases) {
    INFO(c.gguf);
    auto hf = Model::load(kFix + c.src, f32);
    const std::string out = (tmp.path / c.gguf).string();
    write_gguf_model(*hf, out, GgufOutType::F32);
    // Every tensor equals the one gguf-py wrote following convert_hf_to_gguf.py.
    auto ours = GgufFile::open(out);
    auto ref = GgufFile::open(kGguf + c.gguf);
    if (!ref->find_tensor("blk.0.attn_kv_b.weight")) {  // (that fixture has the older whole-kv_b layout)
      CHECK(ours->tensors().size() == ref->tensors().size());
      for (const auto& t : ref->tensors()) check_same_tensor(*ours, *ref, t.name);
    }
    for (const auto& [k, v] : ref->metadata())
      if (k != "general.name" && k != "general.file_type") {
        INFO(k);
        CHECK(ours->find(k) != nullptr);
      }
    check_against(*Model::load(out), test::Fixture(kFix + std::string(c.src) + "/expected.safetensors"), c.prompts);
  }
  // Mixtral-style experts under "llama" (no committed GGUF): the round trip alone.
  const std::string mx = (tmp.path / "mixtral.gguf").string();
  write_gguf_model(*Model::load(kFix + "moe/mixtral", f32), mx, GgufOutType::F32);
  auto m = Model::load(mx);
  CHECK(m->config().arch == Arch::Mixtral);
  check_against(*m, test::Fixture(kFix + "moe/mixtral/expected.safetensors"), 2);
}

TEST_CASE("convert to GGUF as q8_0, f16 and bf16 gives gguf-py's bytes", "[gguf][convert]") {
  // llama_mha_quant.gguf holds gguf-py's Q8_0 (ffn_gate, ffn_down, token_embd), F16 (ffn_up) and
  // BF16 (output) encodings of llama_mha's f32 weights.
  TempDir tmp;
  LoadOptions f32;
  auto hf = Model::load(kFix + "dense/llama_mha", f32);
  auto ref = GgufFile::open(kGguf + "llama_mha_quant.gguf");
  const std::string q8 = (tmp.path / "q8.gguf").string(), f16 = (tmp.path / "f16.gguf").string(),
                    bf16 = (tmp.path / "bf16.gguf").string();
  write_gguf_model(*hf, q8, GgufOutType::Q8_0);
  write_gguf_model(*hf, f16, GgufOutType::F16);
  write_gguf_model(*hf, bf16, GgufOutType::BF16);
  auto a = GgufFile::open(q8), b = GgufFile::open(f16), c = GgufFile::open(bf16);
  for (const char* n : {"token_embd.weight", "blk.0.ffn_gate.weight", "blk.1.ffn_down.weight"}) check_same_tensor(*a, *ref, n);
  check_same_tensor(*b, *ref, "blk.0.ffn_up.weight");
  check_same_tensor(*c, *ref, "output.weight");
  CHECK(a->find_tensor("blk.0.attn_norm.weight")->type == uint32_t(GgmlType::F32));  // norms stay f32
  CHECK(a->get_uint("general.file_type") == 7);
  // And each loads and runs (its logits are the f32 model's within what the rounding allows).
  const auto ex = test::Fixture(kFix + "dense/llama_mha/expected.safetensors");
  for (auto [p, tol] : {std::pair{q8, 0.5f}, {f16, 0.01f}, {bf16, 0.1f}}) {
    INFO(p);
    auto ids = ex.ids("prompt_0");
    const auto got = test::prefill_logits(*Model::load(p), ids);
    const auto want = ex.floats("logits_0");
    const float err = test::max_abs_diff(got.data(), want.data(), got.size());
    UNSCOPED_INFO("max |logit - f32| = " << err);
    CHECK(err < tol);
  }
  // The config made from each file says which float type its weights are stored in
  // (`reason info`'s stored_dtype; config.json's torch_dtype when converted back).
  CHECK(Model::load(q8)->config().torch_dtype == "float32");
  CHECK(Model::load(f16)->config().torch_dtype == "float16");
  CHECK(Model::load(bf16)->config().torch_dtype == "bfloat16");
  CHECK_THROWS_WITH(parse_gguf_out_type("q3_k"), Catch::Contains("unknown GGUF output type 'q3_k'"));
  // What GGUF cannot say is refused, and nothing is left behind.
  const std::string no = (tmp.path / "no.gguf").string();
  CHECK_THROWS_WITH(write_gguf_model(*Model::load(kFix + "dense/llama_gelu_tanh", f32), no, GgufOutType::F32),
                    Catch::Contains("GELU"));
  CHECK_THROWS_WITH(write_gguf_model(*Model::load(kFix + "dense/qwen3_sliding", f32), no, GgufOutType::F32),
                    Catch::Contains("sliding-window"));
  CHECK(!fs::exists(no));
}
