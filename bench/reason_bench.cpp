// reason_bench: prefill and decode throughput of one model, measured the way llama-bench does.
//
//   reason_bench --model DIR [--threads N] [--dtype f32|bf16] [--prompt-tokens P]
//                [--gen-tokens G] [--reps R] [--seed S] [--profile [--replay-offset B]]
//                [--no-prefill] [--no-decode]
//
// Prefill ("pp P"): one forward of P random valid token ids into an empty KV cache, logits for
//   the last position only (llama-bench: llama_decode of the whole prompt in one batch).
// Decode ("tg G"): G forward steps of one token each, starting from an empty cache, each step
//   appending to the cache and computing the last position's logits over the full vocabulary
//   (llama-bench: G llama_decode calls of one token; tokens are random, nothing is sampled).
// Each test runs once as a warm-up, then R timed repetitions, each with a fresh cache.
// Throughput per repetition is tokens / seconds; the JSON reports the mean and standard
// deviation over the repetitions (llama-bench's avg_ts / stddev_ts), the median and the best.
//
// --profile additionally replays the forward pass (sdk/model/dense_decoder.cpp) op by op with
// the same backend calls, the same shapes and the same weight footprint (separate buffers of
// the model's size, so caches behave as in the real pass), timing each op: where the time of a
// decode step and of a prefill goes, and at what bandwidth each matmul streams its weights.
// The replay's total is printed next to the measured forward time (best repetition), and a
// streaming-read probe gives this machine's bandwidth: the decode roofline. The replay's
// weights are allocated as the model's (reason::Tensor::empty); --replay-offset B puts them in
// plain 4 KiB pages B bytes past a 64-byte boundary instead (as weights used in place from a
// safetensors memory map would be), to see what alignment and huge pages are worth.
//
// The JSON document goes to stdout; progress and the human-readable summary go to stderr.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <immintrin.h>
#include <omp.h>

#include "core/tensor.h"
#include "model/model.h"
#include "model/rope.h"
#include "reason/kernels/backend.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Args {
  std::string model;
  int threads = 0;
  std::string dtype = "bf16";
  int64_t prompt_tokens = 128;
  int64_t gen_tokens = 64;
  int reps = 5;
  unsigned seed = 42;
  bool profile = false;
  int replay_offset = -1;  // bytes past 64-byte alignment of the replay's weights; -1: as the model's
  bool prefill = true;
  bool decode = true;
};

[[noreturn]] void usage(const char* msg) {
  if (msg) std::fprintf(stderr, "reason_bench: %s\n", msg);
  std::fprintf(stderr,
               "usage: reason_bench --model DIR [--threads N] [--dtype f32|bf16] [--prompt-tokens P]\n"
               "                    [--gen-tokens G] [--reps R] [--seed S] [--profile [--replay-offset B]]\n"
               "                    [--no-prefill] [--no-decode]\n");
  std::exit(2);
}

Args parse_args(int argc, char** argv) {
  Args a;
  auto need = [&](int& i) -> const char* {
    if (i + 1 >= argc) usage((std::string("missing value after ") + argv[i]).c_str());
    return argv[++i];
  };
  auto to_int = [&](const char* s, const char* name, long lo) -> long {
    char* end = nullptr;
    long v = std::strtol(s, &end, 10);
    if (!end || *end || v < lo) usage((std::string("bad value for ") + name + ": " + s).c_str());
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--model" || s == "-m") a.model = need(i);
    else if (s == "--threads" || s == "-t") a.threads = int(to_int(need(i), "--threads", 0));
    else if (s == "--dtype") a.dtype = need(i);
    else if (s == "--prompt-tokens" || s == "-p") a.prompt_tokens = to_int(need(i), "--prompt-tokens", 1);
    else if (s == "--gen-tokens" || s == "-n") a.gen_tokens = to_int(need(i), "--gen-tokens", 1);
    else if (s == "--reps" || s == "-r") a.reps = int(to_int(need(i), "--reps", 1));
    else if (s == "--seed") a.seed = unsigned(to_int(need(i), "--seed", 0));
    else if (s == "--profile") a.profile = true;
    else if (s == "--replay-offset") a.replay_offset = int(to_int(need(i), "--replay-offset", 0)) % 64;
    else if (s == "--no-prefill") a.prefill = false;
    else if (s == "--no-decode") a.decode = false;
    else if (s == "--help" || s == "-h") usage(nullptr);
    else usage(("unknown argument " + s).c_str());
  }
  if (a.model.empty()) usage("--model is required");
  if (a.dtype != "f32" && a.dtype != "bf16") usage("--dtype must be f32 or bf16");
  return a;
}

