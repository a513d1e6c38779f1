package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"privnix/ipc/msg"
	"privnix/monitor/gc"
	"privnix/monitor/storedb"
	"privnix/nix/conf"
	"privnix/nix/storepath"
)

// Garbage collection (worker ops 20 and 14), over monitor/gc.
//
// One collection runs at a time (rootSet.collecting). The roots are
// gathered after that lock is taken: the state directory's gcroots and
// profiles (indirect roots resolved as their owners), the runtime roots from
// /proc, and every connection's temporary roots. Each deletion then takes the
// path locks registration takes and claims the paths in the rootSet: a
// registration of the same path waits for the deletion to end, and a
// temporary root added before the claim keeps the path (gc.Collect
// re-checks under the lock). Registration adds its temporary roots first
// thing under its path lock (handlers_upload.go register), so a path a live
// client added cannot be collected under it.

// gcTimeout bounds one collection or root search.
const gcTimeout = 30 * time.Minute

func handleCollectGarbage(s *session, req msg.Message, _ []*os.File) (reply, error) {
	c := req.(*msg.CollectGarbage)
	paths, err := s.paths(c.Paths)
	if err != nil {
		return reply{}, err
	}
	if c.IgnoreLiveness {
		return answer(refuse(gc.ErrIgnoreLiveness.Error())), nil
	}
	s.m.roots.collecting.Lock()
	defer s.m.roots.collecting.Unlock()
	res, saved, err := s.m.collect(s.audit, s.snap.set, gc.Action(c.Action), paths, c.MaxFreed)
	var alive *gc.AliveError
	switch {
	case errors.As(err, &alive):
		return answer(refuse(alive.Error())), nil
	case errors.Is(err, gc.ErrIgnoreLiveness):
		return answer(refuse(err.Error())), nil
	case err != nil:
		return s.failed("garbage collection", err), nil
	}
	return gcReply(res, saved), nil
}

// collect runs one collection; the caller holds roots.collecting. It
// returns the result and what .links still saves (after a deleting action,
// which ends by removing unused links, as Nix's collector does).
func (m *Monitor) collect(audit *slog.Logger, set *conf.Settings, action gc.Action, paths []storepath.Path, maxFreed uint64) (gc.Result, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), gcTimeout)
	defer cancel()
	deleting := action == gc.DeleteDead || action == gc.DeleteSpecific
	roots, err := m.gatherRoots(ctx, deleting)
	if err != nil {
		return gc.Result{}, 0, fmt.Errorf("finding garbage collector roots: %w", err)
	}
	opts := gc.Options{
		Action:   action,
		Paths:    paths,
		MaxFreed: maxFreed,
		Keep:     gc.Keep{Outputs: set.KeepOutputs, Derivations: set.KeepDerivations},
		Roots:    gc.Paths(roots),
		StoreDir: m.store.dir,
	}
	audit.Info("garbage collection started", "action", uint64(action), "paths", len(paths), "max_freed", maxFreed, "roots", len(roots))
	res, err := gc.Collect(ctx, opts, &gcDeps{m: m, audit: audit})
	var saved int64
	if err == nil && deleting {
		var freed uint64
		freed, saved, err = m.store.files().RemoveUnusedLinks()
		res.BytesFreed += freed
	}
	audit.Info("garbage collection ended", "action", uint64(action), "paths", len(res.Paths), "bytes_freed", res.BytesFreed)
	return res, saved, err
}

// gatherRoots finds the permanent, indirect and runtime roots of valid
// paths; when deleting (as Nix) it also removes stale links in gcroots/auto.
func (m *Monitor) gatherRoots(ctx context.Context, removeStale bool) ([]gc.Root, error) {
	cfg := gc.RootsConfig{StateDir: m.cfg.Paths.StateDir, StoreDir: m.store.dir}
	if m.root {
		cfg.Resolve = gc.ExecResolver{}.Resolve
	}
	roots, scan, stats, err := gc.Gather(ctx, cfg, gcDB{m.store})
	if err != nil {
		return nil, err
	}
	for _, u := range scan.Unresolved {
		m.log.Warn("an indirect GC root could not be read; it protects nothing this time", "link", u.Link, "target", u.Target, "err", u.Err)
	}
	if stats.Unreadable > 0 {
		m.log.Debug("runtime roots: some processes could not be read", "unreadable", stats.Unreadable, "processes", stats.Processes)
	}
	if removeStale && len(scan.Stale) > 0 && m.root {
		for _, l := range scan.Stale {
			m.log.Info("removing stale link", "link", l)
		}
		if err := gc.RemoveStale(m.cfg.Paths.StateDir, scan.Stale); err != nil {
			m.log.Warn("removing stale GC root links", "err", err)
		}
	}
	return roots, nil
}

// gcReply splits the result's paths into frames; BytesFreed and LinksSaved
// are on the last.
func gcReply(res gc.Result, saved int64) reply {
	var rep reply
	parts := frames(res.Paths, msg.MaxPaths, func(p string) int { return len(p) + 8 })
	for i, part := range parts {
		m := &msg.GCResult{More: i < len(parts)-1}
		for _, p := range part {
			m.Paths = append(m.Paths, msg.StorePath(p))
		}
		if !m.More {
			m.BytesFreed, m.LinksSaved = res.BytesFreed, saved
		}
		rep.msgs = append(rep.msgs, m)
	}
	return rep
}

