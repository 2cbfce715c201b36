// reason_bench: prefill and decode throughput of one model, measured the way llama-bench does.
//
//   reason_bench --model DIR [--threads N] [--dtype f32|bf16] [--kv-dtype auto|f32|bf16]
//                [--prompt-tokens P] [--gen-tokens G] [--reps R] [--seed S] [--profile]
//                [--no-prefill] [--no-decode] [--group N] [--quantize stored|none|q8_0|q4_k] [--depth D]
//
// --model may be a GGUF file; --quantize says how its matmul weights are held (default stored: a
// GGUF's quantised tensors used as they are). --depth D: decode runs after a prefill of D tokens
// (llama-bench's -d, "tg G @ dD"); the prefill is not timed. The JSON reports the process's peak
// resident set (getrusage ru_maxrss) after all runs.
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
// --profile: after the timed repetitions, runs prefill and decode again (min(R, 3) times each)
// with ForwardScratch::profile set, so that Model::forward itself times each of its ops
// (sdk/model/model_forward.cpp and the layer forwards in sdk/model/layers/): where the time of a decode step and of a prefill goes, and at
// what bandwidth each matmul streams its weights. The ops' total is printed next to the wall
// time of the profiled forwards and to the best unprofiled repetition, and a streaming-read
// probe gives this machine's bandwidth: the decode roofline.
//
// --group N: a GRPO-style group: generate() of N sampled completions of G tokens (temperature
// 1, no EOS) of one P-token prompt, once with the prompt shared (share_prefix_with: computed
// once, its KV blocks shared) and once as N independent requests; reports each run's tokens/s
// (generated tokens over wall time, prompt included) and its peak KV-cache bytes.
//
// The JSON document goes to stdout; progress and the human-readable summary go to stderr.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <immintrin.h>

#include "infer/generator.h"
#include "model/model.h"
#include "reason/kernels/backend.h"

namespace {

namespace rk = reason::kernels;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Args {
  std::string model;
  int threads = 0;
  std::string dtype = "bf16";
  std::string kv_dtype = "auto";
  int group = 0;
  int64_t prompt_tokens = 128;
  int64_t gen_tokens = 64;
  int reps = 5;
  unsigned seed = 42;
  bool profile = false;
  bool prefill = true;
  bool decode = true;
  std::string quantize = "stored";
  int64_t depth = 0;
};

[[noreturn]] void usage(const char* msg) {
  if (msg) std::fprintf(stderr, "reason_bench: %s\n", msg);
  std::fprintf(stderr,
               "usage: reason_bench --model DIR [--threads N] [--dtype f32|bf16] [--kv-dtype auto|f32|bf16]\n"
               "                    [--prompt-tokens P] [--gen-tokens G] [--reps R] [--seed S] [--profile]\n"
               "                    [--no-prefill] [--no-decode] [--group N] [--quantize stored|none|q8_0|q4_k]\n"
               "                    [--depth D]\n");
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
    else if (s == "--kv-dtype") a.kv_dtype = need(i);
    else if (s == "--group") a.group = int(to_int(need(i), "--group", 1));
    else if (s == "--prompt-tokens" || s == "-p") a.prompt_tokens = to_int(need(i), "--prompt-tokens", 1);
    else if (s == "--gen-tokens" || s == "-n") a.gen_tokens = to_int(need(i), "--gen-tokens", 1);
    else if (s == "--reps" || s == "-r") a.reps = int(to_int(need(i), "--reps", 1));
    else if (s == "--seed") a.seed = unsigned(to_int(need(i), "--seed", 0));
    else if (s == "--profile") a.profile = true;
    else if (s == "--no-prefill") a.prefill = false;
    else if (s == "--no-decode") a.decode = false;
    else if (s == "--quantize") a.quantize = need(i);
    else if (s == "--depth" || s == "-d") a.depth = to_int(need(i), "--depth", 0);
    else if (s == "--help" || s == "-h") usage(nullptr);
    else usage(("unknown argument " + s).c_str());
  }
  if (a.model.empty()) usage("--model is required");
  if (a.dtype != "f32" && a.dtype != "bf16") usage("--dtype must be f32 or bf16");
  if (a.kv_dtype != "auto" && a.kv_dtype != "f32" && a.kv_dtype != "bf16") usage("--kv-dtype must be auto, f32 or bf16");
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

// ---- memory ----------------------------------------------------------------------------------

long long peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return (long long)ru.ru_maxrss * 1024;  // Linux: kilobytes
}

