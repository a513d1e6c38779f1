package gc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"privnix/nix/storepath"
)

// graph: a → b → c (chain); d → e, d → f, e → g, f → g (diamond); h alone;
// s refers to itself.
var graph = []pathSpec{
	{name: "c"}, {name: "b", refs: []string{"c"}}, {name: "a", refs: []string{"b"}},
	{name: "g"}, {name: "e", refs: []string{"g"}}, {name: "f", refs: []string{"g"}},
	{name: "d", refs: []string{"e", "f"}},
	{name: "h"}, {name: "s", refs: []string{"s"}},
}

func checkOrder(t *testing.T, s *testStore, order []storepath.Path) {
	t.Helper()
	pos := map[storepath.Path]int{}
	for i, p := range order {
		pos[p] = i
	}
	for _, p := range order {
		info, ok, err := s.db.PathInfo(p)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue // already deleted: check against the recorded infos below
		}
		for _, r := range info.References {
			if j, in := pos[r]; in && r != p && j < pos[p] {
				t.Errorf("%s comes before its referrer %s", r.Name(), p.Name())
			}
		}
	}
}

func TestLiveAndDeadOrder(t *testing.T) {
	s := newStore(t)
	ps := s.add(graph, nil)
	live, err := Live(namesOf(ps, "a", "e"), s.db, Keep{})
	if err != nil {
		t.Fatal(err)
	}
	var lv []storepath.Path
	for p := range live {
		lv = append(lv, p)
	}
	if got, want := bases(lv), bases(namesOf(ps, "a", "b", "c", "e", "g")); !slices.Equal(got, want) {
		t.Errorf("live %v, want %v", got, want)
	}
	dead, err := Dead(live, s.db, Keep{})
	if err != nil {
		t.Fatal(err)
	}
	var order []storepath.Path
	for _, d := range dead {
		order = append(order, d.Path)
		if d.NarSize != 1000 {
			t.Errorf("%s NarSize %d", d.Path.Name(), d.NarSize)
		}
	}
	if got, want := bases(order), bases(namesOf(ps, "d", "f", "h", "s")); !slices.Equal(got, want) {
		t.Errorf("dead %v, want %v", got, want)
	}
	checkOrder(t, s, order)
	// Nothing live: the whole diamond in referrer order.
	dead, err = Dead(map[storepath.Path]bool{}, s.db, Keep{})
	if err != nil {
		t.Fatal(err)
	}
	order = order[:0]
	for _, d := range dead {
		order = append(order, d.Path)
	}
	if len(order) != len(graph) {
		t.Fatalf("dead %d paths, want %d", len(order), len(graph))
	}
	checkOrder(t, s, order)
}

func TestCollectDeletesInReferrerOrder(t *testing.T) {
	modes(t, func(t *testing.T, wrap func(*deps) Deps) {
		s := newStore(t)
		ps := s.add(graph, nil)
		// A direct root (relative target, beneath a store path) and a root named
		// by a regular file.
		if err := os.Symlink(string(s.storeDir)+"/"+ps["a"].Base()+"/data", filepath.Join(s.stateDir, "gcroots", "a-root")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.stateDir, "gcroots", ps["h"].Base()), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		scan, err := ScanRootsDir(context.Background(), s.stateDir, s.storeDir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := bases(Paths(scan.Roots)), bases(namesOf(ps, "a", "h")); !slices.Equal(got, want) {
			t.Fatalf("roots %v, want %v", got, want)
		}
		infos, err := s.db.PathInfos(namesOf(ps, "d", "e", "f", "g", "s"))
		if err != nil {
			t.Fatal(err)
		}
		d := newDeps(s)
		res, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteDead, Roots: Paths(scan.Roots), StoreDir: s.storeDir}, wrap(d))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := bases(d.deleted), bases(namesOf(ps, "d", "e", "f", "g", "s")); !slices.Equal(got, want) {
			t.Errorf("deleted %v, want %v", got, want)
		}
		pos := map[storepath.Path]int{}
		for i, p := range d.deleted {
			pos[p] = i
		}
		for p, info := range infos {
			for _, r := range info.References {
				if r != p && pos[r] < pos[p] {
					t.Errorf("%s deleted before its referrer %s", r.Name(), p.Name())
				}
			}
		}
		if res.BytesFreed != 5000 || len(res.Paths) != 5 || !strings.HasPrefix(res.Paths[0], string(s.storeDir)+"/") {
			t.Errorf("result %+v", res)
		}
		for _, p := range d.deleted {
			if s.exists(p) || s.valid(p) {
				t.Errorf("%s still there", p.Name())
			}
		}
		for _, n := range []string{"a", "b", "c", "h"} {
			if !s.exists(ps[n]) || !s.valid(ps[n]) {
				t.Errorf("live %s was deleted", n)
			}
		}
		s.checkConsistent()
	})
}

