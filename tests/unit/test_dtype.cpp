// Scalar and bulk dtype conversions (kernels/include/reason/kernels/dtype.h, kernels/cpu/convert.cpp)
// against torch (tests/fixtures/dtype/conversions.json, written by
// tests/fixtures/make_dtype_fixtures.py): f32 -> bf16 / f16 round to nearest even on ties (both
// parities), one ulp beside ties, f32 and f16 subnormals, the f16 overflow boundary, infinities
// and NaNs; bf16 / f16 -> f32 on a sample of codes; f8 e4m3fn -> f32 on all 256 codes.
//
// Tolerance: none. Every conversion here is exact by definition (a rounding to a fixed format is
// one well-defined value), so results are compared bit for bit. The one exception is the bit
// pattern of a NaN result, which is not specified (torch itself writes 0xffff for a bf16 NaN in its
// vectorised path and 0x7fc0 in its scalar path): for a NaN the test asserts that the result is a
// NaN, nothing more.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reason/kernels/dtype.h"

using namespace reason::kernels;
using json = nlohmann::json;

namespace {

const json& fixture() {
  static const json j = [] {
    std::ifstream in(std::string(REASON_FIXTURES_DIR) + "/dtype/conversions.json");
    REQUIRE(in.good());
    return json::parse(in);
  }();
  return j;
}

template <class T>
std::vector<T> arr(const json& j) {
  std::vector<T> v;
  for (const auto& x : j) v.push_back(T(x.get<uint64_t>()));
  return v;
}

float f32_of(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
bool bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }
bool f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace

TEST_CASE("f32 -> bf16 and f16 round to nearest even exactly as torch", "[dtype]") {
  const json& fx = fixture()["f32_to_16"];
  const auto in = arr<uint32_t>(fx["input_f32_bits"]);
  const auto want_bf = arr<uint16_t>(fx["bf16_bits"]);
  const auto want_h = arr<uint16_t>(fx["f16_bits"]);
  REQUIRE(in.size() > 3000);
  REQUIRE(want_bf.size() == in.size());
  REQUIRE(want_h.size() == in.size());
  std::vector<float> src(in.size());
  for (size_t i = 0; i < in.size(); ++i) src[i] = f32_of(in[i]);

  // The bulk conversions over the whole (odd-length) array, so vector bodies and tails both run.
  std::vector<uint16_t> bulk_bf(in.size()), bulk_h(in.size());
  REQUIRE(convert_from_f32(bulk_bf.data(), src.data(), DType::BF16, src.size()));
  REQUIRE(convert_from_f32(bulk_h.data(), src.data(), DType::F16, src.size()));

  int64_t bad_bf = 0, bad_h = 0, nans = 0, ties = 0, subnormal_h = 0, inf_h = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    INFO("f32 input " << hex(in[i]) << " = " << src[i]);
    const uint16_t bf = f32_to_bf16(src[i]), h = f32_to_f16(src[i]);
    CHECK(bulk_bf[i] == bf);
    CHECK(bulk_h[i] == h);
    if (std::isnan(src[i])) {
      ++nans;
      CHECK(bf16_is_nan(want_bf[i]));  // the oracle's own NaN
      CHECK(bf16_is_nan(bf));
      CHECK(f16_is_nan(h));
      continue;
    }
    if (bf != want_bf[i]) ++bad_bf;
    if (h != want_h[i]) ++bad_h;
    CHECK(bf == want_bf[i]);
    CHECK(h == want_h[i]);
    ties += (in[i] & 0xffffu) == 0x8000u;
    subnormal_h += (want_h[i] & 0x7c00u) == 0 && (want_h[i] & 0x3ffu) != 0;
    inf_h += (want_h[i] & 0x7fffu) == 0x7c00u;
  }
  CHECK(bad_bf == 0);
  CHECK(bad_h == 0);
  // The fixture really covers the cases it claims (so this test cannot pass vacuously).
  CHECK(nans >= 8);
  CHECK(ties >= 100);
  CHECK(subnormal_h >= 100);
  CHECK(inf_h >= 4);
}

