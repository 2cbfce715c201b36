package reason

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"libreason.org/go/reason/internal/lsan"
)

// The tests use the repository's fixtures (REASON_FIXTURES_DIR, set by ctest):
//   dense/qwen2_tied        a random 2-layer Qwen2 (vocab 512, EOS 397): mechanics only
//   pipeline/addition-base  a small model pretrained on the synthetic addition task: rewards
//                           that mean something

func TestMain(m *testing.M) {
	code := m.Run()
	FinalizeMPI() // under mpirun (mpi_test.sh); os.Exit skips the C exit handler that would do it
	if lsan.Enabled {
		// Everything the tests created is closed by now: what LeakSanitizer still finds
		// unreachable was leaked (see asan.supp for the reports that are not ours).
		if lsan.Check() {
			fmt.Fprintln(os.Stderr, "LeakSanitizer found leaks")
			code = 1
		} else {
			fmt.Fprintln(os.Stderr, "LeakSanitizer: no leaks")
		}
	}
	os.Exit(code)
}

func fixture(t testing.TB, rel string) string {
	t.Helper()
	dir := os.Getenv("REASON_FIXTURES_DIR")
	if dir == "" {
		t.Fatal("REASON_FIXTURES_DIR is not set (ctest sets it to tests/fixtures)")
	}
	return filepath.Join(dir, rel)
}

