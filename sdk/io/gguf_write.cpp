// GGUF v3 writer (see gguf_write.h).
#include "io/gguf_write.h"

#include <cmath>
#include <cstring>
#include <set>

#include "core/error.h"
#include "io/atomic_write.h"
#include "reason/kernels/dtype.h"
#include "reason/kernels/quant.h"

namespace reason {

namespace {

constexpr uint64_t kAlignment = 32;

class Out {
 public:
  explicit Out(const ByteSink& sink) : sink_(sink) {}
  void bytes(const void* p, size_t n) {
    sink_(p, n);
    pos_ += n;
  }
  template <typename T>
  void pod(T v) { bytes(&v, sizeof v); }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad() {
    static const char zeros[kAlignment] = {};
    if (pos_ % kAlignment) bytes(zeros, size_t(kAlignment - pos_ % kAlignment));
  }
  uint64_t pos() const { return pos_; }

 private:
  const ByteSink& sink_;
  uint64_t pos_ = 0;
};

void scalar(Out& o, GgufType t, const GgufValue& v) {
  switch (t) {
    case GgufType::U8: o.pod<uint8_t>(uint8_t(v.u)); break;
    case GgufType::I8: o.pod<int8_t>(int8_t(v.i)); break;
    case GgufType::U16: o.pod<uint16_t>(uint16_t(v.u)); break;
    case GgufType::I16: o.pod<int16_t>(int16_t(v.i)); break;
    case GgufType::U32: o.pod<uint32_t>(uint32_t(v.u)); break;
    case GgufType::I32: o.pod<int32_t>(int32_t(v.i)); break;
    case GgufType::U64: o.pod<uint64_t>(v.u); break;
    case GgufType::I64: o.pod<int64_t>(v.i); break;
    case GgufType::F32: o.pod<float>(float(v.f)); break;
    case GgufType::F64: o.pod<double>(v.f); break;
    case GgufType::Bool: o.pod<uint8_t>(v.b ? 1 : 0); break;
    case GgufType::String: o.str(v.s); break;
    case GgufType::Array: fail(ErrorCode::InvalidArgument, "GGUF: arrays of arrays cannot be written");
  }
}

uint64_t tensor_bytes(const GgufWriteTensor& t) {
  const GgmlTypeInfo* info = ggml_type_info(t.type);
  if (!info) fail(ErrorCode::InvalidArgument, "GGUF: tensor '{}' has unknown ggml type {}", t.name, t.type);
  if (t.dims.empty() || t.dims.size() > 4) fail(ErrorCode::InvalidArgument, "GGUF: tensor '{}' must have 1-4 dims", t.name);
  uint64_t n = 1;
  for (int64_t d : t.dims) {
    if (d <= 0) fail(ErrorCode::InvalidArgument, "GGUF: tensor '{}' has a dim of {}", t.name, d);
    n *= uint64_t(d);
  }
  if (t.dims[0] % info->block_elems)
    fail(ErrorCode::InvalidArgument, "GGUF: tensor '{}' has rows of {} values, not a multiple of {}'s block of {}", t.name,
         t.dims[0], info->name, info->block_elems);
  return n / info->block_elems * info->block_bytes;
}

}  // namespace

void write_gguf(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& metadata,
                const std::vector<GgufWriteTensor>& tensors) {
  std::set<std::string> keys, names;
  for (const auto& [k, v] : metadata)
    if (!keys.insert(k).second) fail(ErrorCode::InvalidArgument, "GGUF: metadata key '{}' given twice", k);
  std::vector<uint64_t> sizes, offsets;
  uint64_t off = 0;
  for (const auto& t : tensors) {
    if (!names.insert(t.name).second) fail(ErrorCode::InvalidArgument, "GGUF: tensor '{}' given twice", t.name);
    sizes.push_back(tensor_bytes(t));
    offsets.push_back(off);
    off += (sizes.back() + kAlignment - 1) / kAlignment * kAlignment;
  }
  atomic_write(path, [&](const ByteSink& sink) {
    Out o(sink);
    o.bytes("GGUF", 4);
    o.pod<uint32_t>(3);
    o.pod<uint64_t>(tensors.size());
    o.pod<uint64_t>(metadata.size() + 1);
    o.str("general.alignment");
    o.pod<uint32_t>(uint32_t(GgufType::U32));
    o.pod<uint32_t>(uint32_t(kAlignment));
    for (const auto& [k, v] : metadata) {
      if (k == "general.alignment") fail(ErrorCode::InvalidArgument, "GGUF: general.alignment is written by the writer");
      o.str(k);
      o.pod<uint32_t>(uint32_t(v.type));
      if (v.type == GgufType::Array) {
        o.pod<uint32_t>(uint32_t(v.elem_type));
        o.pod<uint64_t>(v.items.size());
        for (const GgufValue& it : v.items) scalar(o, v.elem_type, it);
      } else {
        scalar(o, v.type, v);
      }
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      o.str(t.name);
      o.pod<uint32_t>(uint32_t(t.dims.size()));
      for (int64_t d : t.dims) o.pod<uint64_t>(uint64_t(d));
      o.pod<uint32_t>(t.type);
      o.pod<uint64_t>(offsets[i]);
    }
    o.pad();
    const uint64_t data_start = o.pos();
    for (size_t i = 0; i < tensors.size(); ++i) {
      const uint64_t before = o.pos();
      tensors[i].write([&](const void* p, size_t n) { o.bytes(p, n); });
      if (o.pos() - before != sizes[i] || before - data_start != offsets[i])
        fail(ErrorCode::InvalidArgument, "GGUF: tensor '{}' wrote {} bytes, expected {}", tensors[i].name, o.pos() - before,
             sizes[i]);
      o.pad();
    }
  });
}

GgufValue gguf_string(std::string s) {
  GgufValue v;
  v.type = GgufType::String;
  v.s = std::move(s);
  return v;
}
GgufValue gguf_u32(uint32_t x) {
  GgufValue v;
  v.type = GgufType::U32;
  v.u = x;
  v.i = x;
  return v;
}
GgufValue gguf_i32(int32_t x) {
  GgufValue v;
  v.type = GgufType::I32;
  v.i = x;
  v.u = uint64_t(x);
  return v;
}
GgufValue gguf_f32(float x) {
  GgufValue v;
  v.type = GgufType::F32;
  v.f = x;
  return v;
}
GgufValue gguf_bool(bool x) {
  GgufValue v;
  v.type = GgufType::Bool;
  v.b = x;
  return v;
}
GgufValue gguf_string_array(const std::vector<std::string>& xs) {
  GgufValue v;
  v.type = GgufType::Array;
  v.elem_type = GgufType::String;
  for (const auto& s : xs) v.items.push_back(gguf_string(s));
  return v;
}
GgufValue gguf_i32_array(const std::vector<int32_t>& xs) {
  GgufValue v;
  v.type = GgufType::Array;
  v.elem_type = GgufType::I32;
  for (int32_t x : xs) v.items.push_back(gguf_i32(x));
  return v;
}

void ggml_quantize(kernels::DType t, const float* x, int64_t n, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      fail(ErrorCode::InvalidArgument, "{}: value {} at element {} is not finite", kernels::dtype_name(t), x[i], i);
  if (!kernels::quantize_row(t, x, out, n))
    fail(ErrorCode::InvalidArgument, "{}: {} values are not whole blocks of {} (or the type cannot be written)",
         kernels::dtype_name(t), n, kernels::dtype_block_elems(t));
}

}  // namespace reason
