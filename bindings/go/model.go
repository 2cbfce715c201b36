package reason

import (
	"fmt"
	"runtime"

	"libreason.org/go/reason/internal/native"
)

// Model is a loaded model. It is immutable while it generates and may be used by any number of
// goroutines at once; a Trainer updates its weights in place between generations. Close it
// when done: Close waits for calls in progress and first closes the model's streams and
// trainers.
type Model struct {
	c *modelCore
}

type modelCore struct {
	g   gate
	m   native.Model
	dir string
	tok *tokCore // the tokenizer loaded with the model (borrowed from it), or nil
}

type loadOptions struct{ dtype, device, kvDType, quantize, adapter string }

// LoadOption changes how LoadModel loads a model.
type LoadOption func(*loadOptions)

// WithDType sets the compute dtype: "f32" (the default; training needs it) or "bf16".
func WithDType(dtype string) LoadOption { return func(o *loadOptions) { o.dtype = dtype } }

// WithDevice sets where the model runs: "cpu" (the default) or "cuda" (an error naming the reason
// when the library has no CUDA or no GPU is usable).
func WithDevice(device string) LoadOption { return func(o *loadOptions) { o.device = device } }

// WithKVDType sets the KV cache's storage: "auto" (the default: the compute dtype), "f32" or "bf16".
func WithKVDType(dtype string) LoadOption { return func(o *loadOptions) { o.kvDType = dtype } }

// WithQuantize sets how matmul weights are held: "none" (the default: the compute dtype, GGUF
// tensors dequantised), "stored" (a GGUF file's quantised tensors used as stored), "q8_0" or
// "q4_k" (quantised at load as llama.cpp's Q8_0 / Q4_K_M files). A quantised model runs inference
// only: training it is an error.
func WithQuantize(q string) LoadOption { return func(o *loadOptions) { o.quantize = q } }

// WithAdapter runs a LoRA adapter with the base weights, unmerged: dir is a PEFT adapter
// directory (adapter_config.json + adapter_model.safetensors). A trainer on the model trains the
// adapter only (the base is frozen; a quantised base trains as QLoRA) and saves it in PEFT's
// format. A model directory that is itself an adapter directory loads as its base + it.
func WithAdapter(dir string) LoadOption { return func(o *loadOptions) { o.adapter = dir } }

// LoadModel loads a Hugging Face model directory (config.json, model.safetensors or a sharded
// index, and tokenizer.json when present). Errors are *Error values naming the directory and
// the file, tensor or field at fault.
func LoadModel(dir string, opts ...LoadOption) (*Model, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	o := loadOptions{dtype: "f32", device: "cpu", kvDType: "auto", quantize: "none"}
	for _, f := range opts {
		f(&o)
	}
	nm := native.NewModel()
	if err := takeStatus(nm.Load_adapter(dir, o.adapter, o.dtype, o.device, o.kvDType, o.quantize)); err != nil {
		native.DeleteModel(nm)
		return nil, err
	}
	c := &modelCore{m: nm, dir: dir}
	c.g.init()
	nt := native.NewTokenizer()
	if takeStatus(nm.Tokenizer(nt)) == nil {
		c.tok = &tokCore{g: &c.g, t: nt, borrowed: true}
	} else {
		native.DeleteTokenizer(nt)
	}
	m := &Model{c: c}
	runtime.SetFinalizer(m, func(m *Model) { m.c.close() })
	return m, nil
}

func (c *modelCore) close() {
	if !c.g.shut() {
		return
	}
	if c.tok != nil {
		c.tok.t.Close()
		native.DeleteTokenizer(c.tok.t)
	}
	c.m.Close()
	native.DeleteModel(c.m)
}

// Close releases the model. Streams and trainers that use it are closed first; calls in
// progress finish before it returns. Closing twice is a no-op. Do not call it from a callback
// of this model.
func (m *Model) Close() error {
	if m == nil || m.c == nil {
		return nil
	}
	runtime.SetFinalizer(m, nil)
	m.c.close()
	return nil
}

// Dir is the directory the model was loaded from.
func (m *Model) Dir() string { return m.c.dir }

// SaveAdapter writes the model's LoRA adapter into dir in PEFT's format (adapter_config.json +
// adapter_model.safetensors, each atomically; PeftModel.from_pretrained opens it). An error when
// the model has no adapter. Not while a training step on the model runs.
func (m *Model) SaveAdapter(dir string) error {
	c := m.c
	if !c.g.enter() {
		return closedError("model")
	}
	defer c.g.leave()
	return takeStatus(c.m.Save_adapter(dir))
}

// Info describes the model (zero values once closed).
func (m *Model) Info() ModelInfo {
	c := m.c
	if !c.g.enter() {
		return ModelInfo{}
	}
	defer c.g.leave()
	i := c.m.Info()
	defer native.DeleteModelInfo(i)
	return ModelInfo{
		Architecture: i.GetArchitecture(), VocabSize: i.GetVocab_size(), HiddenSize: i.GetHidden_size(),
		NumLayers: i.GetNum_layers(), NumParams: i.GetNum_params(), NumExperts: i.GetNum_experts(),
		Device: i.GetDevice(), KVDType: i.GetKv_dtype(), QuantizedWeights: i.GetQuantized_weights(),
		AdapterModules: i.GetAdapter_modules(),
	}
}

