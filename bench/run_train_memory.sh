#!/usr/bin/env bash
# Peak memory of one SFT step on one long sequence (4 layers, 8 heads, hidden 256, ffn 768, the
# addition task's vocabulary), one process per length; results in bench/out/train_memory.md.
# Usage: bench/run_train_memory.sh [BUILD_DIR] [LENGTHS...]      (default: build, 1024 4096 16384 32768)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
shift || true
lengths=("$@")
[ ${#lengths[@]} -gt 0 ] || lengths=(1024 4096 16384 32768)
cmake --build "$build" -j "${JOBS:-2}" --target reason_train_mem_bench >/dev/null
mkdir -p bench/out
out=bench/out/train_memory.md
{
  echo "# One SFT step, one sequence: peak RSS ($(lscpu | sed -n 's/^Model name: *//p'), $(nproc) threads, commit $(git rev-parse --short HEAD))"
  echo
  echo "| tokens | recompute | peak RSS (MiB) | after load (MiB) | step (s) | loss |"
  echo "|---:|---|---:|---:|---:|---:|"
} > "$out"
for n in "${lengths[@]}"; do
  for rc in "" "--recompute"; do
    line=$("$build/bench/reason_train_mem_bench" --seq-len "$n" $rc)
    echo "$line"
    python3 - "$line" >> "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| {r['seq_len']} | {'yes' if r['recompute'] else 'no'} | {r['peak_rss_mib']:.0f} | {r['rss_after_load_mib']:.0f} | {r['step_s']:.1f} | {r['loss']:.3f} |")
PY
  done
done
cat "$out"
