#include "io/gguf.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/mapped_file.h"

namespace reason {

namespace {

constexpr size_t kMaxKeyBytes = 65536;        // keys are short dotted names
constexpr size_t kMaxTensorNameBytes = 4096;  // llama.cpp's own limit is 64
constexpr uint32_t kMaxDims = 4;              // GGML_MAX_DIMS
constexpr uint64_t kMaxAlignment = uint64_t(1) << 30;

struct TypeRow {
  uint32_t id;
  GgmlTypeInfo info;
};
const TypeRow kTypeTable[] = {
    {0, {"F32", 1, 4}},        {1, {"F16", 1, 2}},        {2, {"Q4_0", 32, 18}},     {3, {"Q4_1", 32, 20}},
    {6, {"Q5_0", 32, 22}},     {7, {"Q5_1", 32, 24}},     {8, {"Q8_0", 32, 34}},     {12, {"Q4_K", 256, 144}},
    {13, {"Q5_K", 256, 176}},  {14, {"Q6_K", 256, 210}},  {30, {"BF16", 1, 2}},
};

// Names of ggml types a file may hold that this engine does not read (for the error message).
const char* other_type_name(uint32_t t) {
  switch (t) {
    case 9: return "Q8_1";
    case 10: return "Q2_K";
    case 11: return "Q3_K";
    case 15: return "Q8_K";
    case 16: return "IQ2_XXS";
    case 17: return "IQ2_XS";
    case 18: return "IQ3_XXS";
    case 19: return "IQ1_S";
    case 20: return "IQ4_NL";
    case 21: return "IQ3_S";
    case 22: return "IQ2_S";
    case 23: return "IQ4_XS";
    case 24: return "I8";
    case 25: return "I16";
    case 26: return "I32";
    case 27: return "I64";
    case 28: return "F64";
    case 29: return "IQ1_M";
    case 34: return "TQ1_0";
    case 35: return "TQ2_0";
    case 39: return "MXFP4";
    default: return nullptr;
  }
}

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t type) {
  for (const TypeRow& r : kTypeTable)
    if (r.id == type) return &r.info;
  return nullptr;
}

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8: return "uint8";
    case GgufType::I8: return "int8";
    case GgufType::U16: return "uint16";
    case GgufType::I16: return "int16";
    case GgufType::U32: return "uint32";
    case GgufType::I32: return "int32";
    case GgufType::F32: return "float32";
    case GgufType::Bool: return "bool";
    case GgufType::String: return "string";
    case GgufType::Array: return "array";
    case GgufType::U64: return "uint64";
    case GgufType::I64: return "int64";
    case GgufType::F64: return "float64";
  }
  return "unknown";
}

// A bounds-checked little-endian reader over the file; every read names what it was reading.
class GgufParser {
 public:
  GgufParser(const uint8_t* data, size_t size, const std::string& what) : p_(data), size_(size), what_(what) {}

  [[noreturn]] void bad(const std::string& msg) const {
    fail(ErrorCode::Format, "{}: GGUF: {} (at byte {})", what_, msg, pos_);
  }
  size_t left() const { return size_ - pos_; }
  size_t pos() const { return pos_; }
  template <class T>
  T read(const char* field) {
    if (left() < sizeof(T)) bad(fmt::format("file ends inside {}", field));
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* field, size_t max_bytes) {
    const uint64_t n = read<uint64_t>(field);
    if (n > left()) bad(fmt::format("{} of {} bytes runs past the end of the file", field, n));
    if (n > max_bytes) bad(fmt::format("{} of {} bytes is longer than {}", field, n, max_bytes));
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(n));
    pos_ += size_t(n);
    return s;
  }
  GgufValue read_value(GgufType t, const std::string& key, bool in_array);
  void parse(GgufFile& f);

 private:
  static size_t min_bytes(GgufType t);
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& what_;
};

// The fewest bytes a value of type t occupies (array and string: their 8-byte length).
size_t GgufParser::min_bytes(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    case GgufType::String: case GgufType::Array: return 8;
  }
  return 1;
}

