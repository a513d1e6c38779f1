package storefs

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// maxHeld is how many directory fds a removal holds at once. A directory
// deeper than that is first moved up to the top of the tree being removed
// (a writer can nest directories far deeper than PATH_MAX allows to name).
const maxHeld = 64

// removeAll removes name beneath parent, whatever it is: a directory parent
// that root owns with mode 0700 (a staging directory, the staging root, a
// trash directory). It never follows a symlink: unlinkat removes links
// themselves, directories are entered with openat2 RESOLVE_NO_SYMLINKS|
// RESOLVE_NO_XDEV, and never leaves the tree. Each directory is chowned to
// the daemon and made 0700 before anything in it is removed (no
// CAP_DAC_OVERRIDE; a directory can have no link outside the tree). Nothing
// but directories is ever chowned or chmodded, so a hard link to a file
// outside only loses that link.
func removeAll(parent int, name string) error {
	err := unix.Unlinkat(parent, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return fmt.Errorf("storefs: removing %q: %w", name, err)
	}
	if err := removeDir(parent, name, nil); err != nil {
		return fmt.Errorf("storefs: removing %q: %w", name, err)
	}
	return nil
}

type rmLevel struct {
	fd   int
	name string   // beneath the level above (or parent)
	subs []string // subdirectories still to remove
}

// removeDir removes the directory name beneath parent and everything in it;
// if freed is not nil, it adds the st_size of each non-directory with a
// single link it removes (nix-daemon's count of the bytes a deletion frees).
func removeDir(parent int, name string, freed *uint64) error {
	top, err := takeDir(parent, name)
	if err != nil {
		return retryAsFile(parent, name, err)
	}
	stack := []rmLevel{{fd: top, name: name}}
	defer func() {
		for _, l := range stack {
			unix.Close(l.fd)
		}
	}()
	buf := make([]byte, 32<<10)
	spilled := 0
	for len(stack) > 0 {
		cur := &stack[len(stack)-1]
		if len(cur.subs) == 0 {
			// (Re)list: unlink every non-directory, collect the directories;
			// a listing that finds no directory leaves it empty.
			subs, err := clearFiles(cur.fd, buf, freed)
			if err != nil {
				return err
			}
			if len(subs) == 0 {
				unix.Close(cur.fd)
				done := cur.name
				stack = stack[:len(stack)-1]
				p := parent
				if len(stack) > 0 {
					p = stack[len(stack)-1].fd
				}
				if err := unix.Unlinkat(p, done, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
					return fmt.Errorf("rmdir %q: %w", done, err)
				}
				continue
			}
			cur.subs = subs
		}
		sub := cur.subs[0]
		cur.subs = cur.subs[1:]
		fd, err := takeDir(cur.fd, sub)
		if err != nil {
			if err := retryAsFile(cur.fd, sub, err); err != nil {
				return err
			}
			continue
		}
		if len(stack) < maxHeld {
			stack = append(stack, rmLevel{fd: fd, name: sub})
			continue
		}
		// Too deep to hold another fd: move the subdirectory up to the top
		// (both root's 0700 directories now) and remove it from there later.
		unix.Close(fd)
		for {
			spilled++
			up := fmt.Sprintf(".rm-%d", spilled)
			err := unix.Renameat2(cur.fd, sub, stack[0].fd, up, unix.RENAME_NOREPLACE)
			if err == unix.EEXIST {
				continue
			}
			if err != nil {
				return fmt.Errorf("moving %q up: %w", sub, err)
			}
			break
		}
	}
	return nil
}

// retryAsFile handles a directory that could not be entered: if it is not a
// directory (any more), unlink it; anything else (another mount) is an error.
func retryAsFile(parent int, name string, err error) error {
	switch err {
	case unix.ENOENT:
		return nil
	case unix.ELOOP, unix.ENOTDIR:
		if err := unix.Unlinkat(parent, name, 0); err != nil && err != unix.ENOENT {
			return fmt.Errorf("unlink %q: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("opening directory %q: %w", name, err)
}

// takeDir opens the directory name beneath parent and makes it the daemon's,
// mode 0700, so that entries can be removed from it.
func takeDir(parent int, name string) (int, error) {
	fd, err := openBeneath(parent, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if int(st.Uid) != euid || int(st.Gid) != egid {
		if err := unix.Fchown(fd, euid, egid); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("chown %q: %w", name, err)
		}
	}
	if st.Mode&0o7777 != 0o700 {
		if err := unix.Fchmod(fd, 0o700); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("chmod %q: %w", name, err)
		}
	}
	return fd, nil
}

// clearFiles unlinks every entry of the directory fd that is not a directory
// and returns the names of those that are. If freed is not nil, each entry
// is typed and sized first (fstatat, not following) and counted as removeDir says.
func clearFiles(fd int, buf []byte, freed *uint64) ([]string, error) {
	names, err := readNames(fd, buf, nil)
	if err != nil {
		return nil, fmt.Errorf("listing: %w", err)
	}
	var dirs []string
	for _, n := range names {
		var st unix.Stat_t
		if freed != nil && unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			err := unix.Unlinkat(fd, n, 0)
			if err == nil && st.Nlink == 1 {
				*freed += uint64(st.Size)
			}
			if err == nil || err == unix.ENOENT {
				continue
			}
			return nil, fmt.Errorf("unlink %q: %w", n, err)
		}
		switch err := unix.Unlinkat(fd, n, 0); err {
		case nil, unix.ENOENT:
		case unix.EISDIR, unix.EPERM:
			dirs = append(dirs, n)
		default:
			return nil, fmt.Errorf("unlink %q: %w", n, err)
		}
	}
	return dirs, nil
}
