// Package beneath opens files beneath a directory fd without ever following a
// symlink or leaving that directory: the one way privnix's tree walkers (the
// NAR dumper, the monitor's sealer) look up names in trees a user wrote.
package beneath

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Resolve keeps every lookup beneath the starting directory and refuses every
// symlink and magic link on the way. Callers may add RESOLVE_NO_XDEV.
const Resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// Open opens name (one or more components) beneath dirfd with
// flags|O_NOFOLLOW|O_CLOEXEC and the given resolve flags (at least Resolve).
// With O_PATH a symlink as the last component gives an fd on the link itself;
// anywhere else a symlink fails with ELOOP.
func Open(dirfd int, name string, flags int, resolve uint64) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC), Resolve: resolve | Resolve}
	// EAGAIN: with RESOLVE_BENEATH and "..", the kernel gives up when any
	// rename or mount happened on the system during the lookup; try again
	// (openat2(2)), a bounded number of times.
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(dirfd, name, &how)
		if err == unix.EINTR || (err == unix.EAGAIN && tries < 64) {
			continue
		}
		return fd, err
	}
}

// Readlink reads the target of the symlink an O_PATH fd refers to, refusing
// a target longer than max bytes.
func Readlink(fd, max int) (string, error) {
	for size := 256; ; size *= 2 {
		size = min(size, max+1)
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
		if size == max+1 {
			return "", fmt.Errorf("symlink target longer than %d bytes", max)
		}
	}
}

// TypeName names a file type that a NAR cannot hold, for refusals.
func TypeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return fmt.Sprintf("mode %#o", mode)
}
