// Choosing the CPU path once: the best one the CPU has, or REASON_CPU_ISA; oneDNN is capped at
// the same ISA before it creates its first primitive.
#include "reason/kernels/cpu_isa.h"

#include <dnnl.hpp>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "isa_ops.h"

namespace reason::kernels {

namespace {

// The features each path's objects are compiled for (kernels/CMakeLists.txt: -march=x86-64-v3 and
// -march=x86-64-v4), checked one by one so that an error can name what is missing.
struct Feature {
  const char* name;
  bool present;
};

std::vector<Feature> features(CpuIsa isa) {
  __builtin_cpu_init();
  switch (isa) {
    case CpuIsa::Generic: return {};
    case CpuIsa::AVX2:
      return {{"avx", bool(__builtin_cpu_supports("avx"))},   {"avx2", bool(__builtin_cpu_supports("avx2"))},
              {"fma", bool(__builtin_cpu_supports("fma"))},   {"f16c", bool(__builtin_cpu_supports("f16c"))},
              {"bmi", bool(__builtin_cpu_supports("bmi"))},   {"bmi2", bool(__builtin_cpu_supports("bmi2"))},
              {"movbe", bool(__builtin_cpu_supports("movbe"))},
              {"x86-64-v3", bool(__builtin_cpu_supports("x86-64-v3"))}};
    case CpuIsa::AVX512: {
      auto f = features(CpuIsa::AVX2);
      f.push_back({"avx512f", bool(__builtin_cpu_supports("avx512f"))});
      f.push_back({"avx512bw", bool(__builtin_cpu_supports("avx512bw"))});
      f.push_back({"avx512cd", bool(__builtin_cpu_supports("avx512cd"))});
      f.push_back({"avx512dq", bool(__builtin_cpu_supports("avx512dq"))});
      f.push_back({"avx512vl", bool(__builtin_cpu_supports("avx512vl"))});
      f.push_back({"x86-64-v4", bool(__builtin_cpu_supports("x86-64-v4"))});
      return f;
    }
  }
  return {};
}

dnnl::cpu_isa onednn_cap(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Generic: return dnnl::cpu_isa::sse41;
    case CpuIsa::AVX2: return dnnl::cpu_isa::avx2;
    case CpuIsa::AVX512: return dnnl::cpu_isa::all;  // AVX-512 (and AMX where the CPU has it)
  }
  return dnnl::cpu_isa::all;
}

struct Choice {
  CpuIsa isa = CpuIsa::Generic;
  bool forced = false;
  std::string error;  // non-empty: REASON_CPU_ISA was invalid; every CPU op throws it
};

Choice choose() {
  Choice c;
  const char* env = std::getenv("REASON_CPU_ISA");
  if (env && *env) {
    c.forced = true;
    if (!std::strcmp(env, "generic")) c.isa = CpuIsa::Generic;
    else if (!std::strcmp(env, "avx2")) c.isa = CpuIsa::AVX2;
    else if (!std::strcmp(env, "avx512")) c.isa = CpuIsa::AVX512;
    else {
      c.error = std::string("REASON_CPU_ISA=") + env + ": expected generic, avx2 or avx512";
      return c;
    }
    std::string missing;
    if (!cpu_isa_supported(c.isa, &missing)) {
      c.error = std::string("REASON_CPU_ISA=") + env + ": this CPU lacks " + missing;
      return c;
    }
  } else {
    c.isa = cpu_isa_supported(CpuIsa::AVX512) ? CpuIsa::AVX512
            : cpu_isa_supported(CpuIsa::AVX2) ? CpuIsa::AVX2
                                               : CpuIsa::Generic;
  }
  // Before oneDNN creates any primitive (it refuses later). dnnl_set_max_cpu_isa also honours
  // DNNL_MAX_CPU_ISA when that is set; ours is the lower of the two.
  dnnl::set_max_cpu_isa(onednn_cap(c.isa));
  return c;
}

const Choice& choice() {
  static const Choice c = choose();
  return c;
}

}  // namespace

bool cpu_isa_supported(CpuIsa isa, std::string* missing) {
  std::string m;
  for (const Feature& f : features(isa))
    if (!f.present) m += (m.empty() ? "" : ", ") + std::string(f.name);
  if (missing) *missing = m;
  return m.empty();
}

CpuIsa cpu_isa() {
  const Choice& c = choice();
  if (!c.error.empty()) throw BackendError(c.error);
  return c.isa;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Generic: return "generic";
    case CpuIsa::AVX2: return "avx2";
    case CpuIsa::AVX512: return "avx512";
  }
  return "?";
}

std::string cpu_isa_description() {
  const CpuIsa isa = cpu_isa();
  std::string s = cpu_isa_name(isa);
  s += choice().forced ? " (forced by REASON_CPU_ISA" : " (best supported";
  if (isa == CpuIsa::AVX512 && cpu::int8_vnni()) s += "; int8 dot products: avx512vnni";
  if (isa == CpuIsa::AVX512 && __builtin_cpu_supports("avx512bf16")) s += "; bf16 dot products: avx512bf16";
  else if (isa == CpuIsa::Generic) s += "; bf16: widened to f32, scalar";
  else s += "; bf16: widened to f32, FMA";
  s += "; oneDNN capped at ";
  s += isa == CpuIsa::Generic ? "sse41" : isa == CpuIsa::AVX2 ? "avx2" : "none";
  return s + ")";
}

namespace cpu {

bool int8_vnni() {
  static const bool v = [] {
    const char* e = std::getenv("REASON_CPU_VNNI");
    return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") && !(e && !std::strcmp(e, "0"));
  }();
  return v;
}

const IsaOps& isa_ops() {
  static const IsaOps& ops = [] () -> const IsaOps& {
    switch (cpu_isa()) {
      case CpuIsa::AVX512: return isa_avx512::table();
      case CpuIsa::AVX2: return isa_avx2::table();
      case CpuIsa::Generic: break;
    }
    return isa_generic::table();
  }();
  return ops;
}

void* thread_scratch(size_t bytes, int slot) {
  struct Buf {
    void* p = nullptr;
    size_t size = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf bufs[4];
  Buf& b = bufs[slot & 3];
  if (b.size < bytes) {
    const size_t want = bytes < 64 ? 64 : (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, want);
    if (!p) throw BackendError("cpu scratch: out of memory for " + std::to_string(bytes) + " bytes");
    std::free(b.p);
    b.p = p;
    b.size = want;
  }
  return b.p;
}

}  // namespace cpu
}  // namespace reason::kernels