size_t weight_bytes(const reason::Model& m) {
  size_t b = 0;
  for (const auto& [name, t] : m.parameters()) b += t.nbytes();
  return b;
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
  m.forward_device({&ch, 1}, cache, scratch);  // logits stay in the backend's buffer, as llama.cpp's do
  (void)logits;
  return seconds_since(t0);
}

int64_t g_depth = 0;  // --depth: tokens in the cache before the timed decode steps

double run_decode(const reason::Model& m, const std::vector<int32_t>& tokens, reason::ForwardScratch& scratch,
                  std::vector<float>& logits, std::vector<double>* step_s = nullptr) {
  reason::KVCache cache = m.make_cache();
  const int slot = cache.add_sequence();
  if (g_depth > 0) {  // untimed (and unprofiled) prefill of the context (llama-bench -d)
    reason::ForwardProfile* const profile = scratch.profile;
    scratch.profile = nullptr;
    std::vector<int32_t> ctx(static_cast<size_t>(g_depth));
    for (size_t i = 0; i < ctx.size(); ++i) ctx[i] = tokens[i % tokens.size()];
    for (int64_t p0 = 0; p0 < g_depth; p0 += 512) {
      reason::SeqChunk ch{slot, ctx.data() + p0, std::min<int64_t>(512, g_depth - p0), false};
      m.forward_device({&ch, 1}, cache, scratch);
    }
    scratch.profile = profile;
  }
  const auto t0 = Clock::now();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto ts = Clock::now();
    reason::SeqChunk ch{slot, &tokens[i], 1, false};
    m.forward_device({&ch, 1}, cache, scratch);
    (void)logits;
    if (step_s) step_s->push_back(seconds_since(ts));
  }
  return seconds_since(t0);
}

// ---- --profile: per-op times from Model::forward (ForwardScratch::profile) ---------------

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

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
  std::unique_ptr<uint64_t, FreeDeleter> mem(static_cast<uint64_t*>(std::aligned_alloc(64, n * 8)));
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

// Ops that ran, slowest first or in forward order.
std::vector<reason::ForwardOp> ops_run(const reason::ForwardProfile& p, bool by_time) {
  std::vector<reason::ForwardOp> ops;
  for (size_t i = 0; i < p.kOps; ++i)
    if (p.calls[i]) ops.push_back(reason::ForwardOp(i));
  if (by_time)
    std::stable_sort(ops.begin(), ops.end(),
                     [&](auto a, auto b) { return p.seconds[size_t(a)] > p.seconds[size_t(b)]; });
  return ops;
}

// Per forward call: a prefill is one forward, a decode token is one forward.
std::string profile_json(const reason::ForwardProfile& p, const char* unit) {
  const double per = double(p.forwards), total = p.total_seconds();
  std::string s = "[";
  char buf[256];
  bool first = true;
  for (reason::ForwardOp op : ops_run(p, false)) {
    const double sec = p.seconds[size_t(op)] / per, b = p.weight_bytes[size_t(op)] / per;
    std::snprintf(buf, sizeof buf, "%s{\"op\": \"%s\", \"%s\": %.6f, \"share\": %.4f, \"weight_gbs\": %.2f}",
                  first ? "" : ", ", reason::forward_op_name(op), unit, sec * 1e3, p.seconds[size_t(op)] / total,
                  b > 0 ? b / sec / 1e9 : 0.0);
    s += buf;
    first = false;
  }
  return s + "]";
}

