#!/usr/bin/env bash
# Peak RSS of one GRPO step with LoRA, QLoRA and full fine-tuning on the Qwen2.5-0.5B / 1.5B
# shapes (random weights): `reason pipeline run` under /usr/bin/time -v. One step samples
# 2 prompts x 4 completions of up to 64 tokens and trains on them. Not part of the test suite.
#
# Usage: bench/run_lora_memory.sh [BUILD_DIR]   env: BENCH_WORK [/tmp/reason-bench], PYTHON
# [/work/venv/bin/python] (torch + transformers, for the random checkpoints), CASES (default
# below; the 1.5B full fine-tune is left out: weights, gradients and AdamW's two moments alone
# are 16 bytes x 1.54e9 parameters = 24.7 GB). Writes bench/out/lora_memory.md.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$REPO/build}
RC=$BUILD/sdk/cli/reason
BENCH_WORK=${BENCH_WORK:-/tmp/reason-bench}
PYTHON=${PYTHON:-/work/venv/bin/python}
CASES=${CASES:-"0.5b:bf16:full 0.5b:bf16:lora 1.5b:bf16:lora 1.5b:Q8_0:qlora"}
mkdir -p "$BENCH_WORK" "$REPO/bench/out"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
out=$REPO/bench/out/lora_memory.md
{
  echo "| shape | file | trains | peak RSS | wall |"
  echo "|---|---|---|---:|---:|"
} >"$out"
for c in $CASES; do
  IFS=: read -r shape type mode <<<"$c"
  ck=$BENCH_WORK/qwen2.5-$shape-random
  [ -f "$ck/model.safetensors" ] || "$PYTHON" "$REPO/bench/make_random_checkpoint.py" "$ck" --shape "$shape" >&2
  f=$BENCH_WORK/qwen2.5-$shape-$type.gguf
  if [ ! -f "$f" ]; then
    case $type in
      bf16) "$RC" convert "$ck" --out "$f" --type bf16 >&2 ;;
      Q8_0) "$RC" quantize "$ck" --out "$f" --type q8_0 >&2 ;;
      *) echo "unknown type $type" >&2; exit 2 ;;
    esac
  fi
  quant=""; lora=""
  [ "$mode" = qlora ] && quant='quantize: "stored"'
  [ "$mode" != full ] && lora='lora { rank: 16 alpha: 32 }'
  cfg=$WORK/$shape-$type-$mode.textproto
  cat >"$cfg" <<CFG
seed: 1
threads: 2
checkpoint_every: 1000
prompt_format { template: "User: {prompt}\nAssistant:" }
models { name: "policy" path: "$f" $quant }
datasets { name: "train" synthetic { kind: PROBLEMS count: 16 } }
stages { name: "rl" grpo { model: "policy" dataset: "train" steps: 1 prompts_per_step: 2
  grpo { group_size: 4 } sampling { max_new_tokens: 64 } optimizer { lr: 1e-5 } $lora } }
CFG
  /usr/bin/time -v "$RC" pipeline run "$cfg" --out "$WORK/out-$c" --no-progress >"$WORK/log" 2>"$WORK/time"
  rss=$(awk '/Maximum resident/ {printf "%.2f GB", $6 / 1e6}' "$WORK/time")
  wall=$(awk '/Elapsed/ {print $8}' "$WORK/time")
  echo "| Qwen2.5-$shape | $type | $mode | $rss | $wall |" | tee -a "$out"
done
echo "wrote $out"