// ---- statistics ----------------------------------------------------------------------------

struct Stats {
  std::vector<double> samples_s;  // seconds per repetition
  int64_t n_tokens = 0;
  std::vector<double> ts() const {
    std::vector<double> v;
    for (double s : samples_s) v.push_back(double(n_tokens) / s);
    return v;
  }
  double avg_ts() const {
    auto v = ts();
    return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
  }
  double stddev_ts() const {  // sample standard deviation, as llama-bench
    auto v = ts();
    if (v.size() < 2) return 0.0;
    const double m = avg_ts();
    double sq = 0;
    for (double x : v) sq += (x - m) * (x - m);
    return std::sqrt(sq / double(v.size() - 1));
  }
  double median_ts() const {
    auto v = ts();
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  }
  double best_ts() const {
    auto v = ts();
    return *std::max_element(v.begin(), v.end());
  }
};

std::string json_array(const std::vector<double>& v, const char* fmt) {
  std::string s = "[";
  char buf[64];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, fmt, v[i]);
    if (i) s += ", ";
    s += buf;
  }
  return s + "]";
}

std::string stats_json(const Stats& st) {
  std::vector<double> ns;
  for (double s : st.samples_s) ns.push_back(s * 1e9);
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "{\"n_tokens\": %lld, \"reps\": %zu, \"avg_ts\": %.3f, \"stddev_ts\": %.3f, "
                "\"median_ts\": %.3f, \"best_ts\": %.3f, ",
                (long long)st.n_tokens, st.samples_s.size(), st.avg_ts(), st.stddev_ts(), st.median_ts(),
                st.best_ts());
  return std::string(buf) + "\"samples_ns\": " + json_array(ns, "%.0f") + ", \"samples_ts\": " +
         json_array(st.ts(), "%.3f") + "}";
}

// ---- the measured runs ---------------------------------------------------------------------

std::vector<int32_t> random_tokens(std::mt19937& rng, int64_t vocab, int64_t n) {
  std::uniform_int_distribution<int32_t> dist(0, int32_t(vocab - 1));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = dist(rng);
  return t;
}

double run_prefill(const reason::Model& m, const std::vector<int32_t>& tokens, reason::ForwardScratch& scratch,
                   std::vector<float>& logits) {
  reason::KVCache cache = m.make_cache();
  const int slot = cache.add_sequence();
  reason::SeqChunk ch{slot, tokens.data(), int64_t(tokens.size()), false};
  const auto t0 = Clock::now();
  m.forward({&ch, 1}, cache, logits, scratch);
  return seconds_since(t0);
}

double run_decode(const reason::Model& m, const std::vector<int32_t>& tokens, reason::ForwardScratch& scratch,
                  std::vector<float>& logits, std::vector<double>* step_s = nullptr) {
  reason::KVCache cache = m.make_cache();
  const int slot = cache.add_sequence();
  const auto t0 = Clock::now();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto ts = Clock::now();
    reason::SeqChunk ch{slot, &tokens[i], 1, false};
    m.forward({&ch, 1}, cache, logits, scratch);
    if (step_s) step_s->push_back(seconds_since(ts));
  }
  return seconds_since(t0);
}

// ---- --profile: an op-by-op replay of Model::forward (sdk/model/dense_decoder.cpp) ----------

