package gc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"privnix/monitor/storedb"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// TestAddsRacingCollections runs 200 adds against collections that loop
// without pause, with the monitor's protocol: a temp root is taken (under
// the lock the collector's deletions take) before a path is used or
// registered. Every path an add holds a temp root on must be valid and in the
// store until the add drops its roots.
func TestAddsRacingCollections(t *testing.T) {
	modes(t, func(t *testing.T, wrap func(*deps) Deps) {
		s := newStore(t)
		d := newDeps(s)
		s.add([]pathSpec{{name: "seed"}}, nil)
		var stop atomic.Bool
		var wg sync.WaitGroup
		var runs, deleted atomic.Int64
		var gcErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				res, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteDead}, wrap(d))
				if err != nil {
					gcErr = err
					return
				}
				runs.Add(1)
				deleted.Add(int64(len(res.Paths)))
			}
		}()
		added := []storepath.Path{mkPath(t, "seed")}
		for i := 0; i < 200 && !t.Failed(); i++ {
			// Refer to an earlier add (often dead, maybe being deleted right now).
			prev := added[len(added)-1-i%min(len(added), 7)]
			held := map[storepath.Path]int{}
			hold := func(p storepath.Path) { d.AddTempRoot(p); held[p]++ }
			// Use it as a reference if it is still there once rooted.
			hold(prev)
			var refs []storepath.Path
			if s.valid(prev) {
				refs = []storepath.Path{prev}
			}
			x := mkPath(t, fmt.Sprintf("add-%d", i))
			hold(x)
			dir := filepath.Join(string(s.storeDir), x.Base())
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			info := storedb.PathInfo{Path: x, NarHash: nixhash.Sum(nixhash.SHA256, []byte(x.Base())), NarSize: 10, References: refs}
			if err := s.db.RegisterValid([]storedb.PathInfo{info}, nil); err != nil {
				t.Fatalf("add %d: %v", i, err)
			}
			for _, p := range append(refs, x) {
				if !s.valid(p) || !s.exists(p) {
					t.Errorf("add %d: %s collected under its temp root", i, p.Name())
				}
			}
			// The add ends: its roots go.
			d.mu.Lock()
			for p := range held {
				delete(d.temp, p)
			}
			d.mu.Unlock()
			added = append(added, x)
		}
		stop.Store(true)
		wg.Wait()
		if gcErr != nil {
			t.Fatal(gcErr)
		}
		if runs.Load() < 2 || deleted.Load() == 0 {
			t.Errorf("%d collections deleted %d paths: no race happened", runs.Load(), deleted.Load())
		}
		t.Logf("%d collections, %d paths deleted", runs.Load(), deleted.Load())
		s.checkConsistent()
	})
}
