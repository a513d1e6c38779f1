package admin

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// fileState is what Lstat says about a path.
type fileState struct {
	Exists  bool
	Dir     bool
	Symlink bool
	UID     uint32
	GID     uint32
	Mode    os.FileMode // permission bits plus setuid, setgid, sticky
}

func stat(path string) (fileState, error) {
	fi, err := os.Lstat(path)
	if os.IsNotExist(err) {
		return fileState{}, nil
	}
	if err != nil {
		return fileState{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileState{Exists: true, Dir: fi.IsDir(), Symlink: fi.Mode()&os.ModeSymlink != 0,
		UID: st.Uid, GID: st.Gid, Mode: os.FileMode(st.Mode & 0o7777)}, nil
}

// octal prints permission bits as chmod takes them.
func octal(m os.FileMode) string { return fmt.Sprintf("%04o", uint32(m)) }

func isExecutable(path string) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return fi.Mode().IsRegular() && fi.Mode()&0o111 != 0, nil
}

// unsafeAncestor returns the first directory above path (path excluded) that
// a user other than root could use to replace path: one not owned by root, or
// writable by group or others without the sticky bit (with the sticky bit,
// only the owner of an entry may rename it, and the entries we care about are
// root's). "" if there is none.
func unsafeAncestor(path string) (string, fileState, error) {
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		st, err := stat(dir)
		if err != nil {
			return "", st, err
		}
		if st.Exists && (st.UID != 0 || (st.Mode&0o022 != 0 && st.Mode&0o1000 == 0)) {
			return dir, st, nil
		}
		if dir == "/" {
			return "", fileState{}, nil
		}
	}
}
