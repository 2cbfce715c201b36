// The pipeline runner: a scaled-down version of each example pipeline (examples/pipelines/) runs
// and every stage produces its outputs with rewards computed; a run killed mid-stage resumes and
// ends with the same weights and metrics as an uninterrupted run; rejection sampling keeps
// exactly what the verifier accepts; bad configs fail before any work, naming field and line;
// reward callbacks that throw are reported and the run goes on.
#include <catch2/catch.hpp>

#include <google/protobuf/text_format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "reason.pb.h"
#include "guarded_backend.h"
#include "io/safetensors.h"
#include "train/checkpoint.h"
#include "rl/pipeline.h"
#include "rl/rewards.h"

using namespace reason;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kExamples = fs::path(REASON_FIXTURES_DIR) / ".." / ".." / "examples" / "pipelines";
const std::string kCli = std::string(REASON_BINARY_DIR) + "/sdk/cli/reason";
const std::string kBase = std::string(REASON_FIXTURES_DIR) + "/pipeline/addition-base";

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("reason_test_pipeline_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

void write(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

// The example config scaled down for CI: a small warm-started model, few steps, small datasets;
// relative paths made absolute (the scaled copy lives elsewhere).
std::string scaled_example(const std::string& name, const std::map<std::string, std::string>& model_paths = {}) {
  proto::PipelineConfig c;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(read(kExamples / name), &c));
  c.set_threads(1);
  c.set_checkpoint_every(2);
  for (auto& m : *c.mutable_models()) {
    if (model_paths.count(m.name())) {
      m.set_path(model_paths.at(m.name()));
      continue;
    }
    // Models from scratch start from a small pretrained base model instead (few CI steps could
    // not teach a new model the task, and RL, rejection sampling and distillation need a model
    // that is sometimes right).
    m.set_path(kBase);
  }
  for (auto& d : *c.mutable_datasets()) {
    if (d.has_path()) d.set_path((kExamples / d.path()).lexically_normal().string());
    if (d.has_synthetic()) d.mutable_synthetic()->set_count(std::min<int64_t>(d.synthetic().count(), 96));
  }
  for (auto& s : *c.mutable_stages()) {
    if (s.has_sft()) {
      s.mutable_sft()->mutable_optimizer()->set_lr(1e-4f);
      s.mutable_sft()->set_steps(4);
      s.mutable_sft()->set_epochs(0);
      s.mutable_sft()->set_batch_size(4);
      s.mutable_sft()->mutable_schedule()->Clear();
    }
    if (s.has_grpo()) {
      s.mutable_grpo()->set_steps(5);
      s.mutable_grpo()->set_prompts_per_step(2);
      s.mutable_grpo()->mutable_grpo()->set_group_size(4);
      s.mutable_grpo()->mutable_sampling()->set_max_new_tokens(64);
      s.mutable_grpo()->mutable_schedule()->Clear();
    }
    if (s.has_rejection_sampling()) {
      s.mutable_rejection_sampling()->set_max_prompts(8);
      s.mutable_rejection_sampling()->mutable_sampling()->set_max_new_tokens(64);
    }
    if (s.has_distill()) {
      s.mutable_distill()->set_steps(3);
      s.mutable_distill()->set_epochs(0);
      s.mutable_distill()->set_batch_size(4);
      s.mutable_distill()->mutable_sampling()->set_max_new_tokens(64);
      s.mutable_distill()->mutable_schedule()->Clear();
    }
    if (s.has_eval()) {
      s.mutable_eval()->set_samples(2);
      s.mutable_eval()->set_max_prompts(6);
      s.mutable_eval()->mutable_sampling()->set_max_new_tokens(64);
    }
  }
  std::string out;
  REQUIRE(google::protobuf::TextFormat::PrintToString(c, &out));
  return out;
}

json run_config(const fs::path& dir, const std::string& text, const PipelineOptions& base = {}) {
  write(dir / "config.textproto", text);
  PipelineOptions o = base;
  o.out_dir = (dir / "out").string();
  o.progress = false;
  FILE* log = std::tmpfile();
  o.log = log;
  json s;
  try {
    s = run_pipeline((dir / "config.textproto").string(), o);
  } catch (...) {
    std::rewind(log);
    char buf[4096];
    size_t n = std::fread(buf, 1, sizeof buf - 1, log);
    buf[n] = 0;
    UNSCOPED_INFO("pipeline log:\n" << buf);
    std::fclose(log);
    throw;
  }
  std::fclose(log);
  return s;
}

// Every stage of a finished run produced what it promises.
void check_outputs(const fs::path& out, const json& summary, size_t n_stages) {
  REQUIRE(summary["stages"].size() == n_stages);
  CHECK(fs::exists(out / "summary.json"));
  for (size_t i = 0; i < n_stages; ++i) {
    const json& st = summary["stages"][i];
    const std::string name = st["name"];
    INFO("stage " << name);
    char prefix[32];
    std::snprintf(prefix, sizeof prefix, "%02zu-", i);
    const fs::path dir = out / "stages" / (prefix + name);
    CHECK(fs::exists(dir / "stage.json"));
    const std::string kind = st["kind"];
    if (kind == "sft" || kind == "grpo" || kind == "distill") {
      CHECK(fs::exists(dir / "final" / "DONE"));
      CHECK(fs::exists(dir / "final" / "model.safetensors"));
      CHECK_FALSE(fs::exists(dir / "ckpt"));
      auto rows = read_jsonl(dir / "metrics.jsonl");
      REQUIRE(rows.size() == st["summary"]["steps"].get<size_t>());
      for (size_t k = 0; k < rows.size(); ++k) {
        CHECK(rows[k]["step"] == k + 1);
        CHECK(std::isfinite(rows[k]["loss"].get<double>()));
      }
      CHECK(read(dir / "plots.svg").find("<svg") != std::string::npos);
      if (kind == "grpo")
        for (const auto& r : rows) {
          for (const char* key : {"reward", "accuracy", "format", "response_length", "kl", "entropy"}) {
            INFO(key);
            REQUIRE(r[key].is_number());
          }
          CHECK(r["accuracy"].get<double>() >= 0);
          CHECK(r["accuracy"].get<double>() <= 1);
          CHECK(r["groups"].get<int>() == 2);
          CHECK(r["prompt_tokens_shared"].get<int>() > 0);  // the group shared its prompt
        }
    }
    if (kind == "eval") {
      json e = json::parse(read(dir / "eval.json"));
      CHECK(e["problems"] == 6);
      CHECK(e["pass@1"].get<double>() >= 0);
      CHECK(e["pass@1"].get<double>() <= 1);
      CHECK(e["problems_detail"].size() == 6);
      CHECK(e["problems_detail"][0]["samples"].size() == 2);
    }
    if (kind == "rejection_sampling") {
      CHECK(fs::exists(dir / "samples.jsonl"));
      CHECK(read_jsonl(dir / "all_samples.jsonl").size() == st["summary"]["samples"].get<size_t>());
      CHECK(read_jsonl(dir / "samples.jsonl").size() == st["summary"]["accepted"].get<size_t>());
    }
  }
}

// Runs the CLI; returns its pid (not waited for).
pid_t spawn_cli(const std::vector<std::string>& args, const fs::path& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    std::vector<char*> argv{const_cast<char*>(kCli.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(kCli.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

// The r1-zero example up to its GRPO stage (pretrain, eval_base, rl), without the datasets the
// later stages write.
void keep_through_grpo(proto::PipelineConfig& c) {
  while (c.stages_size() > 3) c.mutable_stages()->RemoveLast();
  while (c.datasets(c.datasets_size() - 1).has_from_stage()) c.mutable_datasets()->RemoveLast();
}

json without_timings(json row) {
  for (const char* k : {"seconds", "tokens_per_s", "sample_seconds", "train_seconds"}) row.erase(k);
  return row;
}

}  // namespace

TEST_CASE("r1-zero example, scaled down: every stage runs and writes its outputs", "[pipeline]") {
  const fs::path dir = temp_dir("r1zero");
  json s = run_config(dir, scaled_example("r1-zero.textproto"));
  check_outputs(dir / "out", s, 9);
  CHECK(fs::exists(dir / "out" / "plots.svg"));
  CHECK(s["stages"][3]["summary"].contains("delta_pass@1"));  // eval_rl compares to eval_base

  SECTION("rejection sampling kept exactly the completions the verifier accepts") {
    const fs::path rs = dir / "out" / "stages" / "04-sample_rl";
    auto all = read_jsonl(rs / "all_samples.jsonl");
    auto kept = read_jsonl(rs / "samples.jsonl");
    REQUIRE(all.size() == 8 * 4);
    std::vector<json> expect;
    std::map<std::string, int> per_prompt;
    for (const auto& line : all) {
      const std::string c = line["completion"];
      const bool correct = math_accuracy_reward(c, line["answer"].get<std::string>()) == 1.0f;
      const bool formatted = format_reward(c) == 1.0f;
      const bool lang = language_consistency_reward(c, "en") >= 0.95f;
      CHECK(line["correct"] == correct);
      CHECK(line["format"] == formatted);
      const bool ok = correct && formatted && lang && !line["truncated"].get<bool>() &&
                      per_prompt[line["prompt"]] < 1;  // keep_per_prompt: 1
      CHECK(line["accepted"] == ok);
      if (ok) {
        per_prompt[line["prompt"]] += 1;
        expect.push_back({{"prompt", line["prompt"]}, {"completion", c}, {"answer", line["answer"]}});
      }
    }
    CHECK(kept == expect);
  }
}

TEST_CASE("r1 example (all five stage types), scaled down", "[pipeline]") {
  const fs::path dir = temp_dir("r1");
  const std::string cfg = scaled_example("r1.textproto");
  proto::PipelineConfig c;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(cfg, &c));
  std::set<std::string> kinds;
  for (const auto& st : c.stages()) kinds.insert(st.has_sft() ? "sft" : st.has_grpo() ? "grpo" : st.has_distill() ? "distill"
                                                                     : st.has_eval() ? "eval" : "rejection_sampling");
  CHECK(kinds.size() == 5);
  json s = run_config(dir, cfg);
  check_outputs(dir / "out", s, size_t(c.stages_size()));
}

TEST_CASE("r1 example on a device the host cannot touch ends exactly as on the CPU", "[pipeline][device]") {
  // Every model of every stage (SFT, GRPO with its reference, rejection sampling, distillation,
  // eval) on test::GuardedBackend: a host read of device memory would fault, a host array given to
  // an op would throw, and the results must be the CPU backend's bit for bit.
  const std::string cfg = scaled_example("r1.textproto");
  const fs::path cpu = temp_dir("r1_cpu"), dev = temp_dir("r1_device");
  test::GuardedBackend g;
  PipelineOptions on_dev;
  on_dev.load.backend = &g;
  run_config(cpu, cfg);
  run_config(dev, cfg, on_dev);
  CHECK(g.ops() > 10000);
  size_t compared = 0;
  for (const auto& st : fs::directory_iterator(cpu / "out" / "stages")) {
    const fs::path other = dev / "out" / "stages" / st.path().filename();
    INFO(st.path().filename().string());
    if (fs::exists(st.path() / "final" / "model.safetensors")) {
      CHECK(read(st.path() / "final" / "model.safetensors") == read(other / "final" / "model.safetensors"));
      ++compared;
    }
    if (fs::exists(st.path() / "metrics.jsonl")) {
      auto a = read_jsonl(st.path() / "metrics.jsonl"), b = read_jsonl(other / "metrics.jsonl");
      REQUIRE(a.size() == b.size());
      for (size_t i = 0; i < a.size(); ++i) CHECK(without_timings(a[i]) == without_timings(b[i]));
    }
    if (fs::exists(st.path() / "eval.json"))
      CHECK(json::parse(read(st.path() / "eval.json"))["problems_detail"] ==
            json::parse(read(other / "eval.json"))["problems_detail"]);
  }
  CHECK(compared >= 3);
}

TEST_CASE("distill example, scaled down, from a teacher trained by a pipeline", "[pipeline]") {
  const fs::path dir = temp_dir("distill");
  const fs::path tdir = temp_dir("distill_teacher");
  json t = run_config(tdir, scaled_example("r1-zero.textproto"));
  const std::string teacher = t["models"]["policy"];
  const std::string cfg = scaled_example("distill.textproto", {{"teacher", teacher}});
  proto::PipelineConfig c;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(cfg, &c));
  json s = run_config(dir, cfg);
  check_outputs(dir / "out", s, size_t(c.stages_size()));
}

TEST_CASE("a run killed mid-stage resumes and ends exactly as an uninterrupted run", "[pipeline][resume]") {
  REQUIRE(fs::exists(kCli));
  const fs::path dir = temp_dir("resume");
  std::string cfg = scaled_example("r1-zero.textproto");
  proto::PipelineConfig c;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(cfg, &c));
  c.mutable_stages(2)->mutable_grpo()->set_steps(14);  // a long enough window to kill in
  REQUIRE(google::protobuf::TextFormat::PrintToString(c, &cfg));
  write(dir / "config.textproto", cfg);
  const std::string config = (dir / "config.textproto").string();

  REQUIRE(wait_exit(spawn_cli({"pipeline", "run", config, "--out", (dir / "full").string(), "--no-progress"},
                              dir / "full.log")) == 0);

  // Kill -9 as soon as the GRPO stage has written a mid-stage checkpoint.
  const fs::path out = dir / "killed";
  pid_t pid = spawn_cli({"pipeline", "run", config, "--out", out.string(), "--no-progress"}, dir / "killed.log");
  const fs::path ckpt = out / "stages" / "02-rl" / "ckpt" / "DONE";
  // No time limit (a slow machine only waits longer; ctest's TIMEOUT bounds a CLI that hangs):
  // wait for the checkpoint, or for the CLI to end without writing one.
  bool ended_early = false;
  while (!fs::exists(ckpt)) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      ended_early = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  INFO(read(dir / "killed.log"));
  REQUIRE_FALSE(ended_early);
  ::kill(pid, SIGKILL);
  CHECK(wait_exit(pid) == -SIGKILL);
  REQUIRE(fs::exists(ckpt));
  REQUIRE_FALSE(fs::exists(out / "stages" / "02-rl" / "stage.json"));  // killed mid-stage

  // Resume: the same command again.
  REQUIRE(wait_exit(spawn_cli({"pipeline", "run", config, "--out", out.string(), "--no-progress"},
                              dir / "resumed.log")) == 0);
  CHECK(read(dir / "resumed.log").find("resuming") != std::string::npos);
  for (const char* stage : {"00-pretrain", "02-rl", "05-student_pretrain", "07-distill"}) {
    INFO(stage);
    CHECK(read(dir / "full" / "stages" / stage / "final" / "model.safetensors") ==
          read(out / "stages" / stage / "final" / "model.safetensors"));
    auto a = read_jsonl(dir / "full" / "stages" / stage / "metrics.jsonl");
    auto b = read_jsonl(out / "stages" / stage / "metrics.jsonl");
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) CHECK(without_timings(a[i]) == without_timings(b[i]));
  }
  json ea = json::parse(read(dir / "full" / "stages" / "08-eval_student_distilled" / "eval.json"));
  json eb = json::parse(read(out / "stages" / "08-eval_student_distilled" / "eval.json"));
  CHECK(ea["problems_detail"] == eb["problems_detail"]);

  // Running a finished run again does nothing new; another config in the same directory is refused.
  REQUIRE(wait_exit(spawn_cli({"pipeline", "run", config, "--out", out.string(), "--no-progress"},
                              dir / "again.log")) == 0);
  CHECK(read(dir / "again.log").find("complete, skipped") != std::string::npos);
  c.set_seed(c.seed() + 1);
  REQUIRE(google::protobuf::TextFormat::PrintToString(c, &cfg));
  write(dir / "other.textproto", cfg);
  CHECK(wait_exit(spawn_cli({"pipeline", "run", (dir / "other.textproto").string(), "--out", out.string()},
                            dir / "other.log")) == 1);
  CHECK(read(dir / "other.log").find("different config") != std::string::npos);
}

