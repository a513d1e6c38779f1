package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"

	"privnix/monitor/storedb"
	"privnix/nix/storepath"
)

// Action is CollectGarbage's action (worker protocol op 20).
type Action uint64

const (
	ReturnLive     Action = 0 // --print-live
	ReturnDead     Action = 1 // --print-dead
	DeleteDead     Action = 2 // --gc
	DeleteSpecific Action = 3 // --delete PATHS
)

// DB is what Collect needs from the store database (*storedb.DB has it).
type DB interface {
	ReadDB
	// Delete makes ps invalid; it refuses (storedb.ErrLiveReferrer) while a
	// valid path outside ps refers to one of them.
	Delete(ps ...storepath.Path) error
	MarkPending(ps ...storepath.Path) error
	ClearPending(ps ...storepath.Path) error
}

// PendingDeleter is optional for DB: DeleteMarkPending is Delete and
// MarkPending of the same paths in one transaction (*storedb.DB has it),
// which closes the crash window between the two commits.
type PendingDeleter interface {
	DeleteMarkPending(ps ...storepath.Path) error
}

// Deps is what the monitor provides to Collect.
type Deps interface {
	DB() DB
	// Delete removes <store>/<name> from the filesystem (storefs.Store.Delete).
	Delete(name string) error
	// TempRoots returns the current temporary roots (connections, builds,
	// seals), from the monitor's memory.
	TempRoots() []storepath.Path
	// LockForDelete takes the lock that temp-root registration also takes
	// and reports whether p is still without a temporary root. Collect
	// re-checks p's referrers under it, makes p invalid and removes its files,
	// then calls unlock. A registration waits meanwhile; once it gets the
	// lock, p is either untouched or gone from the DB and the store.
	LockForDelete(p storepath.Path) (unlock func(), stillDead bool)
}

// Options of one collection.
type Options struct {
	Action Action
	Paths  []storepath.Path // DeleteSpecific
	// MaxFreed: deleting stops once more than MaxFreed bytes were freed
	// (Nix's check after each deletion). As in Nix 2.8, 0 makes ReturnLive,
	// ReturnDead and DeleteDead look at nothing and answer nothing. The
	// client sends NoLimit unless --max-freed is given.
	MaxFreed       uint64
	IgnoreLiveness bool // always refused, as by nix-daemon
	Keep           Keep
	// Roots: permanent, indirect and runtime roots (ScanRootsDir,
	// RuntimeRoots), found after the collection started. Temporary roots
	// come from Deps.TempRoots.
	Roots []storepath.Path
	// Log receives "deleting '<path>'" lines; nil discards them.
	Log *slog.Logger
	// StoreDir prints absolute paths in Result and errors.
	StoreDir storepath.Dir
}

// Result is CollectGarbage's answer.
type Result struct {
	Paths      []string // absolute; live, dead or deleted paths per Action
	BytesFreed uint64   // what Deps.Delete freed (CountingDeleter), else the deleted paths' NarSize
}

// CountingDeleter is optional for Deps: DeleteMany is Delete of several
// paths at once (one batch), returning for each the bytes it freed
// (nix-daemon's count: the st_size of every non-directory with one link) and
// its error. BytesFreed and MaxFreed then count those bytes, as Nix does,
// instead of NAR sizes. A NAR is never smaller than the files it holds, so
// batches sized by NarSize never overshoot MaxFreed.
type CountingDeleter interface {
	DeleteMany(names []string) (freed []uint64, errs []error)
}

// NoLimit is the client's default maxFreed (2^64-1).
const NoLimit = math.MaxUint64

// ErrIgnoreLiveness is nix-daemon's answer to ignoreLiveness.
var ErrIgnoreLiveness = errors.New("you are not allowed to ignore liveness")

// AliveError refuses DeleteSpecific of a live path, with Nix 2.8's text.
type AliveError struct{ Path string }

