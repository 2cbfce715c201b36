// The C ABI as a user sees it (links libreason.so only): version, tokenizer, generation with
// streaming and stopping, seeds, stop strings, scoring, info, and concurrent use of one model.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <string>
#include <thread>
#include <vector>

#include "fixture_reader.h"
#include "reason.h"

namespace {

const std::string kModel = std::string(REASON_FIXTURES_DIR) + "/dense/qwen2_tied";

struct ModelHandle {
  reason_model* m = nullptr;
  ModelHandle() { REQUIRE(reason_model_load(&m, kModel.c_str(), nullptr) == REASON_OK); }
  ~ModelHandle() { reason_model_free(m); }
};

struct Gen {
  reason_generation* g = nullptr;
  ~Gen() { reason_generation_free(g); }
};

std::vector<int32_t> tokens_of(const reason_completion* c) { return {c->token_ids, c->token_ids + c->n_tokens}; }

}  // namespace

TEST_CASE("version matches the header", "[capi]") {
  CHECK(std::string(reason_version()) == REASON_VERSION_STRING);
  int ma = -1, mi = -1, pa = -1;
  reason_version_numbers(&ma, &mi, &pa);
  CHECK(ma == REASON_VERSION_MAJOR);
  CHECK(mi == REASON_VERSION_MINOR);
  CHECK(pa == REASON_VERSION_PATCH);
}

TEST_CASE("model info", "[capi]") {
  ModelHandle h;
  reason_model_info info{};
  info.struct_size = sizeof(info);
  REQUIRE(reason_model_get_info(&info, h.m) == REASON_OK);
  CHECK(std::string(info.architecture) == "Qwen2ForCausalLM");
  CHECK(info.vocab_size == 512);
  CHECK(info.hidden_size == 32);
  CHECK(info.n_layers == 2);
  CHECK(info.n_heads == 4);
  CHECK(info.n_kv_heads == 2);
  CHECK(info.kv_bytes_per_token == 2u * 2 * 8 * 2 * 4);  // layers * kv_heads * head_dim * (K,V) * f32
  // tied: embed 512*32 + per layer (q 32*32+32, k,v 16*32+16 each, o 32*32, 3*64*32, 2 norms 32) + final norm
  CHECK(info.n_params == 512 * 32 + 2 * (1056 + 2 * 528 + 1024 + 3 * 2048 + 64) + 32);
}

TEST_CASE("the KV cache dtype follows the compute dtype; info reports it to new and old callers", "[capi]") {
  auto load = [](reason_dtype compute) {
    reason_model_options o = REASON_MODEL_OPTIONS_INIT;
    o.compute_dtype = compute;
    reason_model* m = nullptr;
    REQUIRE(reason_model_load(&m, kModel.c_str(), &o) == REASON_OK);
    return m;
  };
  const uint64_t f32_bytes = 2u * 2 * 8 * 2 * 4;
  for (reason_dtype compute : {REASON_DTYPE_AUTO, REASON_DTYPE_BF16}) {
    reason_model* m = load(compute);
    reason_model_info info{};
    info.struct_size = sizeof(info);
    REQUIRE(reason_model_get_info(&info, m) == REASON_OK);
    const bool bf16 = compute == REASON_DTYPE_BF16;
    CHECK(info.kv_dtype == (bf16 ? REASON_DTYPE_BF16 : REASON_DTYPE_F32));
    CHECK(info.kv_bytes_per_token == (bf16 ? f32_bytes / 2 : f32_bytes));
    // A caller built before kv_dtype existed: the member past its struct_size is not written.
    reason_model_info old{};
    old.struct_size = uint32_t(offsetof(reason_model_info, kv_dtype));
    old.kv_dtype = reason_dtype(77);
    REQUIRE(reason_model_get_info(&old, m) == REASON_OK);
    CHECK(old.kv_dtype == reason_dtype(77));
    CHECK(old.kv_bytes_per_token == info.kv_bytes_per_token);
    reason_model_free(m);
  }
}

