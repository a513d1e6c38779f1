// Package nar is an encoder for Nix archives (NAR) that enforces their canonical form.
package nar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Tokens of the NAR grammar (docs/nix-protocol.md §5.1).
const (
	Magic        = "nix-archive-1"
	tokOpen      = "("
	tokClose     = ")"
	tokType      = "type"
	tokRegular   = "regular"
	tokSymlink   = "symlink"
	tokDirectory = "directory"
	tokExec      = "executable"
	tokContents  = "contents"
	tokTarget    = "target"
	tokEntry     = "entry"
	tokName      = "name"
	tokNode      = "node"
)

// Limits the writer itself enforces on what it is asked to encode.
const (
	MaxNameLen   = 255  // longest entry name (NAME_MAX)
	MaxTargetLen = 4095 // longest symlink target (PATH_MAX - 1)
)

// Errors returned by the Writer. Each refusal wraps one of these.
var (
	ErrState       = errors.New("call not allowed here")
	ErrName        = errors.New("invalid entry name")
	ErrNotSorted   = errors.New("entry names not strictly increasing")
	ErrTarget      = errors.New("invalid symlink target")
	ErrShortFile   = errors.New("file shorter than its declared size")
	ErrLongFile    = errors.New("file longer than its declared size")
	ErrIncomplete  = errors.New("archive incomplete")
	ErrWriterError = errors.New("writer failed earlier")
)

// flushAt is the size at which buffered tokens are handed to the underlying writer.
const flushAt = 32 << 10

// copyBufSize is the buffer used to copy large file contents.
const copyBufSize = 1 << 20

type state uint8

const (
	wantNode  state = iota // a node (file, symlink or directory) must come next
	inDir                  // inside a directory: Entry or EndDir
	completed              // the root node is finished
)

// dirFrame is what the Writer remembers about one open directory.
type dirFrame struct {
	prev    string
	hasPrev bool
}

// Writer encodes one NAR through explicit calls: a node is File, Symlink, or
// StartDir followed by (Entry, node)* and EndDir. It refuses anything that
// would not be the canonical serialisation. After the first error every
// call fails. Close checks that the archive is complete and flushes it.
type Writer struct {
	w     io.Writer
	buf   []byte
	big   []byte
	stack []dirFrame
	st    state
	began bool
	err   error
}

// NewWriter returns a Writer that writes one NAR to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: make([]byte, 0, 4096)}
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// check refuses the call if an earlier one failed or the state does not allow it.
func (w *Writer) check(call string, want state) error {
	if w.err != nil {
		return fmt.Errorf("nar: %s refused: %w: %v", call, ErrWriterError, w.err)
	}
	if w.st != want {
		return w.fail(fmt.Errorf("nar: %s refused: %w (%s)", call, ErrState, w.st.describe()))
	}
	return nil
}

func (s state) describe() string {
	switch s {
	case wantNode:
		return "a node is expected"
	case inDir:
		return "an entry or the end of the directory is expected"
	default:
		return "the archive is complete"
	}
}

func (w *Writer) str(s string) {
	w.buf = binary.LittleEndian.AppendUint64(w.buf, uint64(len(s)))
	w.buf = append(w.buf, s...)
	w.pad(uint64(len(s)))
}

func (w *Writer) pad(n uint64) {
	var zero [8]byte
	w.buf = append(w.buf, zero[:(8-n%8)%8]...)
}

func (w *Writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.w.Write(w.buf)
	w.buf = w.buf[:0]
	if err != nil {
		return w.fail(fmt.Errorf("nar: write: %w", err))
	}
	return nil
}

func (w *Writer) maybeFlush() error {
	if len(w.buf) >= flushAt {
		return w.flush()
	}
	return nil
}

// beginNode writes the magic (first time) and "( type <typ>".
func (w *Writer) beginNode(typ string) {
	if !w.began {
		w.str(Magic)
		w.began = true
	}
	w.str(tokOpen)
	w.str(tokType)
	w.str(typ)
}

// endNode closes a node and, inside a directory, the entry holding it.
func (w *Writer) endNode() error {
	w.str(tokClose)
	if len(w.stack) == 0 {
		w.st = completed
	} else {
		w.str(tokClose)
		w.st = inDir
	}
	return w.maybeFlush()
}

// File writes a regular file whose contents are exactly size bytes read from r.
// It fails if r ends early or has more than size bytes.
func (w *Writer) File(executable bool, size uint64, r io.Reader) error {
	if err := w.check("file", wantNode); err != nil {
		return err
	}
	w.beginNode(tokRegular)
	if executable {
		w.str(tokExec)
		w.str("")
	}
	w.str(tokContents)
	w.buf = binary.LittleEndian.AppendUint64(w.buf, size)
	if err := w.copyContents(size, r); err != nil {
		return w.fail(err)
	}
	if err := checkEOF(r); err != nil {
		return w.fail(err)
	}
	w.pad(size)
	return w.endNode()
}

