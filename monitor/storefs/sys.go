package storefs

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"unsafe"

	"golang.org/x/sys/unix"

	"privnix/internal/beneath"
)

// openBeneath opens name (one or more components) beneath dirfd, on its
// mount, never following a symlink (package beneath, with RESOLVE_NO_XDEV).
func openBeneath(dirfd int, name string, flags int) (int, error) {
	return beneath.Open(dirfd, name, flags, unix.RESOLVE_NO_XDEV)
}

// mtime1 sets mtime to 1 (one second after the epoch) and leaves atime, as Nix does.
var mtime1 = []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: 1}}

// setMtime1 sets the mtime of the inode fd refers to; fd may be O_PATH (a
// symlink's: AT_EMPTY_PATH works on the fd itself, AT_SYMLINK_NOFOLLOW keeps it so).
func setMtime1(fd int) error {
	return unix.UtimesNanoAt(fd, "", mtime1, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
}

// chownFD sets the owner of the inode fd refers to (fd may be O_PATH).
func chownFD(fd, uid, gid int) error {
	return unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
}

// errListLimit: a listing went past its budget.
var errListLimit = errors.New("listing budget exceeded")

// listBudget bounds what the listings of one walk may hold in total.
type listBudget struct{ names, bytes int }

// readNames lists the directory fd (from its start), "." and ".." left out,
// sorted by bytes as a NAR wants them. With a budget, the names are charged
// to it as they are read, and errListLimit ends a listing that exceeds it.
func readNames(fd int, buf []byte, budget *listBudget) ([]string, error) {
	if buf == nil {
		buf = make([]byte, 32<<10)
	}
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, err
	}
	var names []string
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		before := len(names)
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
		if budget != nil {
			budget.names -= len(names) - before
			for _, name := range names[before:] {
				budget.bytes -= len(name)
			}
			if budget.names < 0 || budget.bytes < 0 {
				return nil, errListLimit
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// keptXattrs are not removed, as Nix's default ignored-acls: an LSM label the
// kernel manages, and NFSv4 ACLs a client cannot remove.
var keptXattrs = map[string]bool{"security.selinux": true, "system.nfs4_acl": true}

// parseXattrNames splits a listxattr buffer and drops the kept names.
func parseXattrNames(b []byte) []string {
	var names []string
	for _, n := range bytes.Split(b, []byte{0}) {
		if len(n) > 0 && !keptXattrs[string(n)] {
			names = append(names, string(n))
		}
	}
	return names
}

// listWith calls list with a growing buffer.
func listWith(list func([]byte) (int, error)) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := list(buf)
		if err == unix.ERANGE && len(buf) < 1<<20 {
			buf = make([]byte, 4*len(buf))
			continue
		}
		if err == unix.EOPNOTSUPP || err == unix.ENOTSUP {
			return nil, nil // no xattrs on this filesystem
		}
		if err != nil {
			return nil, err
		}
		return parseXattrNames(buf[:n]), nil
	}
}

// clearXattrsFD removes the extended attributes (POSIX ACLs included) of the
// regular file or directory fd (opened for reading; fremovexattr refuses
// O_PATH fds). The inode must be root's and owner-writable already: removing
// user.* needs write permission and the monitor has no CAP_DAC_OVERRIDE.
func clearXattrsFD(fd int) error {
	names, err := listWith(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) })
	if err != nil {
		return fmt.Errorf("flistxattr: %w", err)
	}
	for _, n := range names {
		if err := unix.Fremovexattr(fd, n); err != nil && err != unix.ENODATA {
			return fmt.Errorf("fremovexattr %q: %w", n, err)
		}
	}
	return nil
}

// Symlinks: fremovexattr and flistxattr refuse O_PATH fds and a symlink cannot
// be opened otherwise, so the symlink is named fd-relative: listxattrat and
// removexattrat (Linux 6.13) on (parent dirfd, name, AT_SYMLINK_NOFOLLOW), the
// parent being a directory root already owns with mode 0700 so the name cannot
// be swapped. Before 6.13, the l*xattr calls on /proc/self/fd/<parent>/<name>
// do the same (the magic link is the held directory; the name is not followed).

// listXattrsAt lists the xattrs of the symlink name beneath dirfd.
func listXattrsAt(dirfd int, name string) ([]string, error) {
	return listWith(func(b []byte) (int, error) {
		n, err := listxattrat(dirfd, name, b)
		if err == unix.ENOSYS || procXattrsForTest {
			return unix.Llistxattr(procPath(dirfd, name), b)
		}
		return n, err
	})
}

// clearXattrsAt removes the xattrs of the symlink name beneath dirfd.
func clearXattrsAt(dirfd int, name string) error {
	names, err := listXattrsAt(dirfd, name)
	if err != nil {
		return fmt.Errorf("listxattrat: %w", err)
	}
	for _, n := range names {
		err := removexattrat(dirfd, name, n)
		if err == unix.ENOSYS || procXattrsForTest {
			err = unix.Lremovexattr(procPath(dirfd, name), n)
		}
		if err != nil && err != unix.ENODATA {
			return fmt.Errorf("removexattrat %q: %w", n, err)
		}
	}
	return nil
}

// procXattrsForTest makes the tests take the pre-6.13 path.
var procXattrsForTest bool

func procPath(dirfd int, name string) string { return fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name) }

func listxattrat(dirfd int, name string, buf []byte) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	var bp unsafe.Pointer
	if len(buf) > 0 {
		bp = unsafe.Pointer(&buf[0])
	}
	r, _, e := unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(bp), uintptr(len(buf)), 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func removexattrat(dirfd int, name, attr string) error {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	a, err := unix.BytePtrFromString(attr)
	if err != nil {
		return err
	}
	_, _, e := unix.Syscall6(unix.SYS_REMOVEXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(a)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
