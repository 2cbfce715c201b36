// Pipelines through the C ABI: a run whose GRPO reward is a C callback (called from worker
// threads, failures reported), the summary JSON, resume of a finished run, and config errors.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "reason.h"

namespace fs = std::filesystem;

namespace {

const std::string kBase = std::string(REASON_FIXTURES_DIR) + "/pipeline/addition-base";

struct Judge {
  std::atomic<int> calls{0};
  std::atomic<int> with_answer{0};
};

float judge(void* user_data, const char* prompt, const char* completion, const char* answer, const char* fields) {
  auto* j = static_cast<Judge*>(user_data);
  const int n = j->calls.fetch_add(1);
  if (std::strstr(prompt, "What is ") == prompt && *answer && std::strstr(fields, "\"answer\"")) j->with_answer++;
  if (n % 5 == 0) return NAN;  // reported as failed, scored 0
  return std::strlen(completion) > 30 ? 1.0f : 0.0f;
}

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("reason_capi_pipeline_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST_CASE("reason_pipeline_run with a C reward callback", "[capi][pipeline]") {
  const fs::path dir = temp_dir();
  std::ofstream(dir / "p.textproto") << "seed: 3\nthreads: 1\n"
                                        "prompt_format { template: \"User: {prompt}\\nAssistant:\" }\n"
                                        "models { name: \"policy\" path: \"" << kBase << "\" }\n"
                                        "datasets { name: \"train\" synthetic { kind: PROBLEMS count: 64 } }\n"
                                        "stages { name: \"rl\" grpo { model: \"policy\" dataset: \"train\" steps: 2 "
                                        "prompts_per_step: 2 grpo { group_size: 4 } sampling { max_new_tokens: 48 } "
                                        "reward { terms { kind: FORMAT } terms { callback: \"judge\" weight: 0.5 } } } }\n";
  Judge j;
  reason_pipeline_reward rw{"judge", judge, &j};
  reason_pipeline_options o = REASON_PIPELINE_OPTIONS_INIT;
  o.progress = 0;
  o.rewards = &rw;
  o.n_rewards = 1;
  const std::string cfg = (dir / "p.textproto").string(), out = (dir / "out").string();
  REQUIRE(reason_pipeline_check(cfg.c_str(), &o) == REASON_OK);
  char* summary = nullptr;
  REQUIRE(reason_pipeline_run(cfg.c_str(), out.c_str(), &o, &summary) == REASON_OK);
  REQUIRE(summary != nullptr);
  const std::string s = summary;
  reason_free(summary);
  CHECK(s.find("\"reward_failures\"") != std::string::npos);
  CHECK(j.calls.load() == 2 * 2 * 4);
  CHECK(j.with_answer.load() == j.calls.load());
  CHECK(fs::exists(dir / "out" / "stages" / "00-rl" / "final" / "model.safetensors"));
  // Again: the finished run is recognised, nothing is re-run.
  REQUIRE(reason_pipeline_run(cfg.c_str(), out.c_str(), &o, nullptr) == REASON_OK);
  CHECK(j.calls.load() == 16);

  // Without the callback registered, the config is refused before any work.
  o.n_rewards = 0;
  CHECK(reason_pipeline_run(cfg.c_str(), (dir / "out2").string().c_str(), &o, nullptr) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("p.textproto:6:") && Catch::Contains("callback 'judge' is not registered"));
  CHECK_FALSE(fs::exists(dir / "out2"));
  CHECK(reason_pipeline_run(nullptr, "x", nullptr, nullptr) == REASON_ERR_INVALID_ARGUMENT);
  CHECK(reason_pipeline_run(cfg.c_str(), "", nullptr, nullptr) == REASON_ERR_INVALID_ARGUMENT);
  CHECK(reason_pipeline_check((dir / "missing.textproto").string().c_str(), nullptr) == REASON_ERR_IO);
  reason_pipeline_reward bad{"", judge, nullptr};
  o.rewards = &bad;
  o.n_rewards = 1;
  CHECK(reason_pipeline_check(cfg.c_str(), &o) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("rewards[0].name"));
  // Rewards of a later, larger reason_pipeline_reward, passed with their stride.
  struct Later {
    reason_pipeline_reward r;
    double future;
  } later{{"judge", judge, &j}, 1.0};
  o.rewards = &later.r;
  o.reward_stride = sizeof(Later);
  CHECK(reason_pipeline_check(cfg.c_str(), &o) == REASON_OK);
  o.reward_stride = 8;
  CHECK(reason_pipeline_check(cfg.c_str(), &o) == REASON_ERR_INVALID_ARGUMENT);
  CHECK_THAT(reason_last_error(), Catch::Contains("opts->rewards stride 8"));
  fs::remove_all(dir);
}

namespace {

struct Calc {
  std::atomic<int> calls{0};
};

int calc_tool(void* user_data, const char* arguments, reason_tool_result* result) {
  auto* c = static_cast<Calc*>(user_data);
  const int n = c->calls.fetch_add(1);
  if (n % 4 == 3) {
    const char msg[] = "bad expression";
    reason_tool_result_set(result, msg, sizeof msg - 1);
    return 1;  // an error the model sees as "error: tool 'calc' failed: bad expression"
  }
  const std::string out = "len " + std::to_string(std::strlen(arguments));
  reason_tool_result_set(result, out.data(), out.size());
  return 0;
}

}  // namespace

TEST_CASE("reason_pipeline_run with a C tool callback: multi-turn GRPO rollouts", "[capi][pipeline][tools]") {
  // The base model writes "=" in its worked additions; with "=" as the closing tag, an empty
  // opening tag and raw arguments, every "=" calls the tool with the text so far, whose answer is
  // appended (no loss) before sampling goes on.
  const fs::path dir = temp_dir();
  std::ofstream(dir / "t.textproto")
      << "seed: 5\nthreads: 1\n"
         "prompt_format { template: \"User: {prompt}\\nAssistant:\" }\n"
         "models { name: \"policy\" path: \"" << kBase << "\" }\n"
         "datasets { name: \"train\" synthetic { kind: PROBLEMS count: 64 } }\n"
         "stages { name: \"rl\" grpo { model: \"policy\" dataset: \"train\" steps: 2 prompts_per_step: 2 "
         "grpo { group_size: 4 } sampling { max_new_tokens: 64 } reward { terms { kind: FORMAT } } "
         "tools { callbacks: \"calc\" raw: true call_open: \"\" call_close: \"=\" result_open: \" [\" "
         "result_close: \"] \" max_calls: 2 } } }\n";
  Calc c;
  reason_pipeline_tool tool{"calc", calc_tool, &c};
  reason_pipeline_options o = REASON_PIPELINE_OPTIONS_INIT;
  o.progress = 0;
  o.tools = &tool;
  o.n_tools = 1;
  const std::string cfg = (dir / "t.textproto").string(), out = (dir / "out").string();
  char* summary = nullptr;
  REQUIRE(reason_pipeline_run(cfg.c_str(), out.c_str(), &o, &summary) == REASON_OK);
  reason_free(summary);
  CHECK(c.calls.load() > 0);
  std::ifstream metrics(dir / "out" / "stages" / "00-rl" / "metrics.jsonl");
  std::string line;
  int rows = 0;
  while (std::getline(metrics, line)) {
    ++rows;
    CHECK(line.find("\"tool_calls\":") != std::string::npos);
  }
  CHECK(rows == 2);
  // a tool the config names but the program did not register fails the check, naming it
  o.n_tools = 0;
  CHECK(reason_pipeline_check(cfg.c_str(), &o) == REASON_ERR_INVALID_ARGUMENT);
  CHECK(std::string(reason_last_error()).find("tool callback 'calc' is not registered") != std::string::npos);
  fs::remove_all(dir);
}

namespace {

struct Log {
  std::mutex mu;
  std::vector<std::pair<reason_log_level, std::string>> lines;
};

void on_log(void* user_data, reason_log_level level, const char* message) {
  auto* l = static_cast<Log*>(user_data);
  std::lock_guard<std::mutex> lk(l->mu);
  l->lines.emplace_back(level, message);
}

}  // namespace

TEST_CASE("a pipeline's reports go to the log callback; its thread count stays its own", "[capi][pipeline][log][threads]") {
  const fs::path dir = temp_dir();
  std::ofstream(dir / "p.textproto") << "seed: 3\nthreads: 1\n"
                                        "prompt_format { template: \"User: {prompt}\\nAssistant:\" }\n"
                                        "models { name: \"policy\" path: \"" << kBase << "\" }\n"
                                        "datasets { name: \"heldout\" synthetic { kind: PROBLEMS count: 8 held_out: true } }\n"
                                        "stages { name: \"ev\" eval { model: \"policy\" dataset: \"heldout\" samples: 1 "
                                        "sampling { max_new_tokens: 32 } } }\n";
  Log log;
  reason_set_log_callback(on_log, &log);
  reason_set_num_threads(3);  // the program's count: the config's `threads: 1` must not overwrite it
  reason_pipeline_options o = REASON_PIPELINE_OPTIONS_INIT;
  o.progress = 1;
  const std::string cfg = (dir / "p.textproto").string(), out = (dir / "out").string();
  REQUIRE(reason_pipeline_run(cfg.c_str(), out.c_str(), &o, nullptr) == REASON_OK);
  reason_set_log_callback(nullptr, nullptr);
  CHECK(reason_get_num_threads() == 3);
  bool stage = false;
  for (const auto& [level, line] : log.lines) {
    CHECK(level == REASON_LOG_INFO);
    CHECK(line.find('\n') == std::string::npos);
    stage = stage || line.find("== stage 1/1: eval 'ev'") != std::string::npos;
  }
  CHECK(stage);
  const size_t n = log.lines.size();
  REQUIRE(reason_pipeline_run(cfg.c_str(), out.c_str(), &o, nullptr) == REASON_OK);  // callback removed: stderr again
  CHECK(log.lines.size() == n);

  // A thread's own count applies to that thread's calls only.
  std::thread t([] {
    reason_set_thread_num_threads(1);
    CHECK(reason_get_num_threads() == 1);
    reason_set_thread_num_threads(0);
    CHECK(reason_get_num_threads() == 3);
  });
  t.join();
  CHECK(reason_get_num_threads() == 3);
  reason_set_num_threads(0);
  fs::remove_all(dir);
}
