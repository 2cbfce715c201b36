package reason

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"libreason.org/go/reason/internal/native"
)

// A pipeline whose GRPO reward is a Go func: the library calls it from its reward worker
// threads (native threads, several at once). The reward counts calls, the native threads it
// ran on and the calls in progress at once.
func TestConcurrentPipelineRewards(t *testing.T) {
	base := fixture(t, "pipeline/addition-base")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "p.textproto")
	const steps, prompts, group = 2, 2, 4
	text := fmt.Sprintf(`seed: 3
threads: 1
prompt_format { template: "User: {prompt}\nAssistant:" }
models { name: "policy" path: %q }
datasets { name: "train" synthetic { kind: PROBLEMS count: 64 } }
stages { name: "rl" grpo { model: "policy" dataset: "train" steps: %d prompts_per_step: %d
  grpo { group_size: %d } sampling { max_new_tokens: 64 }
  reward { terms { kind: FORMAT } terms { callback: "go_addition" weight: 1 } } } }
`, base, steps, prompts, group)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var calls, correct, withAnswer atomic.Int64
	var mu sync.Mutex
	threads := map[int]bool{}
	inFlight, maxInFlight := 0, 0
	myThread := syscall.Gettid()
	reward := func(prompt, completion, answer string) float32 {
		calls.Add(1)
		tid := syscall.Gettid() // the native worker thread this callback runs on
		mu.Lock()
		threads[tid] = true
		inFlight++
		if inFlight > maxInFlight {
			maxInFlight = inFlight
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // long enough for the workers' calls to overlap
		mu.Lock()
		inFlight--
		mu.Unlock()
		if strings.HasPrefix(prompt, "What is ") && answer != "" { // the dataset's prompt, before the template

			withAnswer.Add(1)
		}
		if strings.Contains(completion, `\boxed{`+answer+`}`) {
			correct.Add(1)
			return 1
		}
		return 0
	}
	summary, err := RunPipeline(cfg, filepath.Join(dir, "out"), PipelineOptions{Rewards: map[string]RewardFunc{"go_addition": reward}})
	if err != nil {
		t.Fatal(err)
	}
	want := int64(steps * prompts * group)
	if calls.Load() != want || withAnswer.Load() != want {
		t.Errorf("reward called %d times (%d with prompt and answer), want %d", calls.Load(), withAnswer.Load(), want)
	}
	if len(threads) < 2 || threads[myThread] {
		t.Errorf("reward ran on native threads %v (test thread %d)", threads, myThread)
	}
	if maxInFlight < 2 {
		t.Errorf("at most %d reward calls at once", maxInFlight)
	}
	if !strings.Contains(summary, `"reward_failures"`) {
		t.Errorf("summary %s", summary)
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "stages", "00-rl", "final", "model.safetensors")); err != nil {
		t.Error(err)
	}
	t.Logf("%d calls on %d native threads, up to %d at once, %d correct", calls.Load(), len(threads), maxInFlight, correct.Load())

	// Without the Go reward registered, the config is refused before any work, naming it.
	_, err = RunPipeline(cfg, filepath.Join(dir, "out2"), PipelineOptions{})
	if err == nil || !strings.Contains(err.Error(), "callback 'go_addition' is not registered") {
		t.Errorf("unregistered callback: %v", err)
	}
}

