// safetensors reading, validation of hostile headers, and the atomic writer.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "io/atomic_write.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"

using Catch::Matchers::Contains;
using reason::DType;
using reason::Error;
using reason::ErrorCode;
using reason::SafetensorsFile;
using reason::Tensor;
namespace fs = std::filesystem;

namespace {

const std::string kFixtures = std::string(REASON_FIXTURES_DIR) + "/safetensors";

// A fresh directory under the system temp dir, removed with everything in it.
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "reason_st_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

std::string u64le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char(uint8_t(n >> (8 * i)));
  return s;
}

// A file with `header` as its JSON and `data_len` bytes of data (0xAB).
std::string st_file(const std::string& header, size_t data_len) {
  return u64le(header.size()) + header + std::string(data_len, '\xab');
}

std::shared_ptr<const SafetensorsFile> parse(const std::string& bytes, const std::string& name = "bad.safetensors") {
  return SafetensorsFile::parse(nullptr, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name);
}

// The message of the reason::Error that parsing `bytes` throws; checks it is a Format error.
std::string format_error(const std::string& bytes) {
  try {
    parse(bytes);
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::Format);
    std::string msg = e.what();
    CHECK_THAT(msg, Contains("bad.safetensors"));  // every message names the file
    return msg;
  }
  FAIL("parsing did not throw");
  return {};
}

template <typename F>
Error catch_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  FAIL("no reason::Error thrown");
  return Error(ErrorCode::Ok, "");
}

template <typename T>
Tensor filled(DType dtype, reason::Shape shape, const std::vector<T>& bits) {
  Tensor t = Tensor::empty(dtype, std::move(shape));
  REQUIRE(t.nbytes() == bits.size() * sizeof(T));
  if (!bits.empty()) std::memcpy(t.raw(), bits.data(), t.nbytes());
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         (a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
}

}  // namespace

TEST_CASE("dtype table matches the format", "[safetensors]") {
  struct Case {
    const char* name;
    uint32_t bits;
    bool ours;
  } cases[] = {{"BOOL", 8, false},    {"U8", 8, false},   {"I8", 8, false},   {"I16", 16, false}, {"U16", 16, false},
               {"I32", 32, false},    {"U32", 32, false}, {"I64", 64, false}, {"U64", 64, false}, {"F64", 64, false},
               {"F8_E5M2", 8, false}, {"F32", 32, true},  {"BF16", 16, true}, {"F16", 16, true},  {"F8_E4M3", 8, true},
               {"F4", 4, false},      {"C64", 64, false}};
  for (const auto& c : cases) {
    INFO(c.name);
    const auto* info = reason::safetensors_dtype_info(c.name);
    REQUIRE(info != nullptr);
    CHECK(info->bits == c.bits);
    CHECK(info->ours.has_value() == c.ours);
  }
  CHECK(reason::safetensors_dtype_info("bf16") == nullptr);  // names are case-sensitive
  CHECK(reason::safetensors_dtype_info("F128") == nullptr);
  CHECK(*reason::safetensors_dtype_info("BF16")->ours == DType::BF16);
  CHECK(*reason::safetensors_dtype_info("F8_E4M3")->ours == DType::F8_E4M3);
  CHECK(std::string(reason::safetensors_dtype_name(DType::F8_E4M3)) == "F8_E4M3");
}

