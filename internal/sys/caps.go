package sys

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DropBoundingSet empties the capability bounding set of the calling OS
// thread, which must be locked (runtime.LockOSThread) and kept only for
// spawning: the bounding set is per thread and inherited by fork, so every
// child forked from this thread starts with none, whatever uid it runs as.
// The thread's own effective capabilities are unchanged.
func DropBoundingSet() error {
	for c := 0; c <= unix.CAP_LAST_CAP+8; c++ {
		_, _, e := unix.RawSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0)
		if e == unix.EINVAL && c > 0 {
			return nil // past the kernel's last capability
		}
		if e != 0 {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, e)
		}
	}
	return nil
}
