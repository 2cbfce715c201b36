//go:build !asan

package lsan

// Enabled reports whether the program was built with -asan.
const Enabled = false

// Check does nothing without -asan.
func Check() bool { return false }
