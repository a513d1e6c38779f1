package monitor

import (
	"fmt"
	"slices"
	"sync"

	"privnix/monitor/gc"
	"privnix/nix/storepath"
)

// rootSet holds the temporary GC roots: each belongs to a connection and
// lives exactly as long as it (DESIGN.md "Garbage collection"). The collector
// claims each path it deletes here (claim) after taking its path lock; adding
// a temporary root on a claimed path waits until the deletion is over, as
// Nix's roots server makes addTempRoot wait while that very path is being
// deleted. A root added before the claim keeps the path.
type rootSet struct {
	mu       sync.Mutex
	temp     map[*session]map[storepath.Path]struct{} // guarded by mu
	deleting map[storepath.Path]bool                  // claimed by the collector; guarded by mu
	deleted  *sync.Cond                               // signalled when claims are released

	// collecting is held for a whole collection: one at a time, and
	// SyncWithGC waits for the running one.
	collecting sync.Mutex
}

func newRootSet() *rootSet {
	r := &rootSet{temp: map[*session]map[storepath.Path]struct{}{}, deleting: map[storepath.Path]bool{}}
	r.deleted = sync.NewCond(&r.mu)
	return r
}

func (r *rootSet) addTemp(s *session, p storepath.Path) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.deleting[p] {
		r.deleted.Wait()
	}
	if r.temp[s] == nil {
		r.temp[s] = map[storepath.Path]struct{}{}
	}
	r.temp[s][p] = struct{}{}
}

// dropSession forgets a connection's roots when it ends (or, through
// pruneLocked, when its client is seen gone before that).
func (r *rootSet) dropSession(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.temp, s)
}

// pruneLocked forgets the roots of connections whose client has hung up
// (their sessions end a moment later). The caller holds r.mu.
func (r *rootSet) pruneLocked() {
	for s := range r.temp {
		if s.clientGone() {
			delete(r.temp, s)
		}
	}
}

// all returns every connection's temporary roots.
func (r *rootSet) all() []storepath.Path {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneLocked()
	var out []storepath.Path
	for _, ps := range r.temp {
		for p := range ps {
			out = append(out, p)
		}
	}
	return out
}

// roots returns the temporary roots as FindRoots shows them to a trusted
// client: "{temp:<client pid>}", as Nix names them after the process.
func (r *rootSet) roots() []gc.Root {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneLocked()
	var out []gc.Root
	for s, ps := range r.temp {
		link := fmt.Sprintf("{temp:%d}", s.peer.PID)
		for p := range ps {
			out = append(out, gc.Root{Link: link, Path: p, Kind: gc.Temp})
		}
	}
	return out
}

// claim marks ps as being deleted and reports, for each, whether it has no
// temporary root (so it may still be deleted). The caller holds the path
// locks of ps; release ends the claim and wakes the waiting addTemp calls.
func (r *rootSet) claim(ps []storepath.Path) (release func(), free []bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneLocked()
	held := map[storepath.Path]bool{}
	for _, roots := range r.temp {
		for _, p := range ps {
			if _, ok := roots[p]; ok {
				held[p] = true
			}
		}
	}
	free = make([]bool, len(ps))
	for i, p := range ps {
		r.deleting[p] = true
		free[i] = !held[p]
	}
	ps = slices.Clone(ps)
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range ps {
			delete(r.deleting, p)
		}
		r.deleted.Broadcast()
	}, free
}

// syncWithGC waits for the running collection, if any.
func (r *rootSet) syncWithGC() {
	r.collecting.Lock()
	defer r.collecting.Unlock()
}