TEST_CASE("write then read every engine dtype bit-exactly", "[safetensors]") {
  TempDir dir;
  const std::string path = dir / "model.safetensors";
  // Raw bit patterns, including NaNs with payloads, infinities, subnormals and negative zero:
  // nothing may be converted on the way.
  Tensor f32 = filled<uint32_t>(DType::F32, {2, 3},
                                {0x3f800000u, 0x7fc01234u, 0x80000000u, 0x00000001u, 0xff800000u, 0x12345678u});
  Tensor bf16 = filled<uint16_t>(DType::BF16, {4}, {0x3f80, 0x7fc1, 0x8000, 0xbf00});
  Tensor f16 = filled<uint16_t>(DType::F16, {2, 2}, {0x3c00, 0x7e01, 0x0001, 0xfbff});
  Tensor f8 = filled<uint8_t>(DType::F8_E4M3, {5}, {0x00, 0x7f, 0x80, 0x7e, 0x01});
  Tensor scalar = filled<uint32_t>(DType::F32, {}, {0x42280000u});  // 42.0f
  Tensor empty = Tensor::empty(DType::BF16, {0, 7});
  std::vector<std::pair<std::string, Tensor>> in = {{"w.f32", f32}, {"w.bf16", bf16},   {"w.f16", f16},
                                                    {"w.f8", f8},   {"scalar", scalar}, {"empty", empty}};
  reason::write_safetensors(path, in, {{"format", "pt"}, {"note", "\"quoted\" é"}});

  auto st = SafetensorsFile::open(path);
  CHECK(st->name() == path);
  CHECK(st->size() == 6);
  CHECK(st->header_bytes() % 8 == 0);
  CHECK(st->metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "\"quoted\" é"}});
  for (const auto& [name, t] : in) {
    INFO(name);
    const auto* e = st->find(name);
    REQUIRE(e != nullptr);
    REQUIRE(e->dtype.has_value());
    CHECK(*e->dtype == t.dtype());
    CHECK(e->dtype_name == reason::safetensors_dtype_name(t.dtype()));
    CHECK(e->shape == t.shape());
    CHECK(e->nbytes == t.nbytes());
    Tensor r = st->tensor(name);
    CHECK(same_bytes(r, t));
    CHECK(r.raw() == e->data);  // zero-copy view into the mapping
    CHECK(reinterpret_cast<uintptr_t>(r.raw()) % reason::kernels::dtype_size(t.dtype()) == 0);
  }
  // Layout of the reference writer: wider dtypes first, then by name.
  std::vector<std::string> order;
  for (const auto& e : st->entries()) order.push_back(e.name);
  CHECK(order == std::vector<std::string>{"scalar", "w.f32", "empty", "w.bf16", "w.f16", "w.f8"});
  CHECK(st->entries().front().begin == 0);
  CHECK(st->entries().back().end == st->data_bytes());
  CHECK(st->data_bytes() == 4 + 24 + 0 + 8 + 8 + 5);
  // The exact file size: length field + padded header + data.
  CHECK(fs::file_size(path) == 8 + st->header_bytes() + st->data_bytes());
  CHECK(!fs::exists(path + ".tmp." + std::to_string(::getpid())));
}

TEST_CASE("tensor views keep the mapping alive", "[safetensors]") {
  TempDir dir;
  const std::string path = dir / "a.safetensors";
  reason::write_safetensors(path, {{"x", filled<uint32_t>(DType::F32, {3}, {0x3f800000u, 0x40000000u, 0x40400000u})}});
  Tensor view;
  {
    auto st = SafetensorsFile::open(path);
    view = st->tensor("x");
  }  // the SafetensorsFile is gone; the view's keep-alive still holds the mapping
  fs::remove(path);
  REQUIRE(view.numel() == 3);
  CHECK(view.data<float>()[0] == 1.0f);
  CHECK(view.data<float>()[2] == 3.0f);
}