GgufValue GgufParser::read_value(GgufType t, const std::string& key, bool in_array) {
  GgufValue v;
  v.type = t;
  auto set_signed = [&](int64_t x) { v.i = x, v.u = x >= 0 ? uint64_t(x) : 0, v.f = double(x); };
  auto set_unsigned = [&](uint64_t x) { v.u = x, v.i = x <= uint64_t(INT64_MAX) ? int64_t(x) : 0, v.f = double(x); };
  switch (t) {
    case GgufType::U8: set_unsigned(read<uint8_t>("a uint8 value")); break;
    case GgufType::I8: set_signed(read<int8_t>("an int8 value")); break;
    case GgufType::U16: set_unsigned(read<uint16_t>("a uint16 value")); break;
    case GgufType::I16: set_signed(read<int16_t>("an int16 value")); break;
    case GgufType::U32: set_unsigned(read<uint32_t>("a uint32 value")); break;
    case GgufType::I32: set_signed(read<int32_t>("an int32 value")); break;
    case GgufType::U64: set_unsigned(read<uint64_t>("a uint64 value")); break;
    case GgufType::I64: set_signed(read<int64_t>("an int64 value")); break;
    case GgufType::F32: v.f = read<float>("a float32 value"); break;
    case GgufType::F64: v.f = read<double>("a float64 value"); break;
    case GgufType::Bool: {
      const uint8_t b = read<uint8_t>("a bool value");
      if (b > 1) bad(fmt::format("key \"{}\": bool value {} is neither 0 nor 1", key, b));
      v.b = b != 0;
      break;
    }
    case GgufType::String: v.s = read_string("a string value", SIZE_MAX); break;
    case GgufType::Array: {
      if (in_array) bad(fmt::format("key \"{}\": arrays of arrays are not supported", key));
      const uint32_t et = read<uint32_t>("an array's element type");
      if (et > uint32_t(GgufType::F64)) bad(fmt::format("key \"{}\": unknown array element type {}", key, et));
      v.elem_type = GgufType(et);
      if (v.elem_type == GgufType::Array) bad(fmt::format("key \"{}\": arrays of arrays are not supported", key));
      const uint64_t n = read<uint64_t>("an array's length");
      if (n > left() / min_bytes(v.elem_type))
        bad(fmt::format("key \"{}\": array of {} {} values runs past the end of the file", key, n, gguf_type_name(v.elem_type)));
      v.items.reserve(size_t(n));
      for (uint64_t k = 0; k < n; ++k) v.items.push_back(read_value(v.elem_type, key, true));
      break;
    }
  }
  return v;
}

