// RewardRunner (sdk/rl/reward_runner.h): weighted totals, callbacks that throw, return NaN or
// hang past the deadline, the limit on stuck threads, and that calls run on worker threads.
//
// No assertion here reads a clock. A callback that "hangs" waits on a test::Gate (test_gate.h)
// that the test case opens only after its assertions: a runner whose deadline did not work would
// never return from score() and ctest's TIMEOUT (tests/CMakeLists.txt) fails the test. Gates are
// never freed and the callbacks capture only a pointer to one, so a callback that returns after
// its test case (or the runner) is gone touches only live memory, which is the situation the
// runner must survive.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "rl/reward_runner.h"
#include "test_gate.h"

using namespace reason;
using namespace std::chrono_literals;

namespace {

// Deadline of the test cases that are not about deadlines: far beyond what a string search
// takes even on a loaded machine, so no fast call times out.
constexpr auto kNoTimeout = 60000ms;

std::vector<RewardInput> make_inputs(std::initializer_list<const char*> completions) {
  std::vector<RewardInput> v;
  for (const char* c : completions) v.push_back({"prompt", c, "gold", ""});
  return v;
}

// 1 if the completion contains "good", else 0.25 (exactly representable).
float contains_good(const RewardInput& in) { return in.completion.find("good") != std::string::npos ? 1.0f : 0.25f; }
// The completion's length / 4.
float quarter_length(const RewardInput& in) { return static_cast<float>(in.completion.size()) / 4.0f; }

}  // namespace

TEST_CASE("reward runner: weighted totals of several rewards", "[reward_runner]") {
  RewardRunner runner({{"good", 2.0f, contains_good, true}, {"length", 0.5f, quarter_length, true}}, kNoTimeout, 2);
  const auto inputs = make_inputs({"good", "bad", "", "very good!!"});
  const auto out = runner.score(inputs);
  REQUIRE(out.size() == 4);
  // good: 2*1 + 0.5*1 = 2.5; bad: 2*0.25 + 0.5*0.75 = 0.875; "": 0.5; "very good!!": 2 + 0.5*2.75
  const float expected[] = {2.5f, 0.875f, 0.5f, 3.375f};
  for (size_t i = 0; i < out.size(); ++i) {
    INFO("input " << i);
    CHECK_FALSE(out[i].failed);
    CHECK(out[i].error.empty());
    REQUIRE(out[i].values.size() == 2);
    CHECK(out[i].values[0] == contains_good(inputs[i]));
    CHECK(out[i].values[1] == quarter_length(inputs[i]));
    CHECK(out[i].total == expected[i]);
  }
  CHECK(runner.stats().scored == 4);
  CHECK(runner.stats().failed == 0);
  CHECK(runner.rewards().size() == 2);
  CHECK(runner.rewards()[1].name == "length");

  // No deadline works too, and an empty batch is fine.
  RewardRunner no_deadline({{"good", 1.0f, contains_good, true}}, 0ms, 1);
  const auto out2 = no_deadline.score(inputs);
  REQUIRE(out2.size() == 4);
  CHECK(out2[0].total == 1.0f);
  CHECK(out2[1].total == 0.25f);
  CHECK(no_deadline.score({}).empty());

  // No rewards: every input scores 0.
  RewardRunner none({}, 100ms, 2);
  const auto out3 = none.score(inputs);
  REQUIRE(out3.size() == 4);
  CHECK(out3[3].total == 0.0f);
  CHECK(out3[3].values.empty());
  CHECK_FALSE(out3[3].failed);
}

TEST_CASE("reward runner: rejects bad arguments", "[reward_runner]") {
  CHECK_THROWS_AS(RewardRunner({{"good", 1.0f, contains_good}}, 100ms, 0), Error);
  CHECK_THROWS_AS(RewardRunner({{"good", 1.0f, contains_good}}, -1ms, 1), Error);
  CHECK_THROWS_AS(RewardRunner({{"empty", 1.0f, nullptr}}, 100ms, 1), Error);
  CHECK_THROWS_AS(RewardRunner({{"nan", std::numeric_limits<float>::quiet_NaN(), contains_good}}, 100ms, 1), Error);
}