namespace rk = reason::kernels;

// Buffers shaped like the model's weights (own memory, same bytes), filled with small random
// values of the compute dtype (timing of these kernels does not depend on the values).
// Replay weight memory. By default a reason::Tensor::empty, i.e. allocated exactly as the
// model loader allocates its weights (alignment, huge pages). With --replay-offset B: plain
// 4 KiB-page memory starting B bytes past a 64-byte boundary, as a tensor used in place from a
// safetensors memory map would (an experiment: what misaligned weight rows cost).
struct Buf {
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  reason::Tensor tensor;
  std::unique_ptr<uint8_t, Free> mem;
  uint8_t* p = nullptr;
  size_t n = 0;
  void alloc(rk::DType dt, int64_t rows, int64_t cols, int offset) {
    n = size_t(rows * cols) * rk::dtype_size(dt);
    if (offset < 0) {
      tensor = reason::Tensor::empty(dt, {rows, cols});
      p = static_cast<uint8_t*>(tensor.raw());
      return;
    }
    mem.reset(static_cast<uint8_t*>(std::aligned_alloc(64, (n + 64 + 63) / 64 * 64)));
    if (!mem) throw std::bad_alloc();
    p = mem.get() + offset;
  }
  uint8_t* data() const { return p; }
  size_t size() const { return n; }
};

struct Weight {
  Buf bytes;
  rk::DType dt;
  int64_t n = 0, k = 0;
};

void fill_random(Weight& w, uint64_t seed) {
  const size_t n = size_t(w.n * w.k);
  const uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  if (w.dt == rk::DType::BF16) {
    auto* p = reinterpret_cast<uint16_t*>(w.bytes.data());
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += 4) {
      uint64_t r = s ^ (i * 0x2545F4914F6CDD1Dull);
      r ^= r >> 29;
      r *= 0xBF58476D1CE4E5B9ull;
      r ^= r >> 32;
      for (size_t j = i; j < std::min(n, i + 4); ++j, r >>= 16)  // +-[0.0078, 0.0156)
        p[j] = uint16_t(0x3c00u | (r & 0x7fu) | (r & 0x8000u));
    }
  } else {
    auto* p = reinterpret_cast<uint32_t*>(w.bytes.data());
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) {
      uint64_t r = s ^ (i * 0x2545F4914F6CDD1Dull);
      r ^= r >> 29;
      r *= 0xBF58476D1CE4E5B9ull;
      r ^= r >> 32;
      p[i] = 0x3c000000u | uint32_t(r & 0x7fffffu) | uint32_t(r & 0x80000000u);
    }
  }
}

Weight make_weight(rk::DType dt, int64_t n, int64_t k, uint64_t seed, int offset) {
  Weight w;
  w.dt = dt;
  w.n = n;
  w.k = k;
  w.bytes.alloc(dt, n, k, offset);
  fill_random(w, seed);
  return w;
}

struct ShadowLayer {
  Weight q, k, v, o, gate, up, down;
  std::vector<float> bq, bk, bv, n1, n2;
};

struct ShadowModel {
  reason::ModelConfig c;
  rk::DType dt;
  Weight embed;  // also the (tied) LM head, as in the model
  Weight lm_head_untied;
  std::vector<ShadowLayer> layers;
  std::vector<float> final_norm;
  reason::RopeTable rope;

  const Weight& head() const { return c.tie_word_embeddings ? embed : lm_head_untied; }
};

