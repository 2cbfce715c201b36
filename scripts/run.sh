#!/usr/bin/env bash
# The main job: install what is needed, build libreason and the `reason` CLI, and run DeepSeek-R1-Zero
# in miniature (examples/pipelines/r1-zero.textproto): a base model pretrained from scratch on a
# generated addition corpus, GRPO with rule-based accuracy + format rewards, held-out evaluation
# before and after, and distillation into a smaller student. Nothing is downloaded. About 5-7
# minutes on 2 cores. Rerunning resumes an interrupted run; delete OUT_DIR to start over.
# Usage: scripts/run.sh [OUT_DIR]        (default: runs/r1-zero)
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "${JOBS:-2}" --target reason_cli
OUT="${1:-runs/r1-zero}"
# OpenMP threads that wait passively leave the cores to the reward workers and the sampler.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
start=$SECONDS
./build/sdk/cli/reason pipeline run examples/pipelines/r1-zero.textproto --out "$OUT"
echo "finished in $((SECONDS - start)) s"
echo "--- the RL model on a held-out problem (greedy) ---"
./build/sdk/cli/reason generate --model "$OUT/stages/02-rl/final" --prompt $'User: What is 486 + 739?\nAssistant:' \
  --temperature 0 --max-tokens 64