func (e *AliveError) Error() string {
	return fmt.Sprintf("Cannot delete path '%s' since it is still alive. To find out why, use: nix-store --query --roots", e.Path)
}

// Collect runs one collection (Nix's collectGarbage, §6.7):
//
//  1. live = the closure of opts.Roots and Deps.TempRoots (Live);
//  2. ReturnLive answers live, ReturnDead the rest (Dead's order);
//  3. DeleteDead deletes the dead paths in Dead's order (referrers first) until
//     more than MaxFreed bytes were freed; DeleteSpecific refuses the first
//     requested live path with AliveError and otherwise deletes each
//     requested valid path together with its dead referrers (and keep-*
//     neighbours), in the same order. Requested paths that are not valid are
//     ignored: privnixd deletes nothing it did not register.
//
// Each deletion (deleteOne) happens under Deps.LockForDelete and re-checks
// what may have changed since step 1: a new temporary root on the path, a
// new valid referrer, a neighbour that turned out alive. A path found alive
// then is kept, and so is everything it keeps alive, because everything
// that refers to a kept path is itself kept by the same re-check.
//
// Crash safety (DESIGN.md invariant 3): a path is made invalid in the DB
// first, then marked pending, then its files are removed; the pending marks
// are cleared at the end. A crash after the second step leaves a pending,
// invalid path, which the monitor's start-up cleanup removes; between the
// first and second step (two commits apart) it leaves an unregistered
// directory, unless the DB implements PendingDeleter (both in one commit).
// The mark never comes first: start-up removes every pending path, so a
// crash would then delete the files of a path the DB still calls valid.
func Collect(ctx context.Context, opts Options, deps Deps) (Result, error) {
	if opts.IgnoreLiveness {
		return Result{}, ErrIgnoreLiveness
	}
	if opts.MaxFreed == 0 && opts.Action != DeleteSpecific {
		return Result{}, nil // Nix 2.8 walks the store only "if (options.maxFreed > 0)"
	}
	db := deps.DB()
	roots := append(append([]storepath.Path(nil), opts.Roots...), deps.TempRoots()...)
	live, err := Live(roots, db, opts.Keep)
	if err != nil {
		return Result{}, err
	}
	c := &collector{opts: opts, deps: deps, db: db, live: live, kept: map[storepath.Path]bool{}}
	switch opts.Action {
	case ReturnLive:
		all, err := db.AllValid()
		if err != nil {
			return Result{}, fmt.Errorf("gc: %w", err)
		}
		for _, p := range all {
			if live[p] {
				c.res.Paths = append(c.res.Paths, c.show(p))
			}
		}
		return c.res, nil
	case ReturnDead:
		dead, err := Dead(live, db, opts.Keep)
		if err != nil {
			return Result{}, err
		}
		for _, d := range dead {
			c.res.Paths = append(c.res.Paths, c.show(d.Path))
		}
		return c.res, nil
	case DeleteDead:
		dead, err := Dead(live, db, opts.Keep)
		if err != nil {
			return Result{}, err
		}
		c.dead = make(map[storepath.Path]bool, len(dead))
		for _, d := range dead {
			c.dead[d.Path] = true
		}
		err = c.deleteAll(ctx, dead)
		return c.res, errors.Join(err, c.finish())
	case DeleteSpecific:
		err := c.deleteSpecific(ctx)
		return c.res, errors.Join(err, c.finish())
	}
	return Result{}, fmt.Errorf("gc: unknown action %d", opts.Action)
}

type collector struct {
	opts    Options
	deps    Deps
	db      DB
	live    map[storepath.Path]bool
	dead    map[storepath.Path]bool // the paths this run may delete
	kept    map[storepath.Path]bool // dead at the scan, found alive at deletion
	pending []storepath.Path        // marked pending by this run
	res     Result
	stopped bool // MaxFreed reached
}

func (c *collector) show(p storepath.Path) string {
	if c.opts.StoreDir == "" {
		return p.Base()
	}
	return c.opts.StoreDir.String(p)
}

