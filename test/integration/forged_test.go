package integration

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"privnix/internal/testenv"
)

// A compromised frontend (testdata/evilfrontend, installed as the frontend
// binary) sends the monitor forged frames. Each must end that frontend only:
// the monitor answers the next client and its memory stays bounded.
func TestForgedFrontendIsKilled(t *testing.T) {
	testenv.RequireRoot(t)
	bin := evilBinDir(t)
	s := testenv.NewStore(t, skeletonConf)
	d := testenv.StartPrivnixd(t, s, "--bin-dir", bin)

	attacks := []string{"unknown-kind", "oversized", "huge-list", "out-of-range", "claims-uid-0",
		"second-hello", "unexpected-fd", "trailing-bytes", "arity"}
	for _, a := range attacks {
		got := attack(t, s.SocketPath, a)
		if strings.HasPrefix(got, "answer kind") {
			t.Errorf("%s: the monitor answered (%q); it must kill the sender", a, got)
		}
		// The monitor still serves the next client.
		if got := attack(t, s.SocketPath, "ok"); !strings.HasPrefix(got, "answer kind") {
			t.Fatalf("after %s, a well-formed request got %q, want an answer", a, got)
		}
	}
	// A child flooding its log channel is rate-limited, and the monitor
	// still answers it.
	if got := attack(t, s.SocketPath, "log-flood"); !strings.HasPrefix(got, "answer kind") {
		t.Errorf("after a log flood the request got %q, want an answer", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.Log.String(), "child log records dropped") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := strings.Count(d.Log.String(), `msg="child log"`); n > 1000 {
		t.Errorf("%d child log records reached the log; the rate limit lets about 200 through", n)
	}
	if !strings.Contains(d.Log.String(), "child log records dropped") {
		t.Errorf("no record of dropped child log records")
	}
	log := d.Log.String()
	if n := strings.Count(log, "frontend killed"); n != len(attacks) {
		t.Errorf("the log records %d killed frontends, want %d:\n%s", n, len(attacks), log)
	}
	st := procStatus(t, d.Cmd.Process.Pid)
	hwm, _ := strconv.Atoi(strings.Fields(st["VmHWM"])[0])
	if hwm > 150<<10 {
		t.Errorf("privnixd's peak RSS is %d KiB: a forged frame made it allocate", hwm)
	}
	t.Logf("privnixd peak RSS after %d attacks: %d KiB", len(attacks), hwm)
}

// attack connects, names the attack, and returns what the evil frontend
// reported ("" if it was killed before it could).
func attack(t *testing.T, socket, name string) string {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, name+"\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("%s: %v", name, err)
	}
	return string(b)
}

// evilBinDir builds testdata/evilfrontend as the frontend binary of a bin
// directory privnixd can be pointed at.
func evilBinDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "privnix-evil-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "privnix-frontend"), "./testdata/evilfrontend")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the evil frontend: %v\n%s", err, out)
	}
	// The other children are the real ones.
	for _, name := range []string{"privnix-storeproc"} {
		if err := os.Symlink(filepath.Join(testenv.Bin(t), name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
