#!/usr/bin/env bash
# libreason vs PyTorch on the CPU: SFT and GRPO training-step throughput of the same random-weight
# ~25M-parameter Qwen2-shaped model in f32, at 2 and 1 threads. A benchmark, not a test; see
# bench/README.md.
#
#   bench/run_train_vs_torch.sh
#
# Steps:
#   1. build reason_train_bench in $REASON_BUILD (configured if missing; -j $JOBS)
#   2. write the model to $MODEL_DIR if missing (train_bench_torch.py --make-model)
#   3. for each thread count in $THREADS and each mode in $MODES, run train_bench_torch.py and
#      reason_train_bench with the same shapes, steps and warm-up ($ROUNDS times, alternating)
#   4. print a markdown table and write it to bench/out/$RESULTS.md (raw JSON and a log
#      next to it); with PROFILE=auto, add reason_train_bench --breakdown (time per phase of a
#      step) for every row whose ratio is below 1
#
# Environment (defaults in brackets):
#   REASON_BUILD [<repo>/build-tbench]   BENCH_WORK [/tmp/reason-train-bench]
#   MODEL_DIR    [$BENCH_WORK/qwen2-25m-random]
#   PYTHON       [/work/venv/bin/python] with torch and transformers (v5 or v4)
#   BATCH [8]  SEQ [128]  STEPS [5]  WARMUP [2]  THREADS ["2 1"]  MODES ["sft grpo"]
#   ATTN [eager]    PyTorch's attention: eager or sdpa (its fused kernel; the peer for long sequences)
#   RESULTS [train_results]  name of the markdown file under bench/out
#   ROUNDS [1]      runs per engine, mode and thread count; the table keeps the least disturbed
#   LOAD_MAX [0.5]  before the first run, wait (up to QUIET_WAIT s) for a 1-minute load average
#                   below this
#   QUIET_WAIT [300] before each run, wait up to this many seconds for idle CPUs (other
#                   processes using at most 0.3 cores over a 2 s sample)
#   PROFILE [auto]  auto: --breakdown where the ratio is below 1; 1: always; 0: never
#   JOBS [1]        build parallelism
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REASON_BUILD=${REASON_BUILD:-$REPO/build-tbench}
BENCH_WORK=${BENCH_WORK:-/tmp/reason-train-bench}
MODEL_DIR=${MODEL_DIR:-$BENCH_WORK/qwen2-25m-random}
PYTHON=${PYTHON:-/work/venv/bin/python}
BATCH=${BATCH:-8}
SEQ=${SEQ:-128}
STEPS=${STEPS:-5}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-"2 1"}
MODES=${MODES:-"sft grpo"}
ATTN=${ATTN:-eager}
RESULTS=${RESULTS:-train_results}
ROUNDS=${ROUNDS:-1}
LOAD_MAX=${LOAD_MAX:-0.5}
QUIET_WAIT=${QUIET_WAIT:-300}
PROFILE=${PROFILE:-auto}
JOBS=${JOBS:-1}
OUT=$REPO/bench/out
mkdir -p "$OUT" "$BENCH_WORK"
LOG=$OUT/train_run.log
: >"$LOG"

