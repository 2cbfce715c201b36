#include "core/log.h"

#include <mutex>
#include <string>

#include "core/error.h"

namespace reason {

namespace {

std::mutex g_mu;
LogSink g_sink;

struct Stream {
  LogLevel level;
  std::string pending;  // a line not finished yet
};

ssize_t stream_write(void* cookie, const char* buf, size_t size) {
  auto* s = static_cast<Stream*>(cookie);
  s->pending.append(buf, size);
  for (size_t nl; (nl = s->pending.find('\n')) != std::string::npos;) {
    // A progress bar redraws its line with '\r': only the last rendering of the line is a message.
    std::string line = s->pending.substr(0, nl);
    if (const size_t cr = line.rfind('\r'); cr != std::string::npos) line.erase(0, cr + 1);
    s->pending.erase(0, nl + 1);
    if (!line.empty()) log_message(s->level, line);
  }
  return ssize_t(size);
}

int stream_close(void* cookie) {
  auto* s = static_cast<Stream*>(cookie);
  if (!s->pending.empty()) log_message(s->level, s->pending);
  delete s;
  return 0;
}

}  // namespace

void set_log_sink(LogSink sink) {
  std::lock_guard lk(g_mu);
  g_sink = std::move(sink);
}

bool has_log_sink() {
  std::lock_guard lk(g_mu);
  return bool(g_sink);
}

void log_message(LogLevel level, std::string_view message) {
  if (!message.empty() && message.back() == '\n') message.remove_suffix(1);
  std::lock_guard lk(g_mu);
  if (g_sink) {
    g_sink(level, message);
    return;
  }
  std::fprintf(stderr, "%.*s\n", int(message.size()), message.data());
  std::fflush(stderr);
}

FILE* open_log_stream(LogLevel level) {
  cookie_io_functions_t io{};
  io.write = stream_write;
  io.close = stream_close;
  auto* s = new Stream{level, {}};
  FILE* f = fopencookie(s, "w", io);
  if (!f) {
    delete s;
    fail(ErrorCode::Internal, "cannot open a log stream");
  }
  setvbuf(f, nullptr, _IOLBF, 0);
  return f;
}

}  // namespace reason
