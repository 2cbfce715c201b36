// Test helper: reads an int64/f32 tensor from a safetensors fixture with nothing but the
// format's definition (8-byte little-endian header length + JSON header), so that C ABI tests
// link libreason only.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

struct FixtureFile {
  nlohmann::json header;
  std::vector<char> data;
  explicit FixtureFile(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    std::string h(n, '\0');
    f.read(h.data(), std::streamsize(n));
    header = nlohmann::json::parse(h);
    data.assign(std::istreambuf_iterator<char>(f), {});
  }
  template <typename T>
  std::vector<T> get(const std::string& name) const {
    const auto& e = header.at(name);
    const uint64_t b = e["data_offsets"][0], en = e["data_offsets"][1];
    std::vector<T> out((en - b) / sizeof(T));
    std::memcpy(out.data(), data.data() + b, en - b);
    return out;
  }
  std::vector<int32_t> ids(const std::string& name) const {
    auto v = get<int64_t>(name);
    return std::vector<int32_t>(v.begin(), v.end());
  }
};