TEST_CASE("bf16 and f16 -> f32 exactly as torch", "[dtype]") {
  {
    const json& fx = fixture()["f16_to_f32"];
    const auto in = arr<uint16_t>(fx["input_f16_bits"]);
    const auto want = arr<uint32_t>(fx["f32_bits"]);
    REQUIRE(in.size() == want.size());
    std::vector<float> bulk(in.size());
    REQUIRE(convert_to_f32(bulk.data(), in.data(), DType::F16, in.size()));
    for (size_t i = 0; i < in.size(); ++i) {
      INFO("f16 code " << hex(in[i]));
      const float f = f16_to_f32(in[i]);
      if (f16_is_nan(in[i])) {
        CHECK(std::isnan(f32_of(want[i])));
        CHECK(std::isnan(f));
        CHECK(std::isnan(bulk[i]));
        continue;
      }
      CHECK(bits_of(f) == want[i]);
      CHECK(bits_of(bulk[i]) == want[i]);
    }
  }
  {
    const json& fx = fixture()["bf16_to_f32"];
    const auto in = arr<uint16_t>(fx["input_bf16_bits"]);
    const auto want = arr<uint32_t>(fx["f32_bits"]);
    REQUIRE(in.size() == want.size());
    std::vector<float> bulk(in.size());
    REQUIRE(convert_to_f32(bulk.data(), in.data(), DType::BF16, in.size()));
    for (size_t i = 0; i < in.size(); ++i) {
      INFO("bf16 code " << hex(in[i]));
      CHECK(bits_of(bf16_to_f32(in[i])) == want[i]);  // exact, NaN payloads included (a shift)
      CHECK(bits_of(bulk[i]) == want[i]);
    }
  }
}

TEST_CASE("every f16 code: the scalar decoder equals the F16C bulk path and round-trips", "[dtype]") {
  // Two independent implementations (integer code vs the CPU's vcvtph2ps on blocks of 8) over all
  // 65536 codes, and f16 -> f32 -> f16 is the identity on every non-NaN code.
  std::vector<uint16_t> codes(65536);
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = uint16_t(i);
  std::vector<float> bulk(codes.size());
  REQUIRE(convert_to_f32(bulk.data(), codes.data(), DType::F16, codes.size()));
  int64_t mismatches = 0, roundtrip = 0;
  for (size_t i = 0; i < codes.size(); ++i) {
    const float f = f16_to_f32(codes[i]);
    if (f16_is_nan(codes[i])) {
      mismatches += !(std::isnan(f) && std::isnan(bulk[i]));
      continue;
    }
    mismatches += bits_of(f) != bits_of(bulk[i]);
    roundtrip += f32_to_f16(f) != codes[i];
  }
  CHECK(mismatches == 0);
  CHECK(roundtrip == 0);
  // bf16 round trip on every non-NaN code.
  int64_t bf_roundtrip = 0;
  for (uint32_t c = 0; c < 65536; ++c)
    if (!bf16_is_nan(uint16_t(c))) bf_roundtrip += f32_to_bf16(bf16_to_f32(uint16_t(c))) != c;
  CHECK(bf_roundtrip == 0);
}

TEST_CASE("f8 e4m3fn -> f32: all 256 codes exactly as torch.float8_e4m3fn", "[dtype]") {
  const auto want = arr<uint32_t>(fixture()["f8e4m3fn_to_f32"]["f32_bits"]);
  REQUIRE(want.size() == 256);
  std::vector<uint8_t> codes(256);
  for (int c = 0; c < 256; ++c) codes[size_t(c)] = uint8_t(c);
  std::vector<float> bulk(256);
  REQUIRE(convert_to_f32(bulk.data(), codes.data(), DType::F8_E4M3, codes.size()));
  int nan_codes = 0;
  for (int c = 0; c < 256; ++c) {
    INFO("f8 code " << c);
    const float f = f8e4m3_to_f32(uint8_t(c));
    if (std::isnan(f32_of(want[size_t(c)]))) {  // 0x7f and 0xff only: e4m3fn has no infinities
      ++nan_codes;
      CHECK(std::isnan(f));
      CHECK(std::isnan(bulk[size_t(c)]));
      continue;
    }
    CHECK(bits_of(f) == want[size_t(c)]);
    CHECK(bits_of(bulk[size_t(c)]) == want[size_t(c)]);
  }
  CHECK(nan_codes == 2);
  CHECK(f8e4m3_to_f32(0x7e) == 448.0f);  // largest finite
  // There is no f32 -> f8 conversion: the bulk call says so instead of writing garbage.
  uint8_t out[4] = {0xAA, 0xAA, 0xAA, 0xAA};
  const float src[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  CHECK_FALSE(convert_from_f32(out, src, DType::F8_E4M3, 4));
}

TEST_CASE("dtype sizes and names", "[dtype]") {
  CHECK(dtype_size(DType::F32) == 4);
  CHECK(dtype_size(DType::BF16) == 2);
  CHECK(dtype_size(DType::F16) == 2);
  CHECK(dtype_size(DType::F8_E4M3) == 1);
  CHECK(std::string(dtype_name(DType::F8_E4M3)) == "f8_e4m3");
}
