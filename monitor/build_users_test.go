package monitor

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// killAllAs kills the processes of the build user it is given and of no
// other uid, and leaves privnixd's own (main thread's) credentials alone.
func TestKillAllAs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it starts processes as other uids")
	}
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
	if err := killAllAs(victim); err != nil {
		t.Fatal(err)
	}
	err := v.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the victim's process ended with %v, want SIGKILL", err)
	}
	if err := b.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the other uid's process is gone: %v", err)
	}
	st, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(st), "\n") {
		if f, ok := strings.CutPrefix(l, "Uid:"); ok && strings.Join(strings.Fields(f), " ") != "0 0 0 0" {
			t.Errorf("privnixd's uids now %q", f)
		}
	}
	if err := killAllAs(0); err == nil {
		t.Error("kill(-1) as root was not refused")
	}
}