TEST_CASE("reads a file written by Hugging Face's safetensors library", "[safetensors]") {
  auto st = SafetensorsFile::open(kFixtures + "/python_written.safetensors");
  CHECK(st->metadata() ==
        std::map<std::string, std::string>{{"format", "pt"}, {"producer", "make_safetensors_fixtures.py"}});
  CHECK(st->size() == 11);

  Tensor f32 = st->tensor("f32");
  CHECK(f32.dtype() == DType::F32);
  CHECK(f32.shape() == reason::Shape{2, 3});
  const float want_f32[] = {1.5f, -2.25f, 3.0f, 0.0f, 1e-3f, -7.0f};
  for (int i = 0; i < 6; ++i) CHECK(f32.data<float>()[i] == want_f32[i]);

  Tensor bf16 = st->tensor("bf16");
  REQUIRE(bf16.shape() == reason::Shape{4});
  const uint16_t want_bf16[] = {0x3f80, 0xbf00, 0x4049, 0x477f};  // 1, -0.5, 3.140625, 65280
  for (int i = 0; i < 4; ++i) CHECK(bf16.data<uint16_t>()[i] == want_bf16[i]);
  CHECK(reason::kernels::bf16_to_f32(bf16.data<uint16_t>()[2]) == 3.140625f);

  Tensor f16 = st->tensor("f16");
  const uint16_t want_f16[] = {0x3800, 0xbc00, 0x0001, 0x7bff};  // 0.5, -1, 2^-24, 65504
  for (int i = 0; i < 4; ++i) CHECK(f16.data<uint16_t>()[i] == want_f16[i]);

  Tensor f8 = st->tensor("f8");
  CHECK(f8.dtype() == DType::F8_E4M3);
  const uint8_t want_f8[] = {0x30, 0xc0, 0x7e, 0x01};  // 0.5, -2, 448, 2^-9
  for (int i = 0; i < 4; ++i) CHECK(f8.data<uint8_t>()[i] == want_f8[i]);
  CHECK(reason::kernels::f8e4m3_to_f32(f8.data<uint8_t>()[2]) == 448.0f);

  Tensor scalar = st->tensor("scalar");
  CHECK(scalar.shape().empty());
  CHECK(scalar.numel() == 1);
  CHECK(scalar.data<float>()[0] == 42.0f);

  Tensor empty = st->tensor("empty");
  CHECK(empty.shape() == reason::Shape{0, 3});
  CHECK(empty.numel() == 0);
  CHECK(st->find("empty")->nbytes == 0);

  Tensor up = st->tensor("model.layers.0.mlp.up_proj.weight");
  CHECK(up.shape() == reason::Shape{4, 3});
  for (int i = 0; i < 12; ++i) CHECK(reason::kernels::bf16_to_f32(up.data<uint16_t>()[i]) == i * 0.25f - 1.0f);

  // Dtypes the engine does not compute with: recognised, sized, bytes readable, no Tensor.
  const auto* i64 = st->find("i64");
  REQUIRE(i64 != nullptr);
  CHECK(i64->dtype_name == "I64");
  CHECK(!i64->dtype.has_value());
  CHECK(i64->element_bits == 64);
  REQUIRE(i64->nbytes == 32);
  int64_t v[4];
  std::memcpy(v, i64->data, 32);
  CHECK(v[0] == -1);
  CHECK(v[1] == 0);
  CHECK(v[2] == (int64_t(1) << 62));
  CHECK(v[3] == INT64_MIN);
  Error err = catch_error([&] { st->tensor("i64"); });
  CHECK(err.code() == ErrorCode::Unsupported);
  CHECK_THAT(std::string(err.what()), Contains("'i64'") && Contains("I64"));

  const auto* i32 = st->find("i32");
  REQUIRE(i32 != nullptr);
  CHECK(i32->shape == reason::Shape{1, 2});
  int32_t w[2];
  std::memcpy(w, i32->data, 8);
  CHECK(w[0] == 7);
  CHECK(w[1] == -8);
  const auto* u8 = st->find("u8");
  REQUIRE(u8 != nullptr);
  CHECK(u8->data[0] == 0);
  CHECK(u8->data[1] == 255);
  CHECK(u8->data[2] == 7);
  const auto* flag = st->find("flag");
  REQUIRE(flag != nullptr);
  CHECK(flag->dtype_name == "BOOL");
  CHECK(flag->data[0] == 1);
  CHECK(flag->data[1] == 0);
  CHECK(flag->data[2] == 1);

  CHECK(st->find("missing") == nullptr);
  err = catch_error([&] { st->tensor("missing"); });
  CHECK(err.code() == ErrorCode::Format);
  CHECK_THAT(std::string(err.what()), Contains("python_written.safetensors") && Contains("'missing'"));
}

TEST_CASE("our writer reproduces the reference writer byte for byte", "[safetensors]") {
  const std::string ref_path = kFixtures + "/python_layout.safetensors";
  auto ref = SafetensorsFile::open(ref_path);
  // Hand the tensors over in an order unlike the file's, to exercise the layout sort.
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto it = ref->entries().rbegin(); it != ref->entries().rend(); ++it)
    tensors.emplace_back(it->name, ref->tensor(*it));
  REQUIRE(tensors.size() == 8);
  TempDir dir;
  reason::write_safetensors(dir / "ours.safetensors", tensors, ref->metadata());
  std::string ours = read_file(dir / "ours.safetensors"), theirs = read_file(ref_path);
  CHECK(ours.size() == theirs.size());
  CHECK(ours == theirs);
}

