#!/usr/bin/env bash
# libreason vs llama.cpp on the CPU: prefill and decode throughput of the same random-weight
# Qwen2.5-0.5B-shaped checkpoint in bf16, at 1 and 2 threads. See bench/README.md.
#
#   LLAMA_CPP_SRC=/path/to/llama.cpp bench/run_vs_llamacpp.sh
#
# Steps (each skipped when its output is already there and up to date):
#   1. build llama.cpp's llama-bench (CPU only, native) in $LLAMA_CPP_BUILD
#   2. build reason_bench in $REASON_BUILD
#   3. write the random checkpoint (bench/make_random_checkpoint.py) to $CHECKPOINT
#   4. convert it to GGUF bf16 with llama.cpp's convert_hf_to_gguf.py
#   5. run llama-bench and reason_bench at each thread count in $THREADS
#   6. print a markdown table and write it to bench/out/results.md (raw JSON next to it)
#
# Environment (defaults in brackets):
#   LLAMA_CPP_SRC    llama.cpp source checkout (required; never fetched by this script)
#   LLAMA_CPP_BUILD  [/tmp/llama.cpp-build]   REASON_BUILD [<repo>/build-bench]
#   BENCH_WORK       [/tmp/reason-bench]      where the checkpoint and the GGUF go
#   PYTHON           [/work/venv/bin/python]  needs torch, transformers, numpy (for the
#                    checkpoint and the converter); sentencepiece and pyyaml are pip-installed
#                    into it when missing (convert_hf_to_gguf.py / gguf-py import them)
#   PROMPT [128]  GEN [64]  REPS [5]  THREADS ["1 2"]
#   ROUNDS [2]       each engine runs ROUNDS times per thread count (alternating); the table
#                    takes, per engine and thread count, the round that other processes
#                    disturbed least (the machine may be shared)
#   QUIET_WAIT [120] before each run, wait up to this many seconds for idle CPUs
#   PROFILE [auto]   auto: run `reason_bench --profile` where the decode ratio is below 0.8;
#                    1: always; 0: never
#   JOBS [2]         build parallelism
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${LLAMA_CPP_SRC:?set LLAMA_CPP_SRC to a llama.cpp source checkout (e.g. a clone at /tmp/llama.cpp)}"
LLAMA_CPP_SRC=$(cd "$LLAMA_CPP_SRC" && pwd)
LLAMA_CPP_BUILD=${LLAMA_CPP_BUILD:-/tmp/llama.cpp-build}
REASON_BUILD=${REASON_BUILD:-$REPO/build-bench}
BENCH_WORK=${BENCH_WORK:-/tmp/reason-bench}
CHECKPOINT=${CHECKPOINT:-$BENCH_WORK/qwen2.5-0.5b-random}
GGUF=${GGUF:-$BENCH_WORK/qwen2.5-0.5b-random-bf16.gguf}
PYTHON=${PYTHON:-/work/venv/bin/python}
PROMPT=${PROMPT:-128}
GEN=${GEN:-64}
REPS=${REPS:-5}
THREADS=${THREADS:-"1 2"}
PROFILE=${PROFILE:-auto}
JOBS=${JOBS:-2}
ROUNDS=${ROUNDS:-2}
OUT=$REPO/bench/out
mkdir -p "$OUT" "$BENCH_WORK"
LOG=$OUT/run.log
: >"$LOG"

