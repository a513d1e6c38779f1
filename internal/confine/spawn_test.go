package confine

import (
	"fmt"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// Spawn (a test helper; the monitor spawns through its own spawner thread,
// see monitor/spawn.go and internal/sys.DropBoundingSet) starts cmd (cmd.Start)
// so that the child begins life with an empty
// capability bounding set, which Apply requires. It is for the root monitor.
//
// The bounding set is per thread and is inherited by fork and kept across
// setuid and execve, but os/exec has no knob for it. So Spawn empties the
// bounding set of a fresh OS thread, forks from that thread, and throws the
// thread away (the goroutine ends still locked, so the runtime kills it); no
// other thread of the monitor is touched. The child is demoted as usual by
// cmd.SysProcAttr.Credential.
//
// Two SysProcAttr settings would defeat this and are refused: Pdeathsig
// fires when the creating thread exits, which here is at once (supervise with
// PidFD or the cgroup instead); and CLONE_NEWUSER gives the child a full
// bounding set again, relative to the new namespace (root needs no user
// namespace to create PID, mount, IPC or network namespaces).
func Spawn(cmd *exec.Cmd) error {
	if a := cmd.SysProcAttr; a != nil {
		if a.Pdeathsig != 0 {
			return fmt.Errorf("confine.Spawn: Pdeathsig would fire when the spawning thread exits")
		}
		if (a.Cloneflags|a.Unshareflags)&unix.CLONE_NEWUSER != 0 {
			return fmt.Errorf("confine.Spawn: a new user namespace resets the bounding set")
		}
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: this thread's bounding set is gone for good.
		if err := dropBoundingSet(); err != nil {
			errc <- err
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// dropBoundingSet empties the calling thread's bounding set, cap by cap until
// the kernel says the number is past its last capability.
func dropBoundingSet() error {
	for c := 0; c < 64; c++ {
		_, _, e := unix.RawSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0)
		if e == unix.EINVAL {
			if c == 0 {
				return fmt.Errorf("confine.Spawn: PR_CAPBSET_DROP: %w", e)
			}
			return nil
		}
		if e != 0 {
			return fmt.Errorf("confine.Spawn: dropping capability %d from the bounding set: %w", c, e)
		}
	}
	return nil
}