TEST_CASE("valid header variants are accepted", "[safetensors]") {
  SECTION("empty object, no data") {
    auto st = parse(st_file("{}      ", 0));
    CHECK(st->size() == 0);
    CHECK(st->metadata().empty());
  }
  SECTION("leading and trailing whitespace, null metadata, entries out of offset order") {
    auto st =
        parse(st_file("  \n{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]},\"__metadata__\":null,"
                      "\"a\":{\"data_offsets\":[0,4],\"shape\":[2,2],\"dtype\":\"I8\"}}  ",
                      6));
    REQUIRE(st->size() == 2);
    CHECK(st->entries()[0].name == "a");
    CHECK(st->entries()[1].name == "b");
    CHECK(st->find("b")->begin == 4);
  }
  SECTION("several empty tensors at the same offset") {
    auto st =
        parse(st_file("{\"e1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                      "\"x\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                      "\"e2\":{\"dtype\":\"BF16\",\"shape\":[3,0],\"data_offsets\":[4,4]}}",
                      4));
    CHECK(st->size() == 3);
  }
  SECTION("sub-byte dtype sized in bits") {
    auto st = parse(st_file("{\"q\":{\"dtype\":\"F4\",\"shape\":[3,2],\"data_offsets\":[0,3]}}", 3));
    CHECK(st->find("q")->nbytes == 3);
  }
}

TEST_CASE("unaligned data is copied, not viewed", "[safetensors]") {
  // A 9-byte-aligned header puts the f32 data at an odd address inside the buffer.
  std::string header = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  while ((8 + header.size()) % 4 != 1) header += ' ';
  std::string bytes = u64le(header.size()) + header;
  float vals[2] = {1.25f, -3.5f};
  bytes.append(reinterpret_cast<const char*>(vals), 8);
  // Place the file at an 8-aligned address so the data offset decides the alignment.
  std::vector<uint64_t> storage(bytes.size() / 8 + 1);
  std::memcpy(storage.data(), bytes.data(), bytes.size());
  auto st = SafetensorsFile::parse(nullptr, reinterpret_cast<const uint8_t*>(storage.data()), bytes.size(), "u");
  Tensor t = st->tensor("x");
  CHECK(t.raw() != st->find("x")->data);
  CHECK(reinterpret_cast<uintptr_t>(t.raw()) % 4 == 0);
  CHECK(t.data<float>()[0] == 1.25f);
  CHECK(t.data<float>()[1] == -3.5f);
}

// Hostile and malformed files: each must be rejected with a Format error whose message names
// the file and says what is wrong.
const std::string kOneTensor = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";

