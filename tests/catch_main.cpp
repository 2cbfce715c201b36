// Catch2 main for every test binary. When REASON_CPU_ISA names an ISA path this CPU lacks, the
// binary exits 77 before running anything and ctest reports the test as Skipped (the
// *_generic / *_avx2 / *_avx512 variants registered in tests/CMakeLists.txt), naming the
// missing features: a skip that says why, never a silent pass. (The feature sets are those of
// kernels/cpu/cpu_isa.cpp; this file cannot call it, as the C ABI tests link only libreason.so.)
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char* argv[]) {
  if (const char* env = std::getenv("REASON_CPU_ISA"); env && *env) {
    __builtin_cpu_init();
    const bool lacks = (!std::strcmp(env, "avx2") && !__builtin_cpu_supports("x86-64-v3")) ||
                       (!std::strcmp(env, "avx512") && !__builtin_cpu_supports("x86-64-v4"));
    if (lacks) {
      std::printf("SKIPPED: REASON_CPU_ISA=%s but this CPU is not %s\n", env,
                  !std::strcmp(env, "avx2") ? "x86-64-v3 (AVX2, FMA, F16C, BMI2)" : "x86-64-v4 (AVX-512 F/BW/CD/DQ/VL)");
      return 77;
    }
  }
  return Catch::Session().run(argc, argv);
}
