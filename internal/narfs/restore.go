package narfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"privnix/nix/nar"
	"privnix/nix/narreader"
)

// Modes used while restoring; the sealer canonicalises them afterwards.
const (
	modeFile = 0o444
	modeExec = 0o555
	modeDir  = 0o755
)

// restoreBufSize is the chunk in which file contents are copied.
const restoreBufSize = 1 << 20

// Restore unpacks a NAR read strictly (nix/narreader) as `name` beneath dirfd,
// which must not exist yet. name is a single path component. Nothing is ever
// followed or overwritten: every object is created with O_EXCL, mkdirat or
// symlinkat beneath a held directory fd. On error a partial tree may remain.
// The reader reads exactly the archive in small reads: pass a buffered r
// unless bytes after the archive belong to someone else.
func Restore(r io.Reader, dirfd int, name string, lim narreader.Limits) error {
	if err := nar.CheckName(name); err != nil {
		return fmt.Errorf("narfs: restore target refused: %w", err)
	}
	s := &fsSink{parent: dirfd, name: name}
	defer s.closeAll()
	if err := narreader.Restore(r, s, lim); err != nil {
		return err
	}
	if !s.done {
		return errors.New("narfs: restore ended before the archive did")
	}
	return nil
}

// fsSink creates the objects a narreader.Restore delivers.
type fsSink struct {
	parent int    // directory the next node is created in
	name   string // name of the next node
	stack  []int  // open directory fds; the last is parent inside a directory
	buf    []byte
	zero   []byte
	done   bool
}

func (s *fsSink) closeAll() {
	for _, fd := range s.stack {
		unix.Close(fd)
	}
	s.stack = nil
}

// nodeDone records that the root finished when no directory is open.
func (s *fsSink) nodeDone() {
	if len(s.stack) == 0 {
		s.done = true
	}
}

func (s *fsSink) File(executable bool, size uint64, r io.Reader) error {
	mode := uint32(modeFile)
	if executable {
		mode = modeExec
	}
	fd, err := unix.Openat(s.parent, s.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return fmt.Errorf("narfs: creating file %q: %w", s.name, err)
	}
	defer unix.Close(fd)
	if err := s.copy(fd, size, r); err != nil {
		return fmt.Errorf("narfs: writing file %q: %w", s.name, err)
	}
	s.nodeDone()
	return nil
}

// copy streams size bytes from r to fd, leaving holes for all-zero chunks
// and setting the final length with ftruncate.
func (s *fsSink) copy(fd int, size uint64, r io.Reader) error {
	if size == 0 {
		return nil
	}
	if s.buf == nil {
		s.buf = make([]byte, restoreBufSize)
		s.zero = make([]byte, restoreBufSize)
	}
	var off uint64
	for off < size {
		chunk := s.buf[:min(uint64(len(s.buf)), size-off)]
		n, err := io.ReadFull(r, chunk)
		if err != nil {
			return err
		}
		if !bytes.Equal(chunk[:n], s.zero[:n]) {
			if err := pwriteAll(fd, chunk[:n], int64(off)); err != nil {
				return err
			}
		}
		off += uint64(n)
	}
	return unix.Ftruncate(fd, int64(size))
}

func pwriteAll(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := unix.Pwrite(fd, p, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (s *fsSink) Symlink(target string) error {
	if err := unix.Symlinkat(target, s.parent, s.name); err != nil {
		return fmt.Errorf("narfs: creating symlink %q: %w", s.name, err)
	}
	s.nodeDone()
	return nil
}

func (s *fsSink) StartDir() error {
	if len(s.stack) >= MaxDepth {
		return fmt.Errorf("narfs: directory %q refused: %w (more than %d levels)", s.name, ErrTooDeep, MaxDepth)
	}
	if err := unix.Mkdirat(s.parent, s.name, modeDir); err != nil {
		return fmt.Errorf("narfs: creating directory %q: %w", s.name, err)
	}
	fd, err := openBeneath(s.parent, s.name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("narfs: opening new directory %q: %w", s.name, err)
	}
	s.stack = append(s.stack, fd)
	s.parent = fd
	return nil
}

func (s *fsSink) Entry(name string) error {
	if err := nar.CheckName(name); err != nil {
		return fmt.Errorf("narfs: entry refused: %w", err)
	}
	s.name = name
	return nil
}

func (s *fsSink) EndDir() error {
	if len(s.stack) == 0 {
		return errors.New("narfs: end of directory without a directory")
	}
	unix.Close(s.stack[len(s.stack)-1])
	s.stack = s.stack[:len(s.stack)-1]
	if len(s.stack) > 0 {
		s.parent = s.stack[len(s.stack)-1]
	}
	s.nodeDone()
	return nil
}