TEST_CASE("reward runner: callbacks that throw are failed and reported, the rest is scored", "[reward_runner]") {
  auto thrower = [](const RewardInput& in) -> float {
    if (in.completion == "std") throw std::runtime_error("judge is down");
    if (in.completion == "int") throw 42;
    return 0.5f;
  };
  RewardRunner runner({{"good", 1.0f, contains_good, true}, {"judge", 2.0f, thrower}}, kNoTimeout, 2);
  const auto out = runner.score(make_inputs({"good", "std", "int", "good again"}));
  REQUIRE(out.size() == 4);

  CHECK_FALSE(out[0].failed);
  CHECK(out[0].total == 2.0f);  // 1*1 + 2*0.5

  CHECK(out[1].failed);
  CHECK(out[1].error == "reward 'judge' threw: judge is down");
  CHECK(out[1].values[0] == 0.25f);  // the other term is still scored
  CHECK(out[1].values[1] == 0.0f);
  CHECK(out[1].total == 0.25f);

  CHECK(out[2].failed);
  CHECK(out[2].error == "reward 'judge' threw a non-standard exception");
  CHECK(out[2].total == 0.25f);

  CHECK_FALSE(out[3].failed);
  CHECK(out[3].total == 2.0f);

  CHECK(runner.stats().scored == 4);
  CHECK(runner.stats().failed == 2);
  CHECK(runner.stats().threw == 2);
  CHECK(runner.stats().timed_out == 0);
  CHECK(runner.stats().abandoned_threads == 0);

  // The run goes on.
  const auto again = runner.score(make_inputs({"good"}));
  REQUIRE(again.size() == 1);
  CHECK_FALSE(again[0].failed);
  CHECK(again[0].total == 2.0f);
}

TEST_CASE("reward runner: a non-finite value is a failure", "[reward_runner]") {
  auto odd = [](const RewardInput& in) -> float {
    if (in.completion == "nan") return std::numeric_limits<float>::quiet_NaN();
    if (in.completion == "inf") return std::numeric_limits<float>::infinity();
    if (in.completion == "-inf") return -std::numeric_limits<float>::infinity();
    return 1.0f;
  };
  RewardRunner runner({{"good", 1.0f, contains_good, true}, {"odd", 1.0f, odd}}, kNoTimeout, 2);
  const auto out = runner.score(make_inputs({"nan", "inf", "-inf", "fine"}));
  REQUIRE(out.size() == 4);
  CHECK(out[0].failed);
  CHECK(out[0].error == "reward 'odd' returned NaN");
  CHECK(out[0].values[1] == 0.0f);
  CHECK(out[0].total == 0.25f);
  CHECK(std::isfinite(out[0].total));
  CHECK(out[1].error == "reward 'odd' returned inf");
  CHECK(out[2].error == "reward 'odd' returned -inf");
  CHECK_FALSE(out[3].failed);
  CHECK(out[3].total == 1.25f);
  CHECK(runner.stats().non_finite == 3);
  CHECK(runner.stats().failed == 3);
}

