// The GGUF format (llama.cpp's model files, versions 2 and 3, little-endian): a header (magic
// "GGUF", version, tensor count, metadata count), typed key/value metadata, tensor descriptions
// (name, dims, ggml type, offset), then the tensor data, aligned to general.alignment (32).
//
// The file is untrusted and parsed defensively, after the integer-overflow bugs found in
// llama.cpp's own parser: counts are checked against the bytes left before anything is sized by
// them, every string and array length against the bytes left, dims x type size with overflow
// checks, alignment must be a power of two, offsets must be aligned and inside the file, tensors
// must not overlap, keys and tensor names must be unique, and arrays of arrays are refused.
// Every failure is reason::Error(Format) naming the file and what is wrong; never a crash.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reason/kernels/dtype.h"

namespace reason {

class MappedFile;

// Metadata value types, numbered as in the format.
enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9,
  U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GgufType t);

// Tensor data types, numbered as ggml's ggml_type. The ones this engine reads are named; other
// ggml types a file may hold are refused by name where their number is known.
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30,
};
struct GgmlTypeInfo {
  const char* name;       // "Q4_K"
  uint32_t block_elems;   // elements per block (1 for F32/F16/BF16)
  uint32_t block_bytes;   // bytes per block
};
// The layout of a supported type, or nullptr for any other number.
const GgmlTypeInfo* ggml_type_info(uint32_t type);

// One metadata value. Scalars: the integer types in i/u (both set where they fit), floats in f,
// Bool in b, String in s; Array: elem_type and items (never arrays themselves).
struct GgufValue {
  GgufType type = GgufType::U8;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  GgufType elem_type = GgufType::U8;
  std::vector<GgufValue> items;
};

// A parsed, validated GGUF file. Immutable after parse(); any number of threads may read it.
class GgufFile {
 public:
  struct Tensor {
    std::string name;
    std::vector<int64_t> dims;  // ggml order: dims[0] is the contiguous (row) dimension
    uint32_t type = 0;          // a GgmlType with ggml_type_info() != nullptr
    int64_t numel = 0;
    uint64_t offset = 0;        // from the start of the data section
    uint64_t nbytes = 0;
    const uint8_t* data = nullptr;  // borrowed: valid while the file lives
  };

  // Maps and parses `path`. Throws reason::Error(Io) when it cannot be read, Format when invalid.
  static std::shared_ptr<const GgufFile> open(const std::string& path);
  // Parses `size` bytes at `data` (kept alive by `owner`); `what` names the input in errors.
  static std::shared_ptr<const GgufFile> parse(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                                               const std::string& what);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue, std::less<>>& metadata() const { return kv_; }
  const std::vector<Tensor>& tensors() const { return tensors_; }
  const std::string& source() const { return what_; }

  // Lookups; nullptr when absent.
  const GgufValue* find(std::string_view key) const;
  const Tensor* find_tensor(std::string_view name) const;
  // Hint after the caller copied n bytes at p (inside a tensor's data): a file opened with open()
  // drops their resident pages (MappedFile::release); a parsed buffer is left as it is.
  void release_pages(const uint8_t* p, size_t n) const;
  // Typed getters that throw Format naming the key when it is absent or of another type.
  // get_uint accepts any integer type holding a value >= 0; get_float any integer or float type.
  uint64_t get_uint(std::string_view key) const;
  double get_float(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const GgufValue& get_array(std::string_view key, GgufType elem) const;

 private:
  GgufFile() = default;
  std::shared_ptr<const void> owner_;
  std::shared_ptr<const MappedFile> mapped_;  // set by open()
  std::string what_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue, std::less<>> kv_;
  std::vector<Tensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
  friend class GgufParser;
};

// True if `path` is a regular file that starts with the GGUF magic (a model file, not a
// directory). Reads 4 bytes; false when it cannot be read.
bool is_gguf_file(const std::string& path);

// The engine's DType for a ggml block-quantised type it computes with as stored (Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, the same byte layouts), or nullopt (F32/F16/BF16, others).
std::optional<kernels::DType> ggml_quant_dtype(uint32_t type);

// Dequantises `n` elements starting at element `first` of tensor data in ggml type `type` into
// out (f32). first and n must be multiples of the type's block size (whole blocks); the bytes
// read are (first + n) / block x block_bytes from `data`, which the caller has checked. Layouts
// and arithmetic follow ggml's dequantize_row_* (ggml-quants.c), so results equal llama.cpp's and
// gguf-py's. Throws Unsupported for a type without ggml_type_info().
void ggml_dequantize(uint32_t type, const uint8_t* data, int64_t first, int64_t n, float* out);

}  // namespace reason
