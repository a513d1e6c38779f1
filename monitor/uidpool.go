package monitor

import (
	"errors"
	"sync"
)

// uidPool hands out uids from one of privnix's own ranges, each to one live
// child at a time. A uid comes back only when its holder has been killed and
// reaped (its PID namespace is gone), so no process of a released uid exists.
type uidPool struct {
	mu     sync.Mutex
	lo, hi uint32 // inclusive
	next   uint32
	inUse  map[uint32]bool // guarded by mu
}

var errUIDsExhausted = errors.New("every uid of the range is in use")

func newUIDPool(lo, hi uint32) *uidPool {
	return &uidPool{lo: lo, hi: hi, next: lo, inUse: map[uint32]bool{}}
}

// get returns a free uid, scanning round-robin from the last one handed out so
// that a uid is reused as late as possible.
func (p *uidPool) get() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := uint64(p.hi) - uint64(p.lo) + 1
	for i := uint64(0); i < n; i++ {
		u := p.next
		if p.next == p.hi {
			p.next = p.lo
		} else {
			p.next++
		}
		if !p.inUse[u] {
			p.inUse[u] = true
			return u, nil
		}
	}
	return 0, errUIDsExhausted
}

func (p *uidPool) put(u uint32) {
	p.mu.Lock()
	delete(p.inUse, u)
	p.mu.Unlock()
}