TEST_CASE("bad configs fail before any work, naming the field and the line", "[pipeline][config]") {
  const fs::path dir = temp_dir("bad");
  write(dir / "data.jsonl", "{\"prompt\": \"1+1?\", \"answer\": \"2\"}\n{\"prompt\": \"2+2?\", \"answer\": \"4\"}\n");
  write(dir / "bad.jsonl", "{\"prompt\": \"1+1?\", \"answer\": \"2\"}\n{\"prompt\": \"2+2?\", \"answer\": \"4\"}\n"
                           "{\"prompt\": \"3+3?\"}\n");
  write(dir / "text.jsonl", "{\"text\": \"1+1=2\"}\n");
  const std::string tok = (kExamples / "assets" / "addition-tokenizer").string();
  const std::string head =
      "models { name: \"m\" init { hidden_size: 32 intermediate_size: 64 num_layers: 1 num_heads: 2 tokenizer: \"" +
      tok + "\" } }\n" + "datasets { name: \"d\" path: \"data.jsonl\" }\ndatasets { name: \"bad\" path: \"bad.jsonl\" }\n" +
      "datasets { name: \"t\" path: \"text.jsonl\" }\n";
  auto expect_error = [&](const std::string& body, std::vector<std::string> parts) {
    write(dir / "c.textproto", head + body);
    PipelineOptions o;
    o.out_dir = (dir / "out").string();
    o.progress = false;
    try {
      run_pipeline((dir / "c.textproto").string(), o);
      FAIL("no error for:\n" << body);
    } catch (const Error& e) {
      INFO(e.what());
      CHECK(e.code() == ErrorCode::InvalidArgument);
      for (const auto& p : parts) CHECK_THAT(e.what(), Catch::Contains(p));
    }
    CHECK_FALSE(fs::exists(dir / "out"));  // nothing was started
  };
  const std::string c = (dir / "c.textproto").string();
  expect_error("stages { name: \"x\" pretrain { } }\n", {c + ":5:", "pretrain"});
  expect_error("stages { grpo { model: \"m\" dataset: \"bad\" steps: 1 grpo { group_size: 2 } } }\n",
               {(dir / "bad.jsonl").string() + ":3", "missing required field 'answer'"});
  expect_error("stages { eval { model: \"m\" dataset: \"nope\" } }\n", {c + ":5:", "no dataset named 'nope'"});
  expect_error("datasets { name: \"e\" path: \"missing.jsonl\" }\nstages { eval { model: \"m\" dataset: \"e\" } }\n",
               {c + ":5:", "no such file", "missing.jsonl"});
  expect_error("stages {\n  name: \"rl\"\n  grpo {\n    model: \"m\"\n    dataset: \"d\"\n    steps: 3\n"
               "    grpo { group_size: 1 }\n  }\n}\n",
               {c + ":11:", "stage 'rl'", "grpo.group_size must be >= 2 (got 1)"});
  expect_error("stages {\n  sft {\n    model: \"m\"\n    dataset: \"t\"\n    steps: 3\n    optimizer { lr: -0.1 }\n  }\n}\n",
               {c + ":10:", "optimizer.lr must be >= 0"});
  expect_error("stages { eval { model: \"nobody\" dataset: \"d\" } }\n", {"no model named 'nobody'"});
  expect_error("stages { grpo { model: \"m\" dataset: \"d\" steps: 1 grpo { group_size: 2 } reward { terms { callback: "
               "\"judge\" } } } }\n",
               {"reward callback 'judge' is not registered"});
  expect_error("stages { eval { model: \"m\" dataset: \"d\" compare_to: \"later\" } }\nstages { name: \"later\" eval { "
               "model: \"m\" dataset: \"d\" } }\n",
               {"'later' is not an earlier eval stage"});
}

