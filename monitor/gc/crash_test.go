package gc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"privnix/monitor/storedb"
	"privnix/nix/storepath"
)

const crashEnv = "PRIVNIX_GC_CRASH_ROOT"

// crashStore opens the store under root without registering a Close: the
// crash test hands the database to a child process and back.
func crashStore(t *testing.T, root string) *testStore {
	t.Helper()
	s := &testStore{t: t, root: root, storeDir: storepath.Dir(filepath.Join(root, "store")), stateDir: filepath.Join(root, "state")}
	for _, d := range []string{string(s.storeDir), s.stateDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	db, err := storedb.Open(filepath.Join(s.stateDir, "db"), storedb.Options{StoreDir: s.storeDir})
	if err != nil {
		t.Fatal(err)
	}
	s.db = db
	return s
}

// TestKillDuringCollect kills (SIGKILL) a process in the middle of deleting
// 600 paths, then checks invariant 3 on what it left: the database is
// well-formed and closed under references, every valid path is complete in
// the store, no path is both valid and pending, and every store entry that
// is not valid is pending (start-up removes it) — except at most the one
// path between its invalidation and its pending mark (no PendingDeleter).
func TestKillDuringCollect(t *testing.T) {
	if root := os.Getenv(crashEnv); root != "" {
		s := crashStore(t, root)
		d := newDeps(s)
		// One commit per path is fast enough to end between two of the
		// parent's looks at the store on a loaded machine: pace it.
		d.beforeLk = func(storepath.Path) { time.Sleep(time.Millisecond) }
		_, err := Collect(context.Background(), Options{MaxFreed: NoLimit, Action: DeleteDead}, d)
		s.db.Close()
		t.Fatalf("the collection ended before it was killed: %v", err)
	}
	root := t.TempDir()
	s := crashStore(t, root)
	var specs []pathSpec
	for c := 0; c < 60; c++ {
		for j := 0; j < 10; j++ {
			sp := pathSpec{name: fmt.Sprintf("c%d-%d", c, j)}
			if j > 0 {
				sp.refs = []string{fmt.Sprintf("c%d-%d", c, j-1)}
			}
			specs = append(specs, sp)
		}
	}
	s.add(specs, nil)
	s.db.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringCollect$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+root)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ents, err := os.ReadDir(string(s.storeDir))
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) <= 450 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the collection made no progress")
		}
		time.Sleep(2 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	if err := cmd.Wait(); err == nil {
		t.Fatal("the child finished before the kill")
	}

	s = crashStore(t, root)
	defer s.db.Close()
	if err := s.db.Check(); err != nil {
		t.Fatalf("db.Check after the kill: %v", err)
	}
	valid := map[string]bool{}
	all, err := s.db.AllValid()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		valid[p.Base()] = true
		data, err := os.ReadFile(filepath.Join(s.storeDir.String(p), "data"))
		if err != nil || string(data) != p.Name() {
			t.Errorf("valid %s is not complete: %q, %v", p.Name(), data, err)
		}
	}
	pend, err := s.db.Pending()
	if err != nil {
		t.Fatal(err)
	}
	pending := map[string]bool{}
	for _, p := range pend {
		pending[p.Base()] = true
		if valid[p.Base()] {
			t.Errorf("%s is valid and pending: start-up would delete a valid path", p.Name())
		}
	}
	ents, err := os.ReadDir(string(s.storeDir))
	if err != nil {
		t.Fatal(err)
	}
	leftovers := 0
	for _, e := range ents {
		if !valid[e.Name()] && !pending[e.Name()] {
			leftovers++
		}
	}
	if leftovers > 1 {
		t.Errorf("%d unregistered entries that are not pending", leftovers)
	}
	if len(all) > 450 || len(all) == 0 {
		t.Errorf("%d valid paths left of 600", len(all))
	}
	t.Logf("killed with %d valid, %d pending, %d unmarked leftovers", len(all), len(pend), leftovers)
}