// Peak multiply-add rate of one dot-product instruction kind, every thread running ten independent
// chains in registers: AVX512-BF16 vdpbf16ps (64 flops per instruction) where the CPU has it for
// bf16 weights, else AVX2 FMA on f32 (16 flops): a roofline for prefill, as the read probe is for
// decode. Returns 0 where the CPU has neither.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) double bf16_dot_flops(int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0;
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3300);
  for (int64_t i = 0; i < n; ++i) {
    a0 = _mm512_dpbf16_ps(a0, x, y), a1 = _mm512_dpbf16_ps(a1, x, y), a2 = _mm512_dpbf16_ps(a2, x, y);
    a3 = _mm512_dpbf16_ps(a3, x, y), a4 = _mm512_dpbf16_ps(a4, x, y), a5 = _mm512_dpbf16_ps(a5, x, y);
    a6 = _mm512_dpbf16_ps(a6, x, y), a7 = _mm512_dpbf16_ps(a7, x, y), a8 = _mm512_dpbf16_ps(a8, x, y);
    a9 = _mm512_dpbf16_ps(a9, x, y);
  }
  const __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                 _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)),
                                               _mm512_add_ps(a8, a9)));
  float o[16];
  _mm512_storeu_ps(o, s);
  return o[0] == 1.25f ? 1.0 : 0.0;  // keeps the chains live
}

__attribute__((target("avx2,fma"))) double f32_fma_flops(int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0;
  const __m256 x = _mm256_set1_ps(1e-7f), y = _mm256_set1_ps(1.0f);
  for (int64_t i = 0; i < n; ++i) {
    a0 = _mm256_fmadd_ps(x, y, a0), a1 = _mm256_fmadd_ps(x, y, a1), a2 = _mm256_fmadd_ps(x, y, a2);
    a3 = _mm256_fmadd_ps(x, y, a3), a4 = _mm256_fmadd_ps(x, y, a4), a5 = _mm256_fmadd_ps(x, y, a5);
    a6 = _mm256_fmadd_ps(x, y, a6), a7 = _mm256_fmadd_ps(x, y, a7), a8 = _mm256_fmadd_ps(x, y, a8);
    a9 = _mm256_fmadd_ps(x, y, a9);
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                 _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)),
                                               _mm256_add_ps(a8, a9)));
  float o[8];
  _mm256_storeu_ps(o, s);
  return o[0] == 1.25f ? 1.0 : 0.0;
}

// {GFLOP/s, instruction name} for a dtype ("bf16" or "f32") with `threads` threads.
std::pair<double, const char*> dot_peak_gflops(int threads, bool bf16) {
  const bool dp = bf16 && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
  if (!dp && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return {0.0, "none"};
  const int64_t n = 50'000'000;
  const double flops_per_iter = dp ? 10 * 64 : 10 * 16;
  double best = 0, sink = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += dp ? bf16_dot_flops(n) : f32_fma_flops(n);
    best = std::max(best, double(threads) * double(n) * flops_per_iter / seconds_since(t0) / 1e9);
  }
  if (sink < 0) std::fprintf(stderr, "%g", sink);
  return {best, dp ? "AVX512-BF16 vdpbf16ps" : "AVX2 FMA f32"};
}

void print_profile(const char* title, const reason::ForwardProfile& p, double wall_s, double measured_s) {
  const double per = double(p.forwards), total = p.total_seconds();
  std::fprintf(stderr, "\n%s\n", title);
  std::fprintf(stderr, "  %-14s %10s %7s %12s\n", "op", "ms", "share", "weights GB/s");
  for (reason::ForwardOp op : ops_run(p, true)) {
    const double sec = p.seconds[size_t(op)] / per, b = p.weight_bytes[size_t(op)] / per;
    std::fprintf(stderr, "  %-14s %10.3f %6.1f%% ", reason::forward_op_name(op), sec * 1e3,
                 100.0 * p.seconds[size_t(op)] / total);
    if (b > 0) std::fprintf(stderr, "%12.1f\n", b / sec / 1e9);
    else std::fprintf(stderr, "%12s\n", "-");
  }
  std::fprintf(stderr, "  %-14s %10.3f  (profiled forwards' wall time %.3f ms; unprofiled, best rep: %.3f ms)\n",
               "op total", total / per * 1e3, wall_s / per * 1e3, measured_s * 1e3);
}

