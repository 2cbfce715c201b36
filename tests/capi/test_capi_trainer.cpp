// The trainer through the C ABI: a protobuf text config, SFT steps that the sampler sees at once
// (shared weights), GRPO with rewards from a C callback, checkpoints, and config errors.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "reason.h"

namespace {

const std::string kModel = std::string(REASON_FIXTURES_DIR) + "/dense/qwen2_tied";

std::vector<int32_t> greedy(reason_model* m, const std::vector<int32_t>& prompt, int n, reason_token_callback cb = nullptr,
                            void* user = nullptr) {
  reason_sampling_options o = REASON_SAMPLING_OPTIONS_INIT;
  o.temperature = 0;
  o.max_new_tokens = n;
  o.ignore_eos = 1;
  const int32_t* p = prompt.data();
  size_t len = prompt.size();
  reason_generation* g = nullptr;
  REQUIRE(reason_generate(&g, m, &p, &len, 1, &o, cb, user) == REASON_OK);
  const reason_completion* c = reason_generation_get(g, 0);
  std::vector<int32_t> out(c->token_ids, c->token_ids + c->n_tokens);
  reason_generation_free(g);
  return out;
}

float length_reward(void* user, size_t, const char* completion, const char* answer) {
  ++*static_cast<int*>(user);
  if (std::strcmp(answer, "fail") == 0) return NAN;
  return float(std::strlen(completion) % 3);
}

}  // namespace

TEST_CASE("SFT through the ABI: the next generation uses the new weights", "[capi][train]") {
  reason_model* m = nullptr;
  REQUIRE(reason_model_load(&m, kModel.c_str(), nullptr) == REASON_OK);
  const char* cfg = "optimizer { lr: 0.01 max_grad_norm: 1.0 }\nschedule { kind: CONSTANT }\n";
  reason_trainer* tr = nullptr;
  REQUIRE(reason_trainer_create(&tr, m, nullptr, cfg, 0, 0) == REASON_OK);
  const std::vector<int32_t> seq{11, 12, 13, 201, 202, 203, 204, 205, 206, 207};
  std::vector<uint8_t> mask(seq.size(), 1);
  mask[0] = mask[1] = mask[2] = 0;
  const std::vector<int32_t> prompt(seq.begin(), seq.begin() + 3), target(seq.begin() + 3, seq.end());
  CHECK(greedy(m, prompt, 7) != target);
  const int32_t* tp = seq.data();
  size_t len = seq.size();
  const uint8_t* mp = mask.data();
  reason_step_metrics met = REASON_STEP_METRICS_INIT;
  float first = 0;
  for (int i = 0; i < 60; ++i) {
    REQUIRE(reason_trainer_sft_step(&met, tr, &tp, &len, &mp, 1) == REASON_OK);
    if (i == 0) first = met.loss;
  }
  CHECK(met.step == 60);
  CHECK(met.tokens == 7);
  CHECK(met.loss < 0.05f * first);
  CHECK(greedy(m, prompt, 7) == target);  // the sampler sees the trained policy, no reload

  // Checkpoint through the ABI, reload, same greedy output.
  const std::string dir = std::filesystem::temp_directory_path() / ("reason_capi_ck_" + std::to_string(::getpid()));
  REQUIRE(reason_trainer_save(tr, dir.c_str()) == REASON_OK);
  reason_model* back = nullptr;
  REQUIRE(reason_model_load(&back, dir.c_str(), nullptr) == REASON_OK);
  CHECK(greedy(back, prompt, 7) == target);
  reason_trainer* tr2 = nullptr;
  REQUIRE(reason_trainer_create(&tr2, back, nullptr, cfg, 0, 0) == REASON_OK);
  REQUIRE(reason_trainer_load_state(tr2, dir.c_str()) == REASON_OK);
  reason_step_metrics m2 = REASON_STEP_METRICS_INIT;
  REQUIRE(reason_trainer_sft_step(&m2, tr2, &tp, &len, &mp, 1) == REASON_OK);
  CHECK(m2.step == 61);
  reason_trainer_free(tr2);
  reason_model_free(back);
  std::filesystem::remove_all(dir);
  reason_trainer_free(tr);
  reason_model_free(m);
}

