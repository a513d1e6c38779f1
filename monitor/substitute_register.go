package monitor

import (
	"errors"
	"fmt"
	"sync"

	"privnix/monitor/storedb"
	"privnix/nix/storepath"
)

// A request's sealed downloads are registered in batches (group commit):
// every path sealed while the previous batch was being made durable goes in
// the next one, with one "pending" commit, its renames, one syncfs and one
// "valid" commit (DESIGN.md, sealing step 5). A path is reported valid only
// after that commit. A path may join a batch once its references are valid
// or queued before it, so each batch, in queue order, is closed under
// references, as RegisterValid requires.

// sealedPath is a sealed download waiting for its batch.
type sealedPath struct {
	up   *upload
	info storedb.PathInfo
	done chan error // buffered: the batch's verdict on this path
}

// registrar batches a request's registrations; one batch at a time.
type registrar struct {
	x      *subst
	mu     sync.Mutex
	queue  []*sealedPath            // guarded by mu
	busy   bool                     // a caller is committing batches; guarded by mu
	failed map[storepath.Path]error // paths whose registration failed; guarded by mu
}

func newRegistrar(x *subst) *registrar {
	return &registrar{x: x, failed: map[storepath.Path]error{}}
}

// register queues the sealed path, calls queued once it is in the queue (so
// that referrers queue after it), and returns once its batch is durable. The
// first caller that finds no batch in progress commits batches until the
// queue is empty.
func (r *registrar) register(up *upload, info storedb.PathInfo, queued func()) error {
	sp := &sealedPath{up: up, info: info, done: make(chan error, 1)}
	r.mu.Lock()
	r.queue = append(r.queue, sp)
	queued()
	if r.busy {
		r.mu.Unlock()
		return <-sp.done
	}
	r.busy = true
	for len(r.queue) > 0 {
		batch := r.queue
		r.queue = nil
		r.mu.Unlock()
		r.commit(batch)
		r.mu.Lock()
	}
	r.busy = false
	r.mu.Unlock()
	return <-sp.done
}

// refFailed says whether one of info's references failed in an earlier or
// this batch.
func (r *registrar) refFailed(info *storedb.PathInfo) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ref := range info.References {
		if r.failed[ref] != nil {
			return true
		}
	}
	return false
}

func (r *registrar) finish(sp *sealedPath, err error) {
	if err != nil {
		r.mu.Lock()
		r.failed[sp.info.Path] = err
		r.mu.Unlock()
	}
	sp.done <- err
}

// commit registers a batch: each path exactly once even when other clients
// add it meanwhile (the paths' locks are held throughout).
func (r *registrar) commit(batch []*sealedPath) {
	s := r.x.s
	m := s.m
	unlock := m.locks.lockMany(pathsOf(batch))
	defer unlock()
	// Temporary roots first, under the paths' locks (see session.register).
	for _, sp := range batch {
		m.roots.addTemp(s, sp.info.Path)
		for _, ref := range sp.info.References {
			m.roots.addTemp(s, ref)
		}
	}
	todo := r.newPaths(batch)
	if len(todo) == 0 {
		return
	}
	if err := m.store.with(func(db *storedb.DB) error { return db.MarkPending(pathsOf(todo)...) }); err != nil {
		r.failAll(todo, "registering the path", err)
		return
	}
	var renamed []*sealedPath
	for _, sp := range todo {
		if r.refFailed(&sp.info) {
			m.store.with(func(db *storedb.DB) error { return db.ClearPending(sp.info.Path) })
			r.finish(sp, r.refError(sp))
			continue
		}
		if err := sp.up.stage.CommitNoSync(sp.info.Path.Base()); err != nil {
			m.store.with(func(db *storedb.DB) error { return db.ClearPending(sp.info.Path) })
			r.finish(sp, r.internal("registering the path", err))
			continue
		}
		renamed = append(renamed, sp)
	}
	if len(renamed) == 0 {
		return
	}
	infos := make([]storedb.PathInfo, len(renamed))
	for i, sp := range renamed {
		infos[i] = sp.info
	}
	// Left pending on failure: the next start removes the renamed trees.
	err := m.store.with(func(db *storedb.DB) error {
		if err := m.store.files().Sync(); err != nil {
			return err
		}
		return db.RegisterValid(infos, nil)
	})
	if err != nil {
		r.failAll(renamed, "registering the path", err)
		return
	}
	for _, sp := range renamed {
		s.audit.Info("path registered", "path", m.store.dir.String(sp.info.Path), "nar_size", sp.info.NarSize)
		s.afterRegister(sp.info.Path) // a .drv: verified, its outputs recorded (build_drvs.go)
		sp.up.added = true
		r.finish(sp, nil)
	}
	m.autoOptimise(s.snap.set, pathsOf(renamed)...)
}

// newPaths answers the batch's paths that are valid already (another client
// added them) and those with a reference that is neither valid nor queued
// before them, and returns the rest, in queue order.
func (r *registrar) newPaths(batch []*sealedPath) []*sealedPath {
	m := r.x.s.m
	var valid []storepath.Path
	var refs []storepath.Path
	for _, sp := range batch {
		refs = append(refs, sp.info.Path)
		refs = append(refs, sp.info.References...)
	}
	if err := m.store.with(func(db *storedb.DB) (e error) { valid, e = db.ValidAmong(refs); return }); err != nil {
		r.failAll(batch, "checking references", err)
		return nil
	}
	ok := make(map[storepath.Path]bool, len(valid))
	for _, v := range valid {
		ok[v] = true
	}
	var todo []*sealedPath
	for _, sp := range batch {
		if ok[sp.info.Path] {
			sp.up.added = true
			r.finish(sp, nil)
			continue
		}
		if r.refFailed(&sp.info) {
			r.finish(sp, r.refError(sp))
			continue
		}
		if missing, ok := firstMissing(sp.info, ok); ok {
			r.finish(sp, refuseErr(fmt.Sprintf("cannot add path '%s' because its reference '%s' is not valid",
				m.store.dir.String(sp.info.Path), m.store.dir.String(missing))))
			continue
		}
		ok[sp.info.Path] = true // its referrers later in the batch may name it
		todo = append(todo, sp)
	}
	return todo
}

// firstMissing returns info's first reference (other than itself) not in ok.
func firstMissing(info storedb.PathInfo, ok map[storepath.Path]bool) (storepath.Path, bool) {
	for _, ref := range info.References {
		if ref != info.Path && !ok[ref] {
			return ref, true
		}
	}
	return storepath.Path{}, false
}

func (r *registrar) refError(sp *sealedPath) error {
	return &substError{msg: fmt.Sprintf("some references of path '%s' could not be realised", r.x.s.m.store.dir.String(sp.info.Path))}
}

// internal logs err in full and returns the short text a client sees.
func (r *registrar) internal(what string, err error) error {
	return replyError(r.x.s.failed(what, err))
}

func (r *registrar) failAll(sps []*sealedPath, what string, err error) {
	if errors.Is(err, storedb.ErrMissingReference) {
		for _, sp := range sps {
			r.finish(sp, refuseErr(err.Error()))
		}
		return
	}
	e := r.internal(what, err)
	for _, sp := range sps {
		r.finish(sp, e)
	}
}

func refuseErr(text string) error { return replyError(answer(refuse(text))) }

func pathsOf(sps []*sealedPath) []storepath.Path {
	ps := make([]storepath.Path, len(sps))
	for i, sp := range sps {
		ps[i] = sp.info.Path
	}
	return ps
}
