package reason

import "sync"

// gate guards a native handle against use after Close: calls enter() and leave() around their
// native call; close waits for the calls in progress. It does not order generations and training
// steps: the native library does (a step is its model's one writer: it waits for generations in
// progress, holds new ones back, and fails at once while a stream on the model is open or when
// called from a token callback on it), for every language alike.
type gate struct {
	mu      sync.Mutex
	cond    sync.Cond
	users   int // entries in progress (incl. open streams)
	streams int // open streams among users
	closed  bool
	deps    map[dependent]struct{} // objects that use this one and close with it
}

// dependent is an object (stream, trainer) that must be closed before the object it uses.
type dependent interface{ closeFromOwner() }

func (g *gate) init() { g.cond.L = &g.mu }

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.users++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	g.users--
	if g.users == 0 {
		g.cond.Broadcast()
	}
	g.mu.Unlock()
}

// addDep registers d to be closed first when this object closes; false if already closed. A
// stream also takes a shared entry, released by endStream when its generation ends.
func (g *gate) addDep(d dependent, stream bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.deps == nil {
		g.deps = make(map[dependent]struct{})
	}
	g.deps[d] = struct{}{}
	if stream {
		g.users++
		g.streams++
	}
	return true
}

// endStream releases the entry a stream took in addDep (its generation has ended).
func (g *gate) endStream() {
	g.mu.Lock()
	g.users--
	g.streams--
	if g.users == 0 {
		g.cond.Broadcast()
	}
	g.mu.Unlock()
}

// removeDep forgets d.
func (g *gate) removeDep(d dependent) {
	g.mu.Lock()
	delete(g.deps, d)
	g.mu.Unlock()
}

// shut marks the gate closed, closes the dependents, then waits for calls in progress. It
// returns false if the gate was already closed (the caller must not free twice).
func (g *gate) shut() bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.closed = true
	deps := make([]dependent, 0, len(g.deps))
	for d := range g.deps {
		deps = append(deps, d)
	}
	g.mu.Unlock()
	for _, d := range deps {
		d.closeFromOwner() // calls removeDep
	}
	g.mu.Lock()
	for g.users > 0 {
		g.cond.Wait()
	}
	g.mu.Unlock()
	return true
}

func (g *gate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}