TEST_CASE("a reward callback that throws is reported and the run goes on", "[pipeline]") {
  const fs::path dir = temp_dir("callback");
  std::string cfg = scaled_example("r1-zero.textproto");
  proto::PipelineConfig c;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(cfg, &c));
  keep_through_grpo(c);
  auto* t = c.mutable_stages(2)->mutable_grpo()->mutable_reward()->add_terms();
  t->set_callback("judge");
  t->set_weight(0.5f);
  c.mutable_stages(2)->mutable_grpo()->mutable_reward()->set_deadline_ms(200);
  REQUIRE(google::protobuf::TextFormat::PrintToString(c, &cfg));
  std::atomic<int> calls{0};
  PipelineOptions o;
  o.rewards["judge"] = [&calls](const RewardInput& in) -> float {
    if (calls.fetch_add(1) % 3 == 0) throw std::runtime_error("judge is down");
    return in.completion.size() > 10 ? 1.0f : 0.0f;
  };
  json s = run_config(dir, cfg, o);
  auto rows = read_jsonl(dir / "out" / "stages" / "02-rl" / "metrics.jsonl");
  REQUIRE(rows.size() == 5);
  int failures = 0;
  for (const auto& r : rows) {
    failures += r["reward_failures"].get<int>();
    CHECK(r.contains("reward/judge"));
  }
  CHECK(failures > 0);
  CHECK(calls.load() == 5 * 2 * 4);
  CHECK(s["stages"][2]["summary"]["reward_failures"].get<int>() == failures);
}

