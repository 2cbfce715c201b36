// Where the library's own messages go: stage reports and progress lines of a pipeline run, the
// last words before a distributed job is aborted. By default stderr; a program (the C ABI's
// reason_set_log_callback) may take them instead.
// Threads: every function may be called from any thread; the sink is called one message at a
// time (under a lock), so it must not call set_log_sink.
#pragma once
#include <cstdio>
#include <functional>
#include <string_view>

namespace reason {

enum class LogLevel { Debug = 0, Info = 1, Warning = 2, Error = 3 };
using LogSink = std::function<void(LogLevel level, std::string_view message)>;

// Replaces the sink (empty: stderr, each message on a line of its own).
void set_log_sink(LogSink sink);
bool has_log_sink();
// One message (a line; a trailing newline is dropped).
void log_message(LogLevel level, std::string_view message);

// A FILE* whose writes reach log_message(level) line by line (glibc's fopencookie), for code that
// reports to a FILE*; a partial last line is sent at fclose. The caller fcloses it. Throws
// reason::Error(Internal) when it cannot be made.
FILE* open_log_stream(LogLevel level);

}  // namespace reason
