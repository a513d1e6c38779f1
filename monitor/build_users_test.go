package monitor

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// killAllAs (privnix-build started as the user, kill(-1)) kills the
// processes of the build user it is given and of no other uid; it refuses
// root.
func TestKillAllAs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it starts processes as other uids")
	}
	binPath := filepath.Join(t.TempDir(), "privnix-build")
	build := exec.Command("go", "build", "-o", binPath, "privnix/cmd/privnix-build")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building privnix-build: %v\n%s", err, out)
	}
	bin, err := os.Open(binPath)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	// Two uids of the default build range's far end, which no test uses.
	const victim, bystander = 1879244790, 1879244791
	for _, uid := range []uint32{victim, bystander} {
		if pids, err := processesOf(uid); err != nil || len(pids) > 0 {
			t.Fatalf("uid %d already has processes %v (%v)", uid, pids, err)
		}
	}
	start := func(uid uint32) *exec.Cmd {
		c := exec.Command("/bin/sleep", "1000")
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	v, b := start(victim), start(bystander)
	defer b.Process.Kill()
	defer v.Process.Kill()
	if err := killAllAs(bin, victim, victim); err != nil {
		t.Fatal(err)
	}
	err = v.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the victim's process ended with %v, want SIGKILL", err)
	}
	if err := b.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the other uid's process is gone: %v", err)
	}
	if err := killAllAs(bin, 0, 0); err == nil {
		t.Error("kill(-1) as root was not refused")
	}
	// privnix-build itself refuses the kill as root (run in a PID namespace
	// of its own, so that a failure could not reach the host's processes).
	asRoot := &exec.Cmd{Path: binPath, Args: []string{"privnix-kill-user"},
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}}
	if out, err := asRoot.CombinedOutput(); err == nil || !strings.Contains(string(out), "refusing to run as root") {
		t.Errorf("privnix-kill-user as root: %v, %q", err, out)
	}
}
