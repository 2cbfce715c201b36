package reason

import (
	"runtime"

	"libreason.org/go/reason/internal/native"
)

// Tokenizer encodes and decodes text with a Hugging Face tokenizer. It may be used by any
// number of goroutines at once. A tokenizer from LoadTokenizer is closed with Close; one from
// Model.Tokenizer belongs to its model.
type Tokenizer struct {
	c     *tokCore
	owner *Model // keeps a model's tokenizer's model reachable
}

type tokCore struct {
	g        *gate // its own gate, or the model's for a borrowed tokenizer
	own      gate
	t        native.Tokenizer
	borrowed bool
}

// LoadTokenizer loads a tokenizer from a directory holding tokenizer.json (and optionally
// tokenizer_config.json) or from the path of a tokenizer.json.
func LoadTokenizer(path string) (*Tokenizer, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	nt := native.NewTokenizer()
	if err := takeStatus(nt.Load(path)); err != nil {
		native.DeleteTokenizer(nt)
		return nil, err
	}
	c := &tokCore{t: nt}
	c.own.init()
	c.g = &c.own
	t := &Tokenizer{c: c}
	runtime.SetFinalizer(t, func(t *Tokenizer) { t.c.close() })
	return t, nil
}

func (c *tokCore) close() {
	if c.borrowed || !c.g.shut() {
		return
	}
	c.t.Close()
	native.DeleteTokenizer(c.t)
}

// Close releases a tokenizer from LoadTokenizer (a no-op for a model's tokenizer).
func (t *Tokenizer) Close() error {
	if t == nil || t.c == nil {
		return nil
	}
	runtime.SetFinalizer(t, nil)
	t.c.close()
	return nil
}

func (t *Tokenizer) encode(text string, special bool) ([]int32, error) {
	c := t.c
	if !c.g.enter() {
		return nil, closedError("tokenizer")
	}
	defer c.g.leave()
	r := c.t.Encode(text, special)
	defer native.DeleteIdsResult(r)
	if err := statusError(r.GetStatus()); err != nil {
		return nil, err
	}
	return intsOf(r.GetIds()), nil
}

// Encode encodes UTF-8 text to token ids, without special tokens.
func (t *Tokenizer) Encode(text string) ([]int32, error) { return t.encode(text, false) }

// EncodeWithSpecialTokens encodes text and adds the special tokens the tokenizer's
// post-processor adds (e.g. DeepSeek's BOS).
func (t *Tokenizer) EncodeWithSpecialTokens(text string) ([]int32, error) {
	return t.encode(text, true)
}

func (t *Tokenizer) decode(ids []int32, skip bool) (string, error) {
	c := t.c
	if !c.g.enter() {
		return "", closedError("tokenizer")
	}
	defer c.g.leave()
	iv := newIntVector(ids)
	defer native.DeleteIntVector(iv)
	r := c.t.Decode(iv, skip)
	defer native.DeleteTextResult(r)
	if err := statusError(r.GetStatus()); err != nil {
		return "", err
	}
	return r.GetText(), nil
}

// Decode decodes token ids to text (special tokens included). An id outside the vocabulary is
// an ErrInvalidArgument naming the id and its index.
func (t *Tokenizer) Decode(ids []int32) (string, error) { return t.decode(ids, false) }

// DecodeSkipSpecial decodes token ids to text without the special tokens.
func (t *Tokenizer) DecodeSkipSpecial(ids []int32) (string, error) { return t.decode(ids, true) }

// ChatPrompt formats one user message (and an optional system message; "" for none) with the
// generation prompt, in the model's chat template (DeepSeek-R1 or ChatML, from
// tokenizer_config.json).
func (t *Tokenizer) ChatPrompt(user, system string) (string, error) {
	c := t.c
	if !c.g.enter() {
		return "", closedError("tokenizer")
	}
	defer c.g.leave()
	r := c.t.Chat_prompt(user, system)
	defer native.DeleteTextResult(r)
	if err := statusError(r.GetStatus()); err != nil {
		return "", err
	}
	return r.GetText(), nil
}

// VocabSize is the vocabulary size (largest id + 1), or 0 once closed.
func (t *Tokenizer) VocabSize() int {
	c := t.c
	if !c.g.enter() {
		return 0
	}
	defer c.g.leave()
	return c.t.Vocab_size()
}
