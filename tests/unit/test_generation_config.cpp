// generation_config.json as sampling defaults: the fields read, nulls and absence, and bad values
// refused with a Format error naming the file and the field.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "expect_error.h"
#include "model/generation_config.h"

using namespace reason;
namespace fs = std::filesystem;

namespace {
struct Dir {
  fs::path p = fs::temp_directory_path() / ("reason_gencfg_" + std::to_string(::getpid()));
  Dir() { fs::create_directories(p); }
  ~Dir() { fs::remove_all(p); }
  void write(const std::string& text) const { std::ofstream(p / "generation_config.json") << text; }
};
}  // namespace

TEST_CASE("generation_config.json supplies sampling defaults", "[generation_config]") {
  Dir d;
  GenerationDefaults g = read_generation_defaults(d.p.string());  // no file: nothing set
  CHECK_FALSE(g.temperature.has_value());
  CHECK(to_json(g).empty());
  // DeepSeek-R1's file (deepseek-ai/DeepSeek-R1, generation_config.json).
  d.write(R"({"_from_model_config": true, "bos_token_id": 0, "eos_token_id": 1, "do_sample": true,
              "temperature": 0.6, "top_p": 0.95, "transformers_version": "4.46.3"})");
  g = read_generation_defaults(d.p.string());
  CHECK(g.do_sample == true);
  CHECK(g.temperature == 0.6);
  CHECK(g.top_p == 0.95);
  CHECK_FALSE(g.top_k.has_value());
  CHECK(to_json(g).dump() == R"({"do_sample":true,"temperature":0.6,"top_p":0.95})");
  d.write(R"({"do_sample": false, "top_k": 20, "min_p": 0.0, "repetition_penalty": 1.05, "max_new_tokens": 512,
              "temperature": null})");
  g = read_generation_defaults(d.p.string());
  CHECK(g.do_sample == false);
  CHECK_FALSE(g.temperature.has_value());
  CHECK(g.top_k == 20);
  CHECK(g.min_p == 0.0);
  CHECK(g.repetition_penalty == 1.05);
  CHECK(g.max_new_tokens == 512);
  auto bad = [&](const std::string& text, std::vector<std::string> words) {
    d.write(text);
    words.insert(words.begin(), "generation_config.json");
    test::expect_error([&] { read_generation_defaults(d.p.string()); }, ErrorCode::Format, words);
  };
  bad(R"({"temperature": "hot"})", {"'temperature'", "number"});
  bad(R"({"temperature": -1})", {"'temperature'", "out of range"});
  bad(R"({"top_p": 0})", {"'top_p'", "out of range"});
  bad(R"({"top_p": 1.5})", {"'top_p'", "out of range"});
  bad(R"({"top_k": 2.5})", {"'top_k'", "integer"});
  bad(R"({"top_k": -1})", {"'top_k'", ">= 0"});
  bad(R"({"max_new_tokens": 0})", {"'max_new_tokens'", ">= 1"});
  bad(R"({"do_sample": 1})", {"'do_sample'", "true or false"});
  bad(R"([1, 2])", {"not a JSON object"});
  bad(R"({"temperature": 0.6,)", {"JSON"});
}