TEST_CASE("reason eval: pass@1 over K samples, cons@K and greedy, as a table and JSON", "[pipeline][eval]") {
  REQUIRE(fs::exists(kCli));
  const fs::path dir = temp_dir("eval_cli");
  // Problems the base fixture model gets right and wrong, plus a line with a numeric answer.
  write(dir / "data.jsonl",
        "{\"prompt\": \"What is 23 + 45?\", \"answer\": \"68\"}\n"
        "{\"prompt\": \"What is 347 + 89?\", \"answer\": \"436\", \"source\": \"extra fields are kept\"}\n"
        "{\"prompt\": \"What is 70 + 18?\", \"answer\": 88}\n");
  pid_t pid = ::fork();
  if (pid == 0) {
    FILE* f = std::freopen((dir / "out.txt").c_str(), "w", stdout);
    (void)f;
    ::execl(kCli.c_str(), kCli.c_str(), "eval", "--model", kBase.c_str(), "--data", (dir / "data.jsonl").c_str(),
            "--samples", "3", "--template", "User: {prompt}\nAssistant:", "--max-new-tokens", "64", "--json",
            (dir / "eval.json").c_str(), nullptr);
    ::_exit(127);
  }
  REQUIRE(wait_exit(pid) == 0);
  const std::string out = read(dir / "out.txt");
  CHECK(out.find("pass@1") != std::string::npos);
  CHECK(out.find("cons@3") != std::string::npos);
  json full = json::parse(read(dir / "eval.json"));
  CHECK(full["problems"] == 3);
  CHECK(full["k"] == 3);
  REQUIRE(full["problems_detail"].size() == 3);
  // The metrics are what the per-problem details say.
  double pass = 0, greedy = 0;
  for (const auto& p : full["problems_detail"]) {
    REQUIRE(p["samples"].size() == 3);
    for (size_t j = 0; j < 3; ++j) {
      const bool c = math_accuracy_reward(p["samples"][j].get<std::string>(), p["answer"].get<std::string>()) == 1.0f;
      CHECK(p["correct"][j].get<bool>() == c);
      pass += c;
    }
    greedy += math_accuracy_reward(p["greedy"].get<std::string>(), p["answer"].get<std::string>()) == 1.0f;
  }
  CHECK(full["pass@1"].get<double>() == Approx(pass / 9));
  CHECK(full["greedy"].get<double>() == Approx(greedy / 3));
  CHECK(greedy >= 2);  // the base model is right greedily on most of these
  // A dataset line without an answer is an error naming the line.
  write(dir / "bad.jsonl", "{\"prompt\": \"What is 1 + 1?\", \"answer\": \"2\"}\n{\"prompt\": \"x\"}\n");
  pid = spawn_cli({"eval", "--model", kBase, "--data", (dir / "bad.jsonl").string()}, dir / "bad.log");
  CHECK(wait_exit(pid) == 1);
  CHECK(read(dir / "bad.log").find("bad.jsonl:2: missing required field 'answer'") != std::string::npos);
}