TEST_CASE("reward runner: a call that hangs on one input times out, the batch and the runner go on",
          "[reward_runner]") {
  // The deadline must be long enough that the fast calls never reach it on a loaded machine
  // (they are string compares) and short enough to keep the test quick: the hung call costs it once.
  test::Gate* gate = test::Gate::make();
  auto slow_on_one = [gate](const RewardInput& in) -> float {  // holds only the never-freed gate
    if (in.completion == "slow") gate->wait();
    return 1.0f;
  };
  auto runner = std::make_unique<RewardRunner>(
      std::vector<NamedReward>{{"good", 1.0f, contains_good, true}, {"judge", 1.0f, slow_on_one}}, 300ms, 2);

  // Returns only because the deadline abandons the call waiting on the gate.
  const auto out = runner->score(make_inputs({"good", "slow", "bad", "good", "bad", "good"}));
  REQUIRE(out.size() == 6);
  CHECK(out[1].failed);
  CHECK(out[1].error == "reward 'judge' timed out after 300 ms");
  CHECK(out[1].values[0] == 0.25f);
  CHECK(out[1].total == 0.25f);
  const float expected[] = {2.0f, 0.25f, 1.25f, 2.0f, 1.25f, 2.0f};  // good 1 + judge 1, bad 0.25 + 1
  for (size_t i : {0, 2, 3, 4, 5}) {
    INFO("input " << i);
    CHECK_FALSE(out[i].failed);
    CHECK(out[i].total == expected[i]);
  }
  gate->await_entered(1);  // the worker may be marked started an instant before it enters
  CHECK(gate->entered() == 1);
  CHECK(gate->passed() == 0);  // still stuck
  CHECK(runner->stats().timed_out == 1);
  CHECK(runner->stats().abandoned_threads == 1);
  CHECK(runner->stuck_threads() == 1);

  // A new batch while the stuck thread still waits.
  const auto out2 = runner->score(make_inputs({"bad", "good", "bad"}));
  REQUIRE(out2.size() == 3);
  CHECK_FALSE(out2[0].failed);
  CHECK(out2[0].total == 1.25f);
  CHECK(out2[1].total == 2.0f);
  CHECK(out2[2].total == 1.25f);
  CHECK(runner->stats().scored == 9);
  CHECK(runner->stats().failed == 1);
  CHECK(runner->stuck_threads() == 1);

  // The destructor does not wait for the stuck thread (if it did, this line would never return).
  runner.reset();
  CHECK(gate->passed() == 0);
  // Release it: it returns into the dead runner's batch (ASan watches) and exits.
  gate->open();
  gate->await_passed(1);
}

TEST_CASE("reward runner: a callback that hangs on every input", "[reward_runner]") {
  test::Gate* gate = test::Gate::make();
  auto hang = [gate](const RewardInput&) -> float {
    gate->wait();
    return 1.0f;
  };
  RewardRunner runner({{"judge", 1.0f, hang}}, 100ms, 2);
  const auto out = runner.score(make_inputs({"a", "b", "c", "d", "e", "f", "g", "h"}));
  REQUIRE(out.size() == 8);
  for (const RewardOutcome& o : out) {
    CHECK(o.failed);
    CHECK(o.error == "reward 'judge' timed out after 100 ms");
    CHECK(o.total == 0.0f);
  }
  // Every call was started (each on its own thread, as each previous one got stuck) and none returned.
  gate->await_entered(8);
  CHECK(gate->entered() == 8);
  CHECK(gate->passed() == 0);
  CHECK(runner.stats().timed_out == 8);
  CHECK(runner.stats().failed == 8);
  CHECK(runner.stats().abandoned_threads == 8);
  CHECK(runner.stuck_threads() == 8);

  // Once the callbacks return, the abandoned threads are no longer counted as stuck.
  gate->open();
  gate->await_passed(8);
  while (runner.stuck_threads() > 0) std::this_thread::sleep_for(1ms);  // a wait, not an assertion
  CHECK(runner.stats().abandoned_threads == 8);  // "ever abandoned" does not go down
}