TEST_CASE("reason_model_load_on: device and KV dtype chosen at load; a device that cannot run is a clear error", "[capi]") {
  reason_model* m = nullptr;
  REQUIRE(reason_model_load_on(&m, kModel.c_str(), nullptr, REASON_DEVICE_CPU, REASON_DTYPE_BF16) == REASON_OK);
  reason_model_info info{};
  info.struct_size = sizeof(info);
  REQUIRE(reason_model_get_info(&info, m) == REASON_OK);
  CHECK(reason_model_device(m) == REASON_DEVICE_CPU);
  CHECK(info.compute_dtype == REASON_DTYPE_F32);
  CHECK(info.kv_dtype == REASON_DTYPE_BF16);  // f32 weights, bf16 cache
  CHECK(info.kv_bytes_per_token == 2u * 2 * 8 * 2 * 2);
  reason_model_free(m);
  m = nullptr;
  CHECK(reason_model_load_on(&m, kModel.c_str(), nullptr, reason_device(9), REASON_DTYPE_AUTO) == REASON_ERR_INVALID_ARGUMENT);
  CHECK(std::string(reason_last_error()).find("unknown device 9") != std::string::npos);
  CHECK(reason_model_device(nullptr) == REASON_DEVICE_CPU);
  CHECK(reason_model_load_on(&m, kModel.c_str(), nullptr, REASON_DEVICE_CPU, reason_dtype(7)) == REASON_ERR_INVALID_ARGUMENT);
  CHECK(std::string(reason_last_error()).find("unknown kv_dtype 7") != std::string::npos);
  CHECK(m == nullptr);
  // CUDA: runs where a GPU is usable; elsewhere UNSUPPORTED with the reason (never a crash).
  const reason_status st = reason_model_load_on(&m, kModel.c_str(), nullptr, REASON_DEVICE_CUDA, REASON_DTYPE_AUTO);
  if (st == REASON_OK) {
    CHECK(reason_model_device(m) == REASON_DEVICE_CUDA);
    reason_model_free(m);
  } else {
    CHECK(st == REASON_ERR_UNSUPPORTED);
    CHECK(std::string(reason_last_error()).find("device cuda is not available") != std::string::npos);
  }
}