TEST_CASE("DAPO dynamic sampling trains only on groups whose rewards differ", "[pipeline][grpo]") {
  const fs::path dir = temp_dir("dynamic");
  std::string cfg = scaled_example("r1-zero.textproto");
  proto::PipelineConfig c;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(cfg, &c));
  keep_through_grpo(c);
  auto* g = c.mutable_stages(2)->mutable_grpo();
  g->set_dynamic_sampling(true);
  g->set_max_sampling_rounds(6);
  g->mutable_reward()->clear_terms();
  g->mutable_reward()->add_terms()->set_callback("parity");
  REQUIRE(google::protobuf::TextFormat::PrintToString(c, &cfg));
  // Prompts with an even first operand tie (every completion scores 1); the others score by the
  // parity of the completion's length, so their groups (almost always) differ.
  PipelineOptions o;
  o.rewards["parity"] = [](const RewardInput& in) -> float {
    const int a = std::stoi(in.prompt.substr(std::string("What is ").size()));
    if (a % 2 == 0) return 1.0f;
    return float(in.completion.size() % 2);
  };
  run_config(dir, cfg, o);
  auto rows = read_jsonl(dir / "out" / "stages" / "02-rl" / "metrics.jsonl");
  REQUIRE(rows.size() == 5);
  int dropped = 0;
  for (const auto& r : rows) {
    INFO(r.dump());
    dropped += r["dropped_groups"].get<int>();
    CHECK(r["groups"] == 2);                                       // the batch was filled
    CHECK(r["tied_groups"].get<double>() == 0.0);                  // with non-tied groups only
    CHECK(r["sampled_groups"].get<int>() >= r["groups"].get<int>() + r["dropped_groups"].get<int>());
  }
  CHECK(dropped > 0);
}

