package integration

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"privnix/internal/testenv"
)

// TestKeptStoreWorker: small uploads on one connection share one store
// worker, kept between them with nothing staged; it ends with the
// connection. A kept worker killed from outside between two uploads costs
// the next upload nothing: it goes to a new worker.
func TestKeptStoreWorker(t *testing.T) {
	testenv.RequireRoot(t)
	s := testenv.NewStore(t, hostileConf)
	d := testenv.StartPrivnixd(t, s)
	c := dialRoot(t, s)
	add := func(i int) string {
		t.Helper()
		p, err := c.AddTextToStore(fmt.Sprintf("kept-%d", i), fmt.Sprintf("text %d\n", i), nil)
		if err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
		if got, err := os.ReadFile(p); err != nil || string(got) != fmt.Sprintf("text %d\n", i) {
			t.Fatalf("add %d: %s holds %q (%v)", i, p, got, err)
		}
		return p
	}
	onlyWorker := func(what string) procInfo {
		t.Helper()
		w := liveStoreWorkers(d)
		if len(w) != 1 {
			t.Fatalf("%s: store workers %v, want exactly one kept", what, w)
		}
		requireStagingEmpty(t, s, 0)
		return w[0]
	}
	add(0)
	first := onlyWorker("after the first add")
	add(1)
	if again := onlyWorker("after the second add"); again.pid != first.pid || again.start != first.start {
		t.Errorf("the second add has worker %v, the first had %v", again, first)
	}
	if err := syscall.Kill(first.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return len(liveStoreWorkers(d)) == 0 }) {
		t.Fatalf("the killed worker is still there: %v", liveStoreWorkers(d))
	}
	add(2)
	if w := onlyWorker("after the kill and an add"); w.pid == first.pid {
		t.Errorf("the add after the kill went to the killed worker %v", w)
	}
	c.Close()
	requireNoStoreWorkers(t, d, 3*time.Second)
	requireStagingEmpty(t, s, 3*time.Second)
}
