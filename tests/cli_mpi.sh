#!/usr/bin/env bash
# `mpirun -np 2 reason pipeline run`: a pipeline of every stage kind (SFT, GRPO with DAPO dynamic
# sampling, rejection sampling, logit distillation, eval) run data-parallel by 2 ranks ends with the
# weights of the same run in one process (within 1e-5 of each tensor's largest value; lr 1e-5 for
# GRPO, as GRPO runs use: AdamW turns f32 rounding of near-zero gradient elements into steps of up
# to lr) and the same samples and evaluation; killing a rank mid-stage ends the job with an error
# instead of a hang, and rerunning resumes from the last checkpoint to the weights of an
# uninterrupted run, bit for bit.
# Usage: cli_mpi.sh REASON MPIRUN FIXTURES_DIR
set -euo pipefail
REASON=$1
MPIRUN=$2
FIX=$3
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader,tcp
MPI=("$MPIRUN" -np 2 --oversubscribe --bind-to none)
BASE="$FIX/pipeline/addition-base"
config() {  # RL_STEPS
cat <<CFG
seed: 3
threads: 1
checkpoint_every: 2
prompt_format { template: "User: {prompt}\nAssistant:" }
models { name: "policy" path: "$BASE" }
models { name: "student" init { hidden_size: 32 intermediate_size: 64 num_layers: 2 num_heads: 4 num_kv_heads: 2
         max_position_embeddings: 256 tokenizer: "$BASE" } }
models { name: "teacher" path: "$BASE" }
datasets { name: "train" synthetic { kind: PROBLEMS count: 64 } }
datasets { name: "corpus" synthetic { kind: CORPUS count: 32 } }
datasets { name: "heldout" synthetic { kind: PROBLEMS count: 12 held_out: true } }
stages { name: "sft" sft { model: "policy" dataset: "corpus" steps: 3 batch_size: 6 micro_batch: 2 optimizer { lr: 1e-4 } } }
stages { name: "rl" grpo { model: "policy" dataset: "train" steps: $1 prompts_per_step: 4 dynamic_sampling: true
         grpo { group_size: 4 aggregation: DAPO epsilon_high: 0.28 } sampling { max_new_tokens: 32 } optimizer { lr: 1e-5 } } }
stages { name: "rs" rejection_sampling { model: "policy" dataset: "train" samples_per_prompt: 2 max_prompts: 10
         sampling { max_new_tokens: 32 } } }
stages { name: "kd" distill { teacher: "teacher" student: "student" dataset: "corpus" mode: LOGIT steps: 2 batch_size: 4
         optimizer { lr: 1e-4 } } }
stages { name: "eval" eval { model: "policy" dataset: "heldout" samples: 2 sampling { max_new_tokens: 32 } } }
CFG
}
config 3 >"$WORK/dp.textproto"
fail() { echo "FAIL: $*"; exit 1; }
"$REASON" pipeline run "$WORK/dp.textproto" --out "$WORK/one" >"$WORK/one.log" 2>&1 || { cat "$WORK/one.log"; fail "single process"; }
"${MPI[@]}" "$REASON" pipeline run "$WORK/dp.textproto" --out "$WORK/two" >"$WORK/two.log" 2>&1 ||
  { cat "$WORK/two.log"; fail "2 ranks"; }
grep -q "data-parallel run: 2 ranks" "$WORK/two.log" || fail "the run was not data-parallel"
for s in 00-sft 01-rl 03-kd; do
  python3 "$HERE/compare_safetensors.py" "$WORK/two/stages/$s/final/model.safetensors" \
    "$WORK/one/stages/$s/final/model.safetensors" 1e-5 || fail "stage $s: weights differ"
