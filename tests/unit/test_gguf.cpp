// GGUF parsing and ggml dequantisation: a file written by gguf-py (tests/fixtures/gguf, made by
// make_gguf_fixtures.py) read back value for value, every tensor type dequantised equal to
// gguf-py's dequantize, and hostile files (the integer-overflow classes of llama.cpp's parser
// CVEs) refused with a Format error naming the problem.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "expect_error.h"
#include "io/gguf.h"
#include "io/safetensors.h"

using namespace reason;

namespace {

const std::string kDir = std::string(REASON_FIXTURES_DIR) + "/gguf/";

// A little GGUF writer for hand-made (often broken) files.
struct Bytes {
  std::string b;
  template <class T>
  Bytes& put(T v) {
    b.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b += s;
    return *this;
  }
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    b += "GGUF";
    put<uint32_t>(version).put<uint64_t>(n_tensors).put<uint64_t>(n_kv);
    return *this;
  }
  Bytes& kv_u32(const std::string& k, uint32_t v) {
    str(k).put<uint32_t>(uint32_t(GgufType::U32)).put<uint32_t>(v);
    return *this;
  }
  Bytes& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    str(name).put<uint32_t>(uint32_t(dims.size()));
    for (uint64_t d : dims) put<uint64_t>(d);
    put<uint32_t>(type).put<uint64_t>(offset);
    return *this;
  }
  Bytes& pad(size_t align = 32) {
    while (b.size() % align) b += '\0';
    return *this;
  }
  Bytes& zeros(size_t n) {
    b.append(n, '\0');
    return *this;
  }
};

std::shared_ptr<const GgufFile> parse(const std::string& bytes) {
  auto copy = std::make_shared<std::vector<uint8_t>>(bytes.begin(), bytes.end());
  return GgufFile::parse(copy, copy->data(), copy->size(), "test.gguf");
}

void refused(const std::string& bytes, std::vector<std::string> words, ErrorCode code = ErrorCode::Format) {
  words.insert(words.begin(), "test.gguf");
  test::expect_error([&] { parse(bytes); }, code, words);
}

}  // namespace

TEST_CASE("a GGUF file written by gguf-py reads back value for value", "[gguf]") {
  auto f = GgufFile::open(kDir + "types.gguf");
  CHECK(f->version() == 3);
  CHECK(f->alignment() == 32);
  CHECK(f->get_string("general.architecture") == "llama");
  CHECK(f->get_uint("test.u8") == 200);
  CHECK(f->find("test.i8")->i == -100);
  CHECK(f->get_uint("test.u16") == 60000);
  CHECK(f->find("test.i16")->i == -30000);
  CHECK(f->get_uint("test.u32") == 4000000000u);
  CHECK(f->find("test.i32")->i == -2000000000);
  CHECK(f->get_float("test.f32") == 0.15625);
  CHECK(f->get_uint("test.u64") == 18000000000000000000ull);
  CHECK(f->find("test.i64")->i == -9000000000000000000ll);
  CHECK(f->get_float("test.f64") == 2.718281828459045);
  CHECK(f->get_bool("test.bool"));
  CHECK(f->get_string("test.string") == "h\xC3\xA9llo, GGUF");
  const GgufValue& ai = f->get_array("test.array_i32", GgufType::I32);
  REQUIRE(ai.items.size() == 3);
  CHECK(ai.items[1].i == -2);
  const GgufValue& as = f->get_array("test.array_str", GgufType::String);
  REQUIRE(as.items.size() == 3);
  CHECK(as.items[1].s.empty());
  CHECK(as.items[2].s == "\xC3\xA7");
  // Typed getters name the key and the mismatch.
  test::expect_error([&] { f->get_string("test.u8"); }, ErrorCode::Format, {"test.u8", "uint8", "a string"});
  test::expect_error([&] { f->get_uint("test.i8"); }, ErrorCode::Format, {"test.i8", "non-negative"});
  test::expect_error([&] { f->get_uint("no.such.key"); }, ErrorCode::Format, {"missing", "no.such.key"});
  test::expect_error([&] { f->get_array("test.array_i32", GgufType::String); }, ErrorCode::Format, {"test.array_i32"});
}

TEST_CASE("every tensor type dequantises as gguf-py does", "[gguf]") {
  auto f = GgufFile::open(kDir + "types.gguf");
  auto ex = SafetensorsFile::open(kDir + "types_expected.safetensors");
  REQUIRE(f->tensors().size() == 11);
  for (const auto& t : f->tensors()) {
    INFO(t.name << " type " << ggml_type_info(t.type)->name);
    const auto* e = ex->find(t.name);
    REQUIRE(e);
    REQUIRE(t.dims.size() == 2);
    CHECK(e->shape == Shape{t.dims[1], t.dims[0]});  // ggml lists the row length first
    std::vector<float> got(size_t(t.numel));
    ggml_dequantize(t.type, t.data, 0, t.numel, got.data());
    const float* want = reinterpret_cast<const float*>(e->data);
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < t.numel; ++i) {
      worst = std::max(worst, std::fabs(double(got[size_t(i)]) - want[i]));
      scale = std::max(scale, std::fabs(double(want[i])));
    }
    // The same f32 operations in the same order as ggml / gguf-py: equal up to one rounding.
    CHECK(worst <= 1e-6 * scale);
    // Dequantising the second row alone gives the same values (whole blocks from an offset).
    std::vector<float> row(size_t(t.dims[0]));
    ggml_dequantize(t.type, t.data, t.dims[0], t.dims[0], row.data());
    CHECK(std::memcmp(row.data(), got.data() + t.dims[0], row.size() * sizeof(float)) == 0);
  }
  test::expect_error([&] { std::vector<float> o(32); ggml_dequantize(8, f->tensors()[0].data, 16, 32, o.data()); },
                     ErrorCode::InvalidArgument, {"whole", "Q8_0"});
  test::expect_error([&] { float o; ggml_dequantize(10, nullptr, 0, 0, &o); }, ErrorCode::Unsupported, {"10"});
}