ShadowModel make_shadow(const reason::ModelConfig& c, rk::DType dt, int offset) {
  ShadowModel s;
  s.c = c;
  s.dt = dt;
  const int64_t d = c.hidden_size, hd = c.head_dim, qd = c.n_heads * hd, kvd = c.n_kv_heads * hd;
  uint64_t seed = 1;
  s.embed = make_weight(dt, c.vocab_size, d, seed++, offset);
  if (!c.tie_word_embeddings) s.lm_head_untied = make_weight(dt, c.vocab_size, d, seed++, offset);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    ShadowLayer L;
    L.q = make_weight(dt, qd, d, seed++, offset);
    L.k = make_weight(dt, kvd, d, seed++, offset);
    L.v = make_weight(dt, kvd, d, seed++, offset);
    L.o = make_weight(dt, d, qd, seed++, offset);
    L.gate = make_weight(dt, c.intermediate_size, d, seed++, offset);
    L.up = make_weight(dt, c.intermediate_size, d, seed++, offset);
    L.down = make_weight(dt, d, c.intermediate_size, seed++, offset);
    if (c.attention_bias) {
      L.bq.assign(size_t(qd), 0.01f);
      L.bk.assign(size_t(kvd), 0.01f);
      L.bv.assign(size_t(kvd), 0.01f);
    }
    L.n1.assign(size_t(d), 1.0f);
    L.n2.assign(size_t(d), 1.0f);
    s.layers.push_back(std::move(L));
  }
  s.final_norm.assign(size_t(d), 1.0f);
  s.rope = reason::make_rope_table(c, int(hd));
  return s;
}

// Phase timers, in the order the forward pass runs them.
struct Phases {
  std::vector<std::string> order;
  std::map<std::string, double> secs;
  std::map<std::string, double> bytes;  // weight bytes read (matmuls only)
  void add(const std::string& name, double s, double b = 0) {
    if (!secs.count(name)) order.push_back(name);
    secs[name] += s;
    bytes[name] += b;
  }
  double total() const {
    double t = 0;
    for (auto& [k, v] : secs) t += v;
    return t;
  }
};

struct ShadowState {
  std::vector<float> x, h, q, k, v, att, tmp, gate, up, logits;
  std::vector<int32_t> pos;
  std::vector<std::vector<float>> kc, vc;  // per layer [capacity, kvd]
};