TEST_CASE("LoRA through the ABI: load a PEFT adapter, train it (QLoRA on a Q8_0 base too), save and reload", "[capi][train][lora]") {
  const std::string adapter = std::string(REASON_FIXTURES_DIR) + "/lora/qwen2_tied_all_linear/adapter";
  reason_model *plain = nullptr, *m = nullptr;
  REQUIRE(reason_model_load(&plain, kModel.c_str(), nullptr) == REASON_OK);
  REQUIRE(reason_model_load_adapter(&m, kModel.c_str(), adapter.c_str(), nullptr, REASON_DEVICE_CPU, REASON_DTYPE_AUTO,
                                    REASON_QUANT_NONE) == REASON_OK);
  CHECK(reason_model_adapter_modules(plain) == 0);
  CHECK(reason_model_adapter_modules(m) == 14);
  const std::vector<int32_t> seq{11, 12, 13, 201, 202, 203, 204, 205, 206, 207};
  std::vector<float> lp_plain(seq.size() - 1), lp(seq.size() - 1);
  REQUIRE(reason_score(lp_plain.data(), plain, seq.data(), seq.size()) == REASON_OK);
  REQUIRE(reason_score(lp.data(), m, seq.data(), seq.size()) == REASON_OK);
  CHECK(lp != lp_plain);  // the adapter runs

  std::vector<uint8_t> mask(seq.size(), 1);
  mask[0] = mask[1] = mask[2] = 0;
  const int32_t* tp = seq.data();
  size_t len = seq.size();
  const uint8_t* mp = mask.data();
  const std::string dir = std::filesystem::temp_directory_path() / ("reason_capi_lora_" + std::to_string(::getpid()));
  for (reason_weight_quant q : {REASON_QUANT_NONE, REASON_QUANT_Q8_0}) {
    INFO("quantize " << int(q));
    reason_model* p = nullptr;
    REQUIRE(reason_model_load_adapter(&p, kModel.c_str(), adapter.c_str(), nullptr, REASON_DEVICE_CPU, REASON_DTYPE_AUTO, q) ==
            REASON_OK);
    reason_trainer* tr = nullptr;
    REQUIRE(reason_trainer_create(&tr, p, nullptr, "optimizer { lr: 0.01 }", 0, 0) == REASON_OK);
    reason_step_metrics met = REASON_STEP_METRICS_INIT;
    float first = 0;
    for (int i = 0; i < 20; ++i) {
      const reason_status st = reason_trainer_sft_step(&met, tr, &tp, &len, &mp, 1);
      INFO(reason_last_error());
      REQUIRE(st == REASON_OK);
      if (i == 0) first = met.loss;
    }
    CHECK(met.loss < 0.5f * first);
    REQUIRE(reason_trainer_save(tr, dir.c_str()) == REASON_OK);
    CHECK(std::filesystem::exists(std::filesystem::path(dir) / "adapter_model.safetensors"));
    CHECK_FALSE(std::filesystem::exists(std::filesystem::path(dir) / "model.safetensors"));
    reason_model* back = nullptr;
    REQUIRE(reason_model_load_quantized(&back, dir.c_str(), nullptr, REASON_DEVICE_CPU, REASON_DTYPE_AUTO, q) == REASON_OK);
    CHECK(reason_model_adapter_modules(back) == 14);
    std::vector<float> a(seq.size() - 1), b(seq.size() - 1);
    REQUIRE(reason_score(a.data(), p, seq.data(), seq.size()) == REASON_OK);
    REQUIRE(reason_score(b.data(), back, seq.data(), seq.size()) == REASON_OK);
    CHECK(a == b);
    reason_model_free(back);
    reason_trainer_free(tr);
    reason_model_free(p);
    std::filesystem::remove_all(dir);
  }
  // Errors: no adapter to save, a missing adapter directory.
  CHECK(reason_model_save_adapter(plain, dir.c_str()) == REASON_ERR_INVALID_ARGUMENT);
  CHECK(std::string(reason_last_error()).find("has no LoRA adapter") != std::string::npos);
  reason_model* bad = nullptr;
  CHECK(reason_model_load_adapter(&bad, kModel.c_str(), "/no/such/adapter", nullptr, REASON_DEVICE_CPU, REASON_DTYPE_AUTO,
                                  REASON_QUANT_NONE) != REASON_OK);
  CHECK(std::string(reason_last_error()).find("adapter_config.json") != std::string::npos);
  CHECK(bad == nullptr);
  reason_model_free(m);
  reason_model_free(plain);
}

