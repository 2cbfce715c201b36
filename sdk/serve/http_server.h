// `reason serve`: the OpenAI-compatible HTTP server (cpp-httplib, Debian's libcpp-httplib-dev:
// a maintained, packaged HTTP/1.1 server with chunked responses for server-sent events, which is
// what llama.cpp's server is built on too). Routes: POST /v1/chat/completions and
// /v1/completions (stream: server-sent events), GET /v1/models, /health, /metrics (Prometheus).
// Threads: serve_forever runs on the calling thread; requests are served by httplib's thread
// pool and share one ServeEngine.
#pragma once
#include <cstddef>
#include <string>

#include "serve/serve_engine.h"

namespace reason::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";  // loopback unless asked otherwise
  int port = 8080;
  std::string api_key;             // empty: no authentication
  size_t max_body_bytes = size_t(4) << 20;
  int http_threads = 0;            // 0: max_batch + max_queue + 8 (a streaming client holds one)
  double drain_timeout_s = 120;    // SIGTERM: how long in-flight requests may take to finish
};

// Serves until SIGTERM or SIGINT, then refuses new requests (503), lets the ones in flight finish
// (at most drain_timeout_s) and returns 0. Throws reason::Error when the address cannot be bound.
// Prints "listening on http://HOST:PORT" to stderr once it accepts connections.
int serve_forever(const ApiContext& ctx, const ServeEngine::Options& engine, const ServerOptions& opts);

// Reads an API key file (the key is the file's first line, without surrounding whitespace).
// Throws reason::Error(InvalidArgument) for a missing or empty file.
std::string read_api_key(const std::string& path);

}  // namespace reason::serve
