package confine

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
)

const x32SyscallBitForTest = x32SyscallBit

// TestX32Killed: on amd64, a syscall number with the x32 bit kills the
// process (SIGSYS) instead of being matched against native numbers.
func TestX32Killed(t *testing.T) {
	stdout, stderr, werr := startChildProc(t, viaSpawn, testUID, childConfig{
		Mode: "x32", Profile: Frontend, Opts: Options{ReadOnlyPaths: []string{"/etc/hostname"}},
	})
	var ee *exec.ExitError
	if !errors.As(werr, &ee) {
		t.Fatalf("child: %v, want death by SIGSYS\nstdout: %s\nstderr: %s", werr, stdout, stderr)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
		t.Fatalf("child: %v, want death by SIGSYS\nstdout: %s\nstderr: %s", ws, stdout, stderr)
	}
	if len(stdout) != 0 {
		t.Errorf("child reported after the x32 call: %s", stdout)
	}
}