func loadModel(t testing.TB, rel string) *Model {
	t.Helper()
	m, err := LoadModel(fixture(t, rel))
	if err != nil {
		t.Fatalf("LoadModel(%s): %v", rel, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

const additionPrompt = "User: What is 23 + 45?\nAssistant:"

func TestVersion(t *testing.T) {
	if err := CheckVersion(); err != nil {
		t.Fatal(err)
	}
	if NativeVersion() != Version {
		t.Errorf("native %s, bindings %s", NativeVersion(), Version)
	}
	if p := NativeLibraryPath(); !strings.Contains(p, "libreason.so") {
		t.Errorf("NativeLibraryPath() = %q", p)
	}
	err := checkVersion("1.0.0", 1, 0, 0)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUnsupported ||
		!strings.Contains(e.Message, "libreason native library 1.0.0") ||
		!strings.Contains(e.Message, "is not compatible with these bindings (built for 0.x)") {
		t.Errorf("major mismatch: %v", err)
	}
	if err := checkVersion("0.9.1", 0, 0, 0); err != nil {
		t.Errorf("same major refused: %v", err)
	}
	if err := checkVersion("0.2.0", 0, 1, 0); err == nil || !strings.Contains(err.Error(), "headers") {
		t.Errorf("header mismatch: %v", err)
	}
}

func TestQuantizedWeights(t *testing.T) {
	m, err := LoadModel(fixture(t, "quant/llama256"), WithQuantize("q4_k"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if q := m.Info().QuantizedWeights; q != "Q6_K" { // the tied embedding and LM head, as llama.cpp's Q4_K_M
		t.Errorf("quantized weights %q, want Q6_K", q)
	}
	res, err := m.GenerateIDs([][]int32{{5, 17, 42, 99}}, SamplingOptions{Temperature: 0, MaxNewTokens: 5}, nil)
	if err != nil || len(res) != 1 || len(res[0].TokenIDs) == 0 {
		t.Fatalf("generate on q4_k weights: %v %+v", err, res)
	}
	plain, err := LoadModel(fixture(t, "quant/llama256"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if q := plain.Info().QuantizedWeights; q != "" {
		t.Errorf("default load quantized %q", q)
	}
	if _, err := LoadModel(fixture(t, "quant/llama256"), WithQuantize("q3_k")); !errors.Is(err, ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "q3_k") {
		t.Errorf("quantize q3_k: %v", err)
	}
}

func TestDeviceAndKVDTypeAtLoad(t *testing.T) {
	m, err := LoadModel(fixture(t, "dense/qwen2_tied"), WithDevice("cpu"), WithKVDType("bf16"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if info := m.Info(); info.Device != "cpu" || info.KVDType != "bf16" {
		t.Errorf("info %+v, want device cpu and a bf16 KV cache", info)
	}
	if _, err := LoadModel(fixture(t, "dense/qwen2_tied"), WithDevice("tpu")); !errors.Is(err, ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "tpu") {
		t.Errorf("device tpu: %v", err)
	}
	// CUDA runs where a GPU is usable; elsewhere it is an Unsupported error with the reason.
	if g, err := LoadModel(fixture(t, "dense/qwen2_tied"), WithDevice("cuda")); err == nil {
		if g.Info().Device != "cuda" {
			t.Errorf("device %q", g.Info().Device)
		}
		g.Close()
	} else if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "device cuda is not available") {
		t.Errorf("device cuda: %v", err)
	}
}

func TestSamplingDefaults(t *testing.T) {
	m := loadModel(t, "dense/qwen2_tied_r1_sampling") // qwen2_tied with DeepSeek-R1's generation_config.json
	o, err := m.SamplingDefaults(SamplingOptions{Temperature: 1, TopK: 7})
	if err != nil || o.Temperature != 0.6 || o.TopP != 0.95 || o.TopK != 7 || o.MaxNewTokens != 256 {
		t.Errorf("SamplingDefaults = %+v, %v", o, err)
	}
	plain, err := loadModel(t, "dense/qwen2_tied").SamplingDefaults(SamplingOptions{Temperature: 1})
	if err != nil || plain.Temperature != 1 {
		t.Errorf("SamplingDefaults without sampling fields = %+v, %v", plain, err)
	}
}

func TestModelInfoAndTokenizer(t *testing.T) {
	m := loadModel(t, "dense/qwen2_tied")
	info := m.Info()
	if info.Architecture != "Qwen2ForCausalLM" || info.VocabSize != 512 || info.NumLayers != 2 || info.HiddenSize != 32 ||
		info.Device != "cpu" || info.KVDType != "f32" {
		t.Errorf("info %+v", info)
	}
	tok, err := m.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	const text = "Let me think step by step."
	ids, err := tok.Encode(text)
	if err != nil || len(ids) == 0 {
		t.Fatalf("Encode: %v %v", ids, err)
	}
	back, err := tok.Decode(ids)
	if err != nil || back != text {
		t.Errorf("Decode(Encode(%q)) = %q, %v", text, back, err)
	}
	if tok.VocabSize() != 400 { // largest id + 1 (the model's embedding has 512 rows)
		t.Errorf("VocabSize %d", tok.VocabSize())
	}
	chat, err := tok.ChatPrompt("2+2?", "")
	if err != nil || chat != "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n" {
		t.Errorf("ChatPrompt = %q, %v", chat, err)
	}
	// Special tokens: decoded, or skipped.
	withEOS := append(append([]int32{}, ids...), 397)
	if s, _ := tok.Decode(withEOS); s != text+"<|im_end|>" {
		t.Errorf("Decode with EOS = %q", s)
	}
	if s, _ := tok.DecodeSkipSpecial(withEOS); s != text {
		t.Errorf("DecodeSkipSpecial = %q", s)
	}
	// An id outside the vocabulary is the library's error, with the id in the message.
	_, err = tok.Decode([]int32{1, 9999})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "9999") {
		t.Errorf("Decode(9999): %v", err)
	}
	// A standalone tokenizer gives the same ids.
	st, err := LoadTokenizer(fixture(t, "dense/qwen2_tied"))
	if err != nil {
		t.Fatal(err)
	}
	ids2, err := st.Encode(text)
	if err != nil || fmt.Sprint(ids2) != fmt.Sprint(ids) {
		t.Errorf("standalone tokenizer: %v %v", ids2, err)
	}
	st.Close()
	st.Close()
	if _, err := st.Encode(text); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("closed tokenizer: %v", err)
	}
}

func TestGenerateStreamingAndStop(t *testing.T) {
	m := loadModel(t, "dense/qwen2_tied")
	opts := SamplingOptions{Temperature: 0.8, Seed: 3, MaxNewTokens: 10, IgnoreEOS: true}
	var seen []int32
	var text strings.Builder
	c, err := m.Generate("The answer is", opts, func(tk Token) bool {
		seen = append(seen, tk.ID)
		text.WriteString(tk.Text)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.TokenIDs) != 10 || fmt.Sprint(seen) != fmt.Sprint(c.TokenIDs) || c.FinishReason != FinishLength {
		t.Errorf("streamed %v, completion %v (%v)", seen, c.TokenIDs, c.FinishReason)
	}
	if text.String() != c.Text || len(c.Logprobs) != 10 {
		t.Errorf("streamed text %q, completion %q, %d logprobs", text.String(), c.Text, len(c.Logprobs))
	}
	// Returning false stops the generation after that token.
	var n int
	stopped, err := m.Generate("The answer is", opts, func(Token) bool { n++; return n < 4 })
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 || len(stopped.TokenIDs) != 4 || stopped.FinishReason != FinishCallback {
		t.Errorf("stop after 4: %d calls, %v, %v", n, stopped.TokenIDs, stopped.FinishReason)
	}
	if fmt.Sprint(stopped.TokenIDs) != fmt.Sprint(c.TokenIDs[:4]) {
		t.Errorf("same seed, other tokens: %v vs %v", stopped.TokenIDs, c.TokenIDs[:4])
	}
	// Batches: each request is told apart by Token.Request; stopping one leaves the other.
	perReq := map[int]int{}
	cs, err := m.GenerateBatch([]string{"The answer is", "Hello"}, opts, func(tk Token) bool {
		perReq[tk.Request]++
		return !(tk.Request == 0 && perReq[0] == 2)
	})
	if err != nil || len(cs) != 2 {
		t.Fatalf("batch: %v", err)
	}
	if len(cs[0].TokenIDs) != 2 || cs[0].FinishReason != FinishCallback || len(cs[1].TokenIDs) != 10 || perReq[1] != 10 {
		t.Errorf("batch stop: %d %v %d %d", len(cs[0].TokenIDs), cs[0].FinishReason, len(cs[1].TokenIDs), perReq[1])
	}
	// Stop strings and bad options.
	if _, err := m.Generate("The answer is", SamplingOptions{Temperature: -1}, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("negative temperature: %v", err)
	}
}

func TestStreamEqualsCallback(t *testing.T) {
	m := loadModel(t, "dense/qwen2_tied")
	opts := SamplingOptions{Temperature: 0.9, Seed: 11, MaxNewTokens: 12, IgnoreEOS: true}
	var cb []Token
	c, err := m.Generate("The answer is", opts, func(tk Token) bool { cb = append(cb, tk); return true })
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Stream("The answer is", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var pulled []Token
	for {
		tk, ok, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		pulled = append(pulled, tk)
	}
	if len(pulled) != len(cb) {
		t.Fatalf("stream %d tokens, callback %d", len(pulled), len(cb))
	}
	for i := range cb {
		if pulled[i].ID != cb[i].ID || pulled[i].Text != cb[i].Text || math.Abs(float64(pulled[i].Logprob-cb[i].Logprob)) > 1e-5 {
			t.Errorf("token %d: stream %+v, callback %+v", i, pulled[i], cb[i])
		}
	}
	if s.FinishReason() != c.FinishReason {
		t.Errorf("finish: stream %v, generate %v", s.FinishReason(), c.FinishReason)
	}
	// After the end, Next keeps reporting the end.
	if _, ok, err := s.Next(); ok || err != nil {
		t.Errorf("Next after the end: %v %v", ok, err)
	}
	// Closing a stream in the middle stops it; Collect with a callback that stops.
	s2, err := m.Stream("The answer is", SamplingOptions{MaxNewTokens: 200, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Collect(func(Token) bool { return false })
	if err != nil || len(got) != 1 || s2.FinishReason() != FinishCallback {
		t.Errorf("Collect stopping: %d tokens, %v, %v", len(got), err, s2.FinishReason())
	}
	if _, _, err := s2.Next(); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Next on a closed stream: %v", err)
	}
	if _, err := m.Stream("", opts); err == nil {
		t.Error("empty prompt accepted")
	}
}

func TestScore(t *testing.T) {
	m := loadModel(t, "dense/qwen2_tied")
	tok, _ := m.Tokenizer()
	prompt, err := tok.Encode("The answer is")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := m.GenerateIDs([][]int32{prompt}, SamplingOptions{MaxNewTokens: 6, IgnoreEOS: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seq := append(append([]int32{}, prompt...), cs[0].TokenIDs...)
	lp, err := m.Score(seq)
	if err != nil {
		t.Fatal(err)
	}
	if len(lp) != len(seq)-1 {
		t.Fatalf("%d logprobs for %d ids", len(lp), len(seq))
	}
	for i, want := range cs[0].Logprobs { // greedy logprobs are at temperature 1, as scores
		got := lp[len(prompt)-1+i]
		if math.Abs(float64(got-want)) > 1e-4 || got > 0 {
			t.Errorf("token %d: score %g, generation %g", i, got, want)
		}
	}
	if _, err := m.Score([]int32{1}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Score of one id: %v", err)
	}
}

// additionReward is 1 when the completion's boxed answer is the gold one.
func additionReward(calls *atomic.Int64) RewardFunc {
	return func(prompt, completion, answer string) float32 {
		calls.Add(1)
		if answer != "" && strings.Contains(completion, `\boxed{`+answer+`}`) {
			return 1
		}
		return 0
	}
}

func TestGRPOStepWithGoRewardAndCheckpoint(t *testing.T) {
	m := loadModel(t, "pipeline/addition-base")
	tok, err := m.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	// The base model answers this one greedily.
	greedy, err := m.Generate(additionPrompt, SamplingOptions{MaxNewTokens: 48}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(greedy.Text, `\boxed{68}`) {
		t.Errorf("greedy completion %q", greedy.Text)
	}
	prompt, err := tok.EncodeWithSpecialTokens(additionPrompt)
	if err != nil {
		t.Fatal(err)
	}
	const group = 4
	prompts := make([][]int32, group)
	for i := range prompts {
		prompts[i] = prompt
	}
	cs, err := m.GenerateIDs(prompts, SamplingOptions{Temperature: 1, Seed: 7, MaxNewTokens: 48}, nil)
	if err != nil {
		t.Fatal(err)
	}
	completions := make([][]int32, group)
	answers := make([]string, group)
	for i, c := range cs {
		completions[i], answers[i] = c.TokenIDs, "68"
	}
	var calls atomic.Int64
	rewards, failed, err := ComputeRewards(tok, completions, answers, additionReward(&calls))
	if err != nil || failed != 0 || len(rewards) != group || calls.Load() != group {
		t.Fatalf("ComputeRewards: %v %d %v calls=%d", rewards, failed, err, calls.Load())
	}
	var mean float32
	for i, c := range cs {
		want := float32(0)
		if strings.Contains(c.Text, `\boxed{68}`) {
			want = 1
		}
		if rewards[i] != want {
			t.Errorf("reward %d = %g for %q", i, rewards[i], c.Text)
		}
		mean += rewards[i] / group
	}
	tr, err := NewTrainer(m, nil, "optimizer { lr: 1e-3 } grpo { group_size: 4 }")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	batch := make([]GRPOSample, group)
	for i, c := range cs {
		batch[i] = GRPOSample{Prompt: prompt, Completion: c.TokenIDs, Reward: rewards[i], OldLogprobs: c.Logprobs,
			Truncated: c.FinishReason == FinishLength}
	}
	met, err := tr.GRPOStep(batch)
	if err != nil {
		t.Fatal(err)
	}
	if met.Step != 1 || math.Abs(float64(met.RewardMean-mean)) > 1e-6 || met.Tokens <= 0 || math.IsNaN(float64(met.Loss)) {
		t.Errorf("metrics %v (reward mean %g)", met, mean)
	}
	t.Logf("GRPO step: %v", met)

	// Checkpoint: the saved policy reloads and generates as the trained one does.
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := tr.Save(dir); err != nil {
		t.Fatal(err)
	}
	after, err := m.Generate(additionPrompt, SamplingOptions{MaxNewTokens: 48}, nil)
	if err != nil {
		t.Fatal(err)
	}
	back, err := LoadModel(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	again, err := back.Generate(additionPrompt, SamplingOptions{MaxNewTokens: 48}, nil)
	if err != nil || again.Text != after.Text {
		t.Errorf("reloaded checkpoint: %q vs %q (%v)", again.Text, after.Text, err)
	}
	tr2, err := NewTrainer(back, nil, "optimizer { lr: 1e-3 } grpo { group_size: 4 }")
	if err != nil {
		t.Fatal(err)
	}
	if err := tr2.LoadState(dir); err != nil {
		t.Error(err)
	}
	tr2.Close()

	// A reward that panics or returns NaN fails its completion (scored 0), not the program.
	rewards, failed, err = ComputeRewards(tok, completions, []string{"a", "b", "c", "d"}, func(_, _, answer string) float32 {
		switch answer {
		case "a":
			panic("reward bug")
		case "b":
			return float32(math.NaN())
		}
		return 0.5
	})
	if err != nil || failed != 2 || fmt.Sprint(rewards) != "[0 0 0.5 0.5]" {
		t.Errorf("failing rewards: %v %d %v", rewards, failed, err)
	}
	// Config errors name the field.
	if _, err := NewTrainer(m, nil, "optimizer { lr: oops }"); !errors.Is(err, ErrInvalidArgument) && !errors.Is(err, ErrFormat) {
		t.Errorf("bad config: %v", err)
	}
}

func TestSFTStep(t *testing.T) {
	m := loadModel(t, "dense/qwen2_tied")
	tr, err := NewTrainer(m, nil, "optimizer { lr: 0.01 }")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	seq := []int32{11, 12, 13, 201, 202, 203}
	mask := []bool{false, false, false, true, true, true}
	met, err := tr.SFTStep([][]int32{seq}, [][]bool{mask})
	if err != nil || met.Step != 1 || met.Tokens != 3 || !(met.Loss > 0) {
		t.Errorf("SFT step: %v %v", met, err)
	}
	if _, err := tr.SFTStep([][]int32{seq}, [][]bool{mask[:2]}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("mask of another length: %v", err)
	}
}

func TestBadModelPath(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "no-such-model")
	m, err := LoadModel(bad)
	if err == nil || m != nil {
		t.Fatal("LoadModel of a missing directory succeeded")
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	if e.Code != CodeIO || e.Name != "REASON_ERR_IO" || !strings.Contains(e.Message, bad) || !errors.Is(err, ErrIO) {
		t.Errorf("error %+v", e)
	}
	if !strings.HasPrefix(err.Error(), "libreason: REASON_ERR_IO: ") {
		t.Errorf("Error() = %q", err.Error())
	}
	// A directory that is not a model: a format or I/O error naming the file.
	_, err = LoadModel(fixture(t, "pipeline"))
	if err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("not a model: %v", err)
	}
	if _, err := LoadModel(fixture(t, "dense/qwen2_tied"), WithDType("f16")); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad dtype: %v", err)
	}
}

func TestBuiltinReward(t *testing.T) {
	v, err := BuiltinReward(RewardMathAccuracy, `<think>3+5=8</think> \boxed{68}`, "68")
	if err != nil || v != 1 {
		t.Errorf("math accuracy: %g %v", v, err)
	}
	v, err = BuiltinReward(RewardFormat, "no think", "")
	if err != nil || v != 0 {
		t.Errorf("format: %g %v", v, err)
	}
	if _, err := BuiltinReward(RewardKind(42), "x", ""); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unknown kind: %v", err)
	}
}

func TestCloseRules(t *testing.T) {
	m, err := LoadModel(fixture(t, "dense/qwen2_tied"))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := m.Tokenizer()
	s, err := m.Stream("The answer is", SamplingOptions{MaxNewTokens: 100, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(m, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	// A training step refuses to run while a stream on its policy is open.
	if _, err := tr.SFTStep([][]int32{{1, 2, 3}}, [][]bool{{false, true, true}}); err == nil || !strings.Contains(err.Error(), "stream") {
		t.Errorf("step with an open stream: %v", err)
	}
	// Closing the model closes its stream, trainer and tokenizer view; everything reports it.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, _, err := s.Next(); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "closed") {
		t.Errorf("stream after model Close: %v", err)
	}
	if _, err := tr.SFTStep([][]int32{{1, 2}}, [][]bool{{false, true}}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("trainer after model Close: %v", err)
	}
	if _, err := tok.Encode("x"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("tokenizer after model Close: %v", err)
	}
	if _, err := m.Generate("x", SamplingOptions{}, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Generate after Close: %v", err)
	}
	if _, err := m.Tokenizer(); err == nil {
		t.Error("Tokenizer after Close")
	}
	if _, err := NewTrainer(m, nil, ""); err == nil {
		t.Error("NewTrainer on a closed model")
	}
	s.Close()
	tr.Close()
}

func TestCallbackPanicIsReraised(t *testing.T) {
	m := loadModel(t, "dense/qwen2_tied")
	defer func() {
		if r := recover(); r != "boom" {
			t.Errorf("recovered %v", r)
		}
		// The model is still usable.
		if _, err := m.Generate("x", SamplingOptions{MaxNewTokens: 2}, nil); err != nil {
			t.Error(err)
		}
	}()
	m.Generate("The answer is", SamplingOptions{MaxNewTokens: 5, IgnoreEOS: true}, func(Token) bool { panic("boom") })
	t.Error("no panic")
}

// A PEFT adapter (tests/fixtures/lora) run with its base: it changes the scores, a trainer trains
// it (and only it), SaveAdapter writes it in PEFT's format, and that directory loads as base +
// adapter with the same scores.
func TestLoRAAdapter(t *testing.T) {
	base := fixture(t, "dense/qwen2_tied")
	plain := loadModel(t, "dense/qwen2_tied")
	m, err := LoadModel(base, WithAdapter(fixture(t, "lora/qwen2_tied_all_linear/adapter")))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.Info().AdapterModules; got != 14 {
		t.Fatalf("%d adapter modules, want 14", got)
	}
	if got := plain.Info().AdapterModules; got != 0 {
		t.Errorf("a plain model has %d adapter modules", got)
	}
	seq := []int32{11, 12, 13, 201, 202, 203, 204}
	a, _ := plain.Score(seq)
	b, err := m.Score(seq)
	if err != nil || a[3] == b[3] {
		t.Fatalf("the adapter changes no score (%v %v, %v)", a[3], b[3], err)
	}
	tr, err := NewTrainer(m, nil, "optimizer { lr: 0.01 }")
	if err != nil {
		t.Fatal(err)
	}
	mask := []bool{false, false, false, true, true, true, true}
	first, err := tr.SFTStep([][]int32{seq}, [][]bool{mask})
	if err != nil {
		t.Fatal(err)
	}
	var last StepMetrics
	for i := 0; i < 10; i++ {
		if last, err = tr.SFTStep([][]int32{seq}, [][]bool{mask}); err != nil {
			t.Fatal(err)
		}
	}
	tr.Close()
	if !(last.Loss < first.Loss) {
		t.Errorf("loss %v -> %v", first.Loss, last.Loss)
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := m.SaveAdapter(dir); err != nil {
		t.Fatal(err)
	}
	if err := plain.SaveAdapter(dir); err == nil || !strings.Contains(err.Error(), "has no LoRA adapter") {
		t.Errorf("SaveAdapter without an adapter: %v", err)
	}
	back, err := LoadModel(dir) // an adapter directory: its base + it
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	want, _ := m.Score(seq)
	got, _ := back.Score(seq)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("reloaded adapter scores %v, want %v", got, want)
		}
	}
	if _, err := LoadModel(base, WithAdapter(filepath.Join(t.TempDir(), "none"))); err == nil ||
		!strings.Contains(err.Error(), "adapter_config.json") {
		t.Errorf("a missing adapter: %v", err)
	}
}
