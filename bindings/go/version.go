package reason

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"libreason.org/go/reason/internal/native"
)

// versionErr is set once at package initialisation: every constructor returns it, so a
// program linked with a native libreason of another major version fails on its first Load with
// a clear message instead of misbehaving.
var versionErr = checkVersion(native.Version(), native.Version_major(), native.Binding_version_major(), versionMajor)

func checkVersion(nativeVersion string, nativeMajor, glueMajor, goMajor int) error {
	if nativeMajor != goMajor {
		where := NativeLibraryPath()
		if where != "" {
			where = " (" + where + ")"
		}
		return newError(CodeUnsupported, fmt.Sprintf(
			"libreason native library %s%s is not compatible with these bindings (built for %d.x): "+
				"install the libreason package of major version %d, or Go bindings of version %d.x",
			nativeVersion, where, goMajor, goMajor, nativeMajor))
	}
	if glueMajor != goMajor {
		return newError(CodeUnsupported, fmt.Sprintf(
			"the libreason headers these bindings were compiled against are version %d.x but the Go "+
				"package is %s: install matching libreason-dev and Go package versions",
			glueMajor, Version))
	}
	return nil
}

// CheckVersion returns nil when the native libreason this program runs with has the major
// version of these bindings, else the *Error (CodeUnsupported) that every constructor returns.
func CheckVersion() error { return versionErr }

// NativeVersion is the version of the native libreason actually loaded ("MAJOR.MINOR.PATCH").
func NativeVersion() string { return native.Version() }

// NativeLibraryPath is the file the dynamic loader mapped for libreason (from /proc/self/maps),
// or "" where that cannot be read. The loader finds libreason.so.0 by the usual rules: an rpath
// set at link time, LD_LIBRARY_PATH, then the ld.so cache (/usr/lib/x86_64-linux-gnu).
func NativeLibraryPath() string {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if i := strings.Index(line, "/"); i >= 0 && strings.Contains(line[i:], "/libreason.so") {
			return line[i:]
		}
	}
	return ""
}

// SetNumThreads sets the number of CPU threads compute uses, process-wide (0 restores the
// default: all cores, or $REASON_NUM_THREADS). It applies to calls that start after it returns.
func SetNumThreads(n int) { native.Set_num_threads(n) }

// FinalizeMPI ends the MPI world the library started when the program runs under mpirun (a
// data-parallel RunPipeline or trainer); it does nothing otherwise. Go's os.Exit skips the C
// exit handlers that would do it, and mpirun fails a job whose processes exit without
// MPI_Finalize, so a Go program that may run under mpirun calls it last (after its last
// RunPipeline or trainer step; MPI cannot start again).
func FinalizeMPI() { native.Mpi_finalize() }
