#include "train/gradient_reducer.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <limits>
#include <mutex>
#include <span>
#include <thread>

#include "core/error.h"
#include "reason/kernels/backend.h"

namespace reason {

// The communication thread: runs the queued all-reduces one after another (in the order they were
// started, which is the same on every rank) and counts the ones done.
struct GradientReducer::Worker {
  std::shared_ptr<Communicator> comm;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::span<float>> todo;
  size_t queued = 0, done = 0;  // since the reducer was made
  double busy_seconds = 0;      // in collectives
  std::exception_ptr error;     // the first failure; later jobs are skipped (and counted done)
  bool stop = false;
  std::thread thread;

  void run() {
    std::unique_lock lk(mu);
    for (;;) {
      cv.wait(lk, [&] { return stop || !todo.empty(); });
      if (stop) return;
      const std::span<float> v = todo.front();
      todo.pop_front();
      const bool skip = error != nullptr;
      lk.unlock();
      std::exception_ptr e;
      const auto t0 = std::chrono::steady_clock::now();
      if (!skip) try {
          comm->allreduce_sum(v);
        } catch (...) {
          e = std::current_exception();
        }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      lk.lock();
      busy_seconds += s;
      if (e && !error) error = e;
      ++done;
      cv.notify_all();
    }
  }
};

namespace {

bool overlap_disabled() {
  const char* v = std::getenv("REASON_DIST_OVERLAP");
  return v && std::string(v) == "0";
}

}  // namespace

int64_t GradientReducer::layer_of(const std::string& name) {
  for (size_t at = name.find("layers."); at != std::string::npos; at = name.find("layers.", at + 1)) {
    if (at > 0 && name[at - 1] != '.') continue;
    size_t i = at + 7, j = i;
    while (j < name.size() && name[j] >= '0' && name[j] <= '9') ++j;
    if (j > i && j - i < 10 && j < name.size() && name[j] == '.') return std::stoll(name.substr(i, j - i));
  }
  return -1;
}

GradientReducer::GradientReducer(std::shared_ptr<Communicator> comm, Gradients& g, const std::vector<std::string>& names,
                                 int64_t n_layers, int64_t bucket_bytes, kernels::DeviceCollective* device)
    : comm_(std::move(comm)), device_(device), n_layers_(n_layers) {
  plan(g, names, n_layers, size_t(std::max<int64_t>(bucket_bytes, 4096)) / sizeof(float));
  for (int i = 0; i < kBuffers; ++i) free_.push_back(i);
  if (comm_->size() > 1 && !device_ && comm_->serialized_threads() && !overlap_disabled()) {
    worker_ = std::make_unique<Worker>();
    worker_->comm = comm_;
    worker_->thread = std::thread([w = worker_.get()] { w->run(); });
  }
}

GradientReducer::~GradientReducer() {
  if (!worker_) return;
  {
    std::lock_guard lk(worker_->mu);
    worker_->stop = true;  // a collective in progress completes (or times out and aborts the job) first
  }
  worker_->cv.notify_all();
  worker_->thread.join();
}

bool GradientReducer::overlaps() const { return worker_ != nullptr || device_ != nullptr; }

void GradientReducer::plan(Gradients& g, const std::vector<std::string>& names, int64_t n_layers, size_t cap) {
  struct Item {
    float* p;
    size_t n;
    kernels::Backend* be;
    int64_t stage;
  };
  std::vector<Item> items;
  for (const std::string& name : names) {
    Tensor& t = g.at(name);
    if (t.dtype() != kernels::DType::F32) fail(ErrorCode::Internal, "gradient '{}' is not f32", name);
    const int64_t l = layer_of(name);
    // Layer l is done after n_layers - l stages; everything else only at the end.
    const int64_t stage = l >= 0 && l < n_layers ? n_layers - l : n_layers + 1;
    items.push_back({t.data<float>(), size_t(t.numel()), t.backend(), stage});
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.stage < b.stage; });
  Bucket cur;
  auto close = [&] {
    if (cur.n) buckets_.push_back(std::move(cur));
    cur = Bucket{};
  };
  for (const Item& it : items) {
    const bool host = !it.be || it.be->host_addressable();
    if (it.n >= cap && (host || device_)) {  // its own buckets, reduced where it lies
      close();
      for (size_t off = 0; off < it.n; off += cap) {
        Bucket b;
        b.n = std::min(cap, it.n - off);
        b.pieces.push_back({it.p + off, b.n, 0, it.be});
        b.stage = it.stage;
        b.in_place = true;
        buckets_.push_back(std::move(b));
      }
      continue;
    }
    for (size_t off = 0; off < it.n;) {  // packed with its neighbours (split where a bucket fills)
      if (cur.n == cap) close();
      const size_t take = std::min(it.n - off, cap - cur.n);
      cur.pieces.push_back({it.p + off, take, cur.n, it.be});
      cur.n += take;
      cur.stage = std::max(cur.stage, it.stage);
      off += take;
    }
  }
  close();
  size_t largest = 0;
  for (const Bucket& b : buckets_)
    if (!b.in_place) largest = std::max(largest, b.n);
  if (!device_ && largest) buffers_.assign(size_t(kBuffers), std::vector<float>(largest));
}

