package reason

import (
	"fmt"

	"libreason.org/go/reason/internal/native"
)

// Code is a libreason status code (reason_status in reason.h).
type Code int

// The status codes of the C ABI.
const (
	CodeOK              Code = 0
	CodeInvalidArgument Code = 1 // null handle, bad option, out-of-range token id, closed object
	CodeIO              Code = 2 // a file could not be opened, read or written
	CodeFormat          Code = 3 // a file is malformed: corrupt, truncated or hostile
	CodeUnsupported     Code = 4 // valid but unsupported: unknown architecture, dtype, library version
	CodeOutOfMemory     Code = 5
	CodeBackend         Code = 6 // a compute backend failed
	CodeCancelled       Code = 7 // stopped by a callback (not used for normal stops)
	CodeInternal        Code = 8
)

var codeNames = [...]string{
	"REASON_OK", "REASON_ERR_INVALID_ARGUMENT", "REASON_ERR_IO", "REASON_ERR_FORMAT",
	"REASON_ERR_UNSUPPORTED", "REASON_ERR_OUT_OF_MEMORY", "REASON_ERR_BACKEND",
	"REASON_ERR_CANCELLED", "REASON_ERR_INTERNAL",
}

// String returns the C name of the code, e.g. "REASON_ERR_IO".
func (c Code) String() string {
	if c >= 0 && int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("REASON_ERR_%d", int(c))
}

// Error is an error reported by libreason (or by these bindings, for a closed object or a
// native library of another major version).
type Error struct {
	Code    Code   // the status code
	Name    string // its C name, e.g. "REASON_ERR_FORMAT"
	Message string // the library's message: it names the file, tensor or field at fault
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "libreason: " + e.Name
	}
	return "libreason: " + e.Name + ": " + e.Message
}

// Is reports whether target is an *Error with the same code and, when target has a message,
// the same message; errors.Is(err, reason.ErrIO) matches any I/O error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Sentinels for errors.Is: they carry a code and no message.
var (
	ErrInvalidArgument = &Error{Code: CodeInvalidArgument, Name: CodeInvalidArgument.String()}
	ErrIO              = &Error{Code: CodeIO, Name: CodeIO.String()}
	ErrFormat          = &Error{Code: CodeFormat, Name: CodeFormat.String()}
	ErrUnsupported     = &Error{Code: CodeUnsupported, Name: CodeUnsupported.String()}
	ErrOutOfMemory     = &Error{Code: CodeOutOfMemory, Name: CodeOutOfMemory.String()}
	ErrBackend         = &Error{Code: CodeBackend, Name: CodeBackend.String()}
	ErrCancelled       = &Error{Code: CodeCancelled, Name: CodeCancelled.String()}
	ErrInternal        = &Error{Code: CodeInternal, Name: CodeInternal.String()}
)

func newError(code Code, message string) *Error {
	return &Error{Code: code, Name: code.String(), Message: message}
}

// statusError turns a native Status (not owned: a member of a result) into nil or an *Error.
func statusError(st native.Status) error {
	code := Code(st.GetCode())
	if code == CodeOK {
		return nil
	}
	return newError(code, st.GetMessage())
}

// takeStatus converts and frees a Status returned by value.
func takeStatus(st native.Status) error {
	defer native.DeleteStatus(st)
	return statusError(st)
}

func closedError(what string) error {
	return newError(CodeInvalidArgument, what+" is closed")
}