TEST_CASE("rejected: empty file (on disk)", "[safetensors][hostile]") {
  TempDir dir;
  write_file(dir / "empty.safetensors", "");
  Error e = catch_error([&] { SafetensorsFile::open(dir / "empty.safetensors"); });
  CHECK(e.code() == ErrorCode::Format);
  CHECK_THAT(std::string(e.what()), Contains("empty.safetensors") && Contains("0 bytes") && Contains("too small"));
}
TEST_CASE("rejected: 7-byte file", "[safetensors][hostile]") {
  CHECK_THAT(format_error(std::string(7, '\0')), Contains("7 bytes") && Contains("too small"));
}
TEST_CASE("rejected: header length larger than the file", "[safetensors][hostile]") {
  CHECK_THAT(format_error(u64le(100) + "{}"), Contains("header length 100") && Contains("exceeds the 2 bytes"));
}
TEST_CASE("rejected: header length 2^64-1", "[safetensors][hostile]") {
  CHECK_THAT(format_error(u64le(UINT64_MAX) + "{}"),
             Contains("header length 18446744073709551615") && Contains("100000000-byte limit"));
}
TEST_CASE("rejected: header length just over the 100 MB cap", "[safetensors][hostile]") {
  CHECK_THAT(format_error(u64le(100'000'001) + "{}"), Contains("100000000-byte limit"));
  // Exactly at the cap is allowed by the cap, then fails on the file size.
  CHECK_THAT(format_error(u64le(100'000'000) + "{}"), Contains("exceeds the 2 bytes"));
}
TEST_CASE("rejected: header is not JSON", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file("{not json}", 0)), Contains("not valid JSON") && Contains("line 1"));
  CHECK_THAT(format_error(st_file("", 0)), Contains("not valid JSON"));
  CHECK_THAT(format_error(st_file(kOneTensor + " x", 8)), Contains("not valid JSON"));  // trailing garbage
}
TEST_CASE("rejected: header is not UTF-8", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file("{\"\xff\":1}", 0)), Contains("not valid UTF-8"));
  CHECK_THAT(format_error(st_file("{\"\xed\xa0\x80\":1}", 0)), Contains("not valid UTF-8"));  // surrogate
}
TEST_CASE("rejected: header is a JSON array, not an object", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file("[1, 2]", 0)), Contains("header is an array, not an object"));
  CHECK_THAT(format_error(st_file("\"str\"", 0)), Contains("header is a string, not an object"));
}
TEST_CASE("rejected: byte-order mark before the object", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file("\xef\xbb\xbf{}", 0)), Contains("start with '{'"));
}
TEST_CASE("rejected: deeply nested JSON (100k levels) is refused before parsing", "[safetensors][hostile]") {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  CHECK_THAT(format_error(st_file(deep, 0)), Contains("nests deeper than 16"));
  std::string deep_obj;
  for (int i = 0; i < 100000; ++i) deep_obj += "{\"a\":";
  deep_obj += "1" + std::string(100000, '}');
  CHECK_THAT(format_error(st_file(deep_obj, 0)), Contains("nests deeper than 16"));
  // Brackets inside strings do not count.
  auto st = parse(st_file("{\"__metadata__\":{\"k\":\"" + std::string(1000, '[') + "\"}}", 0));
  CHECK(st->metadata().at("k").size() == 1000);
}
TEST_CASE("rejected: unknown dtype", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file("{\"w\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8)),
             Contains("tensor 'w'") && Contains("unknown dtype 'F128'"));
  CHECK_THAT(format_error(st_file("{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8)),
             Contains("'dtype' is a number"));
}
TEST_CASE("rejected: negative, fractional and huge shapes", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,8]}}", 8)),
             Contains("tensor 'w'") && Contains("dimension 0 is negative"));
  CHECK_THAT(format_error(st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8)),
             Contains("dimension 0 is 2.5"));
  CHECK_THAT(format_error(st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e30],\"data_offsets\":[0,8]}}", 8)),
             Contains("not a non-negative integer"));
  // 2^32 * 2^32 * 16 overflows u64 even though the last dim is small.
  CHECK_THAT(format_error(
                 st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 8)),
             Contains("tensor 'w'") && Contains("overflows"));
  // Fits u64 elements but not bytes.
  CHECK_THAT(
      format_error(st_file("{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 8)),
      Contains("overflows"));
  // A zero after an overflowing prefix is still rejected (the reference multiplies in order).
  CHECK_THAT(format_error(
                 st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}", 0)),
             Contains("overflows"));
  CHECK_THAT(
      format_error(st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[9223372036854775808],\"data_offsets\":[0,8]}}", 8)),
      Contains("does not fit in int64"));
  std::string many = "[";
  for (int i = 0; i < 65; ++i) many += i ? ",1" : "1";
  many += "]";
  CHECK_THAT(format_error(st_file("{\"w\":{\"dtype\":\"U8\",\"shape\":" + many + ",\"data_offsets\":[0,1]}}", 1)),
             Contains("array of more than 64 elements"));
  // A long array anywhere is refused before a DOM is built for it.
  std::string zeros = "[0";
  for (int i = 0; i < 100000; ++i) zeros += ",0";
  CHECK_THAT(format_error(st_file("{\"__metadata__\":{\"k\":" + zeros + "]}}", 0)), Contains("array of more than 64"));
  // 64 dimensions is the limit, and fine.
  std::string dims64 = "[1";
  for (int i = 1; i < 64; ++i) dims64 += ",1";
  CHECK(parse(st_file("{\"w\":{\"dtype\":\"U8\",\"shape\":" + dims64 + "],\"data_offsets\":[0,1]}}", 1))
            ->find("w")
            ->shape.size() == 64);
}
TEST_CASE("rejected: size mismatch names file, tensor, shape and sizes", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file("{\"model.layers.0.mlp.up_proj.weight\":{\"dtype\":\"BF16\",\"shape\":[64,32],"
                                  "\"data_offsets\":[0,4000]}}",
                                  4000)),
             Contains("bad.safetensors: tensor 'model.layers.0.mlp.up_proj.weight': shape [64, 32] x bf16 = 4096 "
                      "bytes but data_offsets span 4000"));
  CHECK_THAT(format_error(st_file("{\"q\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2)),
             Contains("not a whole number of bytes"));
}
TEST_CASE("rejected: data_offsets out of range, begin > end, malformed", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file(kOneTensor, 4)), Contains("tensor 'a'") && Contains("out of range"));
  CHECK_THAT(format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8)),
             Contains("[8, 4]") && Contains("begin > end"));
  CHECK_THAT(format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8)),
             Contains("must be an array [begin, end]"));
  CHECK_THAT(format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,-8]}}", 8)),
             Contains("not non-negative 64-bit integers"));
  CHECK_THAT(
      format_error(st_file("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,18446744073709551616]}}", 8)),
      Contains("not non-negative 64-bit integers"));
}
TEST_CASE("rejected: overlapping tensors", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                                  12)),
             Contains("'b'") && Contains("overlap") && Contains("'a'"));
  // Two tensors on the same bytes.
  CHECK_THAT(format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                  "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                                  8)),
             Contains("overlap"));
  // An empty tensor placed inside another one.
  CHECK_THAT(format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                  "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                                  8)),
             Contains("overlap"));
}
TEST_CASE("rejected: gap between tensors or before the first", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                                  12)),
             Contains("gap of 4 bytes before tensor 'b'"));
  CHECK_THAT(format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8)),
             Contains("gap of 4 bytes before tensor 'a'"));
}
TEST_CASE("rejected: trailing bytes not covered", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file(kOneTensor, 12)), Contains("4 trailing bytes are not covered"));
  CHECK_THAT(format_error(st_file("{}", 1)), Contains("1 trailing bytes"));
}
TEST_CASE("rejected: duplicate tensor names and duplicate fields", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                                  8)),
             Contains("duplicate tensor name 'a'"));
  CHECK_THAT(
      format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4)),
      Contains("duplicate key 'dtype'"));
}
TEST_CASE("rejected: __metadata__ must map strings to strings", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file("{\"__metadata__\":{\"epoch\":1}}", 0)),
             Contains("__metadata__ value for 'epoch' is a number, not a string"));
  CHECK_THAT(format_error(st_file("{\"__metadata__\":{\"n\":{\"x\":\"y\"}}}", 0)),
             Contains("is an object, not a string"));
  CHECK_THAT(format_error(st_file("{\"__metadata__\":\"pt\"}", 0)), Contains("__metadata__ is a string"));
}
TEST_CASE("rejected: tensor entries must be exactly {dtype, shape, data_offsets}", "[safetensors][hostile]") {
  CHECK_THAT(format_error(st_file("{\"a\":[1,2]}", 0)), Contains("tensor 'a'") && Contains("expected an object"));
  CHECK_THAT(format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4)),
             Contains("unknown field 'extra'"));
  CHECK_THAT(format_error(st_file("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4)), Contains("missing 'dtype'"));
  CHECK_THAT(format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4)),
             Contains("missing 'shape'"));
  CHECK_THAT(format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4)), Contains("missing 'data_offsets'"));
  CHECK_THAT(format_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4)),
             Contains("'shape' is a number, not an array"));
}
TEST_CASE("rejected: truncated file: valid header, data cut short", "[safetensors][hostile]") {
  TempDir dir;
  reason::write_safetensors(dir / "full.safetensors", {{"w", filled<uint32_t>(DType::F32, {4}, {1, 2, 3, 4})}});
  std::string full = read_file(dir / "full.safetensors");
  REQUIRE(parse(full)->size() == 1);
  std::string cut = full.substr(0, full.size() - 3);
  CHECK_THAT(format_error(cut), Contains("tensor 'w'") && Contains("out of range") && Contains("truncated"));
  // Cut inside the header.
  CHECK_THAT(format_error(full.substr(0, 20)), Contains("exceeds the 12 bytes"));
}