// Several goroutines generate with callbacks on one model at once: each sees its own tokens,
// and the results equal a sequential run with the same seed.
func TestConcurrentGenerateWithCallbacks(t *testing.T) {
	m := loadModel(t, "dense/qwen2_tied")
	opts := SamplingOptions{Temperature: 0.9, Seed: 5, MaxNewTokens: 16, IgnoreEOS: true}
	want, err := m.Generate("The answer is", opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 4, 3
	var wg sync.WaitGroup
	var callbacks atomic.Int64
	errs := make(chan error, workers*rounds)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				var seen []int32
				c, err := m.Generate("The answer is", opts, func(tk Token) bool {
					callbacks.Add(1)
					seen = append(seen, tk.ID)
					return true
				})
				switch {
				case err != nil:
					errs <- err
				case fmt.Sprint(c.TokenIDs) != fmt.Sprint(want.TokenIDs):
					errs <- fmt.Errorf("worker %d: %v, want %v", w, c.TokenIDs, want.TokenIDs)
				case fmt.Sprint(seen) != fmt.Sprint(c.TokenIDs):
					errs <- fmt.Errorf("worker %d: callback saw %v, completion %v", w, seen, c.TokenIDs)
				}
				// A pull stream at the same time on the same model.
				s, err := m.Stream("The answer is", opts)
				if err != nil {
					errs <- err
					continue
				}
				toks, err := s.Collect(nil)
				s.Close()
				if err != nil || len(toks) != len(want.TokenIDs) || toks[0].ID != want.TokenIDs[0] {
					errs <- fmt.Errorf("worker %d stream: %d tokens, %v", w, len(toks), err)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := callbacks.Load(); got != int64(workers*rounds*len(want.TokenIDs)) {
		t.Errorf("%d callbacks", got)
	}
}

// Generation and training steps on one model from several goroutines: steps wait for the
// generations in progress and hold off new ones (no crash, no torn weights).
func TestConcurrentGenerateAndTrain(t *testing.T) {
	m := loadModel(t, "dense/qwen2_tied")
	tr, err := NewTrainer(m, nil, "optimizer { lr: 1e-3 }")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < 4; r++ {
				_, err := m.Generate("The answer is", SamplingOptions{Temperature: 1, Seed: int64(w), MaxNewTokens: 8, IgnoreEOS: true},
					func(Token) bool { return true })
				if err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := 0; r < 4; r++ {
			if _, err := tr.SFTStep([][]int32{{11, 12, 13, 14}}, [][]bool{{false, true, true, true}}); err != nil {
				errs <- err
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Objects created and closed many times, and dropped without Close (finalizers): under -asan
// the leak check at exit proves every native object was freed.
func TestLeakLifecycle(t *testing.T) {
	for i := 0; i < 3; i++ {
		m := loadModel(t, "dense/qwen2_tied")
		tok, _ := m.Tokenizer()
		ids, _ := tok.Encode("Let me think")
		if _, err := tok.Decode(ids); err != nil {
			t.Fatal(err)
		}
		s, err := m.Stream("The answer is", SamplingOptions{MaxNewTokens: 50, IgnoreEOS: true})
		if err != nil {
			t.Fatal(err)
		}
		s.Next() // left open: Close of the model closes it
		tr, err := NewTrainer(m, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		_ = tr // left open too
		if _, err := LoadModel("/nonexistent/model"); err == nil {
			t.Fatal("bad path loaded")
		}
		m.Close()
	}
	// Dropped without Close: the finalizers free them.
	func() {
		st, _ := LoadTokenizer(fixture(t, "dense/qwen2_tied"))
		_ = st
	}()
	for i := 0; i < 5; i++ {
		collectGarbage()
	}
}

// TestLeakCanary leaks one native vector on purpose when REASON_GO_LEAK_CANARY is set: the
// binding_go_asan_canary test expects LeakSanitizer to report it, which proves the leak check
// of binding_go_asan is live.
func TestLeakCanary(t *testing.T) {
	if os.Getenv("REASON_GO_LEAK_CANARY") == "" {
		t.Skip("REASON_GO_LEAK_CANARY not set")
	}
	v := native.NewIntVector__SWIG_0()
	v.Add(42) // never deleted
}

// A Go reward that hangs past the config's deadline: the call is abandoned (scored 0, counted
// as timed out), RunPipeline returns, and the native director stays alive until the hung call
// returns, then is freed (the leak check under -asan sees it freed).
func TestConcurrentPipelineRewardDeadline(t *testing.T) {
	base := fixture(t, "pipeline/addition-base")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "p.textproto")
	text := fmt.Sprintf(`seed: 4
threads: 1
prompt_format { template: "User: {prompt}\nAssistant:" }
models { name: "policy" path: %q }
datasets { name: "train" synthetic { kind: PROBLEMS count: 16 } }
stages { name: "rl" grpo { model: "policy" dataset: "train" steps: 1 prompts_per_step: 1
  grpo { group_size: 4 } sampling { max_new_tokens: 32 }
  reward { deadline_ms: 100 terms { callback: "slow" } } } }
`, base)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	hung := make(chan struct{})
	finished := make(chan struct{})
	slow := func(prompt, completion, answer string) float32 {
		if calls.Add(1) == 1 {
			<-hung // hangs until the pipeline has returned
			defer close(finished)
			return 1
		}
		return 0.5
	}
	summary, err := RunPipeline(cfg, filepath.Join(dir, "out"), PipelineOptions{Rewards: map[string]RewardFunc{"slow": slow}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(summary, "timed out") && !strings.Contains(summary, `"reward_failures": 1`) {
		t.Logf("summary: %s", summary)
	}
	releaseAbandonedCall(t, hung, finished)
	if calls.Load() != 4 {
		t.Errorf("%d reward calls, want 4", calls.Load())
	}
}

// toolConfig writes a GRPO pipeline whose completions call the raw tool "calc" at every "="
// (the pretrained addition model writes "=" in its worked sums; an empty opening tag hands the
// tool the text so far), scored by the Go reward "seen".
func toolConfig(t *testing.T, dir string, steps int, deadlineMs int) string {
	cfg := filepath.Join(dir, "tools.textproto")
	text := fmt.Sprintf(`seed: 5
threads: 1
prompt_format { template: "User: {prompt}\nAssistant:" }
models { name: "policy" path: %q }
datasets { name: "train" synthetic { kind: PROBLEMS count: 64 } }
stages { name: "rl" grpo { model: "policy" dataset: "train" steps: %d prompts_per_step: 2
  grpo { group_size: 4 } sampling { max_new_tokens: 64 }
  reward { terms { callback: "seen" } }
  tools { callbacks: "calc" raw: true call_open: "" call_close: "=" result_open: " [" result_close: "] "
          max_calls: 2 deadline_ms: %d } } }
`, fixture(t, "pipeline/addition-base"), steps, deadlineMs)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A Go tool called by a pipeline's rollouts from library threads: its answers, its errors and
// its panics reach the completions the rewards score, and its calls are counted per step.
func TestConcurrentPipelineTools(t *testing.T) {
	dir := t.TempDir()
	cfg := toolConfig(t, dir, 2, 5000)
	var calls, completions, withResult, withError, withPanic atomic.Int64
	calc := func(args string) (string, error) {
		switch n := calls.Add(1); {
		case n%4 == 2:
			return "", errors.New("bad expression")
		case n%4 == 3:
			panic("calc broke")
		}
		return fmt.Sprintf("len %d", len(args)), nil
	}
	seen := func(prompt, completion, answer string) float32 {
		completions.Add(1)
		if strings.Contains(completion, " [len ") {
			withResult.Add(1)
		}
		if strings.Contains(completion, "[error: tool 'calc' failed: bad expression] ") {
			withError.Add(1)
		}
		if strings.Contains(completion, "[error: tool 'calc' failed: panic: calc broke] ") {
			withPanic.Add(1)
		}
		return float32(len(completion) % 3)
	}
	_, err := RunPipeline(cfg, filepath.Join(dir, "out"), PipelineOptions{
		Rewards: map[string]RewardFunc{"seen": seen},
		Tools:   map[string]ToolFunc{"calc": calc},
	})
	if err != nil {
		t.Fatal(err)
	}
	if completions.Load() != 16 {
		t.Errorf("%d completions scored, want 16", completions.Load())
	}
	if calls.Load() < 4 || withResult.Load() == 0 || withError.Load() == 0 || withPanic.Load() == 0 {
		t.Errorf("%d tool calls; completions with a result %d, an error %d, a panic %d", calls.Load(),
			withResult.Load(), withError.Load(), withPanic.Load())
	}
	t.Logf("%d tool calls; of 16 completions %d read a result, %d an error, %d a panic", calls.Load(),
		withResult.Load(), withError.Load(), withPanic.Load())
	metrics, err := os.ReadFile(filepath.Join(dir, "out", "stages", "00-rl", "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(metrics), `"tool_calls":`); got != 2 {
		t.Errorf("%d metric rows with tool_calls, want 2:\n%s", got, metrics)
	}
	// An unregistered tool is refused before any work, by name.
	_, err = RunPipeline(cfg, filepath.Join(dir, "out2"), PipelineOptions{Rewards: map[string]RewardFunc{"seen": seen}})
	if err == nil || !strings.Contains(err.Error(), "tool callback 'calc' is not registered") {
		t.Errorf("unregistered tool: %v", err)
	}
	_, err = RunPipeline(cfg, filepath.Join(dir, "out3"), PipelineOptions{Tools: map[string]ToolFunc{"calc": nil}})
	if err == nil || !strings.Contains(err.Error(), "tool calc is nil") {
		t.Errorf("nil tool: %v", err)
	}
}

// A Go tool that hangs past the stage's deadline: the call is abandoned (the model reads a
// time-out), RunPipeline returns, and the native director lives until the hung call returns.
func TestConcurrentPipelineToolDeadline(t *testing.T) {
	dir := t.TempDir()
	cfg := toolConfig(t, dir, 1, 100)
	var calls atomic.Int64
	var timedOut atomic.Int64
	hung := make(chan struct{})
	finished := make(chan struct{})
	calc := func(args string) (string, error) {
		if calls.Add(1) == 1 {
			<-hung // hangs until the pipeline has returned
			defer close(finished)
		}
		return "ok", nil
	}
	seen := func(prompt, completion, answer string) float32 {
		if strings.Contains(completion, "[error: tool 'calc' timed out after 100 ms] ") {
			timedOut.Add(1)
		}
		return 0
	}
	_, err := RunPipeline(cfg, filepath.Join(dir, "out"), PipelineOptions{
		Rewards: map[string]RewardFunc{"seen": seen}, Tools: map[string]ToolFunc{"calc": calc}})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() == 0 || timedOut.Load() != 1 {
		t.Fatalf("%d tool calls, %d completions read a time-out (want 1)", calls.Load(), timedOut.Load())
	}
	releaseAbandonedCall(t, hung, finished)
}

// releaseAbandonedCall checks that one director waits for its abandoned call, lets the call
// return (closing hung, then waiting for finished) and checks that the director is then freed.
func releaseAbandonedCall(t *testing.T, hung, finished chan struct{}) {
	t.Helper()
	if got := directorsWaiting.Load(); got != 1 {
		t.Errorf("%d directors waiting for abandoned calls, want 1", got)
	}
	close(hung)
	<-finished
	for i := 0; i < 100 && directorsWaiting.Load() != 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if got := directorsWaiting.Load(); got != 0 {
		t.Errorf("director not freed after the abandoned call returned (%d waiting)", got)
	}
}