func TestReturnLiveAndDead(t *testing.T) {
	s := newStore(t)
	ps := s.add(graph, nil)
	d := newDeps(s)
	d.AddTempRoot(ps["d"])
	d.AddTempRoot(mkPath(t, "not-valid-yet")) // a temp root may name a path not added yet
	res, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: ReturnLive, StoreDir: s.storeDir}, d)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{}
	for _, n := range []string{"d", "e", "f", "g"} {
		want = append(want, s.storeDir.String(ps[n]))
	}
	slices.Sort(want)
	got := slices.Sorted(slices.Values(res.Paths))
	if !slices.Equal(got, want) {
		t.Errorf("live %v, want %v", got, want)
	}
	res, err = Collect(context.Background(), Options{MaxFreed: NoLimit, Action: ReturnDead}, d)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(slices.Values(res.Paths)); !slices.Equal(got, bases(namesOf(ps, "a", "b", "c", "h", "s"))) {
		t.Errorf("dead %v", got)
	}
	if len(d.deleted) != 0 || res.BytesFreed != 0 {
		t.Errorf("returning paths deleted %v", d.deleted)
	}
}

func TestKeepDerivationsAndOutputs(t *testing.T) {
	modes(t, func(t *testing.T, wrap func(*deps) Deps) {
		specs := []pathSpec{
			{name: "src"},
			{name: "x.drv", refs: []string{"src"}},
			{name: "x", deriver: "x.drv"},
			{name: "y", deriver: "x.drv"}, // claims x.drv, which does not record it: no edge
		}
		outs := map[string]map[string]string{"x.drv": {"out": "x"}}
		cases := []struct {
			keep Keep
			root string
			live []string
		}{
			{Keep{}, "x", []string{"x"}},
			{Keep{Derivations: true}, "x", []string{"x", "x.drv", "src"}},
			{Keep{Derivations: true}, "y", []string{"y"}},
			{Keep{}, "x.drv", []string{"x.drv", "src"}},
			{Keep{Outputs: true}, "x.drv", []string{"x.drv", "src", "x"}},
			{Keep{Outputs: true, Derivations: true}, "x", []string{"x", "x.drv", "src"}},
		}
		for _, c := range cases {
			s := newStore(t)
			ps := s.add(specs, outs)
			d := newDeps(s)
			d.AddTempRoot(ps[c.root])
			if _, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteDead, Keep: c.keep}, wrap(d)); err != nil {
				t.Fatal(err)
			}
			for _, sp := range specs {
				want := slices.Contains(c.live, sp.name)
				if got := s.valid(ps[sp.name]); got != want {
					t.Errorf("keep %+v root %s: %s valid=%v, want %v", c.keep, c.root, sp.name, got, want)
				}
			}
			checkDeletedBefore(t, d.deleted, ps, c.keep)
			s.checkConsistent()
		}
	})
}

