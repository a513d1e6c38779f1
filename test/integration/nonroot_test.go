package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"privnix/internal/syncbuf"
	"privnix/internal/testenv"
)

// privnixd started by an ordinary user (as nix-daemon can be, and as Nix
// 2.34's unprivileged daemon is) serves that user's own store: it says once
// that it cannot change uids, and still confines its frontends.
func TestUnprivilegedDaemon(t *testing.T) {
	testenv.RequireRoot(t) // to become alice; the daemon itself runs as alice
	testenv.RequireNix(t)
	s := testenv.NewStore(t, "")
	cmd, log := startAsAlice(t, s, filepath.Join(testenv.Bin(t), "privnixd"), "--bin-dir", testenv.Bin(t))
	r := s.Run(t, testenv.Alice, nil, "nix", "--extra-experimental-features", "nix-command", "store", "ping")
	if r.Err != nil {
		t.Fatalf("nix store ping against an unprivileged privnixd: %v\n%s\ndaemon log:\n%s", r.Err, r.Stderr, log.String())
	}
	// The frontend that served alice was confined as far as a user can.
	hold := holdConnection(t, testenv.Alice, s.SocketPath)
	defer hold.Close()
	// The frontend that served the ping may still be exiting (or not yet
	// reaped): wait, up to a deadline, until only the held one is left.
	confined := 0
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		confined = 0
		for _, pid := range children(t, cmd.Process.Pid) {
			st := procStatus(t, pid)
			if strings.HasPrefix(st["State"], "Z") {
				continue // exited, not yet reaped: serves no one
			}
			if st["NoNewPrivs"] == "1" && st["Seccomp"] == "2" && st["CapEff"] == "0000000000000000" {
				confined++
			}
		}
		if confined == 1 || time.Now().After(deadline) {
			break
		}
	}
	if confined != 1 {
		t.Errorf("%d confined frontends for one connection, want 1; daemon log:\n%s", confined, log.String())
	}
	if n := strings.Count(log.String(), "is not running as root"); n != 1 {
		t.Errorf("the daemon said %d times that it runs without root, want once:\n%s", n, log.String())
	}
}

// startAsAlice gives s to alice and starts a daemon (privnixd or
// nix-daemon) as alice, without supplementary groups, on it; it returns
// once the socket is there. The daemon is stopped at the end of the test.
func startAsAlice(t *testing.T, s *testenv.Store, path string, args ...string) (*exec.Cmd, *syncbuf.Buffer) {
	t.Helper()
	uid := lookupUID(t, testenv.Alice)
	gid := lookupGID(t, testenv.Alice)
	filepath.Walk(s.Root, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, uid, gid) })
	cmd := exec.Command(path, args...)
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, s.Env()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	log := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	os.Remove(s.SocketPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(s.SocketPath); err == nil {
			break
		}
		if i > 500 {
			t.Fatalf("no socket; log:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, log
}
