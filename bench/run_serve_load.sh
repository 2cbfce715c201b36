#!/usr/bin/env bash
# reason serve against llama.cpp's llama-server on the same GGUF, the same threads and the same
# load, one after the other in one run: CLIENTS concurrent streaming chat clients for DURATION
# seconds each (bench/serve_load.py), MAX_TOKENS tokens per request (ignore_eos), temperature 0.6.
# Reports per server: requests, failed, incomplete streams, time to first token p50/p99, aggregate
# generated tokens/s, RSS at the start and each quarter (memory must stay flat), the exit status after
# SIGTERM. Not a test (timings).
#
#   LLAMA_SERVER=/path/to/llama-server bench/run_serve_load.sh
#
# Environment [defaults]: REASON [build/sdk/cli/reason], LLAMA_SERVER [/tmp/llama.cpp-build/bin/llama-server],
# GGUF [~/.cache/libreason-test-models/SmolLM2-135M-Instruct.Q4_1.gguf], THREADS [2], CLIENTS [32],
# DURATION [60], MAX_TOKENS [64], CTX [512 per client].
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REASON=${REASON:-$REPO/build/sdk/cli/reason}
LLAMA_SERVER=${LLAMA_SERVER:-/tmp/llama.cpp-build/bin/llama-server}
GGUF=${GGUF:-$HOME/.cache/libreason-test-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${THREADS:-2}
CLIENTS=${CLIENTS:-32}
DURATION=${DURATION:-60}
MAX_TOKENS=${MAX_TOKENS:-64}
CTX=${CTX:-512}
PORT=${PORT:-18765}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_up() {  # PORT
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server on port $1 did not start" >&2
  return 1
}
run() {  # NAME CMD...
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  wait_up "$PORT"
  echo "[$(date +%T)] $name: $CLIENTS clients x ${DURATION}s" >&2
  python3 "$REPO/bench/serve_load.py" "http://127.0.0.1:$PORT" "$pid" "$CLIENTS" "$DURATION" "$MAX_TOKENS" | sed "s/^/$name /"
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  echo "$name exit status after SIGTERM: $rc"
}
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $THREADS threads; model $(basename "$GGUF")"
run reason "$REASON" --threads "$THREADS" serve --model "$GGUF" --port "$PORT" --max-batch "$CLIENTS" --max-tokens "$MAX_TOKENS"
run llama-server "$LLAMA_SERVER" -m "$GGUF" --port "$PORT" -t "$THREADS" -np "$CLIENTS" -c $((CLIENTS * CTX)) --cont-batching
