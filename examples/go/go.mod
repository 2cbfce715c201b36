module libreason.org/examples/reason-go

go 1.19

require libreason.org/go/reason v0.2.0

// The Go package of libreason as Debian's golang-libreason-dev installs it (it needs
// libreason-dev for pkg-config). The in-tree build replaces this path with the build tree's copy.
replace libreason.org/go/reason => /usr/share/gocode/src/libreason.org/go/reason