TEST_CASE("tokenizer through the ABI round-trips and formats chat", "[capi]") {
  ModelHandle h;
  const reason_tokenizer* tok = reason_model_tokenizer(h.m);
  REQUIRE(tok != nullptr);
  const std::string text = "Let me think step by step.";
  int32_t* ids = nullptr;
  size_t n = 0;
  REQUIRE(reason_tokenizer_encode(&ids, &n, tok, text.data(), text.size(), 0) == REASON_OK);
  FixtureFile ex(kModel + "/expected.safetensors");
  CHECK(std::vector<int32_t>(ids, ids + n) == ex.ids("prompt_1"));
  char* back = nullptr;
  REQUIRE(reason_tokenizer_decode(&back, tok, ids, n, 0) == REASON_OK);
  CHECK(std::string(back) == text);
  reason_free(back);
  reason_free(ids);
  reason_chat_message msgs[] = {{"user", "2+2?"}};
  char* prompt = nullptr;
  REQUIRE(reason_tokenizer_apply_chat(&prompt, tok, msgs, 1, 1, REASON_CHAT_AUTO) == REASON_OK);
  CHECK(std::string(prompt) == "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
  reason_free(prompt);
  // Messages of a later, larger reason_chat_message (one more member), passed with their stride.
  struct Later {
    reason_chat_message m;
    const char* future;
  } later[] = {{{"system", "Be brief."}, "x"}, {{"user", "2+2?"}, "y"}};
  REQUIRE(reason_tokenizer_apply_chat_ex(&prompt, tok, &later[0].m, sizeof(Later), 2, 1, REASON_CHAT_AUTO) == REASON_OK);
  CHECK(std::string(prompt) ==
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
  reason_free(prompt);
  CHECK(reason_tokenizer_apply_chat_ex(&prompt, tok, msgs, 4, 1, 1, REASON_CHAT_AUTO) == REASON_ERR_INVALID_ARGUMENT);
  CHECK(std::string(reason_last_error()).find("message stride 4") != std::string::npos);
  CHECK(reason_tokenizer_eos_id(tok) == 397);
}

TEST_CASE("greedy generation through the ABI equals transformers", "[capi]") {
  ModelHandle h;
  FixtureFile ex(kModel + "/expected.safetensors");
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 4; ++i) prompts.push_back(ex.ids("prompt_" + std::to_string(i)));
  std::vector<const int32_t*> ptrs;
  std::vector<size_t> lens;
  for (auto& p : prompts) {
    ptrs.push_back(p.data());
    lens.push_back(p.size());
  }
  reason_sampling_options o = REASON_SAMPLING_OPTIONS_INIT;
  o.temperature = 0;
  o.max_new_tokens = 12;
  o.ignore_eos = 1;
  Gen g;
  REQUIRE(reason_generate(&g.g, h.m, ptrs.data(), lens.data(), 4, &o, nullptr, nullptr) == REASON_OK);
  REQUIRE(reason_generation_count(g.g) == 4);
  for (int i = 0; i < 4; ++i) {
    const reason_completion* c = reason_generation_get(g.g, size_t(i));
    CHECK(tokens_of(c) == ex.ids("greedy_" + std::to_string(i)));
    CHECK(c->finish_reason == REASON_FINISH_LENGTH);
    // The logprob of a greedy token is log softmax of the decode logits at that step.
    auto dl = ex.get<float>("decode_logits_" + std::to_string(i));
    double mx = -1e30, z = 0;
    for (int v = 0; v < 512; ++v) mx = std::max(mx, double(dl[size_t(v)]));
    for (int v = 0; v < 512; ++v) z += std::exp(dl[size_t(v)] - mx);
    CHECK(std::fabs(c->logprobs[0] - float(dl[size_t(c->token_ids[0])] - mx - std::log(z))) < 1e-4f);
  }
  CHECK(reason_generation_get(g.g, 4) == nullptr);
}

namespace {
struct StreamState {
  std::vector<int32_t> ids;
  std::string text;
  size_t stop_after = 0;
};
int collect(void* user, size_t, int32_t tok, float, const char* text) {
  auto* s = static_cast<StreamState*>(user);
  s->ids.push_back(tok);
  s->text += text;
  return s->stop_after && s->ids.size() >= s->stop_after ? 1 : 0;
}
}  // namespace

TEST_CASE("streaming callback sees every token and can stop", "[capi]") {
  ModelHandle h;
  const char* prompt = "The answer is";
  reason_sampling_options o = REASON_SAMPLING_OPTIONS_INIT;
  o.temperature = 0.8f;
  o.seed = 3;
  o.max_new_tokens = 10;
  o.ignore_eos = 1;
  StreamState s;
  Gen g;
  REQUIRE(reason_generate_text(&g.g, h.m, &prompt, 1, &o, collect, &s) == REASON_OK);
  const reason_completion* c = reason_generation_get(g.g, 0);
  CHECK(s.ids == tokens_of(c));
  CHECK(s.text == c->text);
  StreamState s2;
  s2.stop_after = 3;
  Gen g2;
  REQUIRE(reason_generate_text(&g2.g, h.m, &prompt, 1, &o, collect, &s2) == REASON_OK);
  const reason_completion* c2 = reason_generation_get(g2.g, 0);
  CHECK(c2->n_tokens == 3);
  CHECK(c2->finish_reason == REASON_FINISH_CALLBACK);
  CHECK(std::vector<int32_t>(c2->token_ids, c2->token_ids + 3) == std::vector<int32_t>(s.ids.begin(), s.ids.begin() + 3));
}

TEST_CASE("seeds make sampling reproducible", "[capi]") {
  ModelHandle h;
  const char* prompts[] = {"The answer is", "The answer is"};
  reason_sampling_options o = REASON_SAMPLING_OPTIONS_INIT;
  o.temperature = 1.0f;
  o.max_new_tokens = 24;
  o.ignore_eos = 1;
  o.seed = 11;
  Gen a, b;
  REQUIRE(reason_generate_text(&a.g, h.m, prompts, 2, &o, nullptr, nullptr) == REASON_OK);
  REQUIRE(reason_generate_text(&b.g, h.m, prompts, 2, &o, nullptr, nullptr) == REASON_OK);
  CHECK(tokens_of(reason_generation_get(a.g, 0)) == tokens_of(reason_generation_get(b.g, 0)));
  CHECK(tokens_of(reason_generation_get(a.g, 1)) == tokens_of(reason_generation_get(b.g, 1)));
  // Request i uses seed + i, so two identical prompts in one batch differ.
  CHECK(tokens_of(reason_generation_get(a.g, 0)) != tokens_of(reason_generation_get(a.g, 1)));
}

TEST_CASE("stop strings and stop tokens end generation", "[capi]") {
  ModelHandle h;
  const char* prompt = "Let me think";
  reason_sampling_options o = REASON_SAMPLING_OPTIONS_INIT;
  o.temperature = 0;
  o.max_new_tokens = 40;
  o.ignore_eos = 1;
  Gen full;
  REQUIRE(reason_generate_text(&full.g, h.m, &prompt, 1, &o, nullptr, nullptr) == REASON_OK);
  const reason_completion* f = reason_generation_get(full.g, 0);
  const std::string text = f->text;
  REQUIRE(text.size() >= 6);
  // Stop at a substring that first appears in the middle of the text.
  const std::string stop = text.substr(text.size() / 2, 3);
  const char* stops[] = {stop.c_str()};
  o.stop_strings = stops;
  o.n_stop_strings = 1;
  Gen st;
  REQUIRE(reason_generate_text(&st.g, h.m, &prompt, 1, &o, nullptr, nullptr) == REASON_OK);
  const reason_completion* c = reason_generation_get(st.g, 0);
  CHECK(c->finish_reason == REASON_FINISH_STOP);
  CHECK(std::string(c->text) == text.substr(0, text.find(stop)));
  // A stop token: the third generated token.
  reason_sampling_options o2 = REASON_SAMPLING_OPTIONS_INIT;
  o2.temperature = 0;
  o2.max_new_tokens = 40;
  o2.ignore_eos = 1;
  int32_t stop_id = f->token_ids[2];
  o2.stop_token_ids = &stop_id;
  o2.n_stop_token_ids = 1;
  Gen sk;
  REQUIRE(reason_generate_text(&sk.g, h.m, &prompt, 1, &o2, nullptr, nullptr) == REASON_OK);
  const reason_completion* k = reason_generation_get(sk.g, 0);
  CHECK(k->finish_reason == REASON_FINISH_STOP);
  size_t first = 0;
  while (f->token_ids[first] != stop_id) ++first;
  CHECK(k->n_tokens == first + 1);  // includes the stop token
}

TEST_CASE("scoring equals transformers' logprobs", "[capi]") {
  ModelHandle h;
  FixtureFile ex(kModel + "/expected.safetensors");
  auto ids = ex.ids("prompt_3");
  auto want = ex.get<float>("logprobs_3");
  std::vector<float> got(ids.size() - 1);
  REQUIRE(reason_score(got.data(), h.m, ids.data(), ids.size()) == REASON_OK);
  for (size_t t = 0; t < got.size(); ++t) CHECK(std::fabs(got[t] - want[t]) < 1e-4f);
}

TEST_CASE("one model shared by several threads gives the same results", "[capi][threads]") {
  ModelHandle h;
  const char* prompt = "The answer is";
  reason_sampling_options o = REASON_SAMPLING_OPTIONS_INIT;
  o.temperature = 0.9f;
  o.seed = 5;
  o.max_new_tokens = 16;
  o.ignore_eos = 1;
  Gen ref;
  REQUIRE(reason_generate_text(&ref.g, h.m, &prompt, 1, &o, nullptr, nullptr) == REASON_OK);
  const auto want = tokens_of(reason_generation_get(ref.g, 0));
  std::vector<std::vector<int32_t>> got(4);
  std::vector<int> st(4, -1);
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&, i] {
      reason_generation* g = nullptr;
      st[size_t(i)] = reason_generate_text(&g, h.m, &prompt, 1, &o, nullptr, nullptr);
      if (g) got[size_t(i)] = tokens_of(reason_generation_get(g, 0));
      reason_generation_free(g);
    });
  for (auto& t : ts) t.join();
  for (int i = 0; i < 4; ++i) {
    CHECK(st[size_t(i)] == REASON_OK);
    CHECK(got[size_t(i)] == want);
  }
}

