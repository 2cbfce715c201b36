#include "serve/http_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "core/error.h"
#include "serve/reasoning_parser.h"
#include "tokenizer/tokenizer.h"

namespace reason::serve {

using nlohmann::json;

namespace {

std::atomic<int> g_signal{0};
extern "C" void on_signal(int s) { g_signal = s; }

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool same_key(const std::string& a, const std::string& b) {  // constant time in the key's length
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(error_body(e).dump(), "application/json");
}

// Whether the client of a request went away, for handlers that answer at the end (non-streaming
// completions). cpp-httplib 0.11 cannot tell (later versions have Request::is_connection_closed):
// this finds the connection's socket among the process's descriptors by its two ends (httplib
// gives them as the LOCAL_* and REMOTE_* headers) and peeks at it without reading: a client that
// closed its end leaves the socket readable with nothing to read (or hung up).
class ClientProbe {
 public:
  explicit ClientProbe(const httplib::Request& req) {
    const std::string local = req.get_header_value("LOCAL_ADDR"), remote = req.get_header_value("REMOTE_ADDR");
    const int local_port = std::atoi(req.get_header_value("LOCAL_PORT").c_str()), remote_port = req.remote_port;
    DIR* d = opendir("/proc/self/fd");
    if (!d) return;
    while (dirent* e = readdir(d)) {
      const int fd = std::atoi(e->d_name);
      struct stat st {};
      if (e->d_name[0] < '0' || e->d_name[0] > '9' || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
      if (end_of(fd, getsockname) == std::make_pair(local, local_port) && end_of(fd, getpeername) == std::make_pair(remote, remote_port)) {
        fd_ = fd;
        break;
      }
    }
    closedir(d);
  }
  bool gone() const {
    if (fd_ < 0) return false;
    pollfd p{fd_, short(POLLIN | POLLRDHUP), 0};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char c;
    return recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;  // > 0: the client's next request (pipelined)
  }

 private:
  static std::pair<std::string, int> end_of(int fd, int (*get)(int, sockaddr*, socklen_t*)) {
    sockaddr_storage a{};
    socklen_t n = sizeof a;
    if (get(fd, reinterpret_cast<sockaddr*>(&a), &n) != 0) return {"", -1};
    char buf[INET6_ADDRSTRLEN] = "";
    if (a.ss_family == AF_INET) {
      auto* v4 = reinterpret_cast<sockaddr_in*>(&a);
      inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
      return {buf, ntohs(v4->sin_port)};
    }
    if (a.ss_family == AF_INET6) {
      auto* v6 = reinterpret_cast<sockaddr_in6*>(&a);
      inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
      return {buf, ntohs(v6->sin6_port)};
    }
    return {"", -1};
  }
  int fd_ = -1;
};

// One choice of a completion while it is generated: its text, reasoning split and logprobs.
struct Choice {
  std::string text, reasoning, content;
  std::optional<ReasoningParser> parser;
  std::vector<TokenLogprob> logprobs;
  bool started = false, done = false;
  FinishReason finish = FinishReason::Stop;
  int64_t tokens = 0;
};

// A completion request being answered: turns the engine's events into OpenAI's bodies.
class Completion {
 public:
  Completion(std::shared_ptr<Job> job, const ApiContext& ctx)
      : job_(std::move(job)), ctx_(ctx), tok_(ctx.model->tokenizer()), id_(new_completion_id(job_->req.chat)),
        created_(unix_now()), choices_(size_t(job_->req.n)) {
    for (Choice& c : choices_)
      if (job_->req.chat && job_->req.reasoning) c.parser.emplace(job_->req.prompt_opens_thinking);
  }
  const std::shared_ptr<Job>& job() const { return job_; }
  bool finished() const { return left_ == 0 || !error_.empty(); }
  const std::string& error() const { return error_; }

  // Applies one engine event; returns the stream chunk(s) it makes ("" when none).
  std::string apply(const Job::Event& e) {
    if (!e.error.empty()) {
      error_ = e.error;
      return "";
    }
    Choice& c = choices_[size_t(e.choice)];
    std::string out;
    if (e.token >= 0) {
      c.tokens += 1;
      if (job_->req.logprobs) c.logprobs.push_back(logprob_of(e));
      ReasoningParser::Delta d = split(c, e.text);
      out += delta_chunk(e.choice, c, d, job_->req.logprobs ? &c.logprobs.back() : nullptr);
    }
    if (e.done) {
      if (c.parser) {
        ReasoningParser::Delta d = c.parser->flush();
        c.reasoning += d.reasoning;
        c.content += d.content;
        if (!d.reasoning.empty() || !d.content.empty()) out += delta_chunk(e.choice, c, d, nullptr);
      }
      c.done = true;
      c.finish = e.finish;
      c.tokens = e.completion_tokens;
      --left_;
      out += finish_chunk(e.choice, c);
    }
    return out;
  }

