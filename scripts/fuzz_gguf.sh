#!/usr/bin/env bash
# scripts/fuzz.sh for the GGUF parser and dequantiser: scripts/fuzz_gguf.sh [SECONDS] [WORK]
exec "$(dirname "${BASH_SOURCE[0]}")/fuzz.sh" fuzz_gguf "$@"
