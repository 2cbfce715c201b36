package reason

import (
	"fmt"

	"libreason.org/go/reason/internal/native"
)

// SamplingOptions controls generation. The zero value is usable: greedy decoding, top-k, top-p,
// min-p and the repetition penalty off, 256 new tokens at most, stop at EOS.
type SamplingOptions struct {
	Temperature       float32  // 0 = greedy
	TopK              int      // 0 = off
	TopP              float32  // 0 or 1 = off
	MinP              float32  // 0 = off
	RepetitionPenalty float32  // 0 or 1 = off
	MaxNewTokens      int      // 0 = 256
	Seed              int64    // request i of a batch uses Seed + i
	StopTokenIDs      []int32  // besides EOS, which always stops
	StopStrings       []string // generation stops when the text ends with one of them
	IgnoreEOS         bool     // do not stop at EOS (benchmarks)
}

// R1Sampling returns DeepSeek-R1's recommended settings: temperature 0.6, top-p 0.95.
func R1Sampling() SamplingOptions {
	return SamplingOptions{Temperature: 0.6, TopP: 0.95}
}

// toNative returns a new native SamplingOptions (free with native.DeleteSamplingOptions).
func (o *SamplingOptions) toNative() native.SamplingOptions {
	n := native.NewSamplingOptions()
	n.SetTemperature(o.Temperature)
	n.SetTop_k(o.TopK)
	topP := o.TopP
	if topP == 0 {
		topP = 1
	}
	n.SetTop_p(topP)
	n.SetMin_p(o.MinP)
	rp := o.RepetitionPenalty
	if rp == 0 {
		rp = 1
	}
	n.SetRepetition_penalty(rp)
	maxNew := o.MaxNewTokens
	if maxNew == 0 {
		maxNew = 256
	}
	n.SetMax_new_tokens(maxNew)
	n.SetSeed(o.Seed)
	ids := n.GetStop_token_ids()
	for _, id := range o.StopTokenIDs {
		ids.Add(int(id))
	}
	strs := n.GetStop_strings()
	for _, s := range o.StopStrings {
		strs.Add(s)
	}
	n.SetIgnore_eos(o.IgnoreEOS)
	return n
}

// FinishReason says why a completion ended.
type FinishReason int

const (
	FinishLength   FinishReason = 0 // MaxNewTokens reached: the completion is truncated
	FinishStop     FinishReason = 1 // EOS, a stop token or a stop string
	FinishCallback FinishReason = 2 // the token callback returned false, or the stream was closed
)

func (r FinishReason) String() string {
	switch r {
	case FinishLength:
		return "length"
	case FinishStop:
		return "stop"
	case FinishCallback:
		return "callback"
	}
	return fmt.Sprintf("FinishReason(%d)", int(r))
}

// Token is one generated token, as a callback or a Stream sees it.
type Token struct {
	Request int     // index of the prompt in the batch (0 for a single prompt or a stream)
	ID      int32   // token id
	Logprob float32 // its log-probability under softmax(logits / temperature)
	Text    string  // the newly completed UTF-8 text (may be "" inside a multi-byte character)
}

// Completion is one finished request.
type Completion struct {
	TokenIDs     []int32   // generated tokens (stop strings included, EOS excluded)
	Logprobs     []float32 // one per token
	Text         string    // decoded text
	FinishReason FinishReason
}

// ModelInfo describes a loaded model.
type ModelInfo struct {
	Architecture string // e.g. "Qwen2ForCausalLM"
	VocabSize    int64
	HiddenSize   int64
	NumLayers    int64
	NumParams    int64
	NumExperts   int64  // routed experts per MoE layer; 0 for dense models
	Device       string // where the model runs: "cpu" or "cuda"
	KVDType      string // the KV cache's storage: "f32" or "bf16"
	// QuantizedWeights is ggml's name of the first quantised weight's block type ("Q4_K", "Q6_K",
	// "Q8_0", ...), or "" when no weight is quantised.
	QuantizedWeights string
	// AdapterModules counts the linear layers carrying a LoRA adapter (0: none; see WithAdapter).
	AdapterModules int64
}