// One forward of T tokens at positions [pos0, pos0 + T) (one sequence), mirroring
// Model::forward op for op; adds each op's time to `ph`.
void shadow_forward(const ShadowModel& sm, ShadowState& st, const int32_t* tokens, int64_t T, int64_t pos0,
                    Phases& ph) {
  rk::Backend& be = rk::cpu_backend();
  const reason::ModelConfig& c = sm.c;
  const int64_t d = c.hidden_size, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads;
  const int64_t qd = nh * hd, kvd = nkv * hd, ffn = c.intermediate_size, V = c.vocab_size;
  const double wsz = double(rk::dtype_size(sm.dt));
  st.x.resize(size_t(T * d));
  st.h.resize(size_t(T * d));
  st.q.resize(size_t(T * qd));
  st.k.resize(size_t(T * kvd));
  st.v.resize(size_t(T * kvd));
  st.att.resize(size_t(T * qd));
  st.tmp.resize(size_t(T * d));
  st.gate.resize(size_t(T * ffn));
  st.up.resize(size_t(T * ffn));
  st.pos.resize(size_t(T));
  st.kc.resize(size_t(c.n_layers));
  st.vc.resize(size_t(c.n_layers));

  auto t = Clock::now();
  auto lap = [&](const char* name, double b = 0) {
    const auto now = Clock::now();
    ph.add(name, std::chrono::duration<double>(now - t).count(), b);
    t = now;
  };
  auto linear = [&](const Weight& w, const std::vector<float>& bias, const float* x, float* y) {
    rk::MatmulArgs a;
    a.x = x;
    a.w = w.bytes.data();
    a.w_dtype = w.dt;
    a.bias = bias.empty() ? nullptr : bias.data();
    a.y = y;
    a.m = T;
    a.n = w.n;
    a.k = w.k;
    be.matmul(a);
  };

  for (int64_t r = 0; r < T; ++r) {
    const size_t row = size_t(tokens[r]) * size_t(d);
    if (sm.dt == rk::DType::F32)
      std::memcpy(&st.x[size_t(r * d)], reinterpret_cast<const float*>(sm.embed.bytes.data()) + row, size_t(d) * 4);
    else
      rk::convert_to_f32(&st.x[size_t(r * d)], reinterpret_cast<const uint16_t*>(sm.embed.bytes.data()) + row, sm.dt,
                         size_t(d));
    st.pos[size_t(r)] = int32_t(pos0 + r);
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {  // the cache grows as the model's does
    if (int64_t(st.kc[size_t(l)].size()) < (pos0 + T) * kvd) {
      st.kc[size_t(l)].resize(size_t((pos0 + T) * kvd));
      st.vc[size_t(l)].resize(size_t((pos0 + T) * kvd));
    }
  }
  lap("embed+cache");

  const float scale = 1.0f / std::sqrt(float(hd));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const ShadowLayer& L = sm.layers[size_t(l)];
    be.rmsnorm(st.h.data(), st.x.data(), L.n1.data(), T, d, c.rms_norm_eps);
    lap("rmsnorm");
    linear(L.q, L.bq, st.h.data(), st.q.data());
    lap("q_proj", double(qd * d) * wsz);
    linear(L.k, L.bk, st.h.data(), st.k.data());
    lap("k_proj", double(kvd * d) * wsz);
    linear(L.v, L.bv, st.h.data(), st.v.data());
    lap("v_proj", double(kvd * d) * wsz);
    be.rope(st.q.data(), T, int(nh), int(hd), int(hd), qd, st.pos.data(), sm.rope.inv_freq.data(), sm.rope.attn_factor);
    be.rope(st.k.data(), T, int(nkv), int(hd), int(hd), kvd, st.pos.data(), sm.rope.inv_freq.data(),
            sm.rope.attn_factor);
    lap("rope");
    float* kc = st.kc[size_t(l)].data();
    float* vc = st.vc[size_t(l)].data();
    std::memcpy(kc + pos0 * kvd, st.k.data(), size_t(T * kvd) * 4);
    std::memcpy(vc + pos0 * kvd, st.v.data(), size_t(T * kvd) * 4);
    rk::AttnSeq seq{st.q.data(), st.att.data(), kc, vc, T, pos0};
    rk::AttnArgs aa;
    aa.seqs = &seq;
    aa.n_seqs = 1;
    aa.n_heads = int(nh);
    aa.n_kv_heads = int(nkv);
    aa.head_dim = int(hd);
    aa.q_stride = qd;
    aa.out_stride = qd;
    aa.kv_stride = kvd;
    aa.scale = scale;
    lap("kv_store");
    be.attention(aa);
    lap("attention");
    linear(L.o, {}, st.att.data(), st.tmp.data());
    lap("o_proj", double(d * qd) * wsz);
    be.add_inplace(st.x.data(), st.tmp.data(), T * d);
    lap("residual_add");
    be.rmsnorm(st.h.data(), st.x.data(), L.n2.data(), T, d, c.rms_norm_eps);
    lap("rmsnorm");
    linear(L.gate, {}, st.h.data(), st.gate.data());
    lap("gate_proj", double(ffn * d) * wsz);
    linear(L.up, {}, st.h.data(), st.up.data());
    lap("up_proj", double(ffn * d) * wsz);
    be.silu_mul(st.gate.data(), st.gate.data(), st.up.data(), T * ffn);
    lap("silu_mul");
    linear(L.down, {}, st.gate.data(), st.tmp.data());
    lap("down_proj", double(d * ffn) * wsz);
    be.add_inplace(st.x.data(), st.tmp.data(), T * d);
    lap("residual_add");
  }
  std::memmove(st.h.data(), &st.x[size_t((T - 1) * d)], size_t(d) * 4);
  be.rmsnorm(st.h.data(), st.h.data(), sm.final_norm.data(), 1, d, c.rms_norm_eps);
  lap("rmsnorm");
  st.logits.resize(size_t(V));
  const Weight& head = sm.head();
  rk::MatmulArgs a;
  a.x = st.h.data();
  a.w = head.bytes.data();
  a.w_dtype = head.dt;
  a.y = st.logits.data();
  a.m = 1;
  a.n = head.n;
  a.k = head.k;
  be.matmul(a);
  lap("lm_head", double(V * d) * wsz);
}