TEST_CASE("MoE model info and expert load through the ABI", "[capi][moe]") {
  const std::string dir = std::string(REASON_FIXTURES_DIR) + "/moe/dsv3_qlora_group";
  reason_model* m = nullptr;
  REQUIRE(reason_model_load(&m, dir.c_str(), nullptr) == REASON_OK);
  reason_model_info info{};
  info.struct_size = sizeof(info);
  REQUIRE(reason_model_get_info(&info, m) == REASON_OK);
  CHECK(std::string(info.architecture) == "DeepseekV3ForCausalLM");
  CHECK(info.n_experts == 8);
  CHECK(info.n_experts_per_tok == 2);
  CHECK(info.n_moe_layers == 2);  // first_k_dense_replace = 1 of 3 layers
  CHECK(info.n_mtp_modules == 1);
  CHECK(info.mla == 1);
  CHECK(info.kv_bytes_per_token == 3u * (16 + 8) * 4);  // layers x (kv_lora_rank + rope dim) x f32
  const int32_t ids[] = {1, 2, 3, 4, 5};
  std::vector<int64_t> counts(size_t(info.n_layers * info.n_experts), -1);
  REQUIRE(reason_model_expert_load(counts.data(), counts.size(), m, ids, 5) == REASON_OK);
  for (int l = 0; l < info.n_layers; ++l) {
    int64_t sum = 0;
    for (int e = 0; e < info.n_experts; ++e) sum += counts[size_t(l * info.n_experts + e)];
    CHECK(sum == (l == 0 ? 0 : 5 * 2));
  }
  CHECK(reason_model_expert_load(counts.data(), 3, m, ids, 5) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("room for 3"));
  // An old caller's smaller info struct is filled only up to its size.
  reason_model_info old{};
  old.struct_size = uint32_t(offsetof(reason_model_info, n_experts));
  old.n_experts = 12345;
  REQUIRE(reason_model_get_info(&old, m) == REASON_OK);
  CHECK(old.n_experts == 12345);
  CHECK(old.vocab_size == 512);
  reason_model_free(m);
}