// frames cuts items into runs of at most maxItems items and about half a frame
// of bytes (size of each), for an answer sent as several frames with More.
// There is always at least one run.
func frames[T any](items []T, maxItems int, size func(T) int) [][]T {
	const budget = msg.MaxBody / 2
	out := [][]T{nil}
	n := 0
	for _, it := range items {
		k := size(it)
		if last := out[len(out)-1]; len(last) == maxItems || n+k > budget {
			out, n = append(out, nil), 0
		}
		out[len(out)-1] = append(out[len(out)-1], it)
		n += k
	}
	return out
}

func handleFindRoots(s *session, _ msg.Message, _ []*os.File) (reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), gcTimeout)
	defer cancel()
	roots, err := s.m.gatherRoots(ctx, false)
	if err != nil {
		return s.failed("finding garbage collector roots", err), nil
	}
	roots = gc.Shown(append(roots, s.m.roots.roots()...), s.trusted)
	// Nix keeps a set of links per path: a censored link is listed once.
	type key struct {
		link string
		path storepath.Path
	}
	seen := map[key]bool{}
	var shown []msg.Root
	for _, r := range roots {
		k := key{r.Link, r.Path}
		if seen[k] {
			continue
		}
		seen[k] = true
		mr := msg.Root{Link: r.Link, Path: msg.StorePath(s.m.store.dir.String(r.Path))}
		if mr.Validate() != nil {
			s.log.Warn("a GC root that cannot be shown was left out", "link", r.Link)
			continue
		}
		shown = append(shown, mr)
	}
	var rep reply
	parts := frames(shown, msg.MaxRoots, func(r msg.Root) int { return len(r.Link) + len(r.Path) + 16 })
	for i, part := range parts {
		rep.msgs = append(rep.msgs, &msg.Roots{Roots: part, More: i < len(parts)-1})
	}
	return rep, nil
}

// gcDeps is gc.Deps (and gc.BatchLocker, gc.CountingDeleter) over the monitor's store, path
// locks and temporary roots.
type gcDeps struct {
	m     *Monitor
	audit *slog.Logger
}

func (d *gcDeps) DB() gc.DB { return gcDB{d.m.store} }

// Delete removes the tree of a path the collector made invalid (fd-relative,
// storefs) and records it in the audit log.
func (d *gcDeps) Delete(name string) error {
	if err := d.m.store.files().Delete(name); err != nil {
		return err
	}
	d.audit.Info("path deleted", "path", string(d.m.store.dir)+"/"+name)
	return nil
}

// DeleteMany removes the trees of paths the collector made invalid
// (storefs: files unlinked in place, directories through one trash
// directory) and reports the bytes freed as nix-daemon counts them. The
// batch is recorded in the audit log as one record naming every path.
func (d *gcDeps) DeleteMany(names []string) ([]uint64, []error) {
	freed, errs := d.m.store.files().DeleteMany(names)
	var gone []string
	for i, name := range names {
		if errs[i] == nil {
			gone = append(gone, string(d.m.store.dir)+"/"+name)
		}
	}
	if len(gone) > 0 {
		d.audit.Info("path deleted", "count", len(gone), "paths", strings.Join(gone, " "))
	}
	return freed, errs
}

func (d *gcDeps) TempRoots() []storepath.Path { return d.m.roots.all() }

func (d *gcDeps) LockForDelete(p storepath.Path) (func(), bool) {
	unlock, free := d.LockForDeleteMany([]storepath.Path{p})
	return unlock, free[0]
}

func (d *gcDeps) LockForDeleteMany(ps []storepath.Path) (func(), []bool) {
	unlock := d.m.locks.lockMany(ps)
	release, free := d.m.roots.claim(ps)
	return func() { release(); unlock() }, free
}

// gcDB is gc.DB over the monitor's current database: the store's read lock
// is held for one operation at a time, never for a whole collection.
type gcDB struct{ st *storeState }

func (g gcDB) PathInfo(p storepath.Path) (info storedb.PathInfo, ok bool, err error) {
	err = g.st.with(func(db *storedb.DB) (e error) { info, ok, e = db.PathInfo(p); return })
	return
}

func (g gcDB) Referrers(p storepath.Path) (ps []storepath.Path, err error) {
	err = g.st.with(func(db *storedb.DB) (e error) { ps, e = db.Referrers(p); return })
	return
}

func (g gcDB) ValidDerivers(p storepath.Path) (ps []storepath.Path, err error) {
	err = g.st.with(func(db *storedb.DB) (e error) { ps, e = db.ValidDerivers(p); return })
	return
}

func (g gcDB) DerivationOutputs(drv storepath.Path) (outs map[string]storepath.Path, err error) {
	err = g.st.with(func(db *storedb.DB) (e error) { outs, e = db.DerivationOutputs(drv); return })
	return
}

func (g gcDB) AllValid() (ps []storepath.Path, err error) {
	err = g.st.with(func(db *storedb.DB) (e error) { ps, e = db.AllValid(); return })
	return
}

func (g gcDB) ValidAmong(in []storepath.Path) (ps []storepath.Path, err error) {
	err = g.st.with(func(db *storedb.DB) (e error) { ps, e = db.ValidAmong(in); return })
	return
}

func (g gcDB) Delete(ps ...storepath.Path) error {
	return g.st.with(func(db *storedb.DB) error { return db.Delete(ps...) })
}

func (g gcDB) DeleteMarkPending(ps ...storepath.Path) error {
	return g.st.with(func(db *storedb.DB) error { return db.DeleteMarkPending(ps...) })
}

func (g gcDB) MarkPending(ps ...storepath.Path) error {
	return g.st.with(func(db *storedb.DB) error { return db.MarkPending(ps...) })
}

func (g gcDB) ClearPending(ps ...storepath.Path) error {
	return g.st.with(func(db *storedb.DB) error { return db.ClearPending(ps...) })
}
