#!/usr/bin/env bash
# ctest binding_go_mpi: a Go program under `mpirun -np 2` runs its pipeline data-parallel. The Go
# test TestPipelineUnderMPI (mpi_test.go: GRPO with a Go reward callback) is built once, run alone
# and run by 2 ranks; the two runs' final weights agree within 1e-5 of each tensor's largest
# value, the 2-rank run says it was data-parallel, and each rank's Go reward scored half the
# completions.
# Usage (in the staged Go package, with the binding's environment): mpi_test.sh GO MPIRUN COMPARE_PY
set -euo pipefail
GO=$1
MPIRUN=$2
COMPARE=$3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader,tcp
fail() { echo "FAIL: $*"; exit 1; }
"$GO" test -c -o "$WORK/reason.test" . || fail "go test -c"
run() {  # OUT [mpirun args...]
  local out=$1
  shift
  REASON_GO_MPI_OUT="$WORK/$out" "$@" "$WORK/reason.test" -test.run '^TestPipelineUnderMPI$' -test.v -test.count=1 \
    >"$WORK/$out.log" 2>&1 || { cat "$WORK/$out.log"; fail "$out"; }
  grep -q -- "--- PASS: TestPipelineUnderMPI" "$WORK/$out.log" || { cat "$WORK/$out.log"; fail "$out: the test did not pass"; }
}
run one
run two "$MPIRUN" -np 2 --oversubscribe --bind-to none -x REASON_GO_MPI_OUT
grep -q '"ranks":2' "$WORK/two/stages/00-rl/metrics.jsonl" || fail "the mpirun run was not data-parallel"
python3 "$COMPARE" "$WORK/two/stages/00-rl/final/model.safetensors" "$WORK/one/stages/00-rl/final/model.safetensors" 1e-5 ||
  fail "2 ranks' weights differ from one process's"
alone=$(cat "$WORK/one.calls.alone")
r0=$(cat "$WORK/two.calls.0")
r1=$(cat "$WORK/two.calls.1")
[ "$alone" = 32 ] || fail "alone: $alone reward calls, want 32 (2 steps x 4 prompts x 4 completions)"
[ "$r0" = 16 ] && [ "$r1" = 16 ] || fail "ranks made $r0 and $r1 reward calls, want 16 each"
echo "OK: 2 ranks (Go rewards 16 + 16 calls) = 1 process (32 calls), weights within 1e-5"