// copyContents appends small contents to the token buffer and streams large
// ones through a reusable 1 MiB buffer.
func (w *Writer) copyContents(size uint64, r io.Reader) error {
	if size <= flushAt {
		n := len(w.buf)
		w.buf = append(w.buf, make([]byte, size)...)
		if got, err := io.ReadFull(r, w.buf[n:]); err != nil {
			return shortErr(uint64(got), size, err)
		}
		return nil
	}
	if err := w.flush(); err != nil {
		return err
	}
	if w.big == nil {
		w.big = make([]byte, copyBufSize)
	}
	var done uint64
	for done < size {
		chunk := w.big
		if rest := size - done; rest < uint64(len(chunk)) {
			chunk = chunk[:rest]
		}
		n, err := io.ReadFull(r, chunk)
		if n > 0 {
			if _, werr := w.w.Write(chunk[:n]); werr != nil {
				return fmt.Errorf("nar: write: %w", werr)
			}
			done += uint64(n)
		}
		if err != nil {
			return shortErr(done, size, err)
		}
	}
	return nil
}

func shortErr(got, size uint64, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("nar: file refused: %w (got %d of %d bytes)", ErrShortFile, got, size)
	}
	return fmt.Errorf("nar: reading file contents: %w", err)
}

// checkEOF makes sure r has nothing beyond the declared size.
func checkEOF(r io.Reader) error {
	var one [1]byte
	for {
		n, err := r.Read(one[:])
		if n > 0 {
			return fmt.Errorf("nar: file refused: %w", ErrLongFile)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("nar: reading file contents: %w", err)
		}
	}
}

// Symlink writes a symbolic link with the given target, which must be
// non-empty, free of NUL bytes and at most MaxTargetLen bytes.
func (w *Writer) Symlink(target string) error {
	if err := w.check("symlink", wantNode); err != nil {
		return err
	}
	if err := CheckTarget(target); err != nil {
		return w.fail(fmt.Errorf("nar: symlink refused: %w", err))
	}
	w.beginNode(tokSymlink)
	w.str(tokTarget)
	w.str(target)
	return w.endNode()
}

// StartDir begins a directory node.
func (w *Writer) StartDir() error {
	if err := w.check("start of directory", wantNode); err != nil {
		return err
	}
	w.beginNode(tokDirectory)
	w.stack = append(w.stack, dirFrame{})
	w.st = inDir
	return w.maybeFlush()
}

// Entry begins the next entry of the current directory; a node must follow.
// Names must be valid (see CheckName) and strictly increasing in byte order.
func (w *Writer) Entry(name string) error {
	if err := w.check("entry", inDir); err != nil {
		return err
	}
	if err := CheckName(name); err != nil {
		return w.fail(fmt.Errorf("nar: entry refused: %w", err))
	}
	top := &w.stack[len(w.stack)-1]
	if top.hasPrev && name <= top.prev {
		return w.fail(fmt.Errorf("nar: entry %q refused: %w (after %q)", name, ErrNotSorted, top.prev))
	}
	top.prev, top.hasPrev = name, true
	w.str(tokEntry)
	w.str(tokOpen)
	w.str(tokName)
	w.str(name)
	w.str(tokNode)
	w.st = wantNode
	return nil
}

// EndDir ends the current directory.
func (w *Writer) EndDir() error {
	if err := w.check("end of directory", inDir); err != nil {
		return err
	}
	w.stack = w.stack[:len(w.stack)-1]
	return w.endNode()
}

// Close flushes the archive; it fails if the root node is not complete.
func (w *Writer) Close() error {
	if w.err != nil {
		return fmt.Errorf("nar: close refused: %w: %v", ErrWriterError, w.err)
	}
	if w.st != completed {
		return w.fail(fmt.Errorf("nar: close refused: %w (%s)", ErrIncomplete, w.st.describe()))
	}
	return w.flush()
}

// CheckName reports whether name may be a directory entry of a NAR:
// non-empty, not "." or "..", no '/' or NUL, at most MaxNameLen bytes.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrName)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %q", ErrName, name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrName, len(name), MaxNameLen)
	case strings.IndexByte(name, '/') >= 0:
		return fmt.Errorf("%w: %q contains '/'", ErrName, name)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%w: %q contains NUL", ErrName, name)
	}
	return nil
}

// CheckTarget reports whether target may be a symlink target in a NAR.
func CheckTarget(target string) error {
	switch {
	case target == "":
		return fmt.Errorf("%w: empty", ErrTarget)
	case len(target) > MaxTargetLen:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrTarget, len(target), MaxTargetLen)
	case strings.IndexByte(target, 0) >= 0:
		return fmt.Errorf("%w: contains NUL", ErrTarget)
	}
	return nil
}
