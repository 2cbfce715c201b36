package reason

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// A Go program started by mpirun runs its pipeline data-parallel, Go reward callbacks included:
// each rank scores its own share of the completions. Run by ctest's binding_go_mpi
// (bindings/go/mpi_test.sh), once alone and once under `mpirun -np 2`, with REASON_GO_MPI_OUT
// set; the script compares the two runs' final weights and the ranks' reward call counts. In a
// plain `go test` it has nothing to compare against and says so.
func TestPipelineUnderMPI(t *testing.T) {
	out := os.Getenv("REASON_GO_MPI_OUT")
	if out == "" {
		t.Skip("run by ctest's binding_go_mpi (bindings/go/mpi_test.sh), alone and under mpirun")
	}
	base := fixture(t, "pipeline/addition-base")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "p.textproto")
	text := fmt.Sprintf(`seed: 3
threads: 1
prompt_format { template: "User: {prompt}\nAssistant:" }
models { name: "policy" path: %q }
datasets { name: "train" synthetic { kind: PROBLEMS count: 64 } }
stages { name: "rl" grpo { model: "policy" dataset: "train" steps: 2 prompts_per_step: 4
  grpo { group_size: 4 } sampling { max_new_tokens: 32 } optimizer { lr: 1e-5 }
  reward { terms { kind: FORMAT } terms { callback: "go_addition" weight: 1 } } } }
`, base)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	reward := func(prompt, completion, answer string) float32 {
		calls.Add(1)
		if strings.Contains(completion, `\boxed{`+answer+`}`) {
			return 1
		}
		return 0
	}
	if _, err := RunPipeline(cfg, out, PipelineOptions{Rewards: map[string]RewardFunc{"go_addition": reward}}); err != nil {
		t.Fatal(err)
	}
	// The calls this process made, in a file of its own (the script adds them up).
	rank := os.Getenv("OMPI_COMM_WORLD_RANK")
	if rank == "" {
		rank = "alone"
	}
	note := filepath.Join(filepath.Dir(out), filepath.Base(out)+".calls."+rank)
	if err := os.WriteFile(note, []byte(fmt.Sprint(calls.Load())), 0o644); err != nil {
		t.Fatal(err)
	}
}
