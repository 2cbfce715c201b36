package reason

import (
	"runtime"
	"sync"

	"libreason.org/go/reason/internal/native"
)

// Stream is a pull-style generation of one completion: the library generates on its own
// thread and Next hands out the tokens one by one (no callback into Go per token). A Stream is
// safe to use from several goroutines (calls are serialised). Close it when done: closing a
// stream that is still generating stops it.
type Stream struct {
	c     *streamCore
	owner *Model
}

type streamCore struct {
	mu     sync.Mutex
	s      native.Stream // nil once closed
	model  *modelCore
	active bool // holds a stream entry on the model's gate (generation not ended)
	done   bool
	finish FinishReason
	err    error
}

// Stream starts generating a completion of prompt and returns at once. Bad options or an
// empty prompt fail here, before anything runs.
func (m *Model) Stream(prompt string, opts SamplingOptions) (*Stream, error) {
	c := m.c
	sc := &streamCore{model: c}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if !c.g.addDep(sc, true) {
		return nil, closedError("model")
	}
	ns := native.NewStream()
	no := opts.toNative()
	err := takeStatus(ns.Start(c.m, prompt, no))
	native.DeleteSamplingOptions(no)
	if err != nil {
		native.DeleteStream(ns)
		c.g.endStream()
		c.g.removeDep(sc)
		return nil, err
	}
	sc.s, sc.active = ns, true
	s := &Stream{c: sc, owner: m}
	runtime.SetFinalizer(s, func(s *Stream) { s.c.close() })
	return s, nil
}

func (c *streamCore) release() {
	if c.active {
		c.active = false
		c.model.g.endStream()
	}
}

// Next waits for the next token. It returns (token, true, nil) for a token, (Token{}, false,
// nil) once the completion has ended (see FinishReason), and an error if generation failed or
// the stream is closed.
func (s *Stream) Next() (Token, bool, error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s == nil {
		return Token{}, false, closedError("stream")
	}
	if c.done {
		return Token{}, false, c.err
	}
	r := c.s.Next()
	defer native.DeleteStreamEventResult(r)
	if err := statusError(r.GetStatus()); err != nil {
		c.done, c.err = true, err
		c.release()
		return Token{}, false, err
	}
	ev := r.GetEvent()
	if ev.GetDone() {
		c.done, c.finish = true, FinishReason(ev.GetFinish_reason())
		c.release()
		return Token{}, false, nil
	}
	return Token{ID: int32(ev.GetToken_id()), Logprob: ev.GetLogprob(), Text: ev.GetText()}, true, nil
}

// FinishReason says why the completion ended (valid once Next has reported the end).
func (s *Stream) FinishReason() FinishReason {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.c.finish
}

// Collect reads the remaining tokens, calling fn (if not nil) for each; fn returning false
// closes the stream (the generation stops). It returns the tokens read.
func (s *Stream) Collect(fn func(Token) bool) ([]Token, error) {
	var out []Token
	for {
		t, ok, err := s.Next()
		if err != nil || !ok {
			return out, err
		}
		out = append(out, t)
		if fn != nil && !fn(t) {
			return out, s.Close()
		}
	}
}

func (c *streamCore) close() {
	c.mu.Lock()
	if c.s == nil {
		c.mu.Unlock()
		return
	}
	c.s.Close() // stops the generation if it is still running and waits for its thread
	native.DeleteStream(c.s)
	c.s = nil
	if !c.done {
		c.done, c.finish = true, FinishCallback
	}
	c.release()
	c.mu.Unlock()
	c.model.g.removeDep(c)
}

func (c *streamCore) closeFromOwner() { c.close() }

// Close stops the generation if it is still running and releases the stream. Closing twice is
// a no-op.
func (s *Stream) Close() error {
	if s == nil || s.c == nil {
		return nil
	}
	runtime.SetFinalizer(s, nil)
	s.c.close()
	return nil
}