void GgufParser::parse(GgufFile& f) {
  if (size_ < 4 || std::memcmp(p_, "GGUF", 4) != 0) bad("not a GGUF file (no \"GGUF\" magic)");
  pos_ = 4;
  f.version_ = read<uint32_t>("the version");
  if (f.version_ != 2 && f.version_ != 3)
    bad(fmt::format("version {} is not supported (2 and 3, little-endian){}", f.version_,
                    f.version_ == 1 ? "; version 1 files predate 2023-08: convert them again" : ""));
  const uint64_t n_tensors = read<uint64_t>("the tensor count");
  const uint64_t n_kv = read<uint64_t>("the metadata count");
  // A key/value takes at least 8 (key length) + 1 (key) + 4 (type) + 1 bytes; a tensor info
  // 8 + 1 (name) + 4 (n_dims) + 8 (a dim) + 4 (type) + 8 (offset).
  if (n_kv > left() / 14) bad(fmt::format("{} metadata entries cannot fit in the file", n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = read_string("a metadata key", kMaxKeyBytes);
    if (key.empty()) bad(fmt::format("metadata entry {} has an empty key", k));
    const uint32_t t = read<uint32_t>("a metadata type");
    if (t > uint32_t(GgufType::F64)) bad(fmt::format("key \"{}\" has unknown type {}", key, t));
    GgufValue v = read_value(GgufType(t), key, false);
    if (f.kv_.count(key)) bad(fmt::format("duplicate metadata key \"{}\"", key));
    f.kv_.emplace(std::move(key), std::move(v));
  }
  if (const GgufValue* a = f.find("general.alignment")) {
    if (a->type != GgufType::U32) bad("general.alignment must be a uint32");
    if (a->u == 0 || (a->u & (a->u - 1)) || a->u > kMaxAlignment)
      bad(fmt::format("general.alignment {} is not a power of two", a->u));
    f.alignment_ = a->u;
  }
  if (n_tensors > left() / 33) bad(fmt::format("{} tensors cannot fit in the file", n_tensors));
  f.tensors_.reserve(size_t(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufFile::Tensor t;
    t.name = read_string("a tensor name", kMaxTensorNameBytes);
    const std::string& nm = t.name;
    const uint32_t nd = read<uint32_t>("a tensor's dimension count");
    if (nd == 0 || nd > kMaxDims) bad(fmt::format("tensor \"{}\" has {} dimensions (1 to {})", nm, nd, kMaxDims));
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t dim = read<uint64_t>("a tensor dimension");
      if (dim == 0 || dim > uint64_t(INT64_MAX)) bad(fmt::format("tensor \"{}\" has dimension {} = {}", nm, d, dim));
      if (numel > uint64_t(INT64_MAX) / dim) bad(fmt::format("tensor \"{}\": the product of its dimensions overflows", nm));
      numel *= dim;
      t.dims.push_back(int64_t(dim));
    }
    t.numel = int64_t(numel);
    t.type = read<uint32_t>("a tensor type");
    const GgmlTypeInfo* ti = ggml_type_info(t.type);
    if (!ti) {
      const char* other = other_type_name(t.type);
      if (other) fail(ErrorCode::Unsupported, "{}: GGUF: tensor \"{}\" has type {}, which is not supported", what_, nm, other);
      bad(fmt::format("tensor \"{}\" has unknown ggml type {}", nm, t.type));
    }
    if (uint64_t(t.dims[0]) % ti->block_elems)
      bad(fmt::format("tensor \"{}\": row length {} is not a multiple of the {} block size {}", nm, t.dims[0], ti->name,
                      ti->block_elems));
    const uint64_t blocks = numel / ti->block_elems;
    if (blocks > UINT64_MAX / ti->block_bytes) bad(fmt::format("tensor \"{}\": its size in bytes overflows", nm));
    t.nbytes = blocks * ti->block_bytes;
    t.offset = read<uint64_t>("a tensor offset");
    if (t.offset % f.alignment_) bad(fmt::format("tensor \"{}\": offset {} is not a multiple of the alignment {}", nm, t.offset, f.alignment_));
    if (f.tensor_index_.count(nm)) bad(fmt::format("duplicate tensor name \"{}\"", nm));
    f.tensor_index_.emplace(nm, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }
  // The data section starts at the next multiple of the alignment.
  const uint64_t start = (uint64_t(pos_) + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  const uint64_t data_size = start <= size_ ? size_ - start : 0;
  if (!f.tensors_.empty() && start > size_) bad("the file ends before its data section");
  std::vector<const GgufFile::Tensor*> by_offset;
  for (GgufFile::Tensor& t : f.tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      bad(fmt::format("tensor \"{}\": bytes [{}, {}) of the data section run past the end of the file ({} bytes)", t.name,
                      t.offset, t.offset + t.nbytes, data_size));
    t.data = p_ + start + t.offset;
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k)
    if (by_offset[k]->offset < by_offset[k - 1]->offset + by_offset[k - 1]->nbytes)
      bad(fmt::format("tensors \"{}\" and \"{}\" overlap", by_offset[k - 1]->name, by_offset[k]->name));
}

std::shared_ptr<const GgufFile> GgufFile::parse(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                                                const std::string& what) {
  std::shared_ptr<GgufFile> f(new GgufFile());
  f->owner_ = std::move(owner);
  f->what_ = what;
  GgufParser(data, size, f->what_).parse(*f);
  return f;
}

bool is_gguf_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

std::shared_ptr<const GgufFile> GgufFile::open(const std::string& path) {
  auto m = MappedFile::open(path);
  const uint8_t* d = m->data();
  const size_t n = m->size();
  auto f = std::const_pointer_cast<GgufFile>(parse(m, d, n, path));
  f->mapped_ = std::move(m);
  return f;
}

void GgufFile::release_pages(const uint8_t* p, size_t n) const {
  if (mapped_ && p >= mapped_->data() && p <= mapped_->data() + mapped_->size())
    mapped_->release(size_t(p - mapped_->data()), n);
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufFile::Tensor* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
const GgufValue& need(const GgufFile& f, std::string_view key) {
  const GgufValue* v = f.find(key);
  if (!v) fail(ErrorCode::Format, "{}: GGUF: missing metadata key \"{}\"", f.source(), key);
  return *v;
}
bool is_int(GgufType t) {
  return t == GgufType::U8 || t == GgufType::I8 || t == GgufType::U16 || t == GgufType::I16 || t == GgufType::U32 ||
         t == GgufType::I32 || t == GgufType::U64 || t == GgufType::I64;
}
[[noreturn]] void wrong(const GgufFile& f, std::string_view key, const GgufValue& v, const char* want) {
  fail(ErrorCode::Format, "{}: GGUF: metadata key \"{}\" is a {}, expected {}", f.source(), key, gguf_type_name(v.type), want);
}
}  // namespace

uint64_t GgufFile::get_uint(std::string_view key) const {
  const GgufValue& v = need(*this, key);
  if (!is_int(v.type) || v.i < 0) wrong(*this, key, v, "a non-negative integer");
  return v.u;
}
double GgufFile::get_float(std::string_view key) const {
  const GgufValue& v = need(*this, key);
  if (!is_int(v.type) && v.type != GgufType::F32 && v.type != GgufType::F64) wrong(*this, key, v, "a number");
  return v.f;
}
const std::string& GgufFile::get_string(std::string_view key) const {
  const GgufValue& v = need(*this, key);
  if (v.type != GgufType::String) wrong(*this, key, v, "a string");
  return v.s;
}
bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue& v = need(*this, key);
  if (v.type != GgufType::Bool) wrong(*this, key, v, "a bool");
  return v.b;
}
const GgufValue& GgufFile::get_array(std::string_view key, GgufType elem) const {
  const GgufValue& v = need(*this, key);
  if (v.type != GgufType::Array || v.elem_type != elem)
    fail(ErrorCode::Format, "{}: GGUF: metadata key \"{}\" is not an array of {}", source(), key, gguf_type_name(elem));
  return v;
}

}  // namespace reason