TEST_CASE("mapped files report missing paths with errno text", "[safetensors]") {
  Error e = catch_error([] { reason::MappedFile::open("/nonexistent/dir/model.safetensors"); });
  CHECK(e.code() == ErrorCode::Io);
  CHECK_THAT(std::string(e.what()),
             Contains("/nonexistent/dir/model.safetensors") && Contains("No such file or directory"));
  TempDir dir;
  e = catch_error([&] { SafetensorsFile::open(dir.path); });
  CHECK(e.code() == ErrorCode::Io);
  CHECK_THAT(std::string(e.what()), Contains("not a regular file"));
}

TEST_CASE("the writer validates its input", "[safetensors][writer]") {
  TempDir dir;
  Tensor x = filled<uint32_t>(DType::F32, {1}, {0x3f800000u});
  Error e = catch_error([&] { reason::write_safetensors(dir / "a.safetensors", {{"x", x}, {"x", x}}); });
  CHECK(e.code() == ErrorCode::InvalidArgument);
  CHECK_THAT(std::string(e.what()), Contains("'x' is listed twice"));
  e = catch_error([&] { reason::write_safetensors(dir / "a.safetensors", {{"__metadata__", x}}); });
  CHECK(e.code() == ErrorCode::InvalidArgument);
  e = catch_error([&] { reason::write_safetensors(dir / "a.safetensors", {{"bad\xff", x}}); });
  CHECK(e.code() == ErrorCode::InvalidArgument);
  CHECK_THAT(std::string(e.what()), Contains("UTF-8"));
  e = catch_error([&] {
    reason::write_safetensors(dir / "a.safetensors", {{"x", Tensor::view(DType::F32, {4}, nullptr, nullptr)}});
  });
  CHECK(e.code() == ErrorCode::InvalidArgument);
  CHECK_THAT(std::string(e.what()), Contains("has no data"));
  CHECK(fs::is_empty(dir.path));  // nothing, not even a temporary, was left behind

  // No tensors at all is a valid file (the reference writes "{}" padded to 8).
  reason::write_safetensors(dir / "none.safetensors", {});
  CHECK(read_file(dir / "none.safetensors") == u64le(8) + "{}      ");
}

