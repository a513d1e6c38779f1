package storeproc

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// FileID identifies an open file (device and inode), whatever fd holds it.
type FileID struct{ Dev, Ino uint64 }

// IdentifyFDs returns the identities of fds.
//
// ipc.NewConn hands its socket to the runtime poller through a dup and
// closes the original, so the monitor channels do not stay on fds 3 and 4;
// the seccomp filter must allow sendmsg on the fds they end up on. Identify
// them before ipc.NewConn and find them after with FindFDs.
func IdentifyFDs(fds ...int) ([]FileID, error) {
	ids := make([]FileID, len(fds))
	for i, fd := range fds {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, fmt.Errorf("fd %d: %w", fd, err)
		}
		ids[i] = FileID{Dev: st.Dev, Ino: st.Ino}
	}
	return ids, nil
}

// FindFDs returns, for each of ids, the one fd of this process that now
// holds that file. It fails if a file is held by no fd or by more than one.
func FindFDs(ids []FileID) ([]int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	found := make([]int, len(ids))
	for i := range found {
		found[i] = -1
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil {
			continue // the directory's own fd, closed by now
		}
		for i, id := range ids {
			if (FileID{Dev: st.Dev, Ino: st.Ino}) != id {
				continue
			}
			if found[i] >= 0 {
				return nil, fmt.Errorf("file %d held by fds %d and %d", i, found[i], fd)
			}
			found[i] = fd
		}
	}
	for i, fd := range found {
		if fd < 0 {
			return nil, fmt.Errorf("file %d is held by no fd", i)
		}
	}
	return found, nil
}