// Multi-threaded streaming read of a 64-byte aligned buffer larger than the caches (AVX2 loads,
// four independent chains): the bandwidth a decode step could reach, a roofline for decode.
__attribute__((target("avx2"))) uint64_t read_chunk_avx2(const uint64_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 16 <= n; i += 16) {
    a0 = _mm256_xor_si256(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  const __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  return uint64_t(_mm256_extract_epi64(a, 0) ^ _mm256_extract_epi64(a, 1) ^ _mm256_extract_epi64(a, 2) ^
                  _mm256_extract_epi64(a, 3));
}

uint64_t read_chunk(const uint64_t* p, size_t n) {
  if (__builtin_cpu_supports("avx2")) return read_chunk_avx2(p, n);
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (size_t i = 0; i + 4 <= n; i += 4) {
    a0 ^= p[i];
    a1 ^= p[i + 1];
    a2 ^= p[i + 2];
    a3 ^= p[i + 3];
  }
  return a0 ^ a1 ^ a2 ^ a3;
}

double read_bandwidth_gbs(int threads) {
  const size_t n = size_t(1) << 27;  // 1 GiB of uint64
  std::unique_ptr<uint64_t, Buf::Free> mem(static_cast<uint64_t*>(std::aligned_alloc(64, n * 8)));
  if (!mem) throw std::bad_alloc();
  uint64_t* buf = mem.get();
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < n; ++i) buf[i] = i;
  const size_t blocks = size_t(threads) * 64, per = n / blocks;  // per is a multiple of 16
  double best = 0;
  volatile uint64_t sink = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    uint64_t total = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(^ : total)
    for (size_t b = 0; b < blocks; ++b) total ^= read_chunk(buf + b * per, per);
    const double s = seconds_since(t0);
    sink = sink ^ total;
    best = std::max(best, double(blocks * per * 8) / s / 1e9);
  }
  return best;
}

std::string profile_json(const Phases& ph, double per, const char* unit) {
  std::string s = "[";
  char buf[256];
  for (size_t i = 0; i < ph.order.size(); ++i) {
    const std::string& k = ph.order[i];
    const double sec = ph.secs.at(k) / per, b = ph.bytes.at(k) / per;
    std::snprintf(buf, sizeof buf, "%s{\"op\": \"%s\", \"%s\": %.6f, \"share\": %.4f, \"weight_gbs\": %.2f}",
                  i ? ", " : "", k.c_str(), unit, sec * 1e3, ph.secs.at(k) / ph.total(), b > 0 ? b / sec / 1e9 : 0.0);
    s += buf;
  }
  return s + "]";
}