case "$LLAMA_CPP_BUILD/" in "$REPO"/*) echo "LLAMA_CPP_BUILD must be outside the project tree" >&2; exit 2 ;; esac
case "$BENCH_WORK/" in "$REPO"/*) echo "BENCH_WORK must be outside the project tree" >&2; exit 2 ;; esac
[ -f "$LLAMA_CPP_SRC/convert_hf_to_gguf.py" ] || { echo "$LLAMA_CPP_SRC: not a llama.cpp checkout" >&2; exit 2; }

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$LOG" >&2; }
timed() {  # timed NAME CMD...: runs CMD with its output in the log, records the wall time
  local name=$1 t0 t1
  shift
  t0=$(date +%s)
  if ! "$@" >>"$LOG" 2>&1; then
    say "FAILED: $name (see $LOG)"
    tail -n 30 "$LOG" >&2
    exit 1
  fi
  t1=$(date +%s)
  say "$name: $((t1 - t0)) s"
  echo "$name|$((t1 - t0))" >>"$OUT/timings.txt"
}
: >"$OUT/timings.txt"

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

# 1. llama-bench ------------------------------------------------------------------------------
if [ ! -f "$LLAMA_CPP_BUILD/CMakeCache.txt" ]; then
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  timed "configure llama.cpp" cmake -S "$LLAMA_CPP_SRC" -B "$LLAMA_CPP_BUILD" "${gen[@]}" "${launcher[@]}" \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF
fi
timed "build llama-bench" cmake --build "$LLAMA_CPP_BUILD" --target llama-bench -j "$JOBS"
LLAMA_BENCH=$LLAMA_CPP_BUILD/bin/llama-bench
[ -x "$LLAMA_BENCH" ] || { say "no $LLAMA_BENCH after the build"; exit 1; }

# 2. reason_bench -----------------------------------------------------------------------------
if [ ! -f "$REASON_BUILD/CMakeCache.txt" ]; then
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  timed "configure libreason" cmake -S "$REPO" -B "$REASON_BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DREASON_TESTS=OFF -DREASON_CUDA=OFF
fi
timed "build reason_bench" cmake --build "$REASON_BUILD" --target reason_bench -j "$JOBS"
REASON_BENCH=$REASON_BUILD/bench/reason_bench

# 3. checkpoint -------------------------------------------------------------------------------
missing=$("$PYTHON" - <<'EOF'
import importlib.util
print(" ".join(p for m, p in [("sentencepiece", "sentencepiece"), ("yaml", "pyyaml"), ("numpy", "numpy")]
               if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ]; then
  timed "pip install $missing" "$PYTHON" -m pip install $missing
fi
if [ ! -f "$CHECKPOINT/model.safetensors" ]; then
  timed "make checkpoint" "$PYTHON" "$REPO/bench/make_random_checkpoint.py" "$CHECKPOINT"
fi

# 4. GGUF -------------------------------------------------------------------------------------
if [ ! -f "$GGUF" ] || [ "$CHECKPOINT/model.safetensors" -nt "$GGUF" ]; then
  rm -f "$GGUF.tmp"
  timed "convert to gguf bf16" env PYTHONPATH="$LLAMA_CPP_SRC/gguf-py" "$PYTHON" \
    "$LLAMA_CPP_SRC/convert_hf_to_gguf.py" "$CHECKPOINT" --outtype bf16 --outfile "$GGUF.tmp"
  mv "$GGUF.tmp" "$GGUF"
fi

# 5. runs -------------------------------------------------------------------------------------
# The machine may be shared: before each run wait (up to QUIET_WAIT s) until the CPUs are
# mostly idle, and record how many cores other processes used during the run.
HZ=$(getconf CLK_TCK)
busy_jiffies() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
idle_cores() {  # idle cores over a 2 s sample
  local b0 b1
  b0=$(busy_jiffies); sleep 2; b1=$(busy_jiffies)
  awk -v n="$(nproc)" -v d=$((b1 - b0)) -v hz="$HZ" 'BEGIN{printf "%.2f", n - d / hz / 2}'
}
wait_quiet() {
  local t0 idle
  t0=$(date +%s)
  while :; do
    idle=$(idle_cores)
    awk -v i="$idle" -v n="$(nproc)" 'BEGIN{exit !(i >= n - 0.3)}' && return 0
    if [ $(($(date +%s) - t0)) -ge "$QUIET_WAIT" ]; then
      say "CPUs still busy after ${QUIET_WAIT}s ($idle idle cores); running anyway"
      return 0
    fi
  done
}
bench_run() {  # bench_run NAME OUTFILE CMD...: stdout to OUTFILE; others' load to OUTFILE.load
  local name=$1 outfile=$2 b0 b1 tf
  shift 2
  wait_quiet
  tf=$(mktemp)
  b0=$(busy_jiffies)
  local TIMEFORMAT='%R %U %S'
  if ! { time "$@" >"$outfile" 2>>"$LOG"; } 2>"$tf"; then
    say "FAILED: $name (see $LOG)"; tail -n 30 "$LOG" >&2; exit 1
  fi
  b1=$(busy_jiffies)
  read -r real user sys <"$tf"
  rm -f "$tf"
  awk -v d=$((b1 - b0)) -v hz="$HZ" -v r="$real" -v u="$user" -v s="$sys" \
    'BEGIN{o = (d / hz - u - s) / r; if (o < 0) o = 0; printf "%.2f\n", o}' >"$outfile.load"
  say "$name: ${real} s (other processes: $(cat "$outfile.load") cores)"
  echo "$name|$real" >>"$OUT/timings.txt"
}
QUIET_WAIT=${QUIET_WAIT:-120}
rm -f "$OUT"/llama-t*.json* "$OUT"/reason-t*.json* "$OUT"/profile-*
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
say "machine: $cpu, $(nproc) cpus; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  for t in $THREADS; do
    bench_run "llama-bench t=$t round $round" "$OUT/llama-t$t-r$round.json" \
      "$LLAMA_BENCH" -m "$GGUF" -t "$t" -p "$PROMPT" -n "$GEN" -r "$REPS" -o json
    bench_run "reason_bench t=$t round $round" "$OUT/reason-t$t-r$round.json" \
      "$REASON_BENCH" --model "$CHECKPOINT" --threads "$t" --dtype bf16 \
      --prompt-tokens "$PROMPT" --gen-tokens "$GEN" --reps "$REPS"
  done
done

# 6. table ------------------------------------------------------------------------------------
table=$("$PYTHON" - "$OUT" "$PROMPT" "$GEN" "$ROUNDS" "$THREADS" <<'EOF'
import json, sys
out, P, G, rounds, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split()

def pick(engine, t):
    """The round with the least load from other processes (then the fastest decode)."""
    runs = []
    for r in range(1, rounds + 1):
        base = f"{out}/{engine}-t{t}-r{r}.json"
        load = float(open(base + ".load").read())
        d = json.load(open(base))
        if engine == "llama":
            pp = next(x for x in d if x["n_prompt"] == P and x["n_gen"] == 0)
            tg = next(x for x in d if x["n_gen"] == G and x["n_prompt"] == 0)
        else:
            pp, tg = d["prefill"], d["decode"]
        runs.append((round(load, 1), -tg["avg_ts"], r, pp, tg, load))
    runs.sort(key=lambda x: x[:3])
    _, _, r, pp, tg, load = runs[0]
    return pp, tg, load, r

f = lambda x: f"{x['avg_ts']:.2f} ± {x['stddev_ts']:.2f}"
rows, low = [], []
for t in threads:
    lpp, ltg, lload, lr = pick("llama", t)
    rpp, rtg, rload, rr = pick("reason", t)
    rows.append(f"| llama.cpp | {t} | {f(lpp)} | {f(ltg)} | | {lload:.2f} (round {lr}) |")
    ratio_pp, ratio_tg = rpp["avg_ts"] / lpp["avg_ts"], rtg["avg_ts"] / ltg["avg_ts"]
    rows.append(f"| libreason | {t} | {f(rpp)} | {f(rtg)} | prefill **{ratio_pp:.2f}**, decode **{ratio_tg:.2f}** "
                f"| {rload:.2f} (round {rr}) |")
    if ratio_tg < 0.8:
        low.append(t)
print(f"| engine | threads | prefill pp{P} (tok/s) | decode tg{G} (tok/s) | ratio libreason/llama.cpp | other load (cores) |")
print("|---|---:|---:|---:|---|---:|")
print("\n".join(rows))
print("LOW " + " ".join(low))
EOF
)
low=$(printf '%s\n' "$table" | sed -n 's/^LOW *//p')
table=$(printf '%s\n' "$table" | grep -v '^LOW')
llama_commit=$(git -C "$LLAMA_CPP_SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)
# The commit REASON_BUILD was configured from (it may be another worktree), and its KV cache dtype.
reason_src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$REASON_BUILD/CMakeCache.txt" 2>/dev/null)
reason_commit=$(git -C "${reason_src:-$REPO}" rev-parse --short HEAD 2>/dev/null || echo unknown)
reason_kv=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("kv_dtype", "f32"))' "$OUT/reason-t1-r1.json" 2>/dev/null || echo f32)
{
  echo "# libreason vs llama.cpp, CPU, bf16"
  echo
  echo "- model: random-weight Qwen2.5-0.5B shape (494M params, bf16, tied embeddings), $CHECKPOINT"
  echo "- llama.cpp $llama_commit (llama-bench -p $PROMPT -n $GEN -r $REPS, GGUF bf16, KV cache f16)"
  echo "- libreason $reason_commit (reason_bench, KV cache $reason_kv); mean ± stddev over $REPS reps after a warm-up"
  echo "- $ROUNDS rounds per engine and thread count; each row is the round least disturbed by other processes"
  echo "- machine: $cpu, $(nproc) cpus, shared; \"other load\" = cores used by other processes during that run"
  echo "- $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "$table"
} >"$OUT/results.md"

# Profile where decode lags (or always / never, per PROFILE).
prof_threads=""
case "$PROFILE" in
  1) prof_threads=$THREADS ;;
  auto) prof_threads=$low ;;
esac
for t in $prof_threads; do
  wait_quiet
  timed "reason_bench --profile t=$t" sh -c "'$REASON_BENCH' --model '$CHECKPOINT' --threads $t --dtype bf16 \
    --prompt-tokens $PROMPT --gen-tokens $GEN --reps 2 --profile > '$OUT/profile-t$t.json' 2> '$OUT/profile-t$t.txt'"
  {
    echo
    echo "## reason_bench --profile, $t thread(s)"
    echo
    echo '```'
    sed -n '/^profile:/,$p' "$OUT/profile-t$t.txt"
    echo '```'
  } >>"$OUT/results.md"
done

{
  echo
  echo "## wall times (s)"
  echo
  sed 's/|/: /' "$OUT/timings.txt" | sed 's/^/- /'
} >>"$OUT/results.md"

echo
cat "$OUT/results.md"
