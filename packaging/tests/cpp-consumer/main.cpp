// Uses the installed libreason from C++ (find_package(Reason), Reason::reason): checks that
// header and library versions agree, pulls a greedy completion token by token with the
// reason_stream_* API and checks the answer of the addition model.
// Usage: cpp_consumer MODEL_DIR      (tests/fixtures/pipeline/addition-base)
#include <reason.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

namespace {
struct ModelFree {
  void operator()(reason_model* m) const { reason_model_free(m); }
};
struct StreamFree {
  void operator()(reason_stream* s) const { reason_stream_free(s); }
};
int fail(const char* what) {
  std::fprintf(stderr, "cpp_consumer: %s: %s\n", what, reason_last_error());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
    return 2;
  }
  int major = -1;
  reason_version_numbers(&major, nullptr, nullptr);
  std::printf("libreason %s (header %s)\n", reason_version(), REASON_VERSION_STRING);
  if (std::strcmp(reason_version(), REASON_VERSION_STRING) != 0 || major != REASON_VERSION_MAJOR) {
    std::fprintf(stderr, "cpp_consumer: header/library version mismatch\n");
    return 1;
  }

  reason_model* raw = nullptr;
  reason_model_options mopts = REASON_MODEL_OPTIONS_INIT;
  if (reason_model_load(&raw, argv[1], &mopts) != REASON_OK) return fail("load");
  std::unique_ptr<reason_model, ModelFree> model(raw);

  reason_sampling_options opts = REASON_SAMPLING_OPTIONS_INIT;
  opts.temperature = 0.0f;
  opts.max_new_tokens = 64;
  const char* prompt = "User: What is 23 + 45?\nAssistant:";
  reason_stream* rs = nullptr;
  if (reason_stream_start(&rs, model.get(), prompt, &opts) != REASON_OK) return fail("stream_start");
  std::unique_ptr<reason_stream, StreamFree> stream(rs);

  std::string text;
  int tokens = 0;
  for (;;) {
    reason_stream_event ev{};
    ev.struct_size = sizeof ev;
    if (reason_stream_next(stream.get(), &ev) != REASON_OK) return fail("stream_next");
    if (ev.done) break;
    text.append(ev.text, ev.text_len);
    ++tokens;
  }
  std::printf("%s%s\n[%d tokens streamed]\n", prompt, text.c_str(), tokens);
  if (text.find("\\boxed{68}") == std::string::npos) {
    std::fprintf(stderr, "cpp_consumer: expected \\boxed{68} in the completion\n");
    return 1;
  }

  reason_model* bad = nullptr;
  reason_status st = reason_model_load(&bad, "/nonexistent/model", nullptr);
  std::printf("bad path -> %s\n", reason_status_name(st));
  if (st != REASON_ERR_IO) return 1;
  std::printf("cpp_consumer: OK\n");
  return 0;
}