void print_profile(const char* title, const Phases& ph, double per, double measured_s) {
  std::fprintf(stderr, "\n%s\n", title);
  std::fprintf(stderr, "  %-14s %10s %7s %12s\n", "op", "ms", "share", "weights GB/s");
  std::vector<std::string> ops = ph.order;
  std::sort(ops.begin(), ops.end(), [&](auto& a, auto& b) { return ph.secs.at(a) > ph.secs.at(b); });
  for (const auto& k : ops) {
    const double sec = ph.secs.at(k) / per, b = ph.bytes.at(k) / per;
    std::fprintf(stderr, "  %-14s %10.3f %6.1f%% ", k.c_str(), sec * 1e3, 100.0 * ph.secs.at(k) / ph.total());
    if (b > 0) std::fprintf(stderr, "%12.1f\n", b / sec / 1e9);
    else std::fprintf(stderr, "%12s\n", "-");
  }
  std::fprintf(stderr, "  %-14s %10.3f  (measured Model::forward, best rep: %.3f ms)\n", "replay total", ph.total() / per * 1e3,
               measured_s * 1e3);
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse_args(argc, argv);
  try {
    if (args.threads > 0) rk::set_cpu_threads(args.threads);
    const int threads = rk::cpu_threads();
    const rk::DType dt = args.dtype == "bf16" ? rk::DType::BF16 : rk::DType::F32;

    auto t0 = Clock::now();
    reason::LoadOptions lo;
    lo.compute_dtype = dt;
    lo.load_tokenizer = false;
    auto model = reason::Model::load(args.model, lo);
    const double load_s = seconds_since(t0);
    const reason::ModelConfig& c = model->config();
    std::fprintf(stderr, "reason_bench: %s: %s, %.1fM params, %s, %d threads, loaded in %.2fs\n", args.model.c_str(),
                 c.architecture.c_str(), double(model->n_params()) / 1e6, args.dtype.c_str(), threads, load_s);

    std::mt19937 rng(args.seed);
    reason::ForwardScratch scratch;
    std::vector<float> logits;
    Stats pp, tg;
    pp.n_tokens = args.prompt_tokens;
    tg.n_tokens = args.gen_tokens;

    if (args.prefill) {
      const auto tokens = random_tokens(rng, c.vocab_size, args.prompt_tokens);
      run_prefill(*model, tokens, scratch, logits);  // warm-up
      for (int r = 0; r < args.reps; ++r) {
        pp.samples_s.push_back(run_prefill(*model, random_tokens(rng, c.vocab_size, args.prompt_tokens), scratch, logits));
        std::fprintf(stderr, "  pp%lld rep %d: %.2f tok/s\n", (long long)args.prompt_tokens, r + 1,
                     double(args.prompt_tokens) / pp.samples_s.back());
      }
    }
    if (args.decode) {
      run_decode(*model, random_tokens(rng, c.vocab_size, args.gen_tokens), scratch, logits);  // warm-up
      for (int r = 0; r < args.reps; ++r) {
        tg.samples_s.push_back(run_decode(*model, random_tokens(rng, c.vocab_size, args.gen_tokens), scratch, logits));
        std::fprintf(stderr, "  tg%lld rep %d: %.2f tok/s\n", (long long)args.gen_tokens, r + 1,
                     double(args.gen_tokens) / tg.samples_s.back());
      }
    }

    std::string profile;
    if (args.profile) {
      const int offset = args.replay_offset;
      if (offset < 0)
        std::fprintf(stderr, "\nprofile: op-by-op replay, weights of the model's shapes (%s) allocated as the model's\n",
                     args.dtype.c_str());
      else
        std::fprintf(stderr,
                     "\nprofile: op-by-op replay, weights of the model's shapes (%s) in 4 KiB pages, %d bytes past a"
                     " 64-byte boundary\n",
                     args.dtype.c_str(), offset);
      ShadowModel sm = make_shadow(c, dt, offset);
      ShadowState st;
      const double bw = read_bandwidth_gbs(threads);
      // Weights a decode step streams: every layer matrix and the LM head (the embedding row
      // lookup reads one row only).
      double wbytes = 0;
      for (const auto& L : sm.layers)
        wbytes += double(L.q.bytes.size() + L.k.bytes.size() + L.v.bytes.size() + L.o.bytes.size() +
                         L.gate.bytes.size() + L.up.bytes.size() + L.down.bytes.size());
      wbytes += double(sm.head().bytes.size());
      profile = "{";
      char buf[512];
      std::snprintf(buf, sizeof buf,
                    "\"read_bandwidth_gbs\": %.2f, \"weight_bytes_per_token\": %.0f, \"replay_weight_offset\": %d",
                    bw, wbytes, offset);
      profile += buf;
      std::fprintf(stderr, "streaming read bandwidth, %d threads: %.1f GB/s; weights streamed per decode token: %.0f MB"
                   " -> decode roofline %.1f tok/s\n", threads, bw, wbytes / 1e6, bw * 1e9 / wbytes);
      if (args.prefill) {
        const auto tokens = random_tokens(rng, c.vocab_size, args.prompt_tokens);
        Phases warm, ph;
        st = ShadowState{};
        shadow_forward(sm, st, tokens.data(), args.prompt_tokens, 0, warm);
        const int reps = std::max(1, std::min(args.reps, 3));
        for (int r = 0; r < reps; ++r) shadow_forward(sm, st, tokens.data(), args.prompt_tokens, 0, ph);
        print_profile(("prefill pp" + std::to_string(args.prompt_tokens) + ": one forward of " +
                       std::to_string(args.prompt_tokens) + " tokens, ms per forward").c_str(),
                      ph, reps, pp.samples_s.empty() ? 0.0 : *std::min_element(pp.samples_s.begin(), pp.samples_s.end()));
        profile += ", \"prefill\": " + profile_json(ph, reps, "ms_per_forward");
      }
      if (args.decode) {
        const auto tokens = random_tokens(rng, c.vocab_size, args.gen_tokens);
        Phases warm, ph;
        st = ShadowState{};
        for (int64_t i = 0; i < args.gen_tokens; ++i) shadow_forward(sm, st, &tokens[size_t(i)], 1, i, warm);
        const int reps = std::max(1, std::min(args.reps, 3));
        for (int r = 0; r < reps; ++r) {
          st = ShadowState{};
          for (int64_t i = 0; i < args.gen_tokens; ++i) shadow_forward(sm, st, &tokens[size_t(i)], 1, i, ph);
        }
        const double steps = double(reps) * double(args.gen_tokens);
        print_profile(("decode tg" + std::to_string(args.gen_tokens) + ": ms per token (mean over contexts 0.." +
                       std::to_string(args.gen_tokens - 1) + ")").c_str(),
                      ph, steps,
                      tg.samples_s.empty() ? 0.0
                                           : *std::min_element(tg.samples_s.begin(), tg.samples_s.end()) /
                                                 double(args.gen_tokens));
        double mm = 0, mmb = 0;
        for (const auto& [k, v] : ph.bytes)
          if (v > 0) {
            mm += ph.secs.at(k);
            mmb += v;
          }
        std::fprintf(stderr, "  matmuls: %.1f%% of the step at %.1f GB/s of weights (machine: %.1f GB/s)\n",
                     100.0 * mm / ph.total(), mmb / mm / 1e9, bw);
        profile += ", \"decode\": " + profile_json(ph, steps, "ms_per_token");
      }
      profile += "}";
    }

    char head[1024];
    std::snprintf(head, sizeof head,
                  "{\n  \"engine\": \"libreason\",\n  \"model\": \"%s\",\n  \"architecture\": \"%s\",\n"
                  "  \"n_params\": %lld,\n  \"dtype\": \"%s\",\n  \"threads\": %d,\n  \"load_s\": %.3f,\n"
                  "  \"seed\": %u,\n",
                  args.model.c_str(), c.architecture.c_str(), (long long)model->n_params(), args.dtype.c_str(),
                  threads, load_s, args.seed);
    std::string out = head;
    out += "  \"prefill\": " + (args.prefill ? stats_json(pp) : std::string("null")) + ",\n";
    out += "  \"decode\": " + (args.decode ? stats_json(tg) : std::string("null"));
    if (!profile.empty()) out += ",\n  \"profile\": " + profile;
    out += "\n}\n";
    std::fputs(out.c_str(), stdout);
    if (args.prefill)
      std::fprintf(stderr, "pp%lld: %.2f ± %.2f tok/s (median %.2f, best %.2f)\n", (long long)args.prompt_tokens,
                   pp.avg_ts(), pp.stddev_ts(), pp.median_ts(), pp.best_ts());
    if (args.decode)
      std::fprintf(stderr, "tg%lld: %.2f ± %.2f tok/s (median %.2f, best %.2f)\n", (long long)args.gen_tokens,
                   tg.avg_ts(), tg.stddev_ts(), tg.median_ts(), tg.best_ts());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reason_bench: error: %s\n", e.what());
    return 1;
  }
}