// checkDeletedBefore: with keep-derivations an output is deleted before its
// deriver; with keep-outputs (alone) a deriver before its outputs.
func checkDeletedBefore(t *testing.T, deleted []storepath.Path, ps map[string]storepath.Path, keep Keep) {
	t.Helper()
	i, j := slices.Index(deleted, ps["x"]), slices.Index(deleted, ps["x.drv"])
	if i < 0 || j < 0 {
		return
	}
	if keep.Derivations && !keep.Outputs && i > j {
		t.Errorf("keep-derivations: x.drv deleted before its output x")
	}
	if keep.Outputs && !keep.Derivations && j > i {
		t.Errorf("keep-outputs: x deleted before its deriver x.drv")
	}
}

func TestMaxFreed(t *testing.T) {
	modes(t, func(t *testing.T, wrap func(*deps) Deps) {
		s := newStore(t)
		var specs []pathSpec
		for _, n := range []string{"p1", "p2", "p3", "p4", "p5"} {
			specs = append(specs, pathSpec{name: n, size: 1000})
		}
		s.add(specs, nil)
		d := newDeps(s)
		// maxFreed 0: Nix 2.8 does not walk the store at all.
		for _, a := range []Action{ReturnLive, ReturnDead, DeleteDead} {
			res, err := Collect(context.Background(), Options{Action: a}, wrap(d))
			if err != nil || len(res.Paths) != 0 || len(d.deleted) != 0 {
				t.Errorf("action %d with max-freed 0: %v, %v", a, res.Paths, err)
			}
		}
		res, err := Collect(context.Background(), Options{Action: DeleteDead, MaxFreed: 1500}, wrap(d))
		if err != nil {
			t.Fatal(err)
		}
		// Nix stops once more than maxFreed bytes were freed.
		if len(res.Paths) != 2 || res.BytesFreed != 2000 {
			t.Errorf("max-freed 1500: %d paths, %d bytes", len(res.Paths), res.BytesFreed)
		}
		res, err = Collect(context.Background(), Options{Action: DeleteDead, MaxFreed: 2000}, wrap(d))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Paths) != 3 || res.BytesFreed != 3000 {
			t.Errorf("max-freed 2000: %d paths, %d bytes", len(res.Paths), res.BytesFreed)
		}
		s.checkConsistent()
	})
}

// countingDeps frees 300 bytes per path (files smaller than their NARs).
type countingDeps struct{ Deps }

func (c countingDeps) DeleteMany(names []string) ([]uint64, []error) {
	freed, errs := make([]uint64, len(names)), make([]error, len(names))
	for i, name := range names {
		freed[i], errs[i] = 300, c.Delete(name)
	}
	return freed, errs
}

type countingBatch struct {
	countingDeps
	BatchLocker
}

// counted adds DeleteCounting to x, keeping its BatchLocker.
func counted(x Deps) Deps {
	if b, ok := x.(BatchLocker); ok {
		return countingBatch{countingDeps{x}, b}
	}
	return countingDeps{x}
}

// With a CountingDeleter, BytesFreed and MaxFreed count the bytes it
// reports (nix-daemon's st_size sum), not NAR sizes.
func TestMaxFreedCounted(t *testing.T) {
	modes(t, func(t *testing.T, wrap func(*deps) Deps) {
		s := newStore(t)
		var specs []pathSpec
		for _, n := range []string{"p1", "p2", "p3", "p4", "p5"} {
			specs = append(specs, pathSpec{name: n, size: 1000})
		}
		s.add(specs, nil)
		d := newDeps(s)
		res, err := Collect(context.Background(), Options{Action: DeleteDead, MaxFreed: 500}, counted(wrap(d)))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Paths) != 2 || res.BytesFreed != 600 {
			t.Errorf("max-freed 500: %d paths, %d bytes", len(res.Paths), res.BytesFreed)
		}
		res, err = Collect(context.Background(), Options{Action: DeleteDead, MaxFreed: NoLimit}, counted(wrap(d)))
		if err != nil || len(res.Paths) != 3 || res.BytesFreed != 900 {
			t.Errorf("the rest: %d paths, %d bytes (%v)", len(res.Paths), res.BytesFreed, err)
		}
		s.checkConsistent()
	})
}