// --group: the same group of sampled completions with the prompt shared and unshared.
std::string run_group(const reason::Model& m, const Args& args, std::mt19937& rng) {
  const auto prompt = random_tokens(rng, m.config().vocab_size, args.prompt_tokens);
  std::string json = "{\"n\": " + std::to_string(args.group);
  for (bool shared : {true, false}) {
    std::vector<reason::GenRequest> reqs(size_t(args.group));
    for (int j = 0; j < args.group; ++j) {
      reqs[size_t(j)].prompt = prompt;
      reqs[size_t(j)].params.temperature = 1.0f;
      reqs[size_t(j)].params.max_new_tokens = int32_t(args.gen_tokens);
      reqs[size_t(j)].params.ignore_eos = true;
      reqs[size_t(j)].params.seed = uint64_t(j + 1);
      if (shared && j > 0) reqs[size_t(j)].share_prefix_with = 0;
    }
    reason::GenerateStats st;
    reason::GenerateOptions go;
    go.stats = &st;
    const auto t0 = Clock::now();
    reason::generate(m, reqs, {}, go);
    const double sec = seconds_since(t0);
    const double ts = double(st.generated_tokens) / sec;
    std::fprintf(stderr, "group of %d, prompt %s: %.2f tok/s, KV cache peak %.2f MiB, prompt tokens computed %lld\n",
                 args.group, shared ? "shared" : "not shared", ts, double(st.kv_peak_bytes) / 1048576.0,
                 (long long)st.prompt_tokens_computed);
    char buf[256];
    std::snprintf(buf, sizeof buf, ", \"%s\": {\"tokens_per_s\": %.3f, \"kv_peak_bytes\": %lld, \"seconds\": %.3f}",
                  shared ? "shared" : "unshared", ts, (long long)st.kv_peak_bytes, sec);
    json += buf;
  }
  return json + "}";
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
    if (args.kv_dtype != "auto") lo.kv_dtype = args.kv_dtype == "bf16" ? rk::DType::BF16 : rk::DType::F32;
    lo.quantize = reason::parse_weight_quant(args.quantize);
    g_depth = args.depth;
    auto model = reason::Model::load(args.model, lo);
    const double load_s = seconds_since(t0);
    const reason::ModelConfig& c = model->config();
    std::fprintf(stderr, "reason_bench: %s: %s, %.1fM params, %s, KV cache %s, %d threads, loaded in %.2fs\n",
                 args.model.c_str(), c.architecture.c_str(), double(model->n_params()) / 1e6, args.dtype.c_str(),
                 rk::dtype_name(model->kv_dtype()), threads, load_s);

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
    if (args.profile && (args.prefill || args.decode)) {
      std::fprintf(stderr, "\nprofile: ops of Model::forward timed in place (ForwardScratch::profile), %s\n",
                   args.dtype.c_str());
      const double bw = read_bandwidth_gbs(threads);
      const int reps = std::max(1, std::min(args.reps, 3));
      reason::ForwardProfile pp_prof, tg_prof;
      double pp_wall = 0, tg_wall = 0;
      if (args.prefill) {
        scratch.profile = &pp_prof;
        for (int r = 0; r < reps; ++r)
          pp_wall += run_prefill(*model, random_tokens(rng, c.vocab_size, args.prompt_tokens), scratch, logits);
      }
      if (args.decode) {
        scratch.profile = &tg_prof;
        for (int r = 0; r < reps; ++r)
          tg_wall += run_decode(*model, random_tokens(rng, c.vocab_size, args.gen_tokens), scratch, logits);
      }
      scratch.profile = nullptr;
      // Weights one forward streams: every layer matrix and the LM head (the embedding lookup
      // reads a row per token only), the same for a prefill and a decode step.
      const reason::ForwardProfile& any = args.decode ? tg_prof : pp_prof;
      double wbytes = 0;
      for (double b : any.weight_bytes) wbytes += b;
      wbytes /= double(any.forwards);
      profile = "{";
      char buf[512];
      std::snprintf(buf, sizeof buf,
                    "\"read_bandwidth_gbs\": %.2f, \"weight_bytes_per_token\": %.0f, \"profiled_reps\": %d", bw,
                    wbytes, reps);
      profile += buf;
      std::fprintf(stderr, "streaming read bandwidth, %d threads: %.1f GB/s; weights streamed per decode token: %.0f MB"
                   " -> decode roofline %.1f tok/s\n", threads, bw, wbytes / 1e6, bw * 1e9 / wbytes);
      if (args.prefill && !model->quantized_weights()) {
        // The layer matmuls' rate (every weight a multiply-add per prompt token; the LM head
        // computes the last token only) against the dot-product peak.
        const bool bf16 = dt == rk::DType::BF16;
        const auto [peak, what] = dot_peak_gflops(threads, bf16);
        double flops = 0, sec = 0;
        for (size_t op = 0; op < pp_prof.weight_bytes.size(); ++op) {
          if (pp_prof.weight_bytes[op] <= 0 || op == size_t(reason::ForwardOp::LmHead)) continue;
          flops += 2.0 * pp_prof.weight_bytes[op] / (bf16 ? 2.0 : 4.0) * double(args.prompt_tokens);
          sec += pp_prof.seconds[op];
        }
        const double gf = sec > 0 ? flops / sec / 1e9 : 0;
        std::fprintf(stderr, "prefill: layer matmuls at %.1f GFLOP/s; %s peak, %d threads: %.1f GFLOP/s (%.0f%%)\n", gf,
                     what, threads, peak, peak > 0 ? 100.0 * gf / peak : 0.0);
        std::snprintf(buf, sizeof buf, ", \"prefill_matmul_gflops\": %.2f, \"dot_peak_gflops\": %.2f", gf, peak);
        profile += buf;
      }
      if (args.prefill) {
        print_profile(("prefill pp" + std::to_string(args.prompt_tokens) + ": one forward of " +
                       std::to_string(args.prompt_tokens) + " tokens, ms per forward (profiled runs: " + std::to_string(reps) +
                       ")").c_str(),
                      pp_prof, pp_wall, *std::min_element(pp.samples_s.begin(), pp.samples_s.end()));
        profile += ", \"prefill\": " + profile_json(pp_prof, "ms_per_forward");
      }
      if (args.decode) {
        print_profile(("decode tg" + std::to_string(args.gen_tokens) + ": ms per token (mean over contexts " +
                       std::to_string(args.depth) + ".." + std::to_string(args.depth + args.gen_tokens - 1) + ", profiled runs: " + std::to_string(reps) + ")").c_str(),
                      tg_prof, tg_wall,
                      *std::min_element(tg.samples_s.begin(), tg.samples_s.end()) / double(args.gen_tokens));
        double mm = 0, mmb = 0;
        for (size_t i = 0; i < tg_prof.kOps; ++i)
          if (tg_prof.weight_bytes[i] > 0) {
            mm += tg_prof.seconds[i];
            mmb += tg_prof.weight_bytes[i];
          }
        std::fprintf(stderr, "  matmuls: %.1f%% of the step at %.1f GB/s of weights (machine: %.1f GB/s)\n",
                     100.0 * mm / tg_prof.total_seconds(), mmb / mm / 1e9, bw);
        profile += ", \"decode\": " + profile_json(tg_prof, "ms_per_token");
      }
      profile += "}";
    }

    char head[1024];
    std::snprintf(head, sizeof head,
                  "{\n  \"engine\": \"libreason\",\n  \"model\": \"%s\",\n  \"architecture\": \"%s\",\n"
                  "  \"n_params\": %lld,\n  \"dtype\": \"%s\",\n  \"kv_dtype\": \"%s\",\n  \"threads\": %d,\n"
                  "  \"load_s\": %.3f,\n  \"seed\": %u,\n  \"quantized_weights\": \"%s\",\n  \"depth\": %lld,\n"
                  "  \"weight_bytes\": %zu,\n  \"peak_rss_bytes\": %lld,\n",
                  args.model.c_str(), c.architecture.c_str(), (long long)model->n_params(), args.dtype.c_str(),
                  rk::dtype_name(model->kv_dtype()), threads, load_s, args.seed,
                  model->quantized_weights() ? rk::dtype_name(*model->quantized_weights()) : "none",
                  (long long)args.depth, weight_bytes(*model), peak_rss_bytes());
    std::string out = head;
    out += "  \"prefill\": " + (args.prefill ? stats_json(pp) : std::string("null")) + ",\n";
    out += "  \"decode\": " + (args.decode ? stats_json(tg) : std::string("null"));
    if (!profile.empty()) out += ",\n  \"profile\": " + profile;
    if (args.group > 0) out += ",\n  \"group\": " + run_group(*model, args, rng);
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