TEST_CASE("a GGUF model file loads through the ABI and runs as the checkpoint it came from", "[capi][gguf]") {
  const std::string fx = std::string(REASON_FIXTURES_DIR);
  const std::string gguf = fx + "/gguf_models/qwen3_bias_untied.gguf", dir = fx + "/dense/qwen3_bias_untied";
  reason_model *a = nullptr, *b = nullptr;
  REQUIRE(reason_model_load(&a, gguf.c_str(), nullptr) == REASON_OK);
  REQUIRE(reason_model_load(&b, dir.c_str(), nullptr) == REASON_OK);
  reason_model_info ia{}, ib{};
  ia.struct_size = ib.struct_size = sizeof(ia);
  REQUIRE(reason_model_get_info(&ia, a) == REASON_OK);
  REQUIRE(reason_model_get_info(&ib, b) == REASON_OK);
  CHECK(std::string(ia.architecture) == "Qwen3ForCausalLM");
  CHECK(ia.n_params == ib.n_params);
  reason_tokenizer *ta = nullptr, *tb = nullptr;
  REQUIRE(reason_tokenizer_load(&ta, gguf.c_str()) == REASON_OK);
  REQUIRE(reason_tokenizer_load(&tb, dir.c_str()) == REASON_OK);
  const char* text = "<|im_start|>user\nWhat is 12+30?<|im_end|>";
  int32_t *ids_a = nullptr, *ids_b = nullptr;
  size_t na = 0, nb = 0;
  REQUIRE(reason_tokenizer_encode(&ids_a, &na, ta, text, std::strlen(text), 0) == REASON_OK);
  REQUIRE(reason_tokenizer_encode(&ids_b, &nb, tb, text, std::strlen(text), 0) == REASON_OK);
  REQUIRE(std::vector<int32_t>(ids_a, ids_a + na) == std::vector<int32_t>(ids_b, ids_b + nb));
  std::vector<float> la(na - 1), lb(nb - 1);
  REQUIRE(reason_score(la.data(), a, ids_a, na) == REASON_OK);
  REQUIRE(reason_score(lb.data(), b, ids_b, nb) == REASON_OK);
  for (size_t i = 0; i < la.size(); ++i) CHECK(std::fabs(la[i] - lb[i]) < 1e-4f);
  reason_free(ids_a);
  reason_free(ids_b);
  reason_tokenizer_free(ta);
  reason_tokenizer_free(tb);
  reason_model_free(a);
  reason_model_free(b);
  // A file that is not a model: a clear error naming it.
  const std::string bad = fx + "/gguf/types.gguf";
  reason_model* c = nullptr;
  CHECK(reason_model_load(&c, bad.c_str(), nullptr) != REASON_OK);
  CHECK_THAT(reason_last_error(), Catch::Contains("types.gguf"));
  CHECK(c == nullptr);
}