TEST_CASE("a GRPO stage with GSPO, rollout correction and adaptive entropy control", "[pipeline][grpo]") {
  // The stage keeps its sampler's logprobs as the sampling ones and the trainer's as the old
  // policy's: the sampler shares the trainer's weights, so every correction weight is 1 up to
  // f32 summation order, which the metrics show. The entropy controller moves every step.
  const fs::path dir = temp_dir("grpo_options");
  std::string cfg = scaled_example("r1-zero.textproto");
  proto::PipelineConfig c;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(cfg, &c));
  keep_through_grpo(c);
  auto* g = c.mutable_stages(2)->mutable_grpo()->mutable_grpo();
  g->set_importance_sampling_level(proto::GrpoConfig::SEQUENCE_LEVEL);
  g->mutable_rollout_correction()->set_mode(proto::GrpoConfig::RolloutCorrection::SEQUENCE_TRUNCATE);
  g->set_top_entropy_quantile(0.5f);
  g->set_entropy_coef(0.01f);
  g->mutable_adaptive_entropy()->set_target(100.0f);  // above any entropy here: the coefficient grows
  g->mutable_adaptive_entropy()->set_delta(0.01f);
  REQUIRE(google::protobuf::TextFormat::PrintToString(c, &cfg));
  run_config(dir, cfg);
  auto rows = read_jsonl(dir / "out" / "stages" / "02-rl" / "metrics.jsonl");
  REQUIRE(rows.size() == 5);
  for (size_t i = 0; i < rows.size(); ++i) {
    const json& r = rows[i];
    INFO(r.dump());
    CHECK(r["entropy_coef"].get<double>() == Approx(0.01 * double(i + 2)).epsilon(1e-5));
    CHECK(r["is_ratio_min"].get<double>() == Approx(1.0).margin(1e-3));
    CHECK(r["is_ratio_max"].get<double>() == Approx(1.0).margin(1e-3));
    CHECK(r["sampling_logp_diff_max"].get<double>() < 1e-3);
    CHECK(r["policy_tokens"].get<int64_t>() > 0);
  }
}

