package monitor

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"privnix/nix/storepath"
)

// startWorker starts a storeproc as a fresh uid from its range and waits for
// its Hello. Each serves one upload and is killed after it.
func (m *Monitor) startWorker() (*child, error) {
	uid, err := m.spUIDs.get()
	if err != nil {
		return nil, fmt.Errorf("no free store worker uid: %w", err)
	}
	c, err := m.spawner.spawn(spawnSpec{role: roleStoreProc, uid: uid, asUID: m.root})
	if err != nil {
		m.spUIDs.put(uid)
		return nil, err
	}
	go m.forwardLogs(c)
	if err := awaitHello(c); err != nil {
		c.kill()
		m.spUIDs.put(uid)
		return nil, err
	}
	if err := c.conn.SetStoreDir(m.cfg.Paths.StoreDir); err != nil {
		c.kill()
		m.spUIDs.put(uid)
		return nil, err
	}
	return c, nil
}

// fileUID is the uid owning the files a worker writes: its own, or
// privnixd's when privnixd is not root (every child then runs as it; the
// uid taken from the pool is only a name for the worker).
func (m *Monitor) fileUID(w *child) uint32 {
	if !m.root {
		return uint32(os.Getuid())
	}
	return w.uid
}

// fileGID is fileUID's group: the worker's uid (a worker's gid is its
// uid), or privnixd's own gid.
func (m *Monitor) fileGID(w *child) uint32 {
	if !m.root {
		return uint32(os.Getgid())
	}
	return w.uid
}

// releaseWorker kills the worker (if it still runs) and returns its uid.
// Its staging directory must already be sealed or discarded.
func (m *Monitor) releaseWorker(c *child) {
	c.kill()
	m.spUIDs.put(c.uid)
}

// pathLocks serialise work on one store path across all connections, so that
// two clients adding the same path at once both succeed with one copy kept.
type pathLocks struct {
	mu   sync.Mutex
	held map[storepath.Path]*pathLock // guarded by mu
}

type pathLock struct {
	mu      sync.Mutex
	waiters int // guarded by pathLocks.mu
}

func newPathLocks() *pathLocks { return &pathLocks{held: map[storepath.Path]*pathLock{}} }

// lock takes p's lock and returns its release.
func (l *pathLocks) lock(p storepath.Path) func() {
	l.mu.Lock()
	pl := l.held[p]
	if pl == nil {
		pl = &pathLock{}
		l.held[p] = pl
	}
	pl.waiters++
	l.mu.Unlock()
	pl.mu.Lock()
	return func() {
		pl.mu.Unlock()
		l.mu.Lock()
		if pl.waiters--; pl.waiters == 0 {
			delete(l.held, p)
		}
		l.mu.Unlock()
	}
}

// lockMany takes the locks of ps in sorted order (the order every holder of
// several path locks must use, so two of them cannot deadlock) and returns
// their release. The collector locks a batch of paths this way.
func (l *pathLocks) lockMany(ps []storepath.Path) func() {
	sorted := slices.Clone(ps)
	slices.SortFunc(sorted, func(a, b storepath.Path) int { return strings.Compare(a.Base(), b.Base()) })
	sorted = slices.Compact(sorted)
	unlocks := make([]func(), 0, len(sorted))
	for _, p := range sorted {
		unlocks = append(unlocks, l.lock(p))
	}
	return func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
}