TEST_CASE("the model's own sampling defaults through the ABI", "[capi]") {
  // A copy of a fixture with DeepSeek-R1's generation_config.json; another without one.
  namespace fs = std::filesystem;
  const fs::path tmp = fs::temp_directory_path() / ("reason_capi_gen_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  fs::copy(kModel, tmp / "r1", fs::copy_options::recursive);
  {
    std::ofstream(tmp / "r1" / "generation_config.json") << R"({"do_sample": true, "temperature": 0.6, "top_p": 0.95})";
  }
  reason_model* m = nullptr;
  REQUIRE(reason_model_load(&m, (tmp / "r1").c_str(), nullptr) == REASON_OK);
  reason_sampling_options o;
  reason_sampling_options_init(&o);
  o.top_k = 7;  // not in the file: kept
  REQUIRE(reason_sampling_options_from_model(&o, m) == REASON_OK);
  CHECK(o.temperature == 0.6f);
  CHECK(o.top_p == 0.95f);
  CHECK(o.top_k == 7);
  CHECK(o.max_new_tokens == 256);
  reason_model_free(m);
  {
    std::ofstream(tmp / "r1" / "generation_config.json") << R"({"do_sample": false, "temperature": "hot"})";
  }
  REQUIRE(reason_model_load(&m, (tmp / "r1").c_str(), nullptr) == REASON_OK);
  reason_sampling_options_init(&o);
  CHECK(reason_sampling_options_from_model(&o, m) == REASON_ERR_FORMAT);
  CHECK_THAT(reason_last_error(), Catch::Contains("temperature"));
  CHECK(o.temperature == 1.0f);  // unchanged
  reason_model_free(m);
  CHECK(reason_sampling_options_from_model(&o, nullptr) == REASON_ERR_INVALID_ARGUMENT);
  fs::remove_all(tmp);
}

TEST_CASE("quantised weights through the ABI: a GGUF's as stored, a checkpoint's at load", "[capi][quant]") {
  const std::string fx = std::string(REASON_FIXTURES_DIR);
  const std::string gguf = fx + "/gguf_models/llama_mha_quant.gguf", dir = fx + "/quant/llama256";
  reason_model *exact = nullptr, *stored = nullptr, *q4 = nullptr;
  REQUIRE(reason_model_load(&exact, gguf.c_str(), nullptr) == REASON_OK);  // dequantised, as always
  CHECK(reason_model_quantized_weights(exact) == nullptr);
  REQUIRE(reason_model_load_quantized(&stored, gguf.c_str(), nullptr, REASON_DEVICE_CPU, REASON_DTYPE_AUTO,
                                      REASON_QUANT_STORED) == REASON_OK);
  CHECK(std::string(reason_model_quantized_weights(stored)) == "Q8_0");  // token_embd
  REQUIRE(reason_model_load_quantized(&q4, dir.c_str(), nullptr, REASON_DEVICE_CPU, REASON_DTYPE_AUTO,
                                      REASON_QUANT_Q4_K) == REASON_OK);
  CHECK(std::string(reason_model_quantized_weights(q4)) == "Q6_K");  // the tied embedding / LM head
  // Greedy generation runs on the quantised weights.
  reason_sampling_options so = REASON_SAMPLING_OPTIONS_INIT;
  so.temperature = 0.0f;
  so.max_new_tokens = 6;
  const int32_t prompt[] = {5, 17, 42, 99};
  const int32_t* prompts[] = {prompt};
  const size_t lens[] = {4};
  Gen g;
  REQUIRE(reason_generate(&g.g, q4, prompts, lens, 1, &so, nullptr, nullptr) == REASON_OK);
  CHECK(reason_generation_get(g.g, 0)->n_tokens == 6);
  reason_model* bad = nullptr;
  CHECK(reason_model_load_quantized(&bad, dir.c_str(), nullptr, REASON_DEVICE_CPU, REASON_DTYPE_AUTO,
                                    reason_weight_quant(9)) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("weight quantisation 9"));
  CHECK(bad == nullptr);
  CHECK(reason_model_quantized_weights(nullptr) == nullptr);
  reason_model_free(exact);
  reason_model_free(stored);
  reason_model_free(q4);
}