func (c *collector) maxFreed() uint64 { return c.opts.MaxFreed }

// deleteSpecific deletes each requested path with its referrers closure.
func (c *collector) deleteSpecific(ctx context.Context) error {
	var requested []storepath.Path
	for _, p := range c.opts.Paths {
		_, ok, err := c.db.PathInfo(p)
		if err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		if ok {
			requested = append(requested, p)
		}
	}
	done := map[storepath.Path]bool{}
	for _, p := range requested {
		if c.stopped {
			return nil
		}
		if done[p] {
			continue
		}
		if c.live[p] {
			return &AliveError{Path: c.show(p)}
		}
		closure, err := c.reverseClosure(p)
		if err != nil {
			return err
		}
		c.dead = map[storepath.Path]bool{}
		for _, q := range closure {
			c.dead[q] = true
		}
		ordered, err := orderDead(closure, c.db, c.opts.Keep)
		if err != nil {
			return err
		}
		if err := c.deleteAll(ctx, ordered); err != nil {
			return err
		}
		for _, q := range closure {
			done[q] = true
		}
		if c.kept[p] {
			return &AliveError{Path: c.show(p)}
		}
	}
	return nil
}

// reverseClosure is p and every valid path that keeps it alive, transitively
// (all dead when p is: the live set is closed under forward edges).
func (c *collector) reverseClosure(p storepath.Path) ([]storepath.Path, error) {
	seen := map[storepath.Path]bool{p: true}
	out := []storepath.Path{p}
	for i := 0; i < len(out); i++ {
		prev, err := reverse(c.db, out[i], c.opts.Keep)
		if err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
		for _, q := range prev {
			if !seen[q] {
				seen[q] = true
				out = append(out, q)
			}
		}
	}
	return out, nil
}

// BatchLocker is optional for Deps: with it, Collect takes the lock once for
// up to BatchSize paths and invalidates them in one database commit instead
// of two commits per path (about 1.5 ms each with SyncWrites on ext4). The
// contract is LockForDelete's for every path of ps at once; stillDead[i]
// is for ps[i]. The lock is held while the batch's files are removed.
type BatchLocker interface {
	LockForDeleteMany(ps []storepath.Path) (unlock func(), stillDead []bool)
}

// BatchSize is how many paths Collect deletes under one BatchLocker lock:
// one durable commit per batch (storedb's DeleteMarkPending), one removal
// call (CountingDeleter). 2,000 dead files (make bench's gc-2000) take two
// batches; with 64 per batch the commits' syncs were most of the wall time.
// A registration of a path of the batch waits for the batch to end.
const BatchSize = 1024

func (c *collector) deleteAll(ctx context.Context, dead []DeadPath) error {
	bl, batched := c.deps.(BatchLocker)
	for i := 0; i < len(dead) && !c.stopped; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := 1
		if batched {
			n = c.batchLen(dead[i:])
		}
		chunk := dead[i : i+n]
		ps := make([]storepath.Path, n)
		for j, d := range chunk {
			ps[j] = d.Path
		}
		var unlock func()
		var stillDead []bool
		if batched {
			unlock, stillDead = bl.LockForDeleteMany(ps)
		} else {
			var ok bool
			unlock, ok = c.deps.LockForDelete(ps[0])
			stillDead = []bool{ok}
		}
		err := c.deleteLocked(chunk, stillDead)
		unlock()
		if err != nil {
			return err
		}
		i += n
	}
	return nil
}

// batchLen is how many of dead the next batch takes: at most BatchSize,
// and no more than it takes to free more than MaxFreed bytes (Nix stops
// right after the path that crosses it).
func (c *collector) batchLen(dead []DeadPath) int {
	freed, limit := c.res.BytesFreed, c.maxFreed()
	n := 0
	for n < len(dead) && n < BatchSize {
		freed += dead[n].NarSize
		n++
		if freed > limit {
			break
		}
	}
	return n
}

