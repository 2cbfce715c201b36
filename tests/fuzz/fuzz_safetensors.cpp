// Fuzz target: SafetensorsFile::parse on arbitrary bytes. Every input must either parse or throw
// reason::Error; anything else (a crash, a sanitizer report, another exception) is a bug. For
// inputs that parse, every byte of every tensor is read, so an offset that escapes the buffer
// is caught by ASan.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size heap copy, so reading one byte past the end is an ASan report.
  std::shared_ptr<uint8_t[]> copy(new uint8_t[size ? size : 1]);
  if (size) std::memcpy(copy.get(), data, size);
  try {
    auto st = reason::SafetensorsFile::parse(copy, copy.get(), size, "fuzz");
    volatile uint8_t sink = 0;
    for (const auto& e : st->entries()) {
      for (uint64_t i = 0; i < e.nbytes; ++i) sink = sink + e.data[i];
      if (st->find(e.name) != &e) std::abort();
      if (e.dtype) {
        reason::Tensor t = st->tensor(e);
        if (t.nbytes() != e.nbytes || t.numel() != e.numel) std::abort();
      }
    }
    for (const auto& [k, v] : st->metadata()) sink = sink + uint8_t(k.size() + v.size());
  } catch (const reason::Error&) {
    // Rejected input: expected.
  }
  return 0;
}
