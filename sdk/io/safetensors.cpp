#include "io/safetensors.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "core/checked_math.h"
#include "core/error.h"
#include "io/json_file.h"
#include "io/mapped_file.h"

namespace reason {

namespace {

using json = nlohmann::json;

constexpr SafetensorsDTypeInfo kDTypes[] = {
    {"BOOL", 8, std::nullopt},        {"U8", 8, std::nullopt},        {"I8", 8, std::nullopt},
    {"F8_E5M2", 8, std::nullopt},     {"F8_E4M3", 8, DType::F8_E4M3}, {"F8_E4M3FNUZ", 8, std::nullopt},
    {"F8_E5M2FNUZ", 8, std::nullopt}, {"F8_E8M0", 8, std::nullopt},   {"F4", 4, std::nullopt},
    {"F6_E2M3", 6, std::nullopt},     {"F6_E3M2", 6, std::nullopt},   {"I16", 16, std::nullopt},
    {"U16", 16, std::nullopt},        {"F16", 16, DType::F16},        {"BF16", 16, DType::BF16},
    {"I32", 32, std::nullopt},        {"U32", 32, std::nullopt},      {"F32", 32, DType::F32},
    {"F64", 64, std::nullopt},        {"I64", 64, std::nullopt},      {"U64", 64, std::nullopt},
    {"C64", 64, std::nullopt},
};

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Names and strings from the file as they appear in messages: a hostile file could make them
// megabytes long, so they are cut.
std::string clip(const std::string& s) {
  constexpr size_t kMax = 200;
  if (s.size() <= kMax) return s;
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) --cut;  // keep UTF-8 whole
  return s.substr(0, cut) + "...";
}

// First pass over the header, before any DOM is built: rejects repeated keys in any object
// (nlohmann, like serde's HashMap, would silently keep one of them), arrays longer than any
// valid header has (shape <= kSafetensorsMaxDims, data_offsets 2), so a hostile header cannot
// make the DOM allocate tens of bytes per byte of "[0,0,0,...", and reports syntax errors with
// their position. Nesting is already bounded by the pre-scan, so the frame stack is small.
class HeaderPrecheck {
 public:
  explicit HeaderPrecheck(const std::string& file) : file_(file) {}
  bool null() { return value(); }
  bool boolean(bool) { return value(); }
  bool number_integer(json::number_integer_t) { return value(); }
  bool number_unsigned(json::number_unsigned_t) { return value(); }
  bool number_float(json::number_float_t, const json::string_t&) { return value(); }
  bool string(json::string_t&) { return value(); }
  bool binary(json::binary_t&) { return value(); }
  bool start_object(std::size_t) {
    if (!value()) return false;
    frames_.push_back({false, 0, {}});
    return true;
  }
  bool end_object() {
    frames_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    if (!value()) return false;
    frames_.push_back({true, 0, {}});
    return true;
  }
  bool end_array() {
    frames_.pop_back();
    return true;
  }
  bool key(json::string_t& k) {
    if (!frames_.back().keys.insert(k).second) {
      if (frames_.size() == 1)
        error_ = fmt::format("{}: duplicate tensor name '{}' in the header", file_, clip(k));
      else
        error_ = fmt::format("{}: duplicate key '{}' in the header", file_, clip(k));
      return false;
    }
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    std::string msg = e.what();
    if (size_t close = msg.find("] "); msg.rfind("[json.exception.", 0) == 0 && close != std::string::npos)
      msg.erase(0, close + 2);
    error_ = fmt::format("{}: header is not valid JSON: {}", file_, msg);
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  // Counts one more element of the enclosing array, if any.
  bool value() {
    if (frames_.empty() || !frames_.back().is_array) return true;
    if (++frames_.back().count > kSafetensorsMaxDims) {
      error_ =
          fmt::format("{}: header has an array of more than {} elements (no valid shape or data_offsets is that long)",
                      file_, kSafetensorsMaxDims);
      return false;
    }
    return true;
  }
  struct Frame {
    bool is_array;
    size_t count;
    std::unordered_set<std::string> keys;
  };
  const std::string& file_;
  std::vector<Frame> frames_;
  std::string error_;
};

// A JSON number that is a non-negative integer, as uint64.
std::optional<uint64_t> as_u64(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return uint64_t(v.get<int64_t>());
  return std::nullopt;
}

template <typename... Args>
[[noreturn]] void bad_entry(const std::string& file, const std::string& name, fmt::format_string<Args...> f,
                            Args&&... args) {
  fail(ErrorCode::Format, "{}: tensor '{}': {}", file, clip(name), fmt::format(f, std::forward<Args>(args)...));
}

std::string describe_number(const json& v) { return v.is_number() ? v.dump() : std::string(json_kind(v)); }

SafetensorsFile::Entry parse_entry(const std::string& file, const std::string& name, const json& v, uint64_t data_len) {
  if (!v.is_object())
    bad_entry(file, name, "expected an object with dtype, shape and data_offsets, found {}", json_kind(v));
  for (auto it = v.begin(); it != v.end(); ++it)
    if (it.key() != "dtype" && it.key() != "shape" && it.key() != "data_offsets")
      bad_entry(file, name, "unknown field '{}' (expected dtype, shape, data_offsets)", clip(it.key()));

  SafetensorsFile::Entry e;
  e.name = name;

  auto dt = v.find("dtype");
  if (dt == v.end()) bad_entry(file, name, "missing 'dtype'");
  if (!dt->is_string()) bad_entry(file, name, "'dtype' is {}, not a string", json_kind(*dt));
  e.dtype_name = dt->get<std::string>();
  const SafetensorsDTypeInfo* info = safetensors_dtype_info(e.dtype_name);
  if (!info) bad_entry(file, name, "unknown dtype '{}'", clip(e.dtype_name));
  e.dtype = info->ours;
  e.element_bits = info->bits;

  auto sh = v.find("shape");
  if (sh == v.end()) bad_entry(file, name, "missing 'shape'");
  if (!sh->is_array()) bad_entry(file, name, "'shape' is {}, not an array", json_kind(*sh));
  if (sh->size() > kSafetensorsMaxDims)
    bad_entry(file, name, "shape has {} dimensions, more than the limit of {}", sh->size(), kSafetensorsMaxDims);
  e.shape.reserve(sh->size());
  // Element count, in order, as the reference does; every prefix product must also fit int64
  // so that Tensor::numel (int64 arithmetic) can never overflow on what we hand out.
  uint64_t numel = 1;
  bool overflow = false;
  for (size_t i = 0; i < sh->size(); ++i) {
    const json& d = (*sh)[i];
    if (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0)
      bad_entry(file, name, "shape dimension {} is negative ({})", i, d.get<int64_t>());
    std::optional<uint64_t> u = as_u64(d);
    if (!u) bad_entry(file, name, "shape dimension {} is {}, not a non-negative integer", i, describe_number(d));
    if (*u > uint64_t(std::numeric_limits<int64_t>::max()))
      bad_entry(file, name, "shape dimension {} ({}) does not fit in int64", i, *u);
    e.shape.push_back(int64_t(*u));
    if (!overflow && (!checked_mul(numel, *u, &numel) || numel > uint64_t(std::numeric_limits<int64_t>::max())))
      overflow = true;
  }
  if (overflow)
    bad_entry(file, name, "shape {} overflows: its element count does not fit in int64", shape_str(e.shape));

  auto off = v.find("data_offsets");
  if (off == v.end()) bad_entry(file, name, "missing 'data_offsets'");
  if (!off->is_array() || off->size() != 2)
    bad_entry(file, name, "'data_offsets' must be an array [begin, end], found {}",
              off->is_array() ? fmt::format("{} elements", off->size()) : std::string(json_kind(*off)));
  std::optional<uint64_t> b = as_u64((*off)[0]), en = as_u64((*off)[1]);
  if (!b || !en)
    bad_entry(file, name, "data_offsets [{}, {}] are not non-negative 64-bit integers", describe_number((*off)[0]),
              describe_number((*off)[1]));
  e.begin = *b;
  e.end = *en;
  if (e.begin > e.end) bad_entry(file, name, "data_offsets [{}, {}] have begin > end", e.begin, e.end);
  if (e.end > data_len)
    bad_entry(file, name, "data_offsets [{}, {}] out of range: the data section has only {} bytes (file truncated?)",
              e.begin, e.end, data_len);

  uint64_t bits;
  if (!checked_mul(numel, e.element_bits, &bits))
    bad_entry(file, name, "shape {} x {} overflows: its byte size does not fit in 64 bits", shape_str(e.shape),
              lower(e.dtype_name));
  if (bits % 8 != 0)
    bad_entry(file, name, "shape {} x {} is {} bits, not a whole number of bytes", shape_str(e.shape),
              lower(e.dtype_name), bits);
  e.nbytes = bits / 8;
  e.numel = int64_t(numel);
  if (e.nbytes != e.end - e.begin)
    bad_entry(file, name, "shape {} x {} = {} bytes but data_offsets span {}", shape_str(e.shape), lower(e.dtype_name),
              e.nbytes, e.end - e.begin);
  return e;
}

}  // namespace

const SafetensorsDTypeInfo* safetensors_dtype_info(std::string_view name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "F32";
    case DType::BF16:
      return "BF16";
    case DType::F16:
      return "F16";
    case DType::F8_E4M3:
      return "F8_E4M3";
    default:
      break;
  }
  fail(ErrorCode::InvalidArgument, "safetensors has no dtype for {} (a quantised tensor is written as GGUF)",
       kernels::dtype_name(dtype));
}