void GradientReducer::layer_done(int64_t layer) {
  if (in_step_ && layer >= last_layer_)
    fail(ErrorCode::Internal,
         "data parallelism: the previous step's gradient all-reduce never finished (a backward failed part-way on this "
         "rank), so the ranks' collectives no longer match; restart the job from its last checkpoint");
  const auto t0 = std::chrono::steady_clock::now();
  in_step_ = true;
  last_layer_ = layer;
  if (overlaps()) start_ready(n_layers_ - layer);
  exposed_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void GradientReducer::start_ready(int64_t stages_done) {
  while (started_ < buckets_.size() && buckets_[started_].stage <= stages_done) start(started_++);
}

void GradientReducer::start(size_t k) {
  Bucket& b = buckets_[k];
  if (device_) {  // one fused group, in place on the backend's stream
    device_->group_start();
    for (const Piece& q : b.pieces) device_->allreduce_sum(q.p, q.n);
    device_->group_end();
    return;
  }
  std::span<float> v(b.pieces[0].p, b.n);
  if (!b.in_place) {
    while (free_.empty()) complete(completed_++);  // the oldest bucket in flight gives its buffer back
    b.buffer = free_.back();
    free_.pop_back();
    std::vector<float>& buf = buffers_[size_t(b.buffer)];
    for (const Piece& q : b.pieces)
      if (q.be && !q.be->host_addressable()) q.be->download(buf.data() + q.at, q.p, q.n * sizeof(float));
      else std::copy_n(q.p, q.n, buf.data() + q.at);
    v = std::span<float>(buf.data(), b.n);
  }
  if (!worker_) {
    const auto t0 = std::chrono::steady_clock::now();
    comm_->allreduce_sum(v);
    busy_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return;
  }
  std::lock_guard lk(worker_->mu);
  b.job = worker_->queued++;
  worker_->todo.push_back(v);
  worker_->cv.notify_all();
}

void GradientReducer::complete(size_t k) {
  Bucket& b = buckets_[k];
  bool failed = false;
  if (worker_) {
    std::unique_lock lk(worker_->mu);
    worker_->cv.wait(lk, [&] { return worker_->done > b.job; });
    failed = worker_->error != nullptr;  // finish() rethrows it
  }
  if (b.buffer < 0) return;
  const std::vector<float>& buf = buffers_[size_t(b.buffer)];
  for (const Piece& q : b.pieces) {
    if (failed) break;
    if (q.be && !q.be->host_addressable()) q.be->upload(q.p, buf.data() + q.at, q.n * sizeof(float));
    else std::copy_n(buf.data() + q.at, q.n, q.p);
  }
  free_.push_back(b.buffer);
  b.buffer = -1;
}

GradientReducer::Report GradientReducer::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  start_ready(std::numeric_limits<int64_t>::max());
  while (completed_ < started_) complete(completed_++);
  Report r;
  r.buckets = int64_t(started_);
  r.exposed_seconds = exposed_ + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.busy_seconds = busy_;
  std::exception_ptr error;
  if (worker_) {
    std::lock_guard lk(worker_->mu);
    r.busy_seconds += worker_->busy_seconds;
    worker_->busy_seconds = 0;
    error = worker_->error;
  }
  started_ = completed_ = 0;
  in_step_ = false;
  last_layer_ = 0;
  exposed_ = busy_ = 0;
  free_.clear();
  for (int i = 0; i < kBuffers; ++i) free_.push_back(i);
  for (Bucket& b : buckets_) b.buffer = -1;
  if (error) std::rethrow_exception(error);
  return r;
}

}  // namespace reason
