package monitor

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// listen puts a socket that already listens at the path, after removing
// the temporary sockets a killed privnixd left (and nothing else).
func TestListenReplacesStaleTemporarySockets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "socket")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path + ".new-1", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if err := os.WriteFile(path+".new-2", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, ours, err := listen(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !ours {
		t.Error("a socket privnixd made is not reported as its own")
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("connecting to the fresh socket: %v", err)
	}
	c.Close()
	if _, err := os.Lstat(path + ".new-1"); !os.IsNotExist(err) {
		t.Errorf("the stale temporary socket is still there: %v", err)
	}
	if _, err := os.Lstat(path + ".new-2"); err != nil {
		t.Errorf("a regular file matching the pattern was removed: %v", err)
	}
	if names, _ := filepath.Glob(path + ".new-*"); len(names) != 1 {
		t.Errorf("temporary names left: %v", names)
	}
}
