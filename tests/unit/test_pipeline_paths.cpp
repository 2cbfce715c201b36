// Pipeline names become paths under --out: model, dataset and stage names must be plain
// identifiers (no absolute name, no "..", no separator), and every directory the runner writes,
// replaces or removes must stay inside the output directory, symbolic links included. A bad
// name fails before any work, naming the field; nothing outside --out is touched.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "expect_error.h"
#include "core/error.h"
#include "rl/pipeline.h"

using namespace reason;
namespace fs = std::filesystem;

namespace {

const fs::path kExamples = fs::path(REASON_FIXTURES_DIR) / ".." / ".." / "examples" / "pipelines";
const std::string kBase = std::string(REASON_FIXTURES_DIR) + "/pipeline/addition-base";

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("reason_test_pipeline_paths_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

std::string tokenizer_dir() { return (kExamples / "assets" / "addition-tokenizer").string(); }

// A directory with a file in it, standing for user data outside --out.
fs::path sentinel(const fs::path& dir) {
  fs::create_directories(dir);
  write(dir / "precious.txt", "keep me");
  return dir;
}

void expect_invalid(const fs::path& cfg, const fs::path& out, const std::vector<std::string>& parts) {
  PipelineOptions o;
  o.out_dir = out.string();
  o.progress = false;
  test::expect_error([&] { run_pipeline(cfg.string(), o); }, ErrorCode::InvalidArgument, parts);
}

}  // namespace

TEST_CASE("model, dataset and stage names must be plain identifiers", "[pipeline][paths]") {
  const fs::path dir = temp_dir("names");
  write(dir / "data.jsonl", "{\"prompt\": \"1+1?\", \"answer\": \"2\"}\n");
  const fs::path victim = sentinel(dir / "victim");
  const fs::path out = dir / "work" / "out";
  auto model = [&](const std::string& name) {
    return "models { name: \"" + name + "\" init { hidden_size: 32 intermediate_size: 64 num_layers: 1 num_heads: 2 "
           "tokenizer: \"" + tokenizer_dir() + "\" } }\n";
  };
  const std::string data = "datasets { name: \"d\" path: \"data.jsonl\" }\n";
  const std::string eval = "stages { eval { model: \"m\" dataset: \"d\" } }\n";
  const fs::path cfg = dir / "c.textproto";
  // OUT/models/NAME for these names is the victim directory (or above it).
  const std::vector<std::string> bad_names = {"../../victim", "..", ".", victim.string(), "a/b", "a\\\\b", ".hidden",
                                              "-x", std::string(65, 'a'), "m\\n"};
  for (const std::string& bad : bad_names) {
    DYNAMIC_SECTION("model name " << bad) {
      write(cfg, model(bad) + data + "stages { eval { model: \"" + bad + "\" dataset: \"d\" } }\n");
      expect_invalid(cfg, out, {cfg.string() + ":1:", "models[0]", "model name", "plain identifier"});
    }
  }
  SECTION("dataset name") {
    write(cfg, model("m") + "datasets { name: \"../../victim/x\" path: \"data.jsonl\" }\n" +
                   "stages { eval { model: \"m\" dataset: \"../../victim/x\" } }\n");
    expect_invalid(cfg, out, {cfg.string() + ":2:", "datasets[0]", "dataset name '../../victim/x'"});
  }
  SECTION("synthetic dataset with an absolute name") {
    write(cfg, model("m") + "datasets { name: \"" + (victim / "x").string() + "\" synthetic { count: 4 } }\n" + data +
                   eval);
    expect_invalid(cfg, out, {"datasets[0]", "dataset name", "plain identifier"});
  }
  SECTION("stage name") {
    write(cfg, model("m") + data + "stages { name: \"../../../victim\" eval { model: \"m\" dataset: \"d\" } }\n");
    expect_invalid(cfg, out, {cfg.string() + ":3:", "stage name '../../../victim'"});
  }
  SECTION("check_pipeline refuses them too") {
    write(cfg, model("../m") + data + eval);
    CHECK_THROWS_AS(check_pipeline(cfg.string()), Error);
  }
  CHECK_FALSE(fs::exists(out));  // refused before any work
  CHECK(fs::exists(victim / "precious.txt"));
  CHECK(fs::directory_iterator(victim) != fs::directory_iterator());
  SECTION("names with dots, dashes and underscores inside are fine") {
    write(cfg, model("m") + "datasets { name: \"my-data_v1.2\" path: \"data.jsonl\" }\n" +
                   "stages { name: \"eval_0.base-run\" eval { model: \"m\" dataset: \"my-data_v1.2\" } }\n");
    CHECK_NOTHROW(check_pipeline(cfg.string()));
  }
}

TEST_CASE("a symbolic link under --out that leads outside is refused, its target untouched", "[pipeline][paths]") {
  const fs::path dir = temp_dir("links");
  write(dir / "data.jsonl", "{\"prompt\": \"1+1?\", \"answer\": \"2\"}\n");
  const fs::path victim = sentinel(dir / "victim");
  const fs::path out = dir / "out";
  const fs::path cfg = dir / "c.textproto";

  SECTION("OUT/models/NAME (write_initial_model would replace it)") {
    write(cfg, "models { name: \"m\" init { hidden_size: 32 intermediate_size: 64 num_layers: 1 num_heads: 2 "
               "tokenizer: \"" + tokenizer_dir() + "\" } }\ndatasets { name: \"d\" path: \"data.jsonl\" }\n"
               "stages { eval { model: \"m\" dataset: \"d\" } }\n");
    fs::create_directories(out / "models");
    fs::create_directory_symlink(victim, out / "models" / "m");
    expect_invalid(cfg, out, {(out / "models" / "m").string(), "not inside the output directory"});
  }
  SECTION("OUT/stages/NN-NAME (training stages remove ckpt/ there)") {
    write(cfg, "models { name: \"m\" path: \"" + kBase + "\" }\ndatasets { name: \"d\" path: \"data.jsonl\" }\n"
               "stages { name: \"ev\" eval { model: \"m\" dataset: \"d\" samples: 1 max_prompts: 1 } }\n");
    fs::create_directories(out / "stages");
    fs::create_directory_symlink(victim, out / "stages" / "00-ev");
    expect_invalid(cfg, out, {(out / "stages" / "00-ev").string(), "not inside the output directory"});
  }
  SECTION("OUT/data (synthetic datasets are written there)") {
    write(cfg, "models { name: \"m\" path: \"" + kBase + "\" }\ndatasets { name: \"s\" synthetic { count: 4 } }\n"
               "stages { name: \"ev\" eval { model: \"m\" dataset: \"s\" samples: 1 max_prompts: 1 } }\n");
    fs::create_directories(out);
    fs::create_directory_symlink(victim, out / "data");
    expect_invalid(cfg, out, {"data", "not inside the output directory"});
  }
  CHECK(fs::exists(victim / "precious.txt"));
  size_t n = 0;
  for (auto it = fs::directory_iterator(victim); it != fs::directory_iterator(); ++it) ++n;
  CHECK(n == 1);  // nothing written into, nothing removed from, the link's target
}
