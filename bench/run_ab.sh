#!/usr/bin/env bash
# bench/run_ab.sh: prefill and decode of two reason_bench builds (before and after a change) on one
# checkpoint, alternating in one run so that both see the same machine, then the best tokens/s of
# the rounds per build, variant and thread count.
#
#   BASE=/path/to/old/build/bench/reason_bench bench/run_ab.sh
#
# Environment:
#   BASE      the reason_bench binary of the build to compare against (required; e.g. a worktree of
#             the previous commit built with `cmake --build build --target reason_bench`)
#   NEW       [build/bench/reason_bench] the binary of this tree
#   MODEL     [/tmp/qwen05b] a checkpoint (`python3 bench/make_random_checkpoint.py /tmp/qwen05b`)
#   THREADS   ["1 2"]
#   ROUNDS    [2]
#   ARGS      ["--dtype bf16 --prompt-tokens 128 --gen-tokens 64 --reps 3"] for both builds
#   VARIANTS  [""] extra arguments for NEW only, ";"-separated, each run as its own row
#             (e.g. ";--kv-dtype f32": NEW as is, and NEW with an f32 KV cache)
#   OUT       [bench/out/ab] where the JSON of every run goes
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BASE:?set BASE to the reason_bench binary to compare against}"
NEW=${NEW:-build/bench/reason_bench}
MODEL=${MODEL:-/tmp/qwen05b}
THREADS=${THREADS:-"1 2"}
ROUNDS=${ROUNDS:-2}
ARGS=${ARGS:-"--dtype bf16 --prompt-tokens 128 --gen-tokens 64 --reps 3"}
VARIANTS=${VARIANTS:-""}
OUT=${OUT:-bench/out/ab}
mkdir -p "$OUT"
IFS=';' read -r -a variants <<< "$VARIANTS"
[ ${#variants[@]} -eq 0 ] && variants=("")

for round in $(seq "$ROUNDS"); do
  for t in $THREADS; do
    # shellcheck disable=SC2086
    "$BASE" --model "$MODEL" --threads "$t" $ARGS > "$OUT/base_t${t}_r${round}.json" 2> "$OUT/base_t${t}_r${round}.log"
    for i in "${!variants[@]}"; do
      # shellcheck disable=SC2086
      "$NEW" --model "$MODEL" --threads "$t" $ARGS ${variants[$i]} > "$OUT/new${i}_t${t}_r${round}.json" 2> "$OUT/new${i}_t${t}_r${round}.log"
    done
  done
done

python3 - "$OUT" "$ROUNDS" "$THREADS" "${variants[@]}" <<'PY'
import json, sys
out, rounds, threads, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4:] or [""]
def best(prefix, t, key):
    vals = []
    for r in range(1, rounds + 1):
        d = json.load(open(f"{out}/{prefix}_t{t}_r{r}.json"))
        if d.get(key): vals.append(d[key]["best_ts"])
    return max(vals) if vals else float("nan")
print("| build | threads | prefill best (tok/s) | decode best (tok/s) |")
print("|---|---:|---:|---:|")
for t in threads:
    print(f"| base | {t} | {best('base', t, 'prefill'):.2f} | {best('base', t, 'decode'):.2f} |")
    for i, v in enumerate(variants):
        name = "new" + (f" {v.strip()}" if v.strip() else "")
        print(f"| {name} | {t} | {best(f'new{i}', t, 'prefill'):.2f} | {best(f'new{i}', t, 'decode'):.2f} |")
PY
