package reason

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"

	"libreason.org/go/reason/internal/native"
)

// RewardFunc scores one completion: the prompt text ("" in ComputeRewards), the completion text
// and the reference answer ("" when there is none). Return a finite value; NaN, an infinity or
// a panic marks the completion as failed (scored 0 and counted). A RewardFunc given to
// RunPipeline is called from several library threads at once and must be safe for concurrent
// use.
type RewardFunc func(prompt, completion, answer string) float32

// directorLife counts the calls in progress in one native director. A pipeline abandons a call
// that passes its deadline and returns without waiting for it; the native director must then
// live until that call returns, and the last such call frees it.
type directorLife struct {
	mu       sync.Mutex
	free     func() // frees the native director; nil once freed
	inFlight int
	released bool // the native call that used it has returned
}

// directorsWaiting counts released directors whose abandoned calls are still running.
var directorsWaiting atomic.Int64

func (l *directorLife) enter() {
	l.mu.Lock()
	l.inFlight++
	l.mu.Unlock()
}

// leave ends a call; the last call into a released director frees it (as `delete this`: the
// C++ director method only returns its result after this Go call).
func (l *directorLife) leave() {
	l.mu.Lock()
	l.inFlight--
	var free func()
	if l.released && l.inFlight == 0 {
		free, l.free = l.free, nil
	}
	l.mu.Unlock()
	if free != nil {
		free()
		directorsWaiting.Add(-1)
	}
}

// release frees the native director once no call is running in it.
func (l *directorLife) release() {
	l.mu.Lock()
	l.released = true
	var free func()
	if l.inFlight == 0 {
		free, l.free = l.free, nil
	} else {
		directorsWaiting.Add(1)
	}
	l.mu.Unlock()
	if free != nil {
		free()
	}
}

// rewardDirector adapts a RewardFunc to the RewardFunction director.
type rewardDirector struct {
	directorLife
	fn RewardFunc
	h  native.RewardFunction
}

func newRewardDirector(fn RewardFunc) *rewardDirector {
	d := &rewardDirector{fn: fn}
	d.h = native.NewDirectorRewardFunction(d)
	d.free = func() { native.DeleteDirectorRewardFunction(d.h) }
	return d
}

func (d *rewardDirector) Score(prompt, completion, answer string) (v float32) {
	d.enter()
	defer func() {
		if r := recover(); r != nil {
			v = float32(math.NaN()) // a panic fails this completion's reward, as NaN does
		}
		d.leave()
	}()
	return d.fn(prompt, completion, answer)
}

// ComputeRewards decodes completions with tok and scores each with fn on this goroutine,
// through the library (as GRPO rollouts do): rewards[i] belongs to completions[i]. answers
// holds one reference answer per completion, or is nil. failed counts the completions whose
// reward failed (NaN, an infinity or a panic; they score 0).
func ComputeRewards(tok *Tokenizer, completions [][]int32, answers []string, fn RewardFunc) (rewards []float32, failed int, err error) {
	if versionErr != nil {
		return nil, 0, versionErr
	}
	if fn == nil || tok == nil {
		return nil, 0, newError(CodeInvalidArgument, "ComputeRewards: the tokenizer or the reward function is nil")
	}
	c := tok.c
	if !c.g.enter() {
		return nil, 0, closedError("tokenizer")
	}
	defer c.g.leave()
	cv := newIntVectorVector(completions)
	defer native.DeleteIntVectorVector(cv)
	av := newStringVector(answers)
	defer native.DeleteStringVector(av)
	d := newRewardDirector(fn)
	r := native.Compute_rewards(c.t, cv, av, d.h)
	d.release()
	defer native.DeleteRewardsResult(r)
	if err := statusError(r.GetStatus()); err != nil {
		return nil, 0, err
	}
	return floatsOf(r.GetRewards()), int(r.GetFailed()), nil
}

// RewardKind selects a built-in rule-based reward of the DeepSeek-R1 recipe.
type RewardKind int

const (
	RewardMathAccuracy RewardKind = 1 // 1 if the last \boxed{} answer equals arg (the gold answer), else 0
	RewardFormat       RewardKind = 2 // 1 for "<think>...</think> answer"; arg "open" accepts a completion that starts inside the think block
	RewardLanguage     RewardKind = 3 // share of chain-of-thought words in language arg ("en", "zh", ...)
)

// BuiltinReward computes a built-in reward (pure and safe for concurrent use).
func BuiltinReward(kind RewardKind, completion, arg string) (float32, error) {
	if versionErr != nil {
		return 0, versionErr
	}
	r := native.Builtin_reward(int(kind), completion, arg)
	defer native.DeleteFloatsResult(r)
	if err := statusError(r.GetStatus()); err != nil {
		return 0, err
	}
	return r.GetValues().Get(0), nil
}

// PipelineOptions are the options of RunPipeline.
type PipelineOptions struct {
	// Progress shows progress bars and stage reports on stderr.
	Progress bool
	// Rewards serves the reward terms a config names as `terms { callback: "NAME" }`. They are
	// called from the library's reward worker threads, several at once; a call that does not
	// return within the config's deadline_ms scores 0 (and the run goes on).
	Rewards map[string]RewardFunc
	// Tools serves the tools a GRPO stage's `tools { callbacks: "NAME" }` lets completions call
	// (see ToolFunc).
	Tools map[string]ToolFunc
}

// RunPipeline runs (or resumes) the R1-style pipeline of configPath (a PipelineConfig in
// protobuf text format) into outDir and returns the text of outDir/summary.json. It blocks
// until the last stage is done; the config and every file it names are checked before any
// work starts. Reward failures (NaN, panics, timeouts) are counted in the summary.
func RunPipeline(configPath, outDir string, opts PipelineOptions) (string, error) {
	if versionErr != nil {
		return "", versionErr
	}
	names := make([]string, 0, len(opts.Rewards))
	for name, fn := range opts.Rewards {
		if fn == nil {
			return "", newError(CodeInvalidArgument, "RunPipeline: reward "+name+" is nil")
		}
		names = append(names, name)
	}
	sort.Strings(names)
	toolNames := make([]string, 0, len(opts.Tools))
	for name, fn := range opts.Tools {
		if fn == nil {
			return "", newError(CodeInvalidArgument, "RunPipeline: tool "+name+" is nil")
		}
		toolNames = append(toolNames, name)
	}
	sort.Strings(toolNames)
	nv := newStringVector(names)
	defer native.DeleteStringVector(nv)
	tnv := newStringVector(toolNames)
	defer native.DeleteStringVector(tnv)
	rv := native.NewRewardFunctionVector__SWIG_0()
	defer native.DeleteRewardFunctionVector(rv)
	tv := native.NewToolFunctionVector__SWIG_0()
	defer native.DeleteToolFunctionVector(tv)
	var lives []*directorLife
	for _, name := range names {
		d := newRewardDirector(opts.Rewards[name])
		lives = append(lives, &d.directorLife)
		rv.Add(d.h)
	}
	for _, name := range toolNames {
		d := newToolDirector(opts.Tools[name])
		lives = append(lives, &d.directorLife)
		tv.Add(d.h)
	}
	r := native.Run_pipeline(configPath, outDir, opts.Progress, nv, rv, tnv, tv)
	for _, l := range lives {
		l.release() // a call abandoned past its deadline keeps its director until it returns
	}
	defer native.DeleteTextResult(r)
	if err := statusError(r.GetStatus()); err != nil {
		return "", err
	}
	return r.GetText(), nil
}