TEST_CASE("LoRA stages: adapters in PEFT format, the next stage trains on, a full stage merges", "[pipeline][lora]") {
  const fs::path dir = temp_dir("lora");
  const std::string base_weights = read(fs::path(kBase) / "model.safetensors");
  const std::string cfg = "seed: 5\nthreads: 1\ncheckpoint_every: 1\n"
                          "prompt_format { template: \"User: {prompt}\\nAssistant:\" }\n"
                          "models { name: \"policy\" path: \"" + kBase + "\" }\n"
                          "datasets { name: \"train\" synthetic { kind: PROBLEMS count: 64 } }\n"
                          "datasets { name: \"corpus\" synthetic { kind: CORPUS count: 16 } }\n"
                          "stages { name: \"rl\" grpo { model: \"policy\" dataset: \"train\" steps: 2 prompts_per_step: 2 "
                          "grpo { group_size: 4 } sampling { max_new_tokens: 48 } optimizer { lr: 1e-3 } "
                          "lora { rank: 4 alpha: 8 target_modules: \"q_proj, v_proj, down_proj\" rank_pattern { key: \"down_proj\" value: 2 } } } }\n"
                          "stages { name: \"rl2\" grpo { model: \"policy\" dataset: \"train\" steps: 2 prompts_per_step: 2 "
                          "grpo { group_size: 4 } sampling { max_new_tokens: 48 } optimizer { lr: 1e-3 } lora { } } }\n"
                          "stages { name: \"full\" sft { model: \"policy\" dataset: \"corpus\" steps: 1 batch_size: 2 } }\n"
                          "models { name: \"teacher\" path: \"" + kBase + "\" }\n"
                          "stages { name: \"kd\" distill { teacher: \"teacher\" student: \"policy\" dataset: \"corpus\" "
                          "mode: LOGIT steps: 2 batch_size: 2 lora { rank: 2 } } }\n";
  run_config(dir, cfg);
  const int layers = json::parse(read(fs::path(kBase) / "config.json"))["num_hidden_layers"].get<int>();
  const fs::path s0 = dir / "out" / "stages" / "00-rl" / "final", s1 = dir / "out" / "stages" / "01-rl2" / "final";
  for (const fs::path& s : {s0, s1}) {
    INFO(s);
    CHECK(fs::exists(s / "adapter_config.json"));
    CHECK(fs::exists(s / "adapter_model.safetensors"));
    CHECK_FALSE(fs::exists(s / "config.json"));
    CHECK_FALSE(fs::exists(s / "model.safetensors"));
    const json a = json::parse(read(s / "adapter_config.json"));
    CHECK(a["base_model_name_or_path"] == fs::absolute(kBase).string());
    CHECK(a["r"] == 4);
    CHECK(a["rank_pattern"]["down_proj"] == 2);
    CHECK(a["target_modules"].size() == size_t(3 * layers));  // 3 modules in each layer
  }
  CHECK(read(fs::path(kBase) / "model.safetensors") == base_weights);  // the base is never written
  // The adapter trained (lora_B moved from 0), and the second stage went on from the first's.
  auto f0 = SafetensorsFile::open((s0 / "adapter_model.safetensors").string());
  auto f1 = SafetensorsFile::open((s1 / "adapter_model.safetensors").string());
  const std::string b = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
  const Tensor b0 = f0->tensor(b), b1 = f1->tensor(b);
  float n0 = 0, d01 = 0;
  for (int64_t i = 0; i < b0.numel(); ++i) {
    n0 = std::max(n0, std::fabs(b0.data<float>()[i]));
    d01 = std::max(d01, std::fabs(b0.data<float>()[i] - b1.data<float>()[i]));
  }
  CHECK(n0 > 0.0f);
  CHECK(d01 > 0.0f);
  // Loading the stage's directory gives base + adapter; the full SFT stage merged it and trained
  // every weight into a plain checkpoint.
  auto m = Model::load(s1.string());
  REQUIRE(m->adapter() != nullptr);
  CHECK(m->adapter_parameters().size() == size_t(2 * 3 * layers));
  // The optimizer state saved with it is the adapter's (what a resumed stage restores).
  AdamW opt;
  CHECK(load_optimizer_state(s1.string(), *m, opt)["step"] == 2);
  CHECK(opt.state().size() == m->adapter_parameters().size());
  CHECK(fs::exists(dir / "out" / "stages" / "02-full" / "final" / "model.safetensors"));
  CHECK(Model::load((dir / "out" / "stages" / "02-full" / "final").string())->adapter() == nullptr);
  // Logit distillation into a new adapter on the (now fully trained) student.
  const fs::path kd = dir / "out" / "stages" / "03-kd" / "final";
  CHECK(json::parse(read(kd / "adapter_config.json"))["r"] == 2);
  CHECK(json::parse(read(kd / "adapter_config.json"))["base_model_name_or_path"] ==
        fs::absolute(dir / "out" / "stages" / "02-full" / "final").string());
  CHECK(read_jsonl(dir / "out" / "stages" / "03-kd" / "metrics.jsonl").size() == 2);
  // A bad lora block fails the check before any work, naming the field.
  const fs::path bad = temp_dir("lora_bad");
  write(bad / "c.textproto", "models { name: \"policy\" path: \"" + kBase + "\" }\n"
                             "datasets { name: \"train\" synthetic { kind: PROBLEMS count: 8 } }\n"
                             "stages { name: \"rl\" grpo { model: \"policy\" dataset: \"train\" steps: 1 "
                             "grpo { group_size: 2 } lora { dropout: 1.5 } } }\n");
  CHECK_THROWS_WITH(check_pipeline((bad / "c.textproto").string()), Catch::Contains("lora.dropout must be in [0, 1)"));
  // A quantised model is a frozen base: a full-training stage on it fails the check, naming it;
  // a LoRA stage trains it (QLoRA) and the base stays quantised in the stage's checkpoints.
  const std::string q = "models { name: \"policy\" path: \"" + kBase + "\" quantize: \"q8_0\" }\n"
                        "datasets { name: \"train\" synthetic { kind: PROBLEMS count: 8 } }\n"
                        "stages { name: \"rl\" grpo { model: \"policy\" dataset: \"train\" steps: 1 prompts_per_step: 2 "
                        "grpo { group_size: 2 } sampling { max_new_tokens: 24 } LORA } }\n";
  auto with = [&](const std::string& lora) {
    std::string t = q;
    t.replace(t.find("LORA"), 4, lora);
    return t;
  };
  write(bad / "q.textproto", with(""));
  CHECK_THROWS_WITH(check_pipeline((bad / "q.textproto").string()),
                    Catch::Contains("model 'policy' is quantised (q8_0): train it with `lora { }`"));
  const fs::path ql = temp_dir("qlora");
  run_config(ql, with("lora { rank: 4 }"));
  CHECK(fs::exists(ql / "out" / "stages" / "00-rl" / "final" / "adapter_model.safetensors"));
  CHECK(read_jsonl(ql / "out" / "stages" / "00-rl" / "metrics.jsonl").size() == 1);
}

