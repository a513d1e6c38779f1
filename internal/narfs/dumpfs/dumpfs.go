// Package dumpfs serialises file trees as NARs through directory file descriptors, never following symlinks; it contains no NAR reader, so the monitor can link it.
package dumpfs

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"privnix/internal/beneath"

	"privnix/nix/nar"
)

// MaxDepth is the deepest directory nesting Dump accepts.
const MaxDepth = 1024

// Errors that say why a tree was refused.
var (
	ErrUnsupportedType = errors.New("unsupported file type")
	ErrTooDeep         = errors.New("directory nesting too deep")
	ErrChanged         = errors.New("file changed while being read")
)

// OpenBeneath opens name beneath dirfd with flags|O_NOFOLLOW|O_CLOEXEC, refusing
// to leave dirfd or to follow any symlink or magic link (package beneath).
func OpenBeneath(dirfd int, name string, flags int) (int, error) {
	return beneath.Open(dirfd, name, flags, beneath.Resolve)
}

// dumpLevel is one open directory of the walk.
type dumpLevel struct {
	fd    int
	name  string
	names []string
	next  int
}

type dumper struct {
	w     *nar.Writer
	stack []dumpLevel
	root  string
	dbuf  []byte
}

// Dump serialises the file, symlink or directory `name` beneath dirfd as a NAR.
// It never follows a symlink (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS,
// O_NOFOLLOW), types entries by fstat of the opened fd, and refuses special files.
func Dump(w io.Writer, dirfd int, name string) error {
	d := &dumper{w: nar.NewWriter(w), root: name}
	defer d.closeAll()
	if err := d.node(dirfd, name); err != nil {
		return err
	}
	for len(d.stack) > 0 {
		if err := d.step(); err != nil {
			return err
		}
	}
	return d.w.Close()
}

// DumpPath serialises the file system object at path (a symlink itself, not
// what it points to) as a NAR. Symlinks in the directories leading to it are
// followed, as nix-store --dump does.
func DumpPath(w io.Writer, path string) error {
	dir, name := splitPath(path)
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("dumpfs: opening %s: %w", dir, err)
	}
	defer unix.Close(fd)
	return Dump(w, fd, name)
}

// splitPath returns a directory to open and the name beneath it for path.
func splitPath(path string) (dir, name string) {
	p := filepath.Clean(path)
	base := filepath.Base(p)
	if base == "/" || base == "." || base == ".." {
		return p, "."
	}
	return filepath.Dir(p), base
}

// step emits the next entry of the innermost directory, or ends it.
func (d *dumper) step() error {
	top := &d.stack[len(d.stack)-1]
	if top.next == len(top.names) {
		unix.Close(top.fd)
		d.stack = d.stack[:len(d.stack)-1]
		return d.w.EndDir()
	}
	name := top.names[top.next]
	top.next++
	if err := d.w.Entry(name); err != nil {
		return fmt.Errorf("dumpfs: %s: %w", d.path(name), err)
	}
	return d.node(top.fd, name)
}

func (d *dumper) closeAll() {
	for _, l := range d.stack {
		unix.Close(l.fd)
	}
	d.stack = nil
}

// path names an entry for error messages, relative to the dumped root.
func (d *dumper) path(name string) string {
	parts := []string{d.root}
	for _, l := range d.stack[min(1, len(d.stack)):] {
		parts = append(parts, l.name)
	}
	if len(d.stack) > 0 {
		parts = append(parts, name)
	}
	return strings.Join(parts, "/")
}

// node writes the object `name` beneath parent, pushing a level for a directory.
func (d *dumper) node(parent int, name string) error {
	pfd, err := OpenBeneath(parent, name, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("dumpfs: opening %s: %w", d.path(name), err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		unix.Close(pfd)
		return fmt.Errorf("dumpfs: stat %s: %w", d.path(name), err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		defer unix.Close(pfd)
		return d.symlink(pfd, name)
	case unix.S_IFREG:
		unix.Close(pfd)
		return d.file(parent, name, &st)
	case unix.S_IFDIR:
		defer unix.Close(pfd)
		return d.dir(pfd, name)
	}
	unix.Close(pfd)
	return fmt.Errorf("dumpfs: file %s refused: %w (%s)", d.path(name), ErrUnsupportedType, beneath.TypeName(st.Mode))
}

func (d *dumper) symlink(pfd int, name string) error {
	target, err := beneath.Readlink(pfd, 1<<16)
	if err != nil {
		return fmt.Errorf("dumpfs: readlink %s: %w", d.path(name), err)
	}
	if err := d.w.Symlink(target); err != nil {
		return fmt.Errorf("dumpfs: %s: %w", d.path(name), err)
	}
	return nil
}

// file copies a regular file; it reopens the name for reading and checks
// that it is still the inode that was typed.
func (d *dumper) file(parent int, name string, want *unix.Stat_t) error {
	fd, err := OpenBeneath(parent, name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return fmt.Errorf("dumpfs: opening %s: %w", d.path(name), err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("dumpfs: stat %s: %w", d.path(name), err)
	}
	if st.Dev != want.Dev || st.Ino != want.Ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("dumpfs: %s refused: %w (replaced while dumping)", d.path(name), ErrChanged)
	}
	exec := st.Mode&unix.S_IXUSR != 0
	if err := d.w.File(exec, uint64(st.Size), fdReader(fd)); err != nil {
		return fmt.Errorf("dumpfs: %s: %w", d.path(name), err)
	}
	return nil
}

// dir opens the directory behind the O_PATH fd, lists it and pushes a level.
func (d *dumper) dir(pfd int, name string) error {
	if len(d.stack) >= MaxDepth {
		return fmt.Errorf("dumpfs: %s refused: %w (more than %d levels)", d.path(name), ErrTooDeep, MaxDepth)
	}
	fd, err := unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("dumpfs: opening directory %s: %w", d.path(name), err)
	}
	names, err := d.list(fd)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("dumpfs: listing %s: %w", d.path(name), err)
	}
	if err := d.w.StartDir(); err != nil {
		unix.Close(fd)
		return fmt.Errorf("dumpfs: %s: %w", d.path(name), err)
	}
	d.stack = append(d.stack, dumpLevel{fd: fd, name: name, names: names})
	return nil
}

// list returns the entry names of the directory fd sorted by raw bytes.
func (d *dumper) list(fd int) ([]string, error) {
	if d.dbuf == nil {
		d.dbuf = make([]byte, 32<<10)
	}
	var names []string
	for {
		n, err := unix.ReadDirent(fd, d.dbuf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(d.dbuf[:n], -1, names)
	}
	sort.Strings(names)
	return names, nil
}

// fdReader reads from a raw file descriptor.
type fdReader int

func (f fdReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := unix.Read(int(f), p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}