  std::string usage_chunk() const {
    json j = header(job_->req.chat ? "chat.completion.chunk" : "text_completion");
    j["choices"] = json::array();
    j["usage"] = usage();
    return sse(j);
  }

  json whole() const {
    json j = header(job_->req.chat ? "chat.completion" : "text_completion");
    j["choices"] = json::array();
    for (size_t i = 0; i < choices_.size(); ++i) {
      const Choice& c = choices_[i];
      json ch = {{"index", i}, {"finish_reason", finish_reason_name(c.finish)}};
      if (job_->req.chat) {
        json msg = {{"role", "assistant"}, {"content", c.parser ? c.content : c.text}};
        if (c.parser) msg["reasoning_content"] = c.reasoning.empty() ? json() : json(c.reasoning);  // vLLM: null when none
        ch["message"] = msg;
        ch["logprobs"] = job_->req.logprobs ? chat_logprobs(c.logprobs) : json();
      } else {
        ch["text"] = (job_->req.echo ? job_->req.prompt_text : std::string()) + c.text;
        ch["logprobs"] = job_->req.logprobs ? legacy_logprobs(c.logprobs) : json();
      }
      j["choices"].push_back(ch);
    }
    j["usage"] = usage();
    return j;
  }

 private:
  json header(const char* object) const { return {{"id", id_}, {"object", object}, {"created", created_}, {"model", ctx_.model_id}}; }
  static std::string sse(const json& j) { return "data: " + j.dump() + "\n\n"; }

  json usage() const {
    int64_t out = 0;
    for (const Choice& c : choices_) out += c.tokens;
    const int64_t in = int64_t(job_->req.prompt.size());
    return {{"prompt_tokens", in}, {"completion_tokens", out}, {"total_tokens", in + out}};
  }

  std::string token_text(int32_t id) const {
    return id < tok_->vocab_size() ? tok_->decode(std::vector<int32_t>{id}) : std::string();
  }
  TokenLogprob logprob_of(const Job::Event& e) const {
    TokenLogprob t{token_text(e.token), e.logprob, {}};
    for (size_t k = 0; k < e.top_ids.size(); ++k) t.top.emplace_back(token_text(e.top_ids[k]), e.top_logprobs[k]);
    return t;
  }
  static json chat_logprobs(const std::vector<TokenLogprob>& lps) {
    json content = json::array();
    for (const auto& t : lps) content.push_back(chat_logprob_entry(t));
    return {{"content", content}};
  }
  static json legacy_logprobs(const std::vector<TokenLogprob>& lps, size_t offset0 = 0) {
    json tokens = json::array(), lp = json::array(), top = json::array(), offsets = json::array();
    size_t off = offset0;
    for (const auto& t : lps) {
      tokens.push_back(t.token);
      lp.push_back(t.logprob);
      json m = json::object();
      for (const auto& [s, v] : t.top) m[s] = v;
      top.push_back(m);
      offsets.push_back(off);
      off += t.token.size();
    }
    return {{"tokens", tokens}, {"token_logprobs", lp}, {"top_logprobs", top}, {"text_offset", offsets}};
  }

  ReasoningParser::Delta split(Choice& c, const std::string& piece) {
    c.text += piece;
    if (!c.parser) return {"", piece};
    ReasoningParser::Delta d = c.parser->push(piece);
    c.reasoning += d.reasoning;
    c.content += d.content;
    return d;
  }

  std::string delta_chunk(int index, Choice& c, const ReasoningParser::Delta& d, const TokenLogprob* lp) {
    if (!job_->req.stream) return "";
    if (c.started && d.reasoning.empty() && d.content.empty() && !lp) return "";  // text held back (a tag may begin)
    json ch = {{"index", index}, {"finish_reason", json()}};
    if (job_->req.chat) {
      json delta = json::object();
      if (!c.started) delta["role"] = "assistant";
      if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
      if (!d.content.empty() || !c.started) delta["content"] = d.content;
      ch["delta"] = delta;
      ch["logprobs"] = lp ? json{{"content", json::array({chat_logprob_entry(*lp)})}} : json();
    } else {
      std::string text = d.content;
      if (!c.started && job_->req.echo) text = job_->req.prompt_text + text;
      ch["text"] = text;
      ch["logprobs"] = lp ? legacy_logprobs({*lp}) : json();
    }
    c.started = true;
    json j = header(job_->req.chat ? "chat.completion.chunk" : "text_completion");
    j["choices"] = json::array({ch});
    return sse(j);
  }