TEST_CASE("GRPO through the ABI with rewards from a C callback", "[capi][train][grpo]") {
  reason_model* m = nullptr;
  reason_model* ref = nullptr;
  REQUIRE(reason_model_load(&m, kModel.c_str(), nullptr) == REASON_OK);
  REQUIRE(reason_model_load(&ref, kModel.c_str(), nullptr) == REASON_OK);
  const char* cfg = "optimizer { lr: 0.001 }\ngrpo { group_size: 4 epsilon: 0.2 epsilon_high: 0.28 beta: 0.04 temperature: 0.7 }\n";
  reason_trainer* tr = nullptr;
  REQUIRE(reason_trainer_create(&tr, m, ref, cfg, 0, 0) == REASON_OK);
  std::vector<std::vector<int32_t>> comps;
  for (int i = 0; i < 4; ++i) comps.push_back(std::vector<int32_t>(size_t(3 + i), int32_t(100 + 10 * i)));
  std::vector<const int32_t*> cp;
  std::vector<size_t> cl;
  for (auto& c : comps) {
    cp.push_back(c.data());
    cl.push_back(c.size());
  }
  const char* answers[] = {"a", "b", "fail", "d"};
  float rewards[4];
  size_t failed = 99;
  int calls = 0;
  REQUIRE(reason_compute_rewards(rewards, &failed, reason_model_tokenizer(m), cp.data(), cl.data(), answers, 4,
                                 length_reward, &calls) == REASON_OK);
  CHECK(calls == 4);
  CHECK(failed == 1);
  CHECK(rewards[2] == 0.0f);
  rewards[0] = 1.0f;  // make sure the group is not tied
  const int32_t prompt[] = {5, 6, 7};
  std::vector<reason_grpo_sample> samples(4);
  std::vector<std::vector<float>> old(4);
  for (size_t i = 0; i < 4; ++i) {
    old[i].resize(cl[i]);
    REQUIRE(reason_trainer_completion_logprobs(old[i].data(), tr, 0, prompt, 3, cp[i], cl[i]) == REASON_OK);
    samples[i] = reason_grpo_sample{prompt, 3, cp[i], cl[i], rewards[i], old[i].data(), nullptr, 0};
  }
  reason_step_metrics met = REASON_STEP_METRICS_INIT;
  REQUIRE(reason_trainer_grpo_step(&met, tr, samples.data(), 4) == REASON_OK);
  CHECK(met.step == 1);
  CHECK(met.kl == Approx(0.0f).margin(1e-6));  // policy == reference before the first update
  CHECK(met.clip_low == 0.0f);
  CHECK(met.grad_norm > 0.0f);
  REQUIRE(reason_trainer_grpo_step(&met, tr, samples.data(), 4) == REASON_OK);  // second iteration on the batch
  CHECK(met.kl > 0.0f);
  REQUIRE(reason_trainer_grpo_step(&met, tr, samples.data(), 3) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("group"));
  reason_trainer_free(tr);
  reason_model_free(ref);
  reason_model_free(m);
}

