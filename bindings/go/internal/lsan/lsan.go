//go:build asan

// Package lsan runs LeakSanitizer's check on demand. Go 1.19's -asan does not check for leaks
// at exit (the runtime leaves with a raw exit system call, so LeakSanitizer's atexit hook never
// runs); the binding's tests call Check at the end instead. Test-only: not installed.
package lsan

// #include <sanitizer/lsan_interface.h>
import "C"

// Enabled reports whether the program was built with -asan.
const Enabled = true

// Check runs a leak check now and reports whether leaks were found (printed on stderr).
func Check() bool { return C.__lsan_do_recoverable_leak_check() != 0 }
