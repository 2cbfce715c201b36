// Package reason is the Go binding of libreason, a C++ engine that runs and trains reasoning
// language models (Llama, Qwen2, Mixtral, Qwen2/3-MoE, DeepSeek-V3) on CPU or GPU: load a Hugging
// Face model directory, encode and decode text, generate with streaming, score, run SFT and GRPO
// steps with rewards written in Go, and run whole R1-style pipelines.
//
// The package wraps the stable C ABI of libreason.so.0 (reason.h) through SWIG; cgo finds the
// headers and the library with pkg-config (package "reason", from libreason-dev).
//
//	m, err := reason.LoadModel("/models/qwen2-0.5b")
//	if err != nil {
//		log.Fatal(err) // *reason.Error: Code, Name and Message (which file, which field)
//	}
//	defer m.Close()
//	c, err := m.Generate("The answer is", reason.SamplingOptions{MaxNewTokens: 32},
//		func(t reason.Token) bool { fmt.Print(t.Text); return true })
//
// Resources: Model, Tokenizer, Stream and Trainer own native memory and must be released with
// Close (finalizers only catch what was forgotten). Closing a Model first closes the streams
// and trainers that use it. Close is safe to call twice and from any goroutine; it waits for
// calls in progress on the object.
//
// Goroutines: a Model and a Tokenizer may be used by any number of goroutines at once. A Stream
// and a Trainer serialise their own calls. A training step waits for generations on its policy
// model to finish and holds off new ones while it runs (the step updates the weights in place),
// and fails if a Stream on the policy is still open.
//
// Callbacks: a token callback (func(Token) bool) runs on the goroutine that called Generate;
// returning false stops that request. A RewardFunc given to RunPipeline is called from the
// library's reward worker threads, several at once: it must be safe for concurrent use. A panic
// in a token callback stops generation and is re-raised in the caller of Generate once the
// native call has returned; a panic in a RewardFunc marks that completion's reward as failed
// (scored 0), as a NaN return does. Callbacks must not Close the model they were called for.
//
// Errors: every fallible call returns an error; errors from the library are *Error values
// (Code, Name such as "REASON_ERR_IO", and the library's message), comparable with errors.Is
// against ErrInvalidArgument, ErrIO, ErrFormat, and the others.
package reason