func TestDeleteSpecific(t *testing.T) {
	modes(t, func(t *testing.T, wrap func(*deps) Deps) {
		s := newStore(t)
		ps := s.add(graph, nil)
		d := newDeps(s)
		d.AddTempRoot(ps["a"])
		_, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteSpecific, Paths: namesOf(ps, "b"), StoreDir: s.storeDir}, wrap(d))
		var alive *AliveError
		if !errors.As(err, &alive) {
			t.Fatalf("deleting a live path: %v", err)
		}
		want := "Cannot delete path '" + s.storeDir.String(ps["b"]) + "' since it is still alive. To find out why, use: nix-store --query --roots"
		if err.Error() != want {
			t.Errorf("message %q\nwant    %q", err.Error(), want)
		}
		if len(d.deleted) != 0 || !s.valid(ps["b"]) {
			t.Fatal("a live path was touched")
		}
		// g is dead with its referrers e, f, d: all go, referrers first; h and s stay.
		res, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteSpecific, Paths: namesOf(ps, "g")}, wrap(d))
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(slices.Values(res.Paths)); !slices.Equal(got, bases(namesOf(ps, "d", "e", "f", "g"))) {
			t.Errorf("deleted %v", got)
		}
		if d.deleted[len(d.deleted)-1] != ps["g"] || d.deleted[0] != ps["d"] {
			t.Errorf("order %v", d.deleted)
		}
		for _, n := range []string{"a", "b", "c", "h", "s"} {
			if !s.valid(ps[n]) {
				t.Errorf("%s deleted", n)
			}
		}
		// A path that is not valid is ignored; a dead one before a live one is deleted.
		res, err = Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteSpecific, Paths: []storepath.Path{mkPath(t, "nope"), ps["h"], ps["c"]}}, wrap(d))
		if !errors.As(err, &alive) || !slices.Equal(res.Paths, []string{ps["h"].Base()}) {
			t.Errorf("h then live c: %v, %v", res.Paths, err)
		}
		s.checkConsistent()
	})
}

func TestIgnoreLivenessRefused(t *testing.T) {
	s := newStore(t)
	ps := s.add(graph, nil)
	d := newDeps(s)
	_, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteSpecific, Paths: namesOf(ps, "a"), IgnoreLiveness: true}, d)
	if !errors.Is(err, ErrIgnoreLiveness) || err.Error() != "you are not allowed to ignore liveness" {
		t.Errorf("got %v", err)
	}
	if !s.valid(ps["a"]) {
		t.Error("deleted anyway")
	}
}

// A client registers a temp root between the scan and the deletion: the
// path and everything it refers to stay.
func TestRacingTempRoot(t *testing.T) {
	modes(t, func(t *testing.T, wrap func(*deps) Deps) {
		s := newStore(t)
		ps := s.add(graph, nil)
		d := newDeps(s)
		d.beforeLk = func(p storepath.Path) {
			if p == ps["b"] {
				d.AddTempRoot(ps["b"])
			}
		}
		res, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteDead}, wrap(d))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"b", "c"} {
			if !s.valid(ps[n]) || !s.exists(ps[n]) {
				t.Errorf("%s deleted despite the racing temp root", n)
			}
			if slices.Contains(res.Paths, ps[n].Base()) {
				t.Errorf("%s reported deleted", n)
			}
		}
		if s.valid(ps["a"]) || s.valid(ps["d"]) || s.valid(ps["g"]) {
			t.Error("dead paths kept")
		}
		s.checkConsistent()
	})
}

// A path registered after the scan that refers to a dead path keeps it.
func TestRacingReferrer(t *testing.T) {
	modes(t, func(t *testing.T, wrap func(*deps) Deps) {
		s := newStore(t)
		ps := s.add([]pathSpec{{name: "lib"}}, nil)
		d := newDeps(s)
		d.beforeLk = func(p storepath.Path) {
			if p == ps["lib"] {
				// A seal takes a temp root on its output, then registers it.
				d.AddTempRoot(mkPath(t, "app"))
				s.add([]pathSpec{{name: "app", refs: []string{"lib"}}}, nil)
			}
		}
		if _, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteDead}, wrap(d)); err != nil {
			t.Fatal(err)
		}
		if !s.valid(ps["lib"]) || !s.exists(ps["lib"]) {
			t.Error("lib deleted under its new referrer")
		}
		s.checkConsistent()
	})
}

