#!/usr/bin/env bash
# The main job: install what is needed, build libreason and the `reason` CLI, and generate a
# completion from a Hugging Face model directory.
# Usage: scripts/run.sh [MODEL_DIR] [PROMPT]   (default: the bundled tiny Qwen2 test model)
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "${JOBS:-2}" --target reason_cli
MODEL="${1:-tests/fixtures/dense/qwen2_tied}"
PROMPT="${2:-What is 12 + 30?}"
./build/sdk/cli/reason info --model "$MODEL"
echo "--- generate (chat template, DeepSeek-R1 sampling, seed 0) ---"
./build/sdk/cli/reason generate --model "$MODEL" --prompt "$PROMPT" --chat --r1 --max-tokens "${MAX_TOKENS:-64}" --seed 0