TEST_CASE("reward runner: a callback that returns late, after the runner is gone, is ignored",
          "[reward_runner]") {
  test::Gate* gate = test::Gate::make();
  auto late = [gate](const RewardInput& in) -> float {
    if (in.completion == "late") gate->wait();
    return 1.0f;
  };
  {
    RewardRunner runner({{"late", 1.0f, late}}, 300ms, 1);
    const auto out = runner.score(make_inputs({"late", "ok"}));
    REQUIRE(out.size() == 2);
    CHECK(out[0].failed);
    CHECK(out[0].error == "reward 'late' timed out after 300 ms");
    CHECK_FALSE(out[1].failed);  // run by the replacement worker
    CHECK(out[1].total == 1.0f);
    CHECK(runner.stats().abandoned_threads == 1);
  }
  CHECK(gate->passed() == 0);
  gate->open();  // the late call returns into the dead runner's batch (ASan watches)
  gate->await_passed(1);
}

TEST_CASE("reward runner: stuck threads are limited; calls beyond the limit are not run", "[reward_runner]") {
  test::Gate* gate = test::Gate::make();
  auto hang = [gate](const RewardInput&) -> float {
    gate->wait();
    return 1.0f;
  };
  const int limit = RewardRunner::kMaxStuckThreads;
  RewardRunner runner({{"judge", 1.0f, hang}}, 10ms, 1);
  std::vector<RewardInput> inputs(static_cast<size_t>(limit + 6), RewardInput{"p", "c", "", ""});
  const auto out = runner.score(inputs);
  REQUIRE(out.size() == inputs.size());
  for (size_t i = 0; i < out.size(); ++i) {
    INFO("input " << i);
    CHECK(out[i].failed);
    if (i < static_cast<size_t>(limit))
      CHECK(out[i].error == "reward 'judge' timed out after 10 ms");
    else
      CHECK(out[i].error == "reward 'judge' not run: 64 threads of this runner are stuck in earlier calls");
  }
  gate->await_entered(limit);
  CHECK(gate->entered() == limit);  // the 6 calls beyond the limit never reached the callback
  CHECK(runner.stats().timed_out == limit);
  CHECK(runner.stats().abandoned_threads == limit);
  CHECK(runner.stuck_threads() == limit);

  // While they are stuck, nothing runs.
  const auto blocked = runner.score(make_inputs({"x"}));
  REQUIRE(blocked.size() == 1);
  CHECK(blocked[0].failed);
  CHECK(blocked[0].error == "reward 'judge' not run: 64 threads of this runner are stuck in earlier calls");
  CHECK(gate->entered() == limit);

  // Once they return, the runner counts none stuck (a wait with no time limit, then the assertion).
  gate->open();
  gate->await_passed(limit);
  while (runner.stuck_threads() > 0) std::this_thread::sleep_for(1ms);
  CHECK(runner.stuck_threads() == 0);
}

TEST_CASE("reward runner: calls run concurrently on worker threads", "[reward_runner]") {
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<int> running{0}, max_running{0}, on_caller{0};
  std::mutex mu;
  std::set<std::thread::id> ids;
  auto probe = [&](const RewardInput&) -> float {
    if (std::this_thread::get_id() == caller) ++on_caller;
    {
      std::lock_guard lock(mu);
      ids.insert(std::this_thread::get_id());
    }
    const int now = ++running;
    int seen = max_running.load();
    while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
    }
    // Stay inside until two calls were inside at the same time: if the runner ran calls one at a
    // time, this would wait forever and ctest's TIMEOUT fails the test (no clock decides).
    while (max_running.load() < 2) std::this_thread::sleep_for(1ms);
    --running;
    return 1.0f;
  };
  RewardRunner runner({{"probe", 1.0f, probe}}, 0ms, 4);  // no deadline: every call finishes here
  const auto out = runner.score(make_inputs({"a", "b", "c", "d", "e", "f", "g", "h"}));
  REQUIRE(out.size() == 8);
  for (const RewardOutcome& o : out) CHECK(o.total == 1.0f);
  CHECK(on_caller.load() == 0);
  CHECK(ids.count(caller) == 0);
  CHECK(ids.size() >= 2);
  CHECK(max_running.load() >= 2);
  CHECK(max_running.load() <= 4);
  CHECK(running.load() == 0);
}