TEST_CASE("GRPO through the ABI with the sampler's logprobs, rollout correction and masked tokens",
          "[capi][train][grpo]") {
  // reason_trainer_grpo_step_ex with TOKEN_MASK correction: a sample whose sampler logprobs give
  // weights outside [0.5, 2] has no policy gradient, so its loss contribution is that of the same
  // batch without it in the gradient; masked tokens carry no loss. The caller's struct may be an
  // older (smaller) or newer (larger) version: the stride is samples[0].struct_size.
  reason_model* m = nullptr;
  REQUIRE(reason_model_load(&m, kModel.c_str(), nullptr) == REASON_OK);
  const char* cfg =
      "optimizer { lr: 0 }\ngrpo { group_size: 2 aggregation: DAPO temperature: 0.7 importance_sampling_level: SEQUENCE_LEVEL"
      " rollout_correction { mode: TOKEN_MASK clip_min: 0.5 clip_max: 2 } entropy_coef: 0.01 }\n";
  reason_trainer* tr = nullptr;
  REQUIRE(reason_trainer_create(&tr, m, nullptr, cfg, 0, 0) == REASON_OK);
  const int32_t prompt[] = {5, 6, 7};
  const int32_t c0[] = {100, 101, 102, 103}, c1[] = {110, 111, 112};
  std::vector<float> own0(4), own1(3);
  REQUIRE(reason_trainer_completion_logprobs(own0.data(), tr, 0, prompt, 3, c0, 4) == REASON_OK);
  REQUIRE(reason_trainer_completion_logprobs(own1.data(), tr, 0, prompt, 3, c1, 3) == REASON_OK);
  std::vector<float> samp0 = own0, samp1 = own1;
  samp0[1] -= 1.0f;  // weight exp(1) > 2: masked
  samp1[2] = NAN;    // unknown: weight 1
  const uint8_t mask0[] = {1, 1, 0, 1};
  struct Bigger {  // a caller built against a later header with one more member
    reason_grpo_sample_ex s;
    double extra;
  };
  std::vector<Bigger> big(2);
  for (auto& b : big) {
    b.s = REASON_GRPO_SAMPLE_EX_INIT;
    b.s.struct_size = sizeof(Bigger);
    b.extra = 1e300;
  }
  big[0].s.prompt = prompt, big[0].s.prompt_len = 3, big[0].s.completion = c0, big[0].s.completion_len = 4;
  big[0].s.reward = 1.0f, big[0].s.sampling_logprobs = samp0.data(), big[0].s.loss_mask = mask0;
  big[1].s.prompt = prompt, big[1].s.prompt_len = 3, big[1].s.completion = c1, big[1].s.completion_len = 3;
  big[1].s.reward = 0.0f, big[1].s.sampling_logprobs = samp1.data();
  reason_step_metrics met = REASON_STEP_METRICS_INIT;
  REQUIRE(reason_trainer_grpo_step_ex(&met, tr, &big[0].s, 2) == REASON_OK);
  CHECK(met.tokens == 6);  // one token masked
  CHECK(met.policy_tokens == 6);
  CHECK(met.is_ratio_min == 0.0f);
  CHECK(met.is_ratio_max == Approx(1.0f).margin(1e-4));
  CHECK(met.is_ratio_mean == Approx(5.0f / 6.0f).margin(1e-4));
  CHECK(met.sampling_logp_diff_max == Approx(1.0f).margin(1e-4));
  CHECK(met.entropy_coef == Approx(0.01f));
  // a sample array without sampling logprobs: rollout correction refuses it, naming the sample
  big[1].s.sampling_logprobs = nullptr;
  CHECK(reason_trainer_grpo_step_ex(&met, tr, &big[0].s, 2) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("sample 1 has none"));
  // a struct_size that cuts sampling_logprobs in two leaves it absent (never half a pointer)
  big[1].s.sampling_logprobs = samp1.data();
  for (auto& b : big) b.s.struct_size = uint32_t(offsetof(reason_grpo_sample_ex, sampling_logprobs) + 4);
  std::vector<char> packed(2 * big[0].s.struct_size);
  for (size_t i = 0; i < 2; ++i) std::memcpy(&packed[i * big[0].s.struct_size], &big[i].s, big[0].s.struct_size);
  CHECK(reason_trainer_grpo_step_ex(&met, tr, reinterpret_cast<const reason_grpo_sample_ex*>(packed.data()), 2) ==
        REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("sample 0 has none"));
  reason_grpo_sample_ex tiny = REASON_GRPO_SAMPLE_EX_INIT;
  tiny.struct_size = 8;
  CHECK(reason_trainer_grpo_step_ex(&met, tr, &tiny, 1) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("struct_size"));
  CHECK(reason_trainer_grpo_step_ex(&met, nullptr, &tiny, 1) == REASON_ERR_INVALID_ARGUMENT);
  reason_trainer_free(tr);
  reason_model_free(m);
}

