#!/usr/bin/env bash
# Checks that the per-ISA kernel objects (kernels/cpu/isa/, compiled with -march=x86-64-v3 and
# -march=x86-64-v4) define no symbol that the linker could merge with generic code: every
# global or weak symbol they define must be in their own namespace
# reason::kernels::cpu::isa_<path>. An inline function or template instantiated there (a
# std::vector method, an inline helper from a shared header) would be a weak symbol, and the
# linker may keep the AVX-512 copy for every caller: SIGILL on a CPU without AVX-512.
# Usage: scripts/check_isa_objects.sh BUILD_DIR        (exit 1 naming each offending symbol)
set -euo pipefail
build="${1:?usage: check_isa_objects.sh BUILD_DIR}"
bad=0
n=0
for isa in generic avx2 avx512; do
  dir="$build/kernels/CMakeFiles/reason_kernels_$isa.dir"
  [ -d "$dir" ] || { echo "check_isa_objects: $dir not found (build the kernels first)"; exit 1; }
  while IFS= read -r -d '' obj; do
    n=$((n + 1))
    while IFS= read -r line; do
      sym="${line#* * }"
      case "$sym" in
        "reason::kernels::cpu::isa_$isa::"*) ;;
        DW.ref.__gxx_personality_v0) ;;  # a pointer to the C++ personality routine, no code
        *) echo "check_isa_objects: ${obj#"$build"/} defines '$sym' (${line:17:1}) outside namespace isa_$isa"; bad=1 ;;
      esac
    done < <(nm -C --defined-only "$obj" | grep -E '^[0-9a-f]+ [A-Zuv] ')
  done < <(find "$dir" -name '*.o' -print0)
done
[ "$n" -gt 0 ] || { echo "check_isa_objects: no objects found under $build"; exit 1; }
# The linked library: no VEX/EVEX or BMI/MOVBE instruction outside the per-ISA namespaces, so the
# code that runs before (and around) the ISA choice runs on any amd64 CPU.
lib="$build/capi/libreason.so"
if [ -f "$lib" ]; then
  outside=$(objdump -d -C --no-show-raw-insn "$lib" | awk '
    /^[0-9a-f]+ <.*>:$/ { fn = $0; next }
    /%[yz]mm|\t(shlx|sarx|shrx|tzcnt|lzcnt|movbe|andn) |\tv[a-z0-9]+ / { if (fn !~ /isa_avx(2|512)::/ && !(fn in seen)) { seen[fn] = 1; print fn } }')
  if [ -n "$outside" ]; then echo "check_isa_objects: $lib has AVX/BMI instructions outside the per-ISA code in:"; echo "$outside"; bad=1; fi
fi
[ "$bad" = 0 ] || exit 1
echo "check_isa_objects: $n per-ISA objects define only their own namespace's symbols"
