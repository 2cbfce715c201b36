package reason

import (
	"runtime"
	"time"
)

// collectGarbage runs a collection and gives the finalizer goroutine time to run.
func collectGarbage() {
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
}
