#include "serve/serve_engine.h"

#include <fmt/format.h>

namespace reason::serve {

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds.size() && v > bounds[i]) ++i;
  counts[i] += 1;
  sum += v;
  count += 1;
}

std::string Histogram::text(const std::string& name, const std::string& help) const {
  std::string out = fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds.size(); ++i) {
    cum += counts[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds[i], cum);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count, name, sum, name, count);
  return out;
}

bool Job::pop(Event& e, std::chrono::milliseconds wait) {
  std::unique_lock lk(mu_);
  if (!cv_.wait_for(lk, wait, [&] { return !events_.empty(); })) return false;
  e = std::move(events_.front());
  events_.pop_front();
  return true;
}

void Job::push(Event e) {
  {
    std::lock_guard lk(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

ServeEngine::ServeEngine(std::shared_ptr<const Model> model, Options opts) : model_(std::move(model)), opts_(opts) {
  thread_ = std::thread([this] { run(); });
}

ServeEngine::~ServeEngine() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::shared_ptr<Job> ServeEngine::submit(ApiRequest req) {
  auto job = std::make_shared<Job>(std::move(req));
  {
    std::lock_guard lk(mu_);
    if (draining_ || stop_) throw ApiError(503, "the server is shutting down", "", "server_error");
    if (jobs_ >= size_t(opts_.max_batch + opts_.max_queue))
      throw ApiError(429, fmt::format("the server is busy: {} requests are in flight or queued; retry later", jobs_), "",
                     "rate_limit_exceeded");
    ++jobs_;
    inbox_.push_back(job);
  }
  cv_.notify_all();
  return job;
}

bool ServeEngine::drain(double timeout_s) {
  std::unique_lock lk(mu_);
  draining_ = true;
  return cv_.wait_for(lk, std::chrono::duration<double>(timeout_s), [&] { return jobs_ == 0; });
}

size_t ServeEngine::in_flight() {
  std::lock_guard lk(mu_);
  return jobs_;
}

void ServeEngine::admit(const std::shared_ptr<Job>& job) {
  const ApiRequest& r = job->req;
  uint64_t root = 0;
  for (int i = 0; i < r.n; ++i) {
    GenRequest g;
    g.prompt = r.prompt;
    g.params = r.params;
    g.params.seed = r.params.seed + uint64_t(i);  // choice i: seed + i (each its own stream)
    g.top_logprobs = r.logprobs ? r.top_logprobs : 0;
    g.share_prefix_with = i == 0 ? -1 : int64_t(root);  // the prompt is computed once for the n choices
    const uint64_t id = batch_->add(std::move(g));
    if (i == 0) root = id;
    running_[id] = Running{job, i, job->submitted, true};
  }
  choices_left_[job.get()] = r.n;
  std::lock_guard lk(metrics_mu_);
  prompt_tokens_ += r.prompt.size();
}

void ServeEngine::job_ended() {
  std::lock_guard lk(mu_);
  --jobs_;
  cv_.notify_all();
}

void ServeEngine::end_unstarted(Job& job, const std::string& error) {
  Job::Event e;
  e.done = true;
  e.finish = FinishReason::Callback;
  e.error = error;
  job.push(std::move(e));
  job_ended();
}

void ServeEngine::fail_all(const std::string& message) {
  for (auto& [id, run] : running_) {
    Job::Event e;
    e.choice = run.choice;
    e.done = true;
    e.error = message;
    run.job->push(std::move(e));
  }
  std::lock_guard lk(mu_);
  jobs_ -= choices_left_.size();
  running_.clear();
  choices_left_.clear();
  cv_.notify_all();
}

void ServeEngine::run() {
  auto on_token = [this](const TokenEvent& t) {
    auto found = running_.find(t.id);
    if (found == running_.end()) return false;  // its job already ended (it is being cancelled)
    Running& run = found->second;
    Job::Event e;
    e.choice = run.choice;
    e.text = std::string(t.text);
    e.token = t.token;
    e.logprob = t.logprob;
    e.top_ids.assign(t.top_ids.begin(), t.top_ids.end());
    e.top_logprobs.assign(t.top_logprobs.begin(), t.top_logprobs.end());
    run.job->push(std::move(e));
    const auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lk(metrics_mu_);
      generation_tokens_ += 1;
      (run.first ? ttft_ : tpot_).observe(std::chrono::duration<double>(now - run.last).count());
    }
    run.first = false;
    run.last = now;
    return !run.job->cancelled();
  };
  auto on_done = [this](uint64_t id, GenResult&& res) {
    auto it = running_.find(id);
    if (it == running_.end()) return;
    Running run = std::move(it->second);
    running_.erase(it);
    Job::Event e;
    e.choice = run.choice;
    e.done = true;
    e.finish = res.finish;
    e.completion_tokens = int64_t(res.tokens.size());
    run.job->push(std::move(e));
    {
      std::lock_guard lk(metrics_mu_);
      finished_[int(res.finish)] += 1;
    }
    if (--choices_left_[run.job.get()] == 0) {
      choices_left_.erase(run.job.get());
      job_ended();
    }
  };
  GenerateOptions go;
  go.max_active = opts_.max_batch;
  go.prefill_token_budget = opts_.prefill_budget;
  batch_ = std::make_unique<BatchScheduler>(*model_, go, on_token, on_done);
  for (;;) {
    std::deque<std::shared_ptr<Job>> incoming;
    {
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, std::chrono::milliseconds(batch_->idle() ? 100 : 0),
                   [&] { return stop_ || !inbox_.empty() || !batch_->idle(); });
      if (stop_) break;
      incoming.swap(inbox_);
    }
    for (auto& job : incoming) {
      if (job->cancelled()) {  // gone before it started
        end_unstarted(*job, "");
        continue;
      }
      try {
        admit(job);
      } catch (const std::exception& ex) {  // the HTTP layer checked the request: not expected
        for (auto it = running_.begin(); it != running_.end();) {
          if (it->second.job != job) {
            ++it;
            continue;
          }
          batch_->cancel(it->first);  // choices added before the failure leave the batch
          it = running_.erase(it);
        }
        choices_left_.erase(job.get());
        end_unstarted(*job, ex.what());
      }
    }
    for (auto& [id, run] : running_)
      if (run.job->cancelled()) batch_->cancel(id);
    {
      std::lock_guard lk(metrics_mu_);
      queue_depth_ = batch_->waiting();
      batch_size_ = batch_->active();
    }
    if (batch_->idle()) continue;
    try {
      batch_->step();
      std::lock_guard lk(metrics_mu_);
      steps_ += 1;
      batch_hist_.observe(double(batch_->active()));
    } catch (const std::exception& ex) {  // a backend failure: every request in flight ends with it
      {
        std::lock_guard lk(metrics_mu_);
        engine_errors_ += 1;
      }
      fail_all(fmt::format("the engine failed: {}", ex.what()));
      batch_ = std::make_unique<BatchScheduler>(*model_, go, on_token, on_done);
    }
  }
  fail_all("the server stopped");
}

std::string ServeEngine::metrics_text() {
  size_t waiting = 0;
  {
    std::lock_guard lk(mu_);
    waiting = inbox_.size();
  }
  std::lock_guard lk(metrics_mu_);
  std::string out;
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
  };
  auto gauge = [&](const char* name, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
  };
  counter("reason_prompt_tokens_total", "Prompt tokens of the requests admitted.", prompt_tokens_);
  counter("reason_generation_tokens_total", "Tokens generated.", generation_tokens_);
  counter("reason_engine_steps_total", "Forward steps of the continuous batch.", steps_);
  counter("reason_engine_errors_total", "Engine failures (each ended the requests in flight).", engine_errors_);
  out += "# HELP reason_choices_finished_total Completions ended, by finish reason (abort: the client went away).\n"
         "# TYPE reason_choices_finished_total counter\n";
  for (FinishReason f : {FinishReason::Stop, FinishReason::Length, FinishReason::Callback})
    out += fmt::format("reason_choices_finished_total{{finish=\"{}\"}} {}\n", finish_reason_name(f), finished_[int(f)]);
  gauge("reason_queue_depth", "Requests waiting for a place in the batch.", double(queue_depth_ + waiting));
  gauge("reason_batch_size", "Sequences in the batch now.", double(batch_size_));
  out += batch_hist_.text("reason_batch_size_per_step", "Sequences decoded or prefilled together per step.");
  out += ttft_.text("reason_time_to_first_token_seconds", "From a request's arrival to its first token (each choice).");
  out += tpot_.text("reason_time_per_output_token_seconds", "Between consecutive tokens of one sequence.");
  return out;
}

}  // namespace reason::serve
