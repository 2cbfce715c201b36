// A gate for callbacks that must hang until the test says so, instead of sleeping for a while.
//
// A test that checks a deadline with a callback that sleeps for N seconds and a clock that must
// read less than N is a test about the machine's load. Here the "hanging" callback waits on a
// Gate that the test opens only after its assertions: if the deadline is broken, the test hangs
// and ctest's TIMEOUT (tests/CMakeLists.txt) fails it; if it works, the outcomes are asserted
// with no clock involved.
//
// Gates are allocated with `new` and never freed: a callback abandoned by the code under test may
// still be waiting on (or returning from) its gate while the process exits, so the gate must never
// be destroyed. Each test case uses its own gate (a gate opens once and stays open).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace reason::test {

class Gate {
 public:
  // A gate that lives until the process exits; it stays reachable from a static list, so
  // LeakSanitizer does not report it. Call from the test's thread.
  static Gate* make() {
    static std::vector<Gate*>* all = new std::vector<Gate*>;
    all->push_back(new Gate());
    return all->back();
  }

  // Blocks until open() was called (returns at once after that); counts the callers that got
  // through.
  void wait() {
    entered_.fetch_add(1);
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return open_; });
    }
    passed_.fetch_add(1);
  }
  void open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  // Callers that reached wait() / got through it so far.
  int entered() const { return entered_.load(); }
  int passed() const { return passed_.load(); }
  // Waits (with no time limit: ctest's TIMEOUT is the limit) until `n` callers reached wait().
  void await_entered(int n) const {
    while (entered_.load() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Waits (with no time limit: ctest's TIMEOUT is the limit) until `n` callers got through.
  void await_passed(int n) const {
    while (passed_.load() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

 private:
  Gate() = default;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  std::atomic<int> entered_{0}, passed_{0};
};

}  // namespace reason::test