done
cmp -s "$WORK/one/stages/02-rs/all_samples.jsonl" "$WORK/two/stages/02-rs/all_samples.jsonl" || fail "rejection samples differ"
python3 - "$WORK/one" "$WORK/two" <<'PY' || fail "metrics differ"
import json, sys
one, two = sys.argv[1:]
rows = lambda d: [json.loads(l) for l in open(f"{d}/stages/01-rl/metrics.jsonl")]
for a, b in zip(rows(one), rows(two)):
    for k in ("reward", "accuracy", "response_length", "groups", "dropped_groups", "sampled_groups", "generated_tokens"):
        assert abs(a[k] - b[k]) <= 1e-6 * max(1, abs(a[k])), (a["step"], k, a[k], b[k])
    for k in ("loss", "grad_norm", "entropy"):
        assert abs(a[k] - b[k]) <= 1e-4 * max(1, abs(a[k])), (a["step"], k, a[k], b[k])
assert b["ranks"] == 2 and len(rows(two)) == 3
e1, e2 = (json.load(open(f"{d}/stages/04-eval/eval.json")) for d in (one, two))
assert e1["problems_detail"] == e2["problems_detail"], "eval samples differ"
assert e1["pass@1"] == e2["pass@1"]
PY

# ZeRO-1 (AdamW state sharded over the ranks, gathered by rank 0 for checkpoints): the same weights.
{ config 3; echo "data_parallel { zero1: true allreduce_bucket_mb: 1 }"; } >"$WORK/zero1.textproto"
"${MPI[@]}" "$REASON" pipeline run "$WORK/zero1.textproto" --out "$WORK/zero1" >"$WORK/zero1.log" 2>&1 ||
  { cat "$WORK/zero1.log"; fail "2 ranks, ZeRO-1"; }
for s in 00-sft 01-rl 03-kd; do
  python3 "$HERE/compare_safetensors.py" "$WORK/zero1/stages/$s/final/model.safetensors" \
    "$WORK/one/stages/$s/final/model.safetensors" 1e-5 || fail "stage $s with ZeRO-1: weights differ"
done

# A rank killed mid-stage: the job ends with an error (no hang), and the rerun resumes to the weights
# of an uninterrupted 2-rank run (with ZeRO-1: the checkpoint holds both ranks' AdamW state). A longer GRPO stage, so that the kill lands inside it: rank 1 is
# killed once the stage has written a checkpoint.
{ config 40; echo "data_parallel { zero1: true }"; } >"$WORK/long.textproto"  # the resume reads a gathered state
"${MPI[@]}" "$REASON" pipeline run "$WORK/long.textproto" --out "$WORK/long" >"$WORK/long.log" 2>&1 ||
  { cat "$WORK/long.log"; fail "2 ranks, 40 GRPO steps"; }
"${MPI[@]}" "$REASON" pipeline run "$WORK/long.textproto" --out "$WORK/killed" >"$WORK/kill.log" 2>&1 &
job=$!
for _ in $(seq 3000); do [ -e "$WORK/killed/stages/01-rl/ckpt/DONE" ] || [ -e "$WORK/killed/stages/01-rl/ckpt" ] && break; sleep 0.01; done
victim=""
for p in $(pgrep -f "pipeline run $WORK/long.textproto" || true); do
  tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' && victim=$p
done
[ -n "$victim" ] || { wait $job; fail "rank 1 not found while the GRPO stage ran"; }
kill -9 "$victim"
rc=0
timeout 120 tail --pid=$job -f /dev/null || rc=124
[ "$rc" != 124 ] || { kill $job; fail "the job hung after rank 1 was killed"; }
wait $job && fail "the job survived a killed rank" || true
grep -Eq "exited on signal 9|\[\[[0-9]+,1\],1\]|rank 1" "$WORK/kill.log" || { cat "$WORK/kill.log"; fail "the error does not name the rank"; }
[ ! -e "$WORK/killed/stages/01-rl/stage.json" ] || fail "the kill came after the stage ended"
"${MPI[@]}" "$REASON" pipeline run "$WORK/long.textproto" --out "$WORK/killed" >"$WORK/resume.log" 2>&1 ||
  { cat "$WORK/resume.log"; fail "resume"; }
grep -q "resuming" "$WORK/resume.log" || fail "the rerun did not resume"
python3 "$HERE/compare_safetensors.py" "$WORK/killed/stages/01-rl/final/model.safetensors" \
  "$WORK/long/stages/01-rl/final/model.safetensors" 0 || fail "resumed and uninterrupted runs differ"
echo OK
