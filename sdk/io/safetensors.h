// The safetensors format (huggingface/safetensors): an 8-byte little-endian header length N,
// N bytes of JSON header {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
// "__metadata__": {string: string}}, then the data section the offsets index into.
//
// Reading maps the file and hands out zero-copy tensor views; the header is untrusted and is
// validated as strictly as the format's reference implementation (SafeTensors::deserialize and
// Metadata::validate) and then some (see SafetensorsFile::parse). Writing produces files that
// Hugging Face's `safetensors` reads, replaced atomically.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/atomic_write.h"

namespace reason {

// Limits applied to untrusted headers.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;  // the reference's MAX_HEADER_SIZE
inline constexpr size_t kSafetensorsMaxJsonDepth = 16;               // a valid header nests 3 levels
inline constexpr size_t kSafetensorsMaxDims = 64;                    // rank cap per tensor

// One dtype string of the format. Pure data; the table is immutable.
struct SafetensorsDTypeInfo {
  const char* name;           // as written in headers: "BF16"
  uint32_t bits;              // bits per element: 8 * size, or 4/6 for the sub-byte float formats
  std::optional<DType> ours;  // set for F32, BF16, F16, F8_E4M3 (the types the engine computes with)
};

// The format's definition of `name` ("F32", "I64", "F8_E5M2", ...), or nullptr if the format
// has no such dtype. Recognised: BOOL U8 I8 I16 U16 I32 U32 I64 U64 F16 BF16 F32 F64 C64
// F8_E4M3 F8_E5M2 F8_E4M3FNUZ F8_E5M2FNUZ F8_E8M0 and the sub-byte F4 F6_E2M3 F6_E3M2.
const SafetensorsDTypeInfo* safetensors_dtype_info(std::string_view name);
// The header string for one of our dtypes: "F32", "BF16", "F16", "F8_E4M3".
const char* safetensors_dtype_name(DType dtype);

// A parsed, validated safetensors file. Immutable after open()/parse(): every member function
// is const and any number of threads may use one instance concurrently. Instances are only
// handed out through shared_ptr; tensor views it returns keep the underlying bytes (the
// mapping) alive on their own, so they may outlive the SafetensorsFile.
class SafetensorsFile {
 public:
  struct Entry {
    std::string name;
    std::string dtype_name;         // as in the header: "BF16", "I64", ...
    std::optional<DType> dtype;     // our DType for F32/BF16/F16/F8_E4M3; empty for every other dtype
    uint32_t element_bits = 0;      // bits per element (8 * element size; 4 or 6 for F4/F6_*)
    Shape shape;                    // every dim >= 0; {} is a 0-dim scalar (one element)
    int64_t numel = 0;              // product of shape (1 for a scalar)
    uint64_t begin = 0, end = 0;    // data_offsets, relative to the start of the data section
    uint64_t nbytes = 0;            // end - begin == numel * element_bits / 8
    const uint8_t* data = nullptr;  // first byte; borrowed, valid while the file (or a view) lives
  };

  // Maps `path` read-only and parses it (see parse). Error messages name the file by `path`.
  // Throws reason::Error: Io if it cannot be opened or mapped, Format if it is malformed.
  static std::shared_ptr<const SafetensorsFile> open(const std::string& path);

  // Parses the `size` bytes at `data` as a whole safetensors file without copying them.
  // `owner` keeps `data` alive (it is stored and shared with every tensor view; may be null if
  // the caller guarantees the bytes outlive the result and its views). `name` labels errors.
  // Throws reason::Error(Format) naming the file and the tensor or field when:
  //   - the file is shorter than 8 bytes; the header length exceeds kSafetensorsMaxHeaderBytes
  //     or the bytes that follow it;
  //   - the header is not UTF-8, nests deeper than kSafetensorsMaxJsonDepth (checked before the
  //     JSON parser runs), is not JSON, is not an object, or does not start with '{' after
  //     whitespace; it repeats a key in any object (so duplicate tensor names are rejected);
  //     it has an array longer than kSafetensorsMaxDims anywhere (checked in a streaming
  //     pass, before a DOM is built);
  //   - __metadata__ is not an object (or null) of string values;
  //   - a tensor is not an object of exactly dtype, shape, data_offsets; its dtype is unknown;
  //     its shape is not an array of at most kSafetensorsMaxDims integers in [0, INT64_MAX];
  //     data_offsets is not two unsigned integers with begin <= end <= data section length;
  //     the element count or byte size overflows (checked, prefix products kept <= INT64_MAX);
  //     the size is not a whole number of bytes; shape x dtype size != end - begin;
  //   - the tensors, ordered by offset, do not tile the data section exactly: a gap before or
  //     between tensors, an overlap, or trailing bytes after the last one.
  static std::shared_ptr<const SafetensorsFile> parse(std::shared_ptr<const void> owner, const uint8_t* data,
                                                      size_t size, std::string name);

  // The label errors use (the path for open()).
  const std::string& name() const { return name_; }
  // All tensors in data-offset order (ties by name).
  const std::vector<Entry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  // The entry named `name`, or nullptr. The pointer lives as long as this object.
  const Entry* find(const std::string& name) const;
  bool has(const std::string& name) const { return find(name) != nullptr; }
  // The "__metadata__" map (empty when absent or null).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Length of the JSON header (N) and of the data section, in bytes.
  uint64_t header_bytes() const { return header_bytes_; }
  uint64_t data_bytes() const { return data_bytes_; }

  // The named tensor as a zero-copy view of the file's bytes whose keep-alive is the mapping
  // (an owned copy instead if the bytes are not aligned to the element size, which files
  // written by Hugging Face's library and by write_safetensors never are). The view is
  // read-only by contract: the mapping is PROT_READ, writing through it crashes.
  // Throws reason::Error: Format if there is no such tensor (naming it and the file),
  // Unsupported if its dtype is not F32/BF16/F16/F8_E4M3 (read entry.data directly instead).
  Tensor tensor(const std::string& name) const;
  Tensor tensor(const Entry& entry) const;

 private:
  SafetensorsFile() = default;
  std::string name_;
  std::shared_ptr<const void> owner_;
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  uint64_t header_bytes_ = 0, data_bytes_ = 0;
};

// Writes `tensors` (F32/BF16/F16/F8_E4M3 host tensors) and `metadata` to `path` as a
// safetensors file that Hugging Face's library reads: compact JSON header padded with spaces to
// a multiple of 8, "__metadata__" first (omitted when empty), tensors laid out like the
// reference writer does (wider dtypes first, then by name) so every tensor is aligned to its
// element size. Written atomically (see atomic_write): to path + ".tmp.<pid>", fsynced, renamed
// over `path`, directory fsynced; on failure an existing file at `path` is untouched.
// Throws reason::Error: InvalidArgument for a duplicate or "__metadata__" name, a name or
// metadata string that is not UTF-8, a tensor without data or with more than
// kSafetensorsMaxDims dimensions; Io if writing fails.
// Thread rules: the tensors are only read; they must not be written concurrently.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace reason