// StepMetrics are the metrics of one training step.
type StepMetrics struct {
	Step       int64   // optimizer steps taken so far
	Loss       float32 // the step's loss
	GradNorm   float32 // global gradient norm before clipping
	LR         float32 // learning rate used
	Tokens     int64   // tokens that carried loss
	KL         float32 // GRPO: mean KL to the reference (0 without one)
	ClipLow    float32 // GRPO: share of tokens clipped below
	ClipHigh   float32 // GRPO: share of tokens clipped above
	Entropy    float32 // GRPO: mean token entropy
	RewardMean float32 // GRPO: mean reward of the batch
	RewardStd  float32 // GRPO: reward standard deviation
}

func (m StepMetrics) String() string {
	return fmt.Sprintf("step=%d loss=%.6g grad_norm=%.6g lr=%.3g tokens=%d kl=%.4g clip_low=%.4g clip_high=%.4g entropy=%.4g reward_mean=%.4g reward_std=%.4g",
		m.Step, m.Loss, m.GradNorm, m.LR, m.Tokens, m.KL, m.ClipLow, m.ClipHigh, m.Entropy, m.RewardMean, m.RewardStd)
}

// ---- conversions between Go slices and the SWIG vectors (each element is one cgo call; the
// sizes here are prompts and completions, so this stays well below the cost of a token) ----

func newIntVector(ids []int32) native.IntVector {
	v := native.NewIntVector__SWIG_0()
	fillIntVector(v, ids)
	return v
}

func fillIntVector(v native.IntVector, ids []int32) {
	v.Reserve(int64(len(ids)))
	for _, id := range ids {
		v.Add(int(id))
	}
}

func intsOf(v native.IntVector) []int32 {
	n := int(v.Size())
	out := make([]int32, n)
	for i := 0; i < n; i++ {
		out[i] = int32(v.Get(i))
	}
	return out
}

func fillFloatVector(v native.FloatVector, xs []float32) {
	v.Reserve(int64(len(xs)))
	for _, x := range xs {
		v.Add(x)
	}
}

func floatsOf(v native.FloatVector) []float32 {
	n := int(v.Size())
	out := make([]float32, n)
	for i := 0; i < n; i++ {
		out[i] = v.Get(i)
	}
	return out
}

func newIntVectorVector(seqs [][]int32) native.IntVectorVector {
	v := native.NewIntVectorVector__SWIG_0()
	v.Reserve(int64(len(seqs)))
	for _, s := range seqs {
		iv := newIntVector(s)
		v.Add(iv) // copies
		native.DeleteIntVector(iv)
	}
	return v
}

func newStringVector(xs []string) native.StringVector {
	v := native.NewStringVector__SWIG_0()
	v.Reserve(int64(len(xs)))
	for _, x := range xs {
		v.Add(x)
	}
	return v
}

func completionsOf(v native.CompletionVector) []Completion {
	n := int(v.Size())
	out := make([]Completion, n)
	for i := 0; i < n; i++ {
		c := v.Get(i) // borrowed
		out[i] = Completion{
			TokenIDs:     intsOf(c.GetToken_ids()),
			Logprobs:     floatsOf(c.GetLogprobs()),
			Text:         c.GetText(),
			FinishReason: FinishReason(c.GetFinish_reason()),
		}
	}
	return out
}

func metricsOf(m native.StepMetrics) StepMetrics {
	return StepMetrics{
		Step: m.GetStep(), Loss: m.GetLoss(), GradNorm: m.GetGrad_norm(), LR: m.GetLr(), Tokens: m.GetTokens(),
		KL: m.GetKl(), ClipLow: m.GetClip_low(), ClipHigh: m.GetClip_high(), Entropy: m.GetEntropy(),
		RewardMean: m.GetReward_mean(), RewardStd: m.GetReward_std(),
	}
}
