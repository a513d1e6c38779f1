package monitor

import (
	"sync"

	"privnix/nix/storepath"
)

// rootSet holds the temporary GC roots: each belongs to a connection and
// lives exactly as long as it (DESIGN.md "Garbage collection"). The collector
// takes the same lock before it deletes anything.
type rootSet struct {
	mu   sync.Mutex
	temp map[*session]map[storepath.Path]struct{} // guarded by mu
}

func newRootSet() *rootSet {
	return &rootSet{temp: map[*session]map[storepath.Path]struct{}{}}
}

func (r *rootSet) addTemp(s *session, p storepath.Path) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.temp[s] == nil {
		r.temp[s] = map[storepath.Path]struct{}{}
	}
	r.temp[s][p] = struct{}{}
}

// dropSession forgets a connection's roots when it ends.
func (r *rootSet) dropSession(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.temp, s)
}