  std::string finish_chunk(int index, const Choice& c) const {
    if (!job_->req.stream) return "";
    json ch = {{"index", index}, {"finish_reason", finish_reason_name(c.finish)}, {"logprobs", json()}};
    if (job_->req.chat) ch["delta"] = json::object();
    else ch["text"] = "";
    json j = header(job_->req.chat ? "chat.completion.chunk" : "text_completion");
    j["choices"] = json::array({ch});
    return sse(j);
  }

  std::shared_ptr<Job> job_;
  const ApiContext& ctx_;
  std::shared_ptr<const Tokenizer> tok_;
  std::string id_;
  int64_t created_;
  std::vector<Choice> choices_;
  int left_ = int(choices_.size());
  std::string error_;
};

class Server {
 public:
  Server(const ApiContext& ctx, const ServeEngine::Options& eo, const ServerOptions& so) : ctx_(ctx), so_(so), engine_(ctx.model, eo) {
    const int threads = so.http_threads > 0 ? so.http_threads : eo.max_batch + eo.max_queue + 8;
    http_.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
    http_.set_payload_max_length(so.max_body_bytes);
    http_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) { return authorize(req, res); });
    http_.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string msg = res.status == 413 ? "the request body is too large"
                              : res.status == 404 ? "no such route"
                                                  : fmt::format("HTTP {}", res.status);
      send_error(res, ApiError(res.status, msg));
    });
    http_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        send_error(res, ApiError(500, e.what(), "", "server_error"));
      }
    });
    http_.set_logger([this](const httplib::Request& req, const httplib::Response& res) { count(req.path, res.status); });
    routes();
  }

  int run() {
    if (!http_.bind_to_port(so_.host, so_.port))
      fail(ErrorCode::Io, "serve: cannot listen on {}:{} (address in use, or not this machine's?)", so_.host, so_.port);
    std::thread listener([this] { http_.listen_after_bind(); });
    std::fprintf(stderr, "reason serve: model '%s', listening on http://%s:%d\n", ctx_.model_id.c_str(), so_.host.c_str(), so_.port);
    while (g_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::fprintf(stderr, "reason serve: signal %d: finishing %zu request(s) in flight, refusing new ones\n", g_signal.load(),
                 engine_.in_flight());
    draining_ = true;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(so_.drain_timeout_s);
    const bool drained = engine_.drain(so_.drain_timeout_s);
    while (responding_ > 0 && std::chrono::steady_clock::now() < deadline)  // the last bytes on their way
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    http_.stop();
    listener.join();
    std::fprintf(stderr, "reason serve: stopped%s\n", drained ? "" : " (drain timeout: requests cut)");
    return 0;
  }

 private:
  bool public_path(const std::string& path) const { return path == "/health" || path == "/metrics"; }

  httplib::Server::HandlerResponse authorize(const httplib::Request& req, httplib::Response& res) {
    if (so_.api_key.empty() || public_path(req.path)) return httplib::Server::HandlerResponse::Unhandled;
    const std::string h = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (h.compare(0, prefix.size(), prefix) == 0 && same_key(h.substr(prefix.size()), so_.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "a valid API key is required (Authorization: Bearer ...)", "", "authentication_error"));
    return httplib::Server::HandlerResponse::Handled;
  }

  void routes() {
    http_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      res.status = draining_ ? 503 : 200;
      res.set_content(json{{"status", draining_ ? "draining" : "ok"}}.dump(), "application/json");
    });
    http_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      json m = {{"id", ctx_.model_id},
                {"object", "model"},
                {"created", started_},
                {"owned_by", "libreason"},
                {"max_model_len", ctx_.model->config().max_position_embeddings}};
      res.set_content(json{{"object", "list"}, {"data", json::array({m})}}.dump(), "application/json");
    });
    http_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(engine_.metrics_text() + http_metrics(), "text/plain; version=0.0.4");
    });
    http_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { complete(req, res, true); });
    http_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { complete(req, res, false); });
  }

  void complete(const httplib::Request& req, httplib::Response& res, bool chat) {
    std::shared_ptr<Completion> c;
    try {
      if (draining_) throw ApiError(503, "the server is shutting down", "", "server_error");
      ApiRequest ar = parse_request(parse_body(req.body), chat, ctx_);
      c = std::make_shared<Completion>(engine_.submit(std::move(ar)), ctx_);
    } catch (const ApiError& e) {
      send_error(res, e);
      return;
    }
    if (c->job()->req.stream) {
      stream(c, res);
      return;
    }
    struct Responding {  // counted until the answer is set, whatever happens
      std::atomic<int>& n;
      explicit Responding(std::atomic<int>& r) : n(r) { ++n; }
      ~Responding() { --n; }
    } responding(responding_);
    const ClientProbe client(req);
    auto probed = std::chrono::steady_clock::now();
    Job::Event e;
    while (!c->finished()) {
      if (c->job()->pop(e, std::chrono::milliseconds(200))) c->apply(e);
      if (std::chrono::steady_clock::now() - probed > std::chrono::milliseconds(200)) {  // a few times a second
        probed = std::chrono::steady_clock::now();
        if (!c->job()->cancelled() && client.gone()) c->job()->cancel();  // its sequences leave the batch
      }
    }
    if (!c->error().empty()) send_error(res, ApiError(500, c->error(), "", "server_error"));
    else res.set_content(c->whole().dump(), "application/json");
  }

  // Server-sent events: a chunk per token and choice, `data: [DONE]` at the end. A client that
  // goes away makes a write fail (or the response end unfinished): its sequences are cancelled.
  void stream(const std::shared_ptr<Completion>& c, httplib::Response& res) {
    ++responding_;
    auto last_write = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [c, last_write](size_t, httplib::DataSink& sink) {
          Job::Event e;
          std::string out;
          if (c->job()->pop(e, std::chrono::milliseconds(200))) {
            out = c->apply(e);
            while (!c->finished() && out.size() < 65536 && c->job()->pop(e, std::chrono::milliseconds(0))) out += c->apply(e);
          } else if (std::chrono::steady_clock::now() - *last_write > std::chrono::seconds(2)) {
            out = ": keep-alive\n\n";  // also finds a client that left while nothing was generated
          }
          if (c->finished()) {
            if (!c->error().empty())
              out += "data: " + error_body(ApiError(500, c->error(), "", "server_error")).dump() + "\n\n";
            else if (c->job()->req.include_usage)
              out += c->usage_chunk();
            out += "data: [DONE]\n\n";
          }
          if (!out.empty()) {
            if (!sink.write(out.data(), out.size())) {
              c->job()->cancel();
              return false;
            }
            *last_write = std::chrono::steady_clock::now();
          }
          if (c->finished()) sink.done();
          return true;
        },
        [this, c](bool success) {
          if (!success || !c->finished()) c->job()->cancel();  // the client went away
          --responding_;
        });
  }

  void count(const std::string& path, int status) {
    std::lock_guard lk(count_mu_);
    const bool known = path == "/v1/chat/completions" || path == "/v1/completions" || path == "/v1/models" ||
                       path == "/health" || path == "/metrics";
    requests_[{known ? path : "other", status}] += 1;
  }
  std::string http_metrics() {
    std::lock_guard lk(count_mu_);
    std::string out = "# HELP reason_http_requests_total HTTP requests answered, by route and status.\n"
                      "# TYPE reason_http_requests_total counter\n";
    for (const auto& [k, v] : requests_)
      out += fmt::format("reason_http_requests_total{{path=\"{}\",status=\"{}\"}} {}\n", k.first, k.second, v);
    return out;
  }

  const ApiContext& ctx_;
  ServerOptions so_;
  ServeEngine engine_;
  httplib::Server http_;
  std::atomic<bool> draining_{false};
  std::atomic<int> responding_{0};
  int64_t started_ = unix_now();
  std::mutex count_mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
};

}  // namespace

std::string read_api_key(const std::string& path) {
  std::ifstream f(path);
  if (!f) fail(ErrorCode::InvalidArgument, "serve: cannot read the API key file '{}'", path);
  std::string key;
  std::getline(f, key);
  const auto b = key.find_first_not_of(" \t\r\n"), e = key.find_last_not_of(" \t\r\n");
  key = b == std::string::npos ? "" : key.substr(b, e - b + 1);
  if (key.empty()) fail(ErrorCode::InvalidArgument, "serve: the API key file '{}' is empty", path);
  return key;
}

int serve_forever(const ApiContext& ctx, const ServeEngine::Options& engine, const ServerOptions& opts) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  g_signal = 0;
  Server s(ctx, engine, opts);
  return s.run();
}

}  // namespace reason::serve
