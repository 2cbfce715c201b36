package reason

import (
	"runtime"
	"sync"

	"libreason.org/go/reason/internal/native"
)

// Trainer runs training steps (SFT, GRPO) on a policy model, updating its weights in place: the
// next generation with the same Model uses the new policy. A Trainer serialises its own calls;
// a step waits for generations on the policy to finish and holds off new ones while it runs.
type Trainer struct {
	c                 *trainerCore
	policy, reference *Model // reachable while the trainer is
}

type trainerCore struct {
	mu          sync.Mutex
	t           native.Trainer // nil once closed
	policy, ref *modelCore
}

// GRPOSample is one completion of a GRPO batch. Groups of grpo.group_size consecutive samples
// share a prompt.
type GRPOSample struct {
	Prompt      []int32
	Completion  []int32
	Reward      float32
	OldLogprobs []float32 // the sampler's logprobs (Completion.Logprobs), or nil: the current policy's
	Truncated   bool      // the completion hit the length limit (FinishLength)
}

// NewTrainer creates a trainer for policy (loaded in f32). config is a TrainerConfig in
// protobuf text format (sdk/proto/reason.proto), e.g. "optimizer { lr: 1e-3 } grpo {
// group_size: 4 }"; errors name the field or the line and column. reference may be nil (it is
// needed only when grpo.beta > 0). Closing either model closes the trainer.
func NewTrainer(policy, reference *Model, config string) (*Trainer, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	if policy == nil {
		return nil, newError(CodeInvalidArgument, "NewTrainer: the policy model is nil")
	}
	if reference == policy {
		return nil, newError(CodeInvalidArgument, "NewTrainer: the reference model must not be the policy model")
	}
	tc := &trainerCore{policy: policy.c}
	if reference != nil {
		tc.ref = reference.c
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if !tc.policy.g.addDep(tc, false) {
		return nil, closedError("policy model")
	}
	var refNative native.Model
	if tc.ref != nil {
		if !tc.ref.g.addDep(tc, false) {
			tc.policy.g.removeDep(tc)
			return nil, closedError("reference model")
		}
		refNative = tc.ref.m
	}
	// While registered as a dependent, neither model can be freed before this returns.
	nt := native.NewTrainer()
	if err := takeStatus(nt.Create(tc.policy.m, refNative, config)); err != nil {
		native.DeleteTrainer(nt)
		tc.unregister()
		return nil, err
	}
	tc.t = nt
	t := &Trainer{c: tc, policy: policy, reference: reference}
	runtime.SetFinalizer(t, func(t *Trainer) { t.c.close() })
	return t, nil
}

func (c *trainerCore) unregister() {
	c.policy.g.removeDep(c)
	if c.ref != nil {
		c.ref.g.removeDep(c)
	}
}

func (c *trainerCore) close() {
	c.mu.Lock()
	if c.t == nil {
		c.mu.Unlock()
		return
	}
	c.t.Close()
	native.DeleteTrainer(c.t)
	c.t = nil
	c.mu.Unlock()
	c.unregister()
}

func (c *trainerCore) closeFromOwner() { c.close() }

// Close releases the trainer (the models stay open). Closing twice is a no-op.
func (t *Trainer) Close() error {
	if t == nil || t.c == nil {
		return nil
	}
	runtime.SetFinalizer(t, nil)
	t.c.close()
	return nil
}

// step runs fn with the trainer locked and its models held open (the library makes the step the
// policy's one writer).
func (c *trainerCore) step(fn func() native.MetricsResult) (StepMetrics, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t == nil {
		return StepMetrics{}, closedError("trainer")
	}
	if !c.policy.g.enter() {
		return StepMetrics{}, closedError("policy model")
	}
	defer c.policy.g.leave()
	if c.ref != nil {
		if !c.ref.g.enter() {
			return StepMetrics{}, closedError("reference model")
		}
		defer c.ref.g.leave()
	}
	r := fn()
	defer native.DeleteMetricsResult(r)
	if err := statusError(r.GetStatus()); err != nil {
		return StepMetrics{}, err
	}
	return metricsOf(r.GetMetrics()), nil
}

// SFTStep runs one SFT step over sequences tokens[i] with masks[i] (true = a completion token
// that carries loss; the loss is the mean over them). On error the weights are unchanged.
func (t *Trainer) SFTStep(tokens [][]int32, masks [][]bool) (StepMetrics, error) {
	tv := newIntVectorVector(tokens)
	defer native.DeleteIntVectorVector(tv)
	mv := native.NewByteVectorVector__SWIG_0()
	defer native.DeleteByteVectorVector(mv)
	for _, m := range masks {
		bv := native.NewByteVector__SWIG_0()
		bv.Reserve(int64(len(m)))
		for _, on := range m {
			if on {
				bv.Add(1)
			} else {
				bv.Add(0)
			}
		}
		mv.Add(bv)
		native.DeleteByteVector(bv)
	}
	return t.c.step(func() native.MetricsResult { return t.c.t.Sft_step(tv, mv) })
}

// GRPOStep runs one GRPO step (DeepSeekMath eq. 3 with the config's grpo settings) over a batch
// of groups. On error the weights are unchanged.
func (t *Trainer) GRPOStep(batch []GRPOSample) (StepMetrics, error) {
	bv := native.NewGrpoSampleVector__SWIG_0()
	defer native.DeleteGrpoSampleVector(bv)
	bv.Reserve(int64(len(batch)))
	for _, b := range batch {
		s := native.NewGrpoSample()
		fillIntVector(s.GetPrompt(), b.Prompt)
		fillIntVector(s.GetCompletion(), b.Completion)
		s.SetReward(b.Reward)
		fillFloatVector(s.GetOld_logprobs(), b.OldLogprobs)
		s.SetTruncated(b.Truncated)
		bv.Add(s) // copies
		native.DeleteGrpoSample(s)
	}
	return t.c.step(func() native.MetricsResult { return t.c.t.Grpo_step(bv) })
}

func (c *trainerCore) withPolicy(fn func() native.Status) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t == nil {
		return closedError("trainer")
	}
	if !c.policy.g.enter() {
		return closedError("policy model")
	}
	defer c.policy.g.leave()
	return takeStatus(fn())
}

// Save writes the policy as a Hugging Face directory plus optimizer state and step, atomically
// (a previous checkpoint at dir survives any failure). LoadModel(dir) reloads the weights.
func (t *Trainer) Save(dir string) error {
	return t.c.withPolicy(func() native.Status { return t.c.t.Save(dir) })
}

// LoadState restores optimizer state and step from a checkpoint whose weights the policy was
// loaded from.
func (t *Trainer) LoadState(dir string) error {
	return t.c.withPolicy(func() native.Status { return t.c.t.Load_state(dir) })
}