// SamplingDefaults returns base with the sampling settings the model ships with applied (its
// generation_config.json, or a GGUF's general.sampling.*): the fields the model sets replace
// base's (do_sample false is temperature 0), the others stay. A malformed file is an error
// naming the field.
func (m *Model) SamplingDefaults(base SamplingOptions) (SamplingOptions, error) {
	c := m.c
	if !c.g.enter() {
		return base, closedError("model")
	}
	no := base.toNative()
	r := c.m.Sampling_defaults(no)
	c.g.leave()
	native.DeleteSamplingOptions(no)
	defer native.DeleteSamplingResult(r)
	if err := statusError(r.GetStatus()); err != nil {
		return base, err
	}
	o := r.GetOptions()
	out := base
	out.Temperature = o.GetTemperature()
	out.TopK = o.GetTop_k()
	out.TopP = o.GetTop_p()
	out.MinP = o.GetMin_p()
	out.RepetitionPenalty = o.GetRepetition_penalty()
	out.MaxNewTokens = o.GetMax_new_tokens()
	return out, nil
}

// Tokenizer returns the tokenizer loaded with the model. It belongs to the model: it is valid
// while the model is open, and its Close does nothing.
func (m *Model) Tokenizer() (*Tokenizer, error) {
	if m.c.g.isClosed() {
		return nil, closedError("model")
	}
	if m.c.tok == nil {
		return nil, newError(CodeInvalidArgument, "the model "+m.c.dir+" has no tokenizer.json")
	}
	return &Tokenizer{c: m.c.tok, owner: m}, nil
}

// Generate completes one prompt (encoded with the model's tokenizer, special tokens included).
// onToken, if not nil, is called on this goroutine for every generated token in order;
// returning false stops the generation (FinishCallback).
func (m *Model) Generate(prompt string, opts SamplingOptions, onToken func(Token) bool) (Completion, error) {
	cs, err := m.GenerateBatch([]string{prompt}, opts, onToken)
	if err != nil {
		return Completion{}, err
	}
	if len(cs) != 1 {
		return Completion{}, newError(CodeInternal, fmt.Sprintf("generate returned %d completions for one prompt", len(cs)))
	}
	return cs[0], nil
}

// GenerateBatch completes several prompts together (continuous batching). Request i samples
// with seed opts.Seed + i; Token.Request tells onToken which prompt a token belongs to, and
// returning false stops only that request.
func (m *Model) GenerateBatch(prompts []string, opts SamplingOptions, onToken func(Token) bool) ([]Completion, error) {
	pv := newStringVector(prompts)
	defer native.DeleteStringVector(pv)
	return m.generate(opts, onToken, func(nm native.Model, o native.SamplingOptions, h ...interface{}) native.CompletionsResult {
		return nm.Generate(append([]interface{}{pv, o}, h...)...)
	})
}

// GenerateIDs completes prompts given as token ids.
func (m *Model) GenerateIDs(prompts [][]int32, opts SamplingOptions, onToken func(Token) bool) ([]Completion, error) {
	pv := newIntVectorVector(prompts)
	defer native.DeleteIntVectorVector(pv)
	return m.generate(opts, onToken, func(nm native.Model, o native.SamplingOptions, h ...interface{}) native.CompletionsResult {
		return nm.Generate_ids(append([]interface{}{pv, o}, h...)...)
	})
}

func (m *Model) generate(opts SamplingOptions, onToken func(Token) bool,
	call func(native.Model, native.SamplingOptions, ...interface{}) native.CompletionsResult) ([]Completion, error) {
	c := m.c
	if !c.g.enter() {
		return nil, closedError("model")
	}
	no := opts.toNative()
	var d *tokenDirector
	var h native.TokenHandler
	var handler []interface{} // the optional handler argument (none: no callback)
	if onToken != nil {
		d = &tokenDirector{fn: onToken}
		h = native.NewDirectorTokenHandler(d)
		handler = append(handler, h)
	}
	r := call(c.m, no, handler...)
	c.g.leave()
	if h != nil {
		native.DeleteDirectorTokenHandler(h)
	}
	native.DeleteSamplingOptions(no)
	err := statusError(r.GetStatus())
	var out []Completion
	if err == nil {
		out = completionsOf(r.GetCompletions())
	}
	native.DeleteCompletionsResult(r)
	if d != nil && d.panicked {
		panic(d.panicValue) // the callback's panic, re-raised once native code is out of the way
	}
	return out, err
}

// tokenDirector adapts a Go callback to the TokenHandler director. It runs on the goroutine
// that called Generate (the native call back into Go happens on that thread).
type tokenDirector struct {
	fn         func(Token) bool
	panicked   bool
	panicValue interface{}
}

func (d *tokenDirector) On_token(request int64, tokenID int, logprob float32, text string) (cont bool) {
	if d.panicked {
		return false
	}
	defer func() {
		if r := recover(); r != nil {
			d.panicked, d.panicValue, cont = true, r, false
		}
	}()
	return d.fn(Token{Request: int(request), ID: int32(tokenID), Logprob: logprob, Text: text})
}

// Score returns teacher-forced log-probabilities: out[t] = log p(ids[t+1] | ids[..t]), t < len(ids)-1.
func (m *Model) Score(ids []int32) ([]float32, error) {
	c := m.c
	if !c.g.enter() {
		return nil, closedError("model")
	}
	defer c.g.leave()
	iv := newIntVector(ids)
	defer native.DeleteIntVector(iv)
	r := c.m.Score(iv)
	defer native.DeleteFloatsResult(r)
	if err := statusError(r.GetStatus()); err != nil {
		return nil, err
	}
	return floatsOf(r.GetValues()), nil
}