TEST_CASE("hostile GGUF files are refused with an error naming the problem", "[gguf][defensive]") {
  auto valid = [] {
    Bytes b;
    b.header(1, 1).kv_u32("general.alignment", 32).tensor("w", {32, 2}, 8, 0).pad().zeros(68);
    return b.b;
  };
  REQUIRE(parse(valid())->tensors().size() == 1);
  // Every prefix of a valid file is refused (no read past the end).
  const std::string ok = valid();
  for (size_t n = 0; n < ok.size(); ++n) CHECK_THROWS_AS(parse(ok.substr(0, n)), reason::Error);

  refused("GGML" + ok.substr(4), {"magic"});
  {
    std::string v1 = ok;
    v1[4] = 1;
    refused(v1, {"version 1"});
    v1[4] = 0, v1[7] = 3;  // a big-endian file's version as read little-endian
    refused(v1, {"version"});
  }
  refused(Bytes().header(0, uint64_t(1) << 60).b, {"metadata entries cannot fit"});
  refused(Bytes().header(uint64_t(1) << 60, 0).zeros(64).b, {"tensors cannot fit"});
  {
    Bytes b;  // a key whose length runs past the end
    b.header(0, 1).put<uint64_t>(uint64_t(1) << 62).zeros(16);
    refused(b.b, {"metadata key", "past the end"});
  }
  {
    Bytes b;  // an array longer than the file
    b.header(0, 1).str("k").put<uint32_t>(uint32_t(GgufType::Array)).put<uint32_t>(uint32_t(GgufType::U32));
    b.put<uint64_t>(uint64_t(1) << 61).zeros(16);
    refused(b.b, {"\"k\"", "array", "past the end"});
  }
  {
    Bytes b;  // an array of arrays
    b.header(0, 1).str("k").put<uint32_t>(uint32_t(GgufType::Array)).put<uint32_t>(uint32_t(GgufType::Array));
    b.put<uint64_t>(1).zeros(32);
    refused(b.b, {"arrays of arrays"});
  }
  {
    Bytes b;  // a string value longer than the file
    b.header(0, 1).str("k").put<uint32_t>(uint32_t(GgufType::String)).put<uint64_t>(UINT64_MAX);
    refused(b.b, {"string value", "past the end"});
  }
  refused(Bytes().header(0, 2).kv_u32("a", 1).kv_u32("a", 2).b, {"duplicate metadata key \"a\""});
  refused(Bytes().header(0, 1).str("k").put<uint32_t>(13).zeros(8).b, {"unknown type 13"});
  refused(Bytes().header(0, 1).str("k").put<uint32_t>(uint32_t(GgufType::Bool)).put<uint8_t>(2).b, {"bool", "2"});
  refused(Bytes().header(0, 1).kv_u32("general.alignment", 24).b, {"alignment 24", "power of two"});
  refused(Bytes().header(0, 1).kv_u32("general.alignment", 0).b, {"alignment 0"});
  auto one = [](std::vector<uint64_t> dims, uint32_t type, uint64_t offset, size_t data) {
    Bytes b;
    b.header(1, 0).tensor("w", dims, type, offset).pad().zeros(data);
    return b.b;
  };
  refused(one({32, 0}, 0, 0, 64), {"\"w\"", "dimension 1 = 0"});
  refused(one({1, 1, 1, 1, 1}, 0, 0, 64), {"\"w\"", "5 dimensions"});
  refused(one({uint64_t(1) << 40, uint64_t(1) << 40}, 0, 0, 64), {"\"w\"", "overflows"});
  refused(one({uint64_t(1) << 62}, 0, 0, 64), {"\"w\"", "overflows"});
  refused(one({32}, 99, 0, 128), {"\"w\"", "unknown ggml type 99"});
  refused(one({256}, 10, 0, 128), {"\"w\"", "Q2_K", "not supported"}, ErrorCode::Unsupported);
  refused(one({48}, 8, 0, 128), {"\"w\"", "48", "block size 32"});
  refused(one({32}, 0, 16, 256), {"\"w\"", "offset 16", "alignment 32"});
  refused(one({32}, 0, 0, 64), {"\"w\"", "past the end"});  // 128 bytes needed, 64 there
  refused(one({32}, 0, uint64_t(1) << 63, 128), {"\"w\"", "past the end"});
  {
    Bytes b;
    b.header(2, 0).tensor("a", {32}, 0, 0).tensor("a", {32}, 0, 128).pad().zeros(256);
    refused(b.b, {"duplicate tensor name \"a\""});
  }
  {
    Bytes b;
    b.header(2, 0).tensor("a", {64}, 0, 0).tensor("b", {32}, 0, 128).pad().zeros(256);
    refused(b.b, {"\"a\"", "\"b\"", "overlap"});
  }
}
