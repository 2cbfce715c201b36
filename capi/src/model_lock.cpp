#include "model_lock.h"

#include <algorithm>
#include <vector>

#include "core/error.h"

namespace reason::capi {

namespace {
thread_local std::vector<const ModelLock*> t_reading;  // the models this thread is reading now
}

bool ModelLock::read_by_this_thread() const { return std::find(t_reading.begin(), t_reading.end(), this) != t_reading.end(); }

ModelLock::Read::Read(ModelLock& l) : l_(l), nested_(l.read_by_this_thread()) {
  std::unique_lock lk(l_.mu_);
  if (!nested_) l_.cv_.wait(lk, [&] { return !l_.writer_ && l_.writers_waiting_ == 0; });
  ++l_.readers_;
  t_reading.push_back(&l_);
}

ModelLock::Read::~Read() {
  t_reading.erase(std::find(t_reading.rbegin(), t_reading.rend(), &l_).base() - 1);
  std::lock_guard lk(l_.mu_);
  if (--l_.readers_ == 0) l_.cv_.notify_all();
}

ModelLock::Write::Write(ModelLock& l, const char* what) : l_(l) {
  if (l_.read_by_this_thread())
    fail(ErrorCode::InvalidArgument,
         "{} changes the model's weights, but this thread is generating or scoring with it (a callback cannot train the "
         "model it runs on: it would wait for itself)",
         what);
  std::unique_lock lk(l_.mu_);
  if (l_.streams_ > 0)
    fail(ErrorCode::InvalidArgument, "{} changes the model's weights, but {} stream(s) on it are open: free them first", what,
         l_.streams_);
  ++l_.writers_waiting_;
  l_.cv_.wait(lk, [&] { return !l_.writer_ && l_.readers_ == 0; });
  --l_.writers_waiting_;
  l_.writer_ = true;
}

ModelLock::Write::~Write() {
  std::lock_guard lk(l_.mu_);
  l_.writer_ = false;
  l_.cv_.notify_all();
}

void ModelLock::stream_opened() {
  std::unique_lock lk(mu_);
  cv_.wait(lk, [&] { return !writer_ && writers_waiting_ == 0; });
  ++streams_;
}

void ModelLock::stream_closed() {
  std::lock_guard lk(mu_);
  --streams_;
}

}  // namespace reason::capi
