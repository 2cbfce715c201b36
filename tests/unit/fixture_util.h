// Test helpers shared by the conformance tests: typed reads of oracle tensors from a safetensors
// fixture, a prefill of one sequence, and an element-wise max difference.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/model.h"

namespace reason::test {

struct Fixture {
  std::shared_ptr<const SafetensorsFile> f;
  explicit Fixture(const std::string& path) : f(SafetensorsFile::open(path)) {}
  bool has(const std::string& n) const { return f->find(n) != nullptr; }
  const SafetensorsFile::Entry& entry(const std::string& n, const char* dtype) const {
    const auto* e = f->find(n);
    INFO("fixture tensor " << n);
    REQUIRE(e != nullptr);
    REQUIRE(e->dtype_name == dtype);
    return *e;
  }
  std::vector<int64_t> i64(const std::string& n) const {
    const auto& e = entry(n, "I64");
    std::vector<int64_t> v(size_t(e.numel));
    std::memcpy(v.data(), e.data, v.size() * 8);
    return v;
  }
  std::vector<int32_t> ids(const std::string& n) const {
    auto v = i64(n);
    return std::vector<int32_t>(v.begin(), v.end());
  }
  std::vector<float> floats(const std::string& n) const {
    const auto& e = entry(n, "F32");
    std::vector<float> v(size_t(e.numel));
    std::memcpy(v.data(), e.data, v.size() * 4);
    return v;
  }
  float scalar(const std::string& n) const { return floats(n).at(0); }
  std::string meta(const std::string& k) const { return f->metadata().at(k); }
};

inline float max_abs_diff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// Logits of every position of `ids` run as one prompt.
inline std::vector<float> prefill_logits(const Model& m, const std::vector<int32_t>& ids,
                                         ForwardScratch::RouteTrace* trace = nullptr) {
  KVCache cache = m.make_cache();
  ForwardScratch s;
  s.route_trace = trace;
  std::vector<float> logits;
  SeqChunk ch{cache.add_sequence(), ids.data(), int64_t(ids.size()), true};
  m.forward(std::span<const SeqChunk>(&ch, 1), cache, logits, s);
  return logits;
}

// Feeds `prompt` then `tokens` one KV-cache step at a time (a cache of the model's KV dtype) and
// calls visit(step, logits) with the last position's logits before each step's token.
inline void for_each_decode_step(const Model& m, const std::vector<int32_t>& prompt, const std::vector<int32_t>& tokens,
                                 const std::function<void(size_t step, const float* logits)>& visit) {
  KVCache cache = m.make_cache();
  ForwardScratch s;
  std::vector<float> logits;
  const int slot = cache.add_sequence();
  SeqChunk ch{slot, prompt.data(), int64_t(prompt.size()), false};
  m.forward(std::span<const SeqChunk>(&ch, 1), cache, logits, s);
  for (size_t step = 0; step < tokens.size(); ++step) {
    visit(step, logits.data());
    SeqChunk next{slot, &tokens[step], 1, false};
    m.forward(std::span<const SeqChunk>(&next, 1), cache, logits, s);
  }
}

// Checks that the logits before each decode step equal the oracle's decode logits
// ([steps, vocab]) within `tol`.
inline void check_decode_steps(const Model& m, const std::vector<int32_t>& prompt, const std::vector<int32_t>& tokens,
                               const std::vector<float>& decode_logits, float tol) {
  const size_t V = size_t(m.config().vocab_size);
  for_each_decode_step(m, prompt, tokens, [&](size_t step, const float* logits) {
    INFO("decode step " << step);
    CHECK(max_abs_diff(logits, decode_logits.data() + step * V, V) < tol);
  });
}

// Tolerance for two f32 computations of the same logprobs that differ only in the order of their
// sums (another matmul shape or batch composition, another ISA path's kernels), derived from the
// arithmetic rather than from one CPU's rounding. A dot product of length k rounds with a
// relative error of about lambda * sqrt(k) * u (u = 2^-24; Higham & Mary's probabilistic bound,
// lambda = 4), each of the n_layers + 1 matmul stages adds such an error of the magnitude that
// flows through the residual stream, and a logprob z_t / T - logsumexp(z / T) moves by at most
// 2 max|dz| / T. `magnitude` bounds |z|; 1 + max|logprob| of the sequence is used for it.
// For the 2-layer, hidden-32 fixtures at T = 1 this is about 1e-4 for logprobs near -7: ten times
// the worst seen (AVX2 and AVX-512 paths), and far below the 1e-2-scale error of a wrong kernel.
inline float summation_order_tolerance(const ModelConfig& c, float magnitude, float T) {
  const int64_t k = std::max({c.hidden_size, c.intermediate_size, c.moe_intermediate_size,
                              c.n_heads * c.head_dim, c.kv_lora_rank});
  const double u = std::ldexp(1.0, -24), lambda = 4.0;
  return float(2.0 / T * lambda * double(c.n_layers + 1) * std::sqrt(double(k)) * u * magnitude);
}

inline float logprob_magnitude(const std::vector<float>& logprobs) {
  float m = 0.0f;
  for (float v : logprobs) m = std::max(m, std::fabs(v));
  return 1.0f + m;
}

}  // namespace reason::test