std::shared_ptr<const SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<const MappedFile> file = MappedFile::open(path);
  const uint8_t* data = file->data();
  size_t size = file->size();
  return parse(std::move(file), data, size, path);
}

std::shared_ptr<const SafetensorsFile> SafetensorsFile::parse(std::shared_ptr<const void> owner, const uint8_t* data,
                                                              size_t size, std::string name) {
  if (size < 8)
    fail(ErrorCode::Format, "{}: file is {} bytes, too small for the 8-byte header length (not a safetensors file?)",
         name, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > kSafetensorsMaxHeaderBytes)
    fail(ErrorCode::Format, "{}: header length {} exceeds the {}-byte limit (not a safetensors file?)", name, n,
         kSafetensorsMaxHeaderBytes);
  if (n > size - 8)
    fail(ErrorCode::Format, "{}: header length {} exceeds the {} bytes that follow it (file truncated?)", name, n,
         size - 8);
  const uint64_t data_len = size - 8 - n;
  std::string_view text(reinterpret_cast<const char*>(data + 8), size_t(n));

  if (size_t at = find_invalid_utf8(text); at != std::string_view::npos)
    fail(ErrorCode::Format, "{}: header is not valid UTF-8 (byte {} of the file)", name, 8 + at);
  // Bound nesting before any parser sees the text: a hostile [[[[... cannot exhaust the stack.
  if (size_t at = json_depth_exceeded_at(text, kSafetensorsMaxJsonDepth); at != std::string_view::npos)
    fail(ErrorCode::Format, "{}: header JSON nests deeper than {} levels (byte {} of the file)", name,
         kSafetensorsMaxJsonDepth, 8 + at);
  {
    HeaderPrecheck check(name);
    json::sax_parse(text.begin(), text.end(), &check);
    if (!check.error().empty()) throw Error(ErrorCode::Format, check.error());
  }
  json header;
  try {
    header = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {  // unreachable after the syntax pass, kept as a guard
    fail(ErrorCode::Format, "{}: header is not valid JSON: {}", name, e.what());
  }
  if (!header.is_object()) fail(ErrorCode::Format, "{}: header is {}, not an object", name, json_kind(header));
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || text[first] != '{')
    fail(ErrorCode::Format, "{}: header does not start with '{{'", name);

  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->name_ = std::move(name);
  f->owner_ = std::move(owner);
  f->header_bytes_ = n;
  f->data_bytes_ = data_len;
  const std::string& file = f->name_;

  f->entries_.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      const json& m = it.value();
      if (m.is_null()) continue;
      if (!m.is_object())
        fail(ErrorCode::Format, "{}: __metadata__ is {}, not an object of strings", file, json_kind(m));
      for (auto mi = m.begin(); mi != m.end(); ++mi) {
        if (!mi.value().is_string())
          fail(ErrorCode::Format, "{}: __metadata__ value for '{}' is {}, not a string", file, clip(mi.key()),
               json_kind(mi.value()));
        f->metadata_.emplace(mi.key(), mi.value().get<std::string>());
      }
      continue;
    }
    f->entries_.push_back(parse_entry(file, it.key(), it.value(), data_len));
  }

  // The tensors must tile the data section: sorted by offset, each starts where the previous
  // ended, the first at 0 and the last ending at the end of the file (Metadata::validate plus
  // the MetadataIncompleteBuffer check).
  std::sort(f->entries_.begin(), f->entries_.end(), [](const Entry& a, const Entry& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.name < b.name;
  });
  uint64_t expected = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : f->entries_) {
    if (e.begin < expected)
      fail(ErrorCode::Format, "{}: tensor '{}' data_offsets [{}, {}] overlap tensor '{}' [{}, {}]", file, clip(e.name),
           e.begin, e.end, clip(prev->name), prev->begin, prev->end);
    if (e.begin > expected)
      fail(ErrorCode::Format,
           "{}: gap of {} bytes before tensor '{}' (data_offsets [{}, {}]; the previous data ends at {})", file,
           e.begin - expected, clip(e.name), e.begin, e.end, expected);
    expected = e.end;
    prev = &e;
  }
  if (expected != data_len)
    fail(ErrorCode::Format,
         "{}: tensors cover {} of the {} data bytes: {} trailing bytes are not covered by any tensor", file, expected,
         data_len, data_len - expected);

  const uint8_t* base = data + 8 + n;
  f->index_.reserve(f->entries_.size());
  for (size_t i = 0; i < f->entries_.size(); ++i) {
    Entry& e = f->entries_[i];
    e.data = base + e.begin;
    f->index_.emplace(e.name, i);
  }
  return f;
}

const SafetensorsFile::Entry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const Entry* e = find(name);
  if (!e) fail(ErrorCode::Format, "{}: no tensor named '{}'", name_, clip(name));
  return tensor(*e);
}

Tensor SafetensorsFile::tensor(const Entry& e) const {
  if (!e.dtype)
    fail(ErrorCode::Unsupported,
         "{}: tensor '{}' has dtype {}, which the engine does not load as a tensor (F32, BF16, F16 and F8_E4M3 only)",
         name_, e.name, e.dtype_name);
  size_t align = kernels::dtype_size(*e.dtype);
  if (reinterpret_cast<uintptr_t>(e.data) % align == 0) return Tensor::view(*e.dtype, e.shape, e.data, owner_);
  // A writer that did not align the data (not Hugging Face's): copy rather than hand out
  // pointers that are undefined behaviour to dereference as the element type.
  Tensor t = Tensor::empty(*e.dtype, e.shape);
  if (e.nbytes) std::memcpy(t.raw(), e.data, size_t(e.nbytes));
  return t;
}

}  // namespace reason
