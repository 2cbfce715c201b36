// Which instruction-set path the CPU backend runs. libreason is built for the Debian amd64
// baseline (x86-64, SSE2); the vectorised loops are compiled three times (generic, AVX2+FMA+F16C,
// AVX-512 incl. AVX512-BF16 where the CPU has it) and one table of them is chosen at first use:
// the best the CPU supports, or the one the environment variable REASON_CPU_ISA names
// (generic | avx2 | avx512). oneDNN is capped at the same ISA, so a forced path is the whole
// CPU backend's arithmetic, not only ours. On the AVX-512 path the quantised dot products use
// AVX512-VNNI where the CPU has it, unless REASON_CPU_VNNI=0 (for tests and A/B measurements).
//
// Threads: the choice is made once, thread-safely, at the first call of any function here or of
// any CPU backend op; it never changes afterwards.
// Errors: an unknown REASON_CPU_ISA value, or one naming an ISA this CPU lacks, makes cpu_isa()
// (and so every CPU op) throw BackendError with a message naming the variable, the value and the
// missing CPU features.
#pragma once
#include <string>

namespace reason::kernels {

enum class CpuIsa : int { Generic = 0, AVX2 = 1, AVX512 = 2 };

// The path in use (chosen at first call; throws BackendError as described above).
CpuIsa cpu_isa();
// "generic", "avx2" or "avx512".
const char* cpu_isa_name(CpuIsa isa);
// Whether this CPU can run the path; *missing (when given) lists the absent features.
bool cpu_isa_supported(CpuIsa isa, std::string* missing = nullptr);
// One line for `reason info`: the path in use, how it was chosen, the int8 (AVX512-VNNI) and bf16
// dot-product instructions and the oneDNN ISA it implies, e.g. "avx2 (best supported; bf16 via f32 FMA; oneDNN avx2)".
std::string cpu_isa_description();

}  // namespace reason::kernels