case "$BENCH_WORK/" in "$REPO"/*) echo "BENCH_WORK must be outside the project tree" >&2; exit 2 ;; esac
case "$MODEL_DIR/" in "$REPO"/*) echo "MODEL_DIR must be outside the project tree" >&2; exit 2 ;; esac

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$LOG" >&2; }
timed() {  # timed NAME CMD...: runs CMD with its output in the log
  local name=$1 t0
  shift
  t0=$(date +%s)
  if ! "$@" >>"$LOG" 2>&1; then
    say "FAILED: $name (see $LOG)"
    tail -n 30 "$LOG" >&2
    exit 1
  fi
  say "$name: $(($(date +%s) - t0)) s"
}

# 1. reason_train_bench -----------------------------------------------------------------------
if [ ! -f "$REASON_BUILD/CMakeCache.txt" ]; then
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  timed "configure libreason" cmake -S "$REPO" -B "$REASON_BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DREASON_TESTS=OFF -DREASON_CUDA=OFF
fi
timed "build reason_train_bench" nice cmake --build "$REASON_BUILD" --target reason_train_bench -j "$JOBS"
REASON_TRAIN_BENCH=$REASON_BUILD/bench/reason_train_bench

# 2. model ------------------------------------------------------------------------------------
if [ ! -f "$MODEL_DIR/model.safetensors" ]; then
  timed "make model" "$PYTHON" "$REPO/bench/train_bench_torch.py" --make-model "$MODEL_DIR"
fi

# 3. runs -------------------------------------------------------------------------------------
HZ=$(getconf CLK_TCK)
NCPU=$(nproc)
busy_jiffies() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
idle_cores() {  # idle cores over a 2 s sample
  local b0 b1
  b0=$(busy_jiffies); sleep 2; b1=$(busy_jiffies)
  awk -v n="$NCPU" -v d=$((b1 - b0)) -v hz="$HZ" 'BEGIN{printf "%.2f", n - d / hz / 2}'
}
loadavg1() { cut -d' ' -f1 /proc/loadavg; }
wait_load() {  # until the 1-minute load average is below LOAD_MAX (at most QUIET_WAIT s)
  local t0=$(date +%s)
  while awk -v l="$(loadavg1)" -v m="$LOAD_MAX" 'BEGIN{exit !(l >= m)}'; do
    if [ $(($(date +%s) - t0)) -ge "$QUIET_WAIT" ]; then
      say "load average still $(loadavg1) after ${QUIET_WAIT}s; running anyway"
      return 0
    fi
    sleep 5
  done
}
wait_quiet() {
  local t0 idle
  t0=$(date +%s)
  while :; do
    idle=$(idle_cores)
    awk -v i="$idle" -v n="$NCPU" 'BEGIN{exit !(i >= n - 0.3)}' && return 0
    if [ $(($(date +%s) - t0)) -ge "$QUIET_WAIT" ]; then
      say "CPUs still busy after ${QUIET_WAIT}s ($idle idle cores); running anyway"
      return 0
    fi
  done
}
bench_run() {  # bench_run NAME OUTFILE CMD...: stdout to OUTFILE; others' load to OUTFILE.load
  local name=$1 outfile=$2 b0 b1 tf la
  shift 2
  wait_quiet
  la=$(loadavg1)
  tf=$(mktemp)
  b0=$(busy_jiffies)
  local TIMEFORMAT='%R %U %S'
  if ! { time "$@" >"$outfile" 2>>"$LOG"; } 2>"$tf"; then
    say "FAILED: $name (see $LOG)"; tail -n 30 "$LOG" >&2; exit 1
  fi
  b1=$(busy_jiffies)
  read -r real user sys <"$tf"
  rm -f "$tf"
  awk -v d=$((b1 - b0)) -v hz="$HZ" -v r="$real" -v u="$user" -v s="$sys" -v la="$la" \
    'BEGIN{o = (d / hz - u - s) / r; if (o < 0) o = 0; printf "%.2f %s\n", o, la}' >"$outfile.load"
  say "$name: ${real} s (other processes: $(cut -d' ' -f1 "$outfile.load") cores; load average before: $la)"
}
rm -f "$OUT"/train-*.json "$OUT"/train-*.json.load "$OUT"/train-breakdown-*
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
say "machine: $cpu, $NCPU cpus; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
wait_load
say "starting runs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
common=(--model "$MODEL_DIR" --batch "$BATCH" --seq-len "$SEQ" --steps "$STEPS" --warmup "$WARMUP")
for round in $(seq 1 "$ROUNDS"); do
  for t in $THREADS; do
    for mode in $MODES; do
      bench_run "pytorch $mode t=$t round $round" "$OUT/train-torch-$mode-t$t-r$round.json" \
        env OMP_NUM_THREADS="$t" MKL_NUM_THREADS="$t" "$PYTHON" "$REPO/bench/train_bench_torch.py" \
        --threads "$t" --mode "$mode" --attn "$ATTN" "${common[@]}"
      bench_run "libreason $mode t=$t round $round" "$OUT/train-reason-$mode-t$t-r$round.json" \
        env OMP_NUM_THREADS="$t" "$REASON_TRAIN_BENCH" --threads "$t" --mode "$mode" "${common[@]}"
    done
  done
done
say "runs done; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# 4. table ------------------------------------------------------------------------------------
table=$("$PYTHON" - "$OUT" "$ROUNDS" "$THREADS" "$MODES" <<'EOF'
import json, sys
out, rounds, threads, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()

def pick(engine, mode, t):
    """The round with the least load from other processes (then the fastest)."""
    runs = []
    for r in range(1, rounds + 1):
        base = f"{out}/train-{engine}-{mode}-t{t}-r{r}.json"
        other, la = open(base + ".load").read().split()
        d = json.load(open(base))
        runs.append((round(float(other), 1), -d["tokens_per_s"], r, d, float(other), float(la)))
    runs.sort(key=lambda x: x[:3])
    return runs[0][3:]

rows, low = [], []
med = lambda d: d["tokens_per_step"] / (d["ms_per_step_median"] / 1e3)
for t in threads:
    for mode in modes:
        p, po, pla = pick("torch", mode, t)
        r, ro, rla = pick("reason", mode, t)
        ratio, ratio_med = r["tokens_per_s"] / p["tokens_per_s"], med(r) / med(p)
        for name, d, o, la, rat, rat_med in (("PyTorch", p, po, pla, "", ""),
                                             ("libreason", r, ro, rla, f"**{ratio:.2f}**", f"{ratio_med:.2f}")):
            rows.append(f"| {name} | {mode} | {t} | {d['tokens_per_s']:.1f} | {d['ms_per_step']:.1f} ± "
                        f"{d['ms_per_step_stddev']:.1f} | {d['ms_per_step_median']:.1f} | {rat} | {rat_med} "
                        f"| {d['first_loss']:.6f} | {o:.2f} | {la:.2f} |")
        if ratio < 1.0:
            low.append(f"{mode}:{t}")
print("| engine | mode | threads | tokens/s | ms/step (mean ± sd) | ms/step (median) | ratio libreason/PyTorch "
      "| ratio of medians | first-step loss | other load (cores) | load avg before |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
print("\n".join(rows))
print("LOW " + " ".join(low))
EOF
)
low=$(printf '%s\n' "$table" | sed -n 's/^LOW *//p')
table=$(printf '%s\n' "$table" | grep -v '^LOW')
reason_commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$REPO" status --porcelain --untracked-files=no -- sdk kernels 2>/dev/null | wc -l)
torch_version=$("$PYTHON" -c 'import torch, transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}")')
n_params=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["params"])' "$(ls "$OUT"/train-reason-*-r1.json | head -1)")
{
  echo "# libreason vs PyTorch, CPU training steps, f32"
  echo
  echo "- model: random-weight Qwen2-shaped (hidden 384, 8 layers, 6 heads / 2 KV heads, intermediate 1024,"
  echo "  vocab 32768, tied embeddings), $n_params parameters, f32, $MODEL_DIR"
  echo "- batch $BATCH x $SEQ tokens per step (sft: first quarter prompt; grpo: $((BATCH / 4)) groups of 4,"
  echo "  prompt $((SEQ / 4)) + completion $((SEQ - SEQ / 4))); $WARMUP warm-up + $STEPS timed steps;"
  echo "  tokens/s = $((BATCH * SEQ)) tokens / mean step time (the ratio's basis); the ratio of the median"
  echo "  step times is less sensitive to a step that another process disturbed"
  echo "- libreason $reason_commit$([ "$dirty" -gt 0 ] && echo " (+ $dirty uncommitted files under sdk/ kernels/)") (reason_train_bench);"
  echo "  $torch_version (train_bench_torch.py, $ATTN attention, AdamW default implementation)"
  echo "- machine: $cpu, $NCPU cpus, shared; \"other load\" = cores used by other processes during that run"
  echo "- $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "$table"
} >"$OUT/$RESULTS.md"

# Time per phase where libreason is behind (or always / never, per PROFILE).
prof=""
case "$PROFILE" in
  1) for t in $THREADS; do for m in $MODES; do prof="$prof $m:$t"; done; done ;;
  auto) prof=$low ;;
esac
for mt in $prof; do
  mode=${mt%%:*}
  t=${mt##*:}
  wait_quiet
  timed "reason_train_bench --breakdown $mode t=$t" sh -c "OMP_NUM_THREADS=$t '$REASON_TRAIN_BENCH' --threads $t \
    --mode $mode --model '$MODEL_DIR' --batch $BATCH --seq-len $SEQ --steps $STEPS --warmup $WARMUP --breakdown \
    > '$OUT/train-breakdown-$mode-t$t.json' 2> '$OUT/train-breakdown-$mode-t$t.txt'"
  {
    echo
    echo "## reason_train_bench --breakdown, $mode, $t thread(s)"
    echo
    echo '```'
    grep '^breakdown' "$OUT/train-breakdown-$mode-t$t.txt"
    echo '```'
  } >>"$OUT/$RESULTS.md"
done

echo
cat "$OUT/$RESULTS.md"