TEST_CASE("r1-zero-emergence example, scaled down: greedy accuracy and response length grow", "[pipeline][emergence]") {
  // The example's GRPO stage from tests/fixtures/pipeline/direct-base (pretrained as the example's
  // policy is, smaller: it answers directly when greedy and mostly wrong), with fewer and smaller
  // steps; accuracy and format rewards only. Measured on every ISA path: held-out greedy 43.8% -> 100%,
  // mean length 21.8 -> 39.1 tokens (the example itself: 0.5% -> 93.5%, 24.8 -> 49.6).
  const fs::path dir = temp_dir("emergence");
  proto::PipelineConfig c;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(read(kExamples / "r1-zero-emergence.textproto"), &c));
  c.set_threads(1);
  c.set_seed(3);
  c.mutable_models(0)->set_path(std::string(REASON_FIXTURES_DIR) + "/pipeline/direct-base");
  for (auto& d : *c.mutable_datasets()) {
    if (d.name() == "heldout") d.mutable_synthetic()->set_count(64);
    if (d.name() == "train") d.mutable_synthetic()->set_count(2000);
  }
  proto::PipelineConfig ci = c;
  ci.clear_stages();
  for (const auto& s : c.stages()) {
    if (s.has_sft()) continue;  // the fixture is the pretrained base
    proto::Stage t = s;
    if (t.has_grpo()) {
      t.mutable_grpo()->set_steps(15);
      t.mutable_grpo()->set_prompts_per_step(8);
      t.mutable_grpo()->mutable_optimizer()->set_lr(2e-4f);
      t.mutable_grpo()->mutable_sampling()->set_max_new_tokens(64);
    }
    if (t.has_eval()) t.mutable_eval()->set_samples(2);
    *ci.add_stages() = t;
  }
  std::string text;
  REQUIRE(google::protobuf::TextFormat::PrintToString(ci, &text));
  run_config(dir, text);
  const json base = json::parse(read(dir / "out" / "stages" / "00-eval_base" / "eval.json"));
  const json rl = json::parse(read(dir / "out" / "stages" / "02-eval_rl" / "eval.json"));
  INFO("greedy " << base["greedy"] << " -> " << rl["greedy"] << ", mean length " << base["mean_length"] << " -> "
                 << rl["mean_length"]);
  CHECK(base["greedy"].get<double>() <= 0.5);
  CHECK(rl["greedy"].get<double>() >= base["greedy"].get<double>() + 0.25);
  CHECK(rl["mean_length"].get<double>() >= 1.3 * base["mean_length"].get<double>());
  const auto rows = read_jsonl(dir / "out" / "stages" / "01-rl" / "metrics.jsonl");
  REQUIRE(rows.size() == 15);
  CHECK(rows.back()["format"].get<double>() > rows.front()["format"].get<double>());
}