// deleteLocked deletes the paths of chunk (in order) that are still dead;
// the caller holds the lock for all of them. A path is kept if it got a
// temporary root (stillDead false) or if a valid path that would keep it
// alive (a referrer, a keep-* neighbour) was not dead at the scan or has
// been kept since. The others are made invalid (storedb.Delete, which
// itself refuses a valid referrer outside the set), marked pending, and
// their files removed.
func (c *collector) deleteLocked(chunk []DeadPath, stillDead []bool) error {
	var victims []DeadPath
	for i, d := range chunk {
		alive := !stillDead[i]
		if !alive {
			prev, err := reverse(c.db, d.Path, c.opts.Keep)
			if err != nil {
				return fmt.Errorf("gc: %w", err)
			}
			for _, q := range prev {
				if !c.dead[q] || c.kept[q] {
					alive = true
					break
				}
			}
		}
		if alive {
			c.kept[d.Path] = true
			continue
		}
		victims = append(victims, d)
	}
	if len(victims) == 0 {
		return nil
	}
	ps := make([]storepath.Path, len(victims))
	for i, d := range victims {
		ps[i] = d.Path
	}
	pd, atomic := c.db.(PendingDeleter)
	var err error
	if atomic {
		err = pd.DeleteMarkPending(ps...)
	} else {
		err = c.db.Delete(ps...)
	}
	if errors.Is(err, storedb.ErrLiveReferrer) && len(victims) > 1 {
		// Someone refers to one of them now: find which, one at a time.
		for _, d := range victims {
			if err := c.deleteLocked([]DeadPath{d}, []bool{true}); err != nil {
				return err
			}
		}
		return nil
	}
	if errors.Is(err, storedb.ErrLiveReferrer) {
		c.kept[ps[0]] = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	if !atomic {
		if err := c.db.MarkPending(ps...); err != nil {
			return fmt.Errorf("gc: %d paths are invalid but still in the store: %w", len(ps), err)
		}
	}
	c.pending = append(c.pending, ps...)
	freed, rmErrs := c.remove(victims)
	var errs []error
	for i, d := range victims {
		if rmErrs[i] != nil {
			errs = append(errs, fmt.Errorf("gc: removing %s (invalid, pending removal at start-up): %w", c.show(d.Path), rmErrs[i]))
			continue
		}
		c.res.Paths = append(c.res.Paths, c.show(d.Path))
		c.res.BytesFreed += freed[i]
		if c.res.BytesFreed > c.maxFreed() {
			c.stopped = true
		}
	}
	return errors.Join(errs...)
}

// remove removes the files of victims (already invalid and pending) and
// returns what each freed: the CountingDeleter's count, else its NarSize.
func (c *collector) remove(victims []DeadPath) (freed []uint64, errs []error) {
	names := make([]string, len(victims))
	for i, d := range victims {
		names[i] = d.Path.Base()
		if c.opts.Log != nil {
			c.opts.Log.Info("deleting '" + c.show(d.Path) + "'")
		}
	}
	if cd, ok := c.deps.(CountingDeleter); ok {
		return cd.DeleteMany(names)
	}
	freed, errs = make([]uint64, len(victims)), make([]error, len(victims))
	for i, d := range victims {
		freed[i], errs[i] = d.NarSize, c.deps.Delete(names[i])
	}
	return freed, errs
}

// finish clears the pending marks of the paths whose files are gone.
func (c *collector) finish() error {
	if len(c.pending) == 0 {
		return nil
	}
	// A path whose removal failed stays pending (start-up removes it); the
	// others are done.
	removed := map[string]bool{}
	for _, s := range c.res.Paths {
		removed[s] = true
	}
	var clear []storepath.Path
	for _, p := range c.pending {
		if removed[c.show(p)] {
			clear = append(clear, p)
		}
	}
	if len(clear) == 0 {
		return nil
	}
	if err := c.db.ClearPending(clear...); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	return nil
}