TEST_CASE("atomic writes keep the old file when the write fails", "[safetensors][writer]") {
  TempDir dir;
  const std::string path = dir / "model.safetensors";
  Tensor v1 = filled<uint32_t>(DType::F32, {2}, {0x3f800000u, 0x40000000u});
  reason::write_safetensors(path, {{"w", v1}});
  const std::string old_bytes = read_file(path);

  SECTION("overwriting succeeds and replaces the content") {
    Tensor v2 = filled<uint16_t>(DType::BF16, {3}, {1, 2, 3});
    reason::write_safetensors(path, {{"w", v2}});
    auto st = SafetensorsFile::open(path);
    CHECK(same_bytes(st->tensor("w"), v2));
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
  }
  SECTION("the producer throws half-way through") {
    struct Boom {};
    CHECK_THROWS_AS(reason::atomic_write(path,
                                         [](const reason::ByteSink& sink) {
                                           sink("partial", 7);
                                           throw Boom{};
                                         }),
                    Boom);
    CHECK(read_file(path) == old_bytes);
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);  // no .tmp left
  }
  SECTION("the target's directory does not exist") {
    const std::string bad = dir / "no/such/dir/model.safetensors";
    Error e = catch_error([&] { reason::write_safetensors(bad, {{"w", v1}}); });
    CHECK(e.code() == ErrorCode::Io);
    CHECK_THAT(std::string(e.what()), Contains(bad) && Contains("No such file or directory"));
    CHECK(read_file(path) == old_bytes);
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
  }
  SECTION("the target is a directory: rename fails, temporary removed") {
    fs::create_directory(dir / "adir");
    Error e = catch_error([&] { reason::atomic_write_file(dir / "adir", "{}"); });
    CHECK(e.code() == ErrorCode::Io);
    CHECK_THAT(std::string(e.what()), Contains("rename"));
    CHECK(fs::is_directory(dir / "adir"));
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 2);
  }
  SECTION("a stale temporary from a crashed writer with our pid is replaced") {
    write_file(path + ".tmp." + std::to_string(::getpid()), "stale");
    reason::atomic_write_file(path, "new");
    CHECK(read_file(path) == "new");
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
  }
}