TEST_CASE("bad trainer configs are rejected naming the field or position", "[capi][train][errors]") {
  reason_model* m = nullptr;
  REQUIRE(reason_model_load(&m, kModel.c_str(), nullptr) == REASON_OK);
  reason_trainer* tr = nullptr;
  CHECK(reason_trainer_create(&tr, m, nullptr, "optimizer { lr: -1 }", 0, 0) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("optimizer.lr"));
  CHECK(reason_trainer_create(&tr, m, nullptr, "optimizer {\n  learning_rate: 1 }", 0, 0) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("line 2"));
  CHECK(reason_trainer_create(&tr, m, nullptr, "grpo { group_size: 1 }", 0, 0) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("grpo.group_size"));
  CHECK(reason_trainer_create(&tr, m, nullptr, "\x01\x02garbage", 9, 1) == REASON_ERR_INVALID_ARGUMENT);
  CHECK(tr == nullptr);
  CHECK(reason_trainer_create(&tr, nullptr, nullptr, nullptr, 0, 0) == REASON_ERR_INVALID_ARGUMENT);
  // no grpo section: a GRPO step says what is missing
  REQUIRE(reason_trainer_create(&tr, m, nullptr, nullptr, 0, 0) == REASON_OK);
  const int32_t p[] = {1}, c[] = {2};
  reason_grpo_sample s[2] = {{p, 1, c, 1, 1.0f, nullptr, nullptr, 0}, {p, 1, c, 1, 0.0f, nullptr, nullptr, 0}};
  CHECK(reason_trainer_grpo_step(nullptr, tr, s, 2) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("group_size"));
  reason_trainer_free(tr);
  reason_trainer_free(nullptr);
  // a bf16 policy cannot be trained
  reason_model_options mo = REASON_MODEL_OPTIONS_INIT;
  mo.compute_dtype = REASON_DTYPE_BF16;
  reason_model* mb = nullptr;
  REQUIRE(reason_model_load(&mb, kModel.c_str(), &mo) == REASON_OK);
  CHECK(reason_trainer_create(&tr, mb, nullptr, nullptr, 0, 0) == REASON_ERR_UNSUPPORTED);
  reason_model_free(mb);
  reason_model_free(m);
}

TEST_CASE("built-in rewards through the ABI", "[capi][rewards]") {
  float r = -1;
  REQUIRE(reason_builtin_reward(&r, REASON_REWARD_MATH_ACCURACY, "<think>x</think> so \\boxed{\\frac{1}{2}}.", "0.5") == REASON_OK);
  CHECK(r == 1.0f);
  REQUIRE(reason_builtin_reward(&r, REASON_REWARD_MATH_ACCURACY, "\\boxed{3}", "4") == REASON_OK);
  CHECK(r == 0.0f);
  REQUIRE(reason_builtin_reward(&r, REASON_REWARD_FORMAT, "<think>a</think>answer", nullptr) == REASON_OK);
  CHECK(r == 1.0f);
  REQUIRE(reason_builtin_reward(&r, REASON_REWARD_FORMAT, "a</think>answer", nullptr) == REASON_OK);
  CHECK(r == 0.0f);
  REQUIRE(reason_builtin_reward(&r, REASON_REWARD_FORMAT, "a</think>answer", "open") == REASON_OK);
  CHECK(r == 1.0f);
  REQUIRE(reason_builtin_reward(&r, REASON_REWARD_LANGUAGE, "<think>one two 三</think>x", "en") == REASON_OK);
  CHECK(r == Approx(2.0 / 3.0));
  CHECK(reason_builtin_reward(&r, REASON_REWARD_LANGUAGE, "<think>a</think>b", "xx-unknown") == REASON_ERR_INVALID_ARGUMENT);
  CHECK(reason_builtin_reward(&r, (reason_reward_kind)99, "a", "b") == REASON_ERR_INVALID_ARGUMENT);
}

