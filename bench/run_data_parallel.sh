#!/usr/bin/env bash
# Data-parallel GRPO on this machine: steps/s of one process (THREADS threads) against 2 ranks under
# mpirun (THREADS/2 threads each, the same cores), the gradient all-reduce's time and bytes per step
# from the 2-rank run's metrics (the time in collectives and the part the step waited for, the
# rest being overlapped with the backward pass; and a 2-rank run with the all-reduce after the
# backward, REASON_DIST_OVERLAP=0), and a ring all-reduce cost model for 8-64 ranks from those bytes.
# Not a test (timings); see bench/README.md and README "More than one process".
#
#   bench/run_data_parallel.sh
#
# Environment [defaults]: REASON [build/sdk/cli/reason], MPIRUN [mpirun], THREADS [2], STEPS [6],
# HIDDEN [256], LAYERS [6], BUCKET_MB [2: this 19 MB policy's gradients in about 10 buckets, as a
# 250 MB model's in 25 MiB ones], WORK [/tmp/reason-bench/dp].
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REASON=${REASON:-$REPO/build/sdk/cli/reason}
MPIRUN=${MPIRUN:-mpirun}
THREADS=${THREADS:-2}
STEPS=${STEPS:-6}
HIDDEN=${HIDDEN:-256}
LAYERS=${LAYERS:-6}
BUCKET_MB=${BUCKET_MB:-2}
WORK=${WORK:-/tmp/reason-bench/dp}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader,tcp
rm -rf "$WORK"
mkdir -p "$WORK"
config() {  # THREADS
  cat <<CFG
seed: 1
threads: $1
checkpoint_every: 1000
data_parallel { allreduce_bucket_mb: $BUCKET_MB }
prompt_format { template: "User: {prompt}\nAssistant:" }
models { name: "policy" init { hidden_size: $HIDDEN intermediate_size: $((HIDDEN * 3)) num_layers: $LAYERS num_heads: 8
         num_kv_heads: 4 max_position_embeddings: 256 tokenizer: "$REPO/examples/pipelines/assets/addition-tokenizer" } }
datasets { name: "train" synthetic { kind: PROBLEMS count: 512 } }
stages { name: "rl" grpo { model: "policy" dataset: "train" steps: $STEPS prompts_per_step: 8
         grpo { group_size: 8 aggregation: DAPO } sampling { max_new_tokens: 48 } optimizer { lr: 1e-4 } } }
CFG
}
config "$THREADS" >"$WORK/one.textproto"
config $((THREADS / 2 > 0 ? THREADS / 2 : 1)) >"$WORK/two.textproto"
echo "[$(date +%T)] 1 process, $THREADS threads" >&2
"$REASON" pipeline run "$WORK/one.textproto" --out "$WORK/one" >"$WORK/one.log" 2>&1
echo "[$(date +%T)] 2 ranks" >&2
"$MPIRUN" -np 2 --oversubscribe --bind-to none "$REASON" pipeline run "$WORK/two.textproto" --out "$WORK/two" >"$WORK/two.log" 2>&1
echo "[$(date +%T)] 2 ranks, the all-reduce after the backward (REASON_DIST_OVERLAP=0)" >&2
"$MPIRUN" -np 2 --oversubscribe --bind-to none -x REASON_DIST_OVERLAP=0 "$REASON" pipeline run "$WORK/two.textproto" \
  --out "$WORK/two-after" >"$WORK/two-after.log" 2>&1
python3 - "$WORK" "$THREADS" <<'PY'
import json, sys
work, threads = sys.argv[1], int(sys.argv[2])
def rows(d):
    return [json.loads(l) for l in open(f"{work}/{d}/stages/00-rl/metrics.jsonl")][1:]  # the first step warms up
one, two, after = rows("one"), rows("two"), rows("two-after")
def sps(r):
    return len(r) / sum(x["sample_seconds"] + x["train_seconds"] for x in r)
ar = sum(x["allreduce_seconds"] for x in two) / len(two)
busy = sum(x["allreduce_busy_seconds"] for x in two) / len(two)
mb = two[0]["allreduce_bytes"] / 1e6
buckets = two[0]["allreduce_buckets"]
train2 = sum(x["train_seconds"] for x in two) / len(two)
print(f"steps/s: 1 process x {threads} threads {sps(one):.3f}, 2 ranks x {max(1, threads // 2)} {sps(two):.3f} "
      f"(ratio {sps(two) / sps(one):.2f})")
print(f"2 ranks: {mb:.1f} MB of gradients per rank in {buckets} buckets; the step waited {ar * 1e3:.1f} ms for the "
      f"all-reduce after its backward ({100 * ar / train2:.1f}% of the training time per step, the rank imbalance "
      f"included); its collectives ran {busy * 1e3:.1f} ms in all, mostly during the backward (waiting for the other "
      f"rank's layers included)")
ar_after = sum(x["allreduce_seconds"] for x in after) / len(after)
print(f"2 ranks without the overlap: {sps(after):.3f} steps/s, the step waited {ar_after * 1e3:.1f} ms for the all-reduce")
print("ring all-reduce model, t = 2 (N-1)/N * bytes / bandwidth + 2 (N-1) * buckets * 5 us:")
for bw in (12.5, 25.0, 50.0):
    cells = []
    for n in (8, 16, 32, 64):
        t = 2 * (n - 1) / n * mb / 1e3 / bw + 2 * (n - 1) * buckets * 5e-6
        cells.append(f"N={n}: {t * 1e3:.1f} ms")
    print(f"  {bw:5.1f} GB/s: " + ", ".join(cells))
PY
