package reason

import (
	"fmt"

	"libreason.org/go/reason/internal/native"
)

// ToolFunc is a tool that the completions of a pipeline's GRPO stage call (multi-turn
// rollouts), registered by name in PipelineOptions.Tools; the stage's config lists it as
// `tools { callbacks: "NAME" }`. The model writes a call (by default
// <tool_call>{"name": "NAME", "arguments": {...}}</tool_call>); argumentsJSON is the call's
// "arguments" as JSON text ("" when absent), or for a `raw: true` tool the call's text as the
// model wrote it. The returned text is appended for the model to read (tokens that carry no
// loss) and sampling goes on. A non-nil error, or a panic, fails the call: the model reads
// "error: tool 'NAME' failed: MESSAGE" and the run goes on.
//
// Calls come from several library threads at once, so a ToolFunc must be safe for concurrent
// use. A call that passes the stage's tools.deadline_ms is abandoned (the model reads a time-out
// error) and may still be running after RunPipeline returns.
type ToolFunc func(argumentsJSON string) (string, error)

// toolDirector adapts a ToolFunc to the ToolFunction director.
type toolDirector struct {
	directorLife
	fn ToolFunc
	h  native.ToolFunction
}

func newToolDirector(fn ToolFunc) *toolDirector {
	d := &toolDirector{fn: fn}
	d.h = native.NewDirectorToolFunction(d)
	d.free = func() { native.DeleteDirectorToolFunction(d.h) }
	return d
}

// Call fills reply, a view of the C++ caller's object valid for this call only.
func (d *toolDirector) Call(argumentsJSON string, reply native.ToolReply) {
	d.enter()
	defer func() {
		if r := recover(); r != nil {
			reply.SetText(fmt.Sprint("panic: ", r))
			reply.SetFailed(true)
		}
		d.leave()
	}()
	text, err := d.fn(argumentsJSON)
	if err != nil {
		reply.SetText(err.Error())
		reply.SetFailed(true)
		return
	}
	reply.SetText(text)
}
