package storedb

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"privnix/nix/storepath"
)

// Readers share a snapshot only until the next write returns: each write
// (register, add signatures, delete) is seen by the very next read.
func TestReadsSeeEveryReturnedWrite(t *testing.T) {
	db := newTestDB(t)
	p := mkPath(t, "snap")
	for round := range 3 {
		if ok, err := db.IsValid(p); ok || err != nil {
			t.Fatalf("round %d: IsValid before register = %v, %v", round, ok, err)
		}
		mustRegister(t, db, []PathInfo{mkInfo(p)}, nil)
		if ok, err := db.IsValid(p); !ok || err != nil {
			t.Fatalf("round %d: IsValid after register = %v, %v", round, ok, err)
		}
		sig := fmt.Sprintf("k:%d", round)
		if err := db.AddSignatures(p, []string{sig}); err != nil {
			t.Fatal(err)
		}
		info, ok, err := db.PathInfo(p)
		if err != nil || !ok || len(info.Sigs) != 1 || info.Sigs[0] != sig {
			t.Fatalf("round %d: sigs after AddSignatures = %v (%v, %v)", round, info.Sigs, ok, err)
		}
		if err := db.Delete(p); err != nil {
			t.Fatal(err)
		}
		if all, err := db.AllValid(); err != nil || len(all) != 0 {
			t.Fatalf("round %d: AllValid after delete = %v, %v", round, all, err)
		}
	}
}

// Concurrent readers and a writer: once a registration has returned, every
// read that starts afterwards sees it, and no read fails while snapshots are
// replaced under other readers.
func TestReadsDuringWrites(t *testing.T) {
	db := newTestDB(t)
	const n = 200
	ps := make([]storepath.Path, n)
	for i := range ps {
		ps[i] = mkPath(t, fmt.Sprintf("w-%d", i))
	}
	var registered atomic.Int64 // ps[:registered] have returned from RegisterValid
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	stop := make(chan struct{})
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := registered.Load()
				if k == 0 {
					continue
				}
				p := ps[(int64(i)*7+int64(r))%k]
				ok, err := db.IsValid(p)
				if err == nil && !ok {
					err = fmt.Errorf("%s registered but not valid", p.Base())
				}
				if err == nil {
					_, err = db.Referrers(p)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i, p := range ps {
		mustRegister(t, db, []PathInfo{mkInfo(p)}, nil)
		registered.Store(int64(i + 1))
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mustCheck(t, db)
}

// ClosureInfos: the asked paths first (invalid ones left out), then their
// closure breadth first, cut at extra, each path once.
func TestClosureInfos(t *testing.T) {
	db := newTestDB(t)
	a, b, c, d := mkPath(t, "a"), mkPath(t, "b"), mkPath(t, "c"), mkPath(t, "d")
	mustRegister(t, db, []PathInfo{mkInfo(d), mkInfo(c, d), mkInfo(b, c, d), mkInfo(a, a, b)}, nil)
	gone := mkPath(t, "gone")
	for _, tt := range []struct {
		ps    []storepath.Path
		extra int
		want  []storepath.Path
	}{
		{[]storepath.Path{a}, 0, []storepath.Path{a}},
		{[]storepath.Path{a, gone, a}, 1, []storepath.Path{a, b}},
		{[]storepath.Path{a}, 10, []storepath.Path{a, b, c, d}},
		{[]storepath.Path{c, a}, 10, []storepath.Path{c, a, d, b}},
		{[]storepath.Path{gone}, 10, nil},
	} {
		infos, err := db.ClosureInfos(tt.ps, tt.extra)
		if err != nil {
			t.Fatal(err)
		}
		var got []storepath.Path
		for _, i := range infos {
			got = append(got, i.Path)
		}
		if !slices.Equal(bases(got), bases(tt.want)) {
			t.Errorf("ClosureInfos(%v, %d) = %v, want %v", bases(tt.ps), tt.extra, bases(got), bases(tt.want))
		}
	}
}

// ReferrersClosure: the asked paths' referrers, then their referrers'
// closure breadth first, cut at extra, each path once; equal to Referrers.
func TestReferrersClosure(t *testing.T) {
	db := newTestDB(t)
	a, b, c, d := mkPath(t, "a"), mkPath(t, "b"), mkPath(t, "c"), mkPath(t, "d")
	mustRegister(t, db, []PathInfo{mkInfo(d), mkInfo(c, d), mkInfo(b, c, d), mkInfo(a, a, b)}, nil)
	gone := mkPath(t, "gone")
	for _, tt := range []struct {
		ps    []storepath.Path
		extra int
		want  []storepath.Path
	}{
		{[]storepath.Path{d}, 0, []storepath.Path{d}},
		{[]storepath.Path{d, gone, d}, 1, []storepath.Path{d, gone, b}},
		{[]storepath.Path{d}, 10, []storepath.Path{d, b, c, a}},
	} {
		got, err := db.ReferrersClosure(tt.ps, tt.extra)
		if err != nil {
			t.Fatal(err)
		}
		var paths []storepath.Path
		for _, e := range got {
			paths = append(paths, e.Path)
			want, err := db.Referrers(e.Path)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(bases(e.Referrers), bases(want)) {
				t.Errorf("referrers of %s: %v, want %v", e.Path.Base(), bases(e.Referrers), bases(want))
			}
		}
		if !slices.Equal(bases(paths), bases(tt.want)) {
			t.Errorf("ReferrersClosure(%v, %d) visits %v, want %v", bases(tt.ps), tt.extra, bases(paths), bases(tt.want))
		}
	}
}
