// Fuzz target: GgufFile::parse on arbitrary bytes. Every input must either parse or throw
// reason::Error; anything else (a crash, a sanitizer report, another exception) is a bug. For
// inputs that parse, every tensor is dequantised whole, so an offset or size that escapes the
// buffer is caught by ASan.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size heap copy, so reading one byte past the end is an ASan report.
  std::shared_ptr<uint8_t[]> copy(new uint8_t[size ? size : 1]);
  if (size) std::memcpy(copy.get(), data, size);
  try {
    auto f = reason::GgufFile::parse(copy, copy.get(), size, "fuzz");
    volatile float sink = 0;
    for (const auto& t : f->tensors()) {
      if (f->find_tensor(t.name) != &t) std::abort();
      if (t.numel > (int64_t(1) << 24)) continue;  // a valid but large tensor: its bounds were checked
      std::vector<float> out(size_t(t.numel));
      reason::ggml_dequantize(t.type, t.data, 0, t.numel, out.data());
      for (float v : out) sink = sink + v;
    }
    for (const auto& [k, v] : f->metadata()) sink = sink + float(k.size() + v.s.size() + v.items.size());
  } catch (const reason::Error&) {
    // Rejected input: expected.
  }
  return 0;
}