// The model's reader/writer rule, enforced by the library for every language (model_lock.h).
namespace {

struct StepFromCallback {
  reason_trainer* tr = nullptr;
  const int32_t* tp = nullptr;
  size_t len = 0;
  const uint8_t* mp = nullptr;
  reason_status status = REASON_OK;
  std::string message;
  std::atomic<int> tokens{0};
};

int step_in_callback(void* user, size_t, int32_t, float, const char*) {
  auto* s = static_cast<StepFromCallback*>(user);
  if (s->tokens++ == 2) {
    reason_step_metrics met = REASON_STEP_METRICS_INIT;
    s->status = reason_trainer_sft_step(&met, s->tr, &s->tp, &s->len, &s->mp, 1);
    s->message = reason_last_error();
  }
  return 0;
}

int signal_first_token(void* user, size_t, int32_t, float, const char*) {
  static_cast<std::atomic<int>*>(user)->fetch_add(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a generation long enough for the step to arrive mid-way
  return 0;
}

}  // namespace

TEST_CASE("thread rules: a step waits for generations, fails from their callbacks and while streams are open", "[capi][train][threads]") {
  reason_model* m = nullptr;
  REQUIRE(reason_model_load(&m, kModel.c_str(), nullptr) == REASON_OK);
  reason_trainer* tr = nullptr;
  REQUIRE(reason_trainer_create(&tr, m, nullptr, "optimizer { lr: 0.05 }\n", 0, 0) == REASON_OK);
  const std::vector<int32_t> seq{11, 12, 13, 201, 202, 203, 204, 205, 206, 207};
  std::vector<uint8_t> mask(seq.size(), 1);
  const int32_t* tp = seq.data();
  size_t len = seq.size();
  const uint8_t* mp = mask.data();
  const std::vector<int32_t> prompt{5, 6, 7};

  // A step started while another thread generates waits for that generation: its tokens all come
  // from the weights it started with (a strong step mid-way would change them).
  const std::vector<int32_t> before = greedy(m, prompt, 60);
  std::atomic<int> seen{0};
  std::vector<int32_t> during;
  std::thread gen([&] { during = greedy(m, prompt, 60, signal_first_token, &seen); });
  while (seen.load() < 3) std::this_thread::yield();
  reason_step_metrics met = REASON_STEP_METRICS_INIT;
  for (int i = 0; i < 5; ++i) REQUIRE(reason_trainer_sft_step(&met, tr, &tp, &len, &mp, 1) == REASON_OK);
  gen.join();
  CHECK(seen.load() == 60);
  CHECK(during == before);
  CHECK(greedy(m, prompt, 60) != before);  // the steps did change the weights, after the generation

  // A step from a token callback of a generation on the same model: an error, not a deadlock.
  StepFromCallback s;
  s.tr = tr;
  s.tp = tp;
  s.len = len;
  s.mp = mp;
  greedy(m, prompt, 6, step_in_callback, &s);
  CHECK(s.status == REASON_ERR_INVALID_ARGUMENT);
  CHECK(s.message.find("wait for itself") != std::string::npos);

  // An open stream on the policy: the step fails at once; after the stream is freed it runs.
  reason_stream* st = nullptr;
  REQUIRE(reason_stream_start(&st, m, "hello", nullptr) == REASON_OK);
  CHECK(reason_trainer_sft_step(&met, tr, &tp, &len, &mp, 1) == REASON_ERR_INVALID_ARGUMENT);
  CHECK(std::string(reason_last_error()).find("stream(s) on it are open") != std::string::npos);
  reason_stream_free(st);
  CHECK(reason_trainer_sft_step(&met, tr, &tp, &len, &mp, 1) == REASON_OK);
  reason_trainer_free(tr);
  reason_model_free(m);
}
