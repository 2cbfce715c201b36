#!/usr/bin/env bash
# libreason vs llama.cpp on the same GGUF files: bf16, Q8_0 and Q4_K_M of random-weight
# Qwen2.5-0.5B and Qwen2.5-1.5B (R1-Distill-Qwen-1.5B) checkpoints, plus the real SmolLM2-135M Q4_1
# file; pp512, tg128, peak RSS, at 1 and 2 threads, alternating engines; tg128 after a 4096-token
# context (llama.cpp's from llama-bench -pg minus its -p of the same depth: this llama-bench has
# no -d; with its default -fa 0 and with -fa 1); and decode with a competing busy process.
# THREADS=" " (a space) skips the main table, DEPTH=0 the depth rows.
# See bench/README.md ("Quantised weights").
#
#   LLAMA_CPP_BUILD=/tmp/llama.cpp-build bench/run_quant_vs_llamacpp.sh
#
# LLAMA_CPP_BUILD must hold llama-bench and llama-quantize built from a llama.cpp checkout the
# developer fetched (run_vs_llamacpp.sh builds them; this script never fetches anything).
# Environment [defaults]: REASON_BUILD [<repo>/build] (reason_bench, reason), BENCH_WORK
# [/tmp/reason-bench], PYTHON [/work/venv/bin/python], THREADS ["1 2"], REPS [3], ROUNDS [1],
# SHAPES ["0.5b 1.5b"], TYPES ["bf16 Q8_0 Q4_K_M"], SMOLLM2 [~/.cache/libreason-test-models/...gguf],
# DEPTH [4096] (0: skip the depth rows), DEPTH_THREADS ["2"], DEPTH_MATCH [*0.5b-Q4_K_M*] (the files
# measured at depth: each run prefills DEPTH tokens untimed first), CONTENTION [1].
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LLAMA_CPP_BUILD=${LLAMA_CPP_BUILD:-/tmp/llama.cpp-build}
REASON_BUILD=${REASON_BUILD:-$REPO/build}
BENCH_WORK=${BENCH_WORK:-/tmp/reason-bench}
PYTHON=${PYTHON:-/work/venv/bin/python}
THREADS=${THREADS:-"1 2"}
REPS=${REPS:-3}
ROUNDS=${ROUNDS:-1}
SHAPES=${SHAPES:-"0.5b 1.5b"}
TYPES=${TYPES:-"bf16 Q8_0 Q4_K_M"}
SMOLLM2=${SMOLLM2:-$HOME/.cache/libreason-test-models/SmolLM2-135M-Instruct.Q4_1.gguf}
DEPTH=${DEPTH:-4096}
DEPTH_THREADS=${DEPTH_THREADS:-2}
DEPTH_MATCH=${DEPTH_MATCH:-*0.5b-Q4_K_M*}
CONTENTION=${CONTENTION:-1}
OUT=$REPO/bench/out/quant
mkdir -p "$OUT" "$BENCH_WORK"
LB="$LLAMA_CPP_BUILD/bin/llama-bench"
LQ="$LLAMA_CPP_BUILD/bin/llama-quantize"
RB="$REASON_BUILD/bench/reason_bench"
RC="$REASON_BUILD/sdk/cli/reason"
export LD_LIBRARY_PATH=$LLAMA_CPP_BUILD/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for b in "$LB" "$LQ" "$RB" "$RC"; do [ -x "$b" ] || { echo "missing $b (build it first)" >&2; exit 2; }; done
say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The files: checkpoint -> bf16 GGUF (reason convert, what convert_hf_to_gguf.py writes) ->
# llama-quantize Q8_0 / Q4_K_M.
files=()
for s in $SHAPES; do
  ck=$BENCH_WORK/qwen2.5-$s-random
  [ -f "$ck/model.safetensors" ] || "$PYTHON" "$REPO/bench/make_random_checkpoint.py" "$ck" --shape "$s" >&2
  [ -f "$BENCH_WORK/qwen2.5-$s-bf16.gguf" ] || "$RC" convert "$ck" --out "$BENCH_WORK/qwen2.5-$s-bf16.gguf" --type bf16 >&2
  for t in $TYPES; do
    f=$BENCH_WORK/qwen2.5-$s-$t.gguf
    [ -f "$f" ] || "$LQ" "$BENCH_WORK/qwen2.5-$s-bf16.gguf" "$f" "$t" 2 >/dev/null 2>&1
    files+=("$f")
  done
done
[ -f "$SMOLLM2" ] && files+=("$SMOLLM2")

peak_kb() { sed -n 's/^PEAK_KB=//p' "$1" | tail -1; }
# llama.cpp: llama-bench's avg_ts for pp and tg; peak RSS from /usr/bin/time.
run_llama() {  # FILE THREADS TAG
  /usr/bin/time -f "PEAK_KB=%M" "$LB" -m "$1" -t "$2" -p 512 -n 128 -r "$REPS" -o json >"$OUT/$3.json" 2>"$OUT/$3.err"
  "$PYTHON" - "$OUT/$3.json" "$(peak_kb "$OUT/$3.err")" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
pp = [r["avg_ts"] for r in rows if r["n_prompt"] > 0][0]
tg = [r["avg_ts"] for r in rows if r["n_gen"] > 0][0]
print(f"{pp:.2f} {tg:.2f} {int(sys.argv[2]) / 1024:.0f}")
PY
}
# llama.cpp's decode after DEPTH tokens: llama-bench times pp DEPTH, then pp DEPTH + tg128 (-pg);
# the difference of the mean times is the 128 decode steps at depths DEPTH .. DEPTH + 127.
run_llama_depth() {  # FILE THREADS TAG DEPTH FA (llama-bench -fa: 0 its default, 1 flash attention)
  "$LB" -m "$1" -t "$2" -p "$4" -n 0 -pg "$4,128" -fa "$5" -r "$REPS" -o json >"$OUT/$3.json" 2>"$OUT/$3.err"
  "$PYTHON" - "$OUT/$3.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
pp = [r["avg_ns"] for r in rows if r["n_gen"] == 0][0]
pg = [r["avg_ns"] for r in rows if r["n_gen"] == 128][0]
print(f"{128 / ((pg - pp) / 1e9):.2f}")
PY
}
run_reason() {  # FILE THREADS TAG [extra args]
  local f=$1 t=$2 tag=$3 dtype=f32
  shift 3
  # a bf16 file computes in bf16 (as llama.cpp does with it); quantised weights with f32 activations
  case "$f" in *-bf16.gguf) dtype=bf16 ;; esac
  /usr/bin/time -f "PEAK_KB=%M" "$RB" --model "$f" --threads "$t" --dtype "$dtype" -p 512 -n 128 --reps "$REPS" "$@" \
    >"$OUT/$tag.json" 2>"$OUT/$tag.err"
  "$PYTHON" - "$OUT/$tag.json" "$(peak_kb "$OUT/$tag.err")" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
