package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"privnix/internal/testenv"
)

// nix-daemon opens the store afresh for each connection, and scripts (Nix's
// own test suite among them) wipe and re-create the store and state
// directories between two commands. privnixd copes: the second store starts
// empty and works.
func TestWipedStoreBetweenConnections(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	// The socket lives outside the state directory, as such scripts arrange.
	s.SocketPath = filepath.Join(s.Root, "socket")
	in := filepath.Join(s.Root, "in")
	inputs(t, in)
	testenv.StartPrivnixd(t, s)
	add := func() string {
		r := s.Run(t, testenv.Alice, nil, "nix-store", "--add", filepath.Join(in, "hello.txt"))
		if r.Err != nil {
			t.Fatalf("nix-store --add: %v\n%s", r.Err, r.Stderr)
		}
		return strings.TrimSpace(r.Stdout)
	}
	p := add()
	for _, d := range []string{s.StoreDir, s.StateDir} {
		filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(d, 0o755)
	}
	if r := s.Run(t, testenv.Alice, nil, "nix-store", "--check-validity", p); r.Err == nil {
		t.Fatalf("%s is still valid after the store was wiped", p)
	}
	if got := add(); got != p {
		t.Fatalf("second add gave %s, want %s", got, p)
	}
	if r := s.Run(t, testenv.Alice, nil, "nix-store", "--verify-path", p); r.Err != nil {
		t.Fatalf("verify-path after re-adding: %v %s", r.Err, r.Stderr)
	}
}