// The files of a path are removed after it is made invalid and marked
// pending: if removal fails, the DB never calls it valid while incomplete,
// and the pending mark tells start-up to remove it.
func TestRemovalFailureLeavesPending(t *testing.T) {
	modes(t, func(t *testing.T, wrap func(*deps) Deps) {
		s := newStore(t)
		ps := s.add([]pathSpec{{name: "x"}}, nil)
		d := newDeps(s)
		d.failRm = ps["x"]
		_, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteDead}, wrap(d))
		if err == nil {
			t.Fatal("no error")
		}
		if s.valid(ps["x"]) {
			t.Error("still valid")
		}
		pend, err := s.db.Pending()
		if err != nil || !slices.Equal(pend, []storepath.Path{ps["x"]}) {
			t.Errorf("pending %v, %v", pend, err)
		}
	})
}

func TestShownCensors(t *testing.T) {
	p := mkPath(t, "x")
	roots := []Root{{"/state/gcroots/r", p, Perm}, {"/home/u/result", p, Indirect}, {"/proc/1/exe", p, Runtime}, {"{temp:7}", p, Temp}}
	got := Shown(roots, false)
	want := []string{"/state/gcroots/r", "/home/u/result", CensoredLink, CensoredLink}
	for i := range got {
		if got[i].Link != want[i] {
			t.Errorf("%d: %q, want %q", i, got[i].Link, want[i])
		}
	}
	if tr := Shown(roots, true); !slices.Equal(tr, roots) {
		t.Error("trusted view censored")
	}
	if roots[2].Link != "/proc/1/exe" {
		t.Error("Shown changed its argument")
	}
}

func TestExtractStorePaths(t *testing.T) {
	dir := storepath.Dir("/nix/store")
	a, b := mkPath(t, "bash-5.1"), mkPath(t, "glibc-2.35")
	text := "PATH=" + dir.String(a) + "/bin:/usr/bin\x00X=" + dir.String(b) + "\x00" +
		"Y=/nix/store/tooshort-x\x00Z=/nix/store/" + strings.Repeat("e", 32) + "-bad\x00" + // e is not nix32
		"7f000-8000 r-xp 0 08:01 12 " + dir.String(b) + "/lib/libc.so.6\n" +
		dir.String(a) + "\n/nix/store/" + a.HashPart() + "-.hidden"
	got := ExtractStorePaths(dir, []byte(text))
	if want := []storepath.Path{a, b, b, a}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// BenchmarkCollect2000 deletes 2,000 dead paths (200 chains of 10) from a
// real storedb and store directory (issue 6's benchmark, without nix-daemon).
func BenchmarkCollect2000(b *testing.B) {
	b.Run("per-path", func(b *testing.B) { benchCollect(b, func(d *deps) Deps { return d }) })
	b.Run("batched", func(b *testing.B) { benchCollect(b, func(d *deps) Deps { return batchDeps{d} }) })
}

func benchCollect(b *testing.B, wrap func(*deps) Deps) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := newStore(b)
		var specs []pathSpec
		for c := 0; c < 200; c++ {
			for j := 0; j < 10; j++ {
				sp := pathSpec{name: fmt.Sprintf("b%d-c%d-%d", i, c, j)}
				if j > 0 {
					sp.refs = []string{fmt.Sprintf("b%d-c%d-%d", i, c, j-1)}
				}
				specs = append(specs, sp)
			}
		}
		s.add(specs, nil)
		d := newDeps(s)
		b.StartTimer()
		res, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteDead}, wrap(d))
		if err != nil || len(res.Paths) != 2000 {
			b.Fatalf("%d paths, %v", len(res.Paths), err)
		}
	}
}