pp = d["prefill"]["avg_ts"] if d["prefill"] else 0
tg = d["decode"]["avg_ts"] if d["decode"] else 0
print(f"{pp:.2f} {tg:.2f} {int(sys.argv[2]) / 1024:.0f}")
PY
}

table=$OUT/results.md
{
  echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; llama.cpp: $(cd "$LLAMA_CPP_BUILD" && git -C "$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' CMakeCache.txt)" log --oneline -1 2>/dev/null || echo '?'); libreason: $(git -C "$REPO" log --oneline -1)"
  echo
  echo "| file | threads | llama.cpp pp512 | libreason pp512 | ratio | llama.cpp tg128 | libreason tg128 | ratio | llama.cpp RSS MB | libreason RSS MB | ratio |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
} >"$table"
for f in "${files[@]}"; do
  name=$(basename "$f" .gguf)
  for t in $THREADS; do
    for r in $(seq "$ROUNDS"); do
      say "$name t=$t round $r"
      read -r lpp ltg lrss < <(run_llama "$f" "$t" "llama-$name-t$t-r$r")
      read -r rpp rtg rrss < <(run_reason "$f" "$t" "reason-$name-t$t-r$r")
      printf '| %s | %s | %s | %s | **%.2f** | %s | %s | **%.2f** | %s | %s | %.2f |\n' "$name" "$t" "$lpp" "$rpp" \
        "$(echo "$rpp / $lpp" | bc -l)" "$ltg" "$rtg" "$(echo "$rtg / $ltg" | bc -l)" "$lrss" "$rrss" \
        "$(echo "$rrss / $lrss" | bc -l)" | tee -a "$table" >&2
    done
  done
done

if [ "$DEPTH" -gt 0 ]; then
  { echo; echo "Decode deep in a context: tg128 after $DEPTH tokens (llama.cpp: pp$DEPTH+tg128 minus pp$DEPTH, without and with flash attention), and libreason's at depth 0:"; echo
    echo "| file | threads | libreason tg128 @ 0 | llama.cpp tg128 @ $DEPTH (-fa 0 / 1) | libreason tg128 @ $DEPTH | ratio (to -fa 0 / 1) | libreason @ $DEPTH / @ 0 |"
    echo "|---|---:|---:|---:|---:|---:|---:|"; } >>"$table"
  for f in "${files[@]}"; do
    # shellcheck disable=SC2254
    case "$f" in $DEPTH_MATCH) ;; *) continue ;; esac
    name=$(basename "$f" .gguf)
    for t in $DEPTH_THREADS; do
      say "$name t=$t depth $DEPTH"
      read -r _ tg0 _ < <(run_reason "$f" "$t" "reason-$name-t$t-d0" --no-prefill)
      read -r ltgd < <(run_llama_depth "$f" "$t" "llama-$name-t$t-d$DEPTH" "$DEPTH" 0)
      read -r ltgf < <(run_llama_depth "$f" "$t" "llama-$name-t$t-d$DEPTH-fa" "$DEPTH" 1)
      read -r _ tgd _ < <(run_reason "$f" "$t" "reason-$name-t$t-d$DEPTH" --no-prefill --depth "$DEPTH")
      printf '| %s | %s | %s | %s / %s | %s | **%.2f / %.2f** | %.2f |\n' "$name" "$t" "$tg0" "$ltgd" "$ltgf" "$tgd" \
        "$(echo "$tgd / $ltgd" | bc -l)" "$(echo "$tgd / $ltgf" | bc -l)" "$(echo "$tgd / $tg0" | bc -l)" | tee -a "$table" >&2
    done
  done
fi

if [ "$CONTENTION" = 1 ]; then
  { echo; echo "Decode at 2 threads while another process keeps one core busy (a shell busy loop):"; echo
    echo "| file | llama.cpp tg128 | libreason tg128 | ratio |"; echo "|---|---:|---:|---:|"; } >>"$table"
  for f in "${files[@]}"; do
    case "$f" in *Q4_K_M*|*Q4_1*) ;; *) continue ;; esac
    name=$(basename "$f" .gguf)
    bash -c 'while :; do :; done' &
    busy=$!
    read -r _ ltg _ < <(run_llama "$f" 2 "llama-$name-busy")
    read -r _ rtg _ < <(run_reason "$f" 2 "reason-$name-busy" --no-prefill)
    kill "$busy"
    printf '| %s | %s | %s | **%.2f** |\n' "$name" "$ltg" "$rtg" "$(echo "$rtg / $ltg" | bc -l)" | tee -a "$table" >&2
  done
fi
echo; cat "$table"
