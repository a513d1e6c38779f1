// Package narreader is a strict streaming parser for Nix archives (NAR) that refuses every non-canonical or hostile input.
package narreader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits bound what a Reader accepts. A zero field takes its value from DefaultLimits.
type Limits struct {
	MaxDepth     int    // directories nested inside each other, the root directory counting 1
	MaxEntries   int    // directory entries in the whole archive
	MaxNameLen   int    // bytes in one entry name (never more than 255)
	MaxTargetLen int    // bytes in one symlink target (never more than 4095)
	MaxTotal     uint64 // bytes of the whole archive
}

// DefaultLimits are generous for real store paths and small enough to stop abuse.
var DefaultLimits = Limits{
	MaxDepth:     256,
	MaxEntries:   1 << 22,
	MaxNameLen:   255,
	MaxTargetLen: 4095,
	MaxTotal:     1 << 36,
}

// Hard caps that no Limits value can raise.
const (
	hardMaxNameLen   = 255
	hardMaxTargetLen = 4095
	maxTagLen        = 16 // longest keyword token ("nix-archive-1" is 13)
)

func (l Limits) withDefaults() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultLimits.MaxEntries
	}
	if l.MaxNameLen <= 0 || l.MaxNameLen > hardMaxNameLen {
		l.MaxNameLen = hardMaxNameLen
	}
	if l.MaxTargetLen <= 0 || l.MaxTargetLen > hardMaxTargetLen {
		l.MaxTargetLen = hardMaxTargetLen
	}
	if l.MaxTotal == 0 {
		l.MaxTotal = DefaultLimits.MaxTotal
	}
	return l
}

// Kind says what an Event is.
type Kind uint8

// The kinds of Event, in the order the grammar produces them.
const (
	KindFile     Kind = iota + 1 // a regular file; read its contents from Event.Contents
	KindSymlink                  // a symbolic link with Event.Target
	KindDirStart                 // a directory begins; entries follow until KindDirEnd
	KindDirEnd                   // the current directory ends
	KindEntry                    // a directory entry named Event.Name; its node follows
)

func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindSymlink:
		return "symlink"
	case KindDirStart:
		return "directory start"
	case KindDirEnd:
		return "directory end"
	case KindEntry:
		return "entry"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Event is one step of an archive.
type Event struct {
	Kind       Kind
	Name       string    // KindEntry: the entry name, already validated
	Executable bool      // KindFile
	Size       uint64    // KindFile: the exact number of content bytes
	Contents   io.Reader // KindFile: the contents; valid until the next call of Next
	Target     string    // KindSymlink
	Depth      int       // number of directories enclosing this event's node
}

type state uint8

const (
	stStart   state = iota // before the magic
	stNode                 // a node must begin
	stInFile               // contents are being read; then ")" must follow
	stInDir                // inside a directory: "entry" or ")"
	stNodeEnd              // a node just ended: close the enclosing entry, if any
	stDone                 // the root ")" has been read
)

// frame is what the Reader remembers about one open directory.
type frame struct {
	prev    string
	hasPrev bool
}

// Reader parses one NAR from an io.Reader. It reads exactly the archive, no
// byte past the root node's ")", in small reads: give it a buffered reader.
type Reader struct {
	src     io.Reader
	lim     Limits
	st      state
	stack   []frame
	off     uint64 // bytes consumed
	entries int
	remain  uint64 // content bytes of the current file not yet read
	padding uint64 // padding after the current file's contents
	err     error
	buf     [hardMaxTargetLen + 1 + 8]byte
	content contents
}

// NewReader returns a Reader of the archive in r bounded by lim.
func NewReader(r io.Reader, lim Limits) *Reader {
	rd := &Reader{src: r, lim: lim.withDefaults()}
	rd.content.r = rd
	return rd
}

// Offset returns the number of archive bytes consumed so far.
func (r *Reader) Offset() uint64 { return r.off }

// Next returns the next event. After the root node ends it returns io.EOF;
// any other error is final and returned again by every later call.
func (r *Reader) Next() (Event, error) {
	if r.err != nil {
		return Event{}, r.err
	}
	ev, err := r.next()
	if err != nil && err != io.EOF {
		r.err = err
	}
	return ev, err
}

func (r *Reader) next() (Event, error) {
	for {
		switch r.st {
		case stStart:
			if err := r.magic(); err != nil {
				return Event{}, err
			}
			r.st = stNode
		case stNode:
			return r.node()
		case stInFile:
			if err := r.finishFile(); err != nil {
				return Event{}, err
			}
			r.st = stNodeEnd
		case stInDir:
			return r.dirItem()
		case stNodeEnd:
			if len(r.stack) == 0 {
				r.st = stDone
				return Event{}, io.EOF
			}
			if err := r.expect(")", "the end of an entry"); err != nil {
				return Event{}, err
			}
			r.st = stInDir
		case stDone:
			return Event{}, io.EOF
		}
	}
}

func (r *Reader) magic() error {
	tag, err := r.tag("the magic")
	if err != nil {
		if errors.Is(err, ErrTokenTooLong) {
			return r.fail(ErrMagic, "magic token is too long")
		}
		return err
	}
	if string(tag) != "nix-archive-1" {
		return r.fail(ErrMagic, fmt.Sprintf("got %q, want \"nix-archive-1\"", tag))
	}
	return nil
}

// node parses "( type <kind> ..." up to the event it produces.
func (r *Reader) node() (Event, error) {
	if err := r.expect("(", "the start of a node"); err != nil {
		return Event{}, err
	}
	if err := r.expect("type", "\"type\""); err != nil {
		return Event{}, err
	}
	tag, err := r.tag("a node type")
	if err != nil {
		return Event{}, err
	}
	switch string(tag) {
	case "regular":
		return r.file()
	case "symlink":
		return r.symlink()
	case "directory":
		if len(r.stack) >= r.lim.MaxDepth {
			return Event{}, r.fail(ErrTooDeep, fmt.Sprintf("more than %d nested directories", r.lim.MaxDepth))
		}
		depth := len(r.stack)
		r.stack = append(r.stack, frame{})
		r.st = stInDir
		return Event{Kind: KindDirStart, Depth: depth}, nil
	}
	return Event{}, r.fail(ErrUnknownType, fmt.Sprintf("%q", tag))
}

func (r *Reader) file() (Event, error) {
	ev := Event{Kind: KindFile, Depth: len(r.stack)}
	tag, err := r.tag("\"executable\" or \"contents\"")
	if err != nil {
		return Event{}, err
	}
	if string(tag) == "executable" {
		ev.Executable = true
		n, err := r.length()
		if err != nil {
			return Event{}, err
		}
		if n != 0 {
			return Event{}, r.fail(ErrExecutableValue, fmt.Sprintf("marker value of %d bytes, want none", n))
		}
		if tag, err = r.tag("\"contents\""); err != nil {
			return Event{}, err
		}
	}
	switch string(tag) {
	case "contents":
	case ")":
		return Event{}, r.fail(ErrMissingContents, "regular file without \"contents\"")
	default:
		return Event{}, r.fail(ErrUnexpectedToken, fmt.Sprintf("got %q, want \"contents\"", tag))
	}
	size, err := r.length()
	if err != nil {
		return Event{}, err
	}
	pad := (8 - size%8) % 8
	if size > r.lim.MaxTotal || r.off+size+pad > r.lim.MaxTotal {
		return Event{}, r.fail(ErrTooLarge, fmt.Sprintf("file of %d bytes exceeds the %d-byte archive limit", size, r.lim.MaxTotal))
	}
	r.remain, r.padding = size, pad
	r.st = stInFile
	ev.Size = size
	ev.Contents = &r.content
	return ev, nil
}

// finishFile skips unread contents, checks the padding and the closing ")".
func (r *Reader) finishFile() error {
	if r.remain > 0 {
		if _, err := io.Copy(io.Discard, &r.content); err != nil {
			return err
		}
	}
	if err := r.pad(r.padding); err != nil {
		return err
	}
	tag, err := r.tag("\")\" after contents")
	if err != nil {
		return err
	}
	switch string(tag) {
	case ")":
		return nil
	case "executable":
		return r.fail(ErrExecutableAfterContents, "\"executable\" must come before \"contents\"")
	}
	return r.fail(ErrUnexpectedToken, fmt.Sprintf("got %q, want \")\" after contents", tag))
}

func (r *Reader) symlink() (Event, error) {
	if err := r.expect("target", "\"target\""); err != nil {
		return Event{}, err
	}
	n, err := r.length()
	if err != nil {
		return Event{}, err
	}
	if n > uint64(r.lim.MaxTargetLen) {
		return Event{}, r.fail(ErrTargetTooLong, fmt.Sprintf("%d bytes, limit %d", n, r.lim.MaxTargetLen))
	}
	b, err := r.bytes(n)
	if err != nil {
		return Event{}, err
	}
	switch {
	case n == 0:
		return Event{}, r.fail(ErrEmptyTarget, "symlink target is empty")
	case strings.IndexByte(string(b), 0) >= 0:
		return Event{}, r.fail(ErrNULTarget, fmt.Sprintf("symlink target %q contains NUL", b))
	}
	ev := Event{Kind: KindSymlink, Target: string(b), Depth: len(r.stack)}
	if err := r.expect(")", "\")\" after the target"); err != nil {
		return Event{}, err
	}
	r.st = stNodeEnd
	return ev, nil
}

// dirItem parses the next entry of a directory or its end.
func (r *Reader) dirItem() (Event, error) {
	tag, err := r.tag("\"entry\" or \")\"")
	if err != nil {
		return Event{}, err
	}
	switch string(tag) {
	case ")":
		r.stack = r.stack[:len(r.stack)-1]
		r.st = stNodeEnd
		return Event{Kind: KindDirEnd, Depth: len(r.stack)}, nil
	case "entry":
	default:
		return Event{}, r.fail(ErrUnexpectedToken, fmt.Sprintf("got %q, want \"entry\" or \")\"", tag))
	}
	if r.entries >= r.lim.MaxEntries {
		return Event{}, r.fail(ErrTooManyEntries, fmt.Sprintf("more than %d entries", r.lim.MaxEntries))
	}
	r.entries++
	if err := r.expect("(", "\"(\" after \"entry\""); err != nil {
		return Event{}, err
	}
	if err := r.expect("name", "\"name\""); err != nil {
		return Event{}, err
	}
	name, err := r.name()
	if err != nil {
		return Event{}, err
	}
	if err := r.expect("node", "\"node\""); err != nil {
		return Event{}, err
	}
	r.st = stNode
	return Event{Kind: KindEntry, Name: name, Depth: len(r.stack)}, nil
}

// name reads and validates an entry name against its directory's previous one.
func (r *Reader) name() (string, error) {
	n, err := r.length()
	if err != nil {
		return "", err
	}
	if n > uint64(r.lim.MaxNameLen) {
		return "", r.fail(ErrNameTooLong, fmt.Sprintf("%d bytes, limit %d", n, r.lim.MaxNameLen))
	}
	b, err := r.bytes(n)
	if err != nil {
		return "", err
	}
	name := string(b)
	switch {
	case name == "":
		return "", r.fail(ErrEmptyName, "entry name is empty")
	case name == "." || name == "..":
		return "", r.fail(ErrDotName, fmt.Sprintf("entry name %q", name))
	case strings.IndexByte(name, '/') >= 0:
		return "", r.fail(ErrSlashName, fmt.Sprintf("entry name %q contains '/'", name))
	case strings.IndexByte(name, 0) >= 0:
		return "", r.fail(ErrNULName, fmt.Sprintf("entry name %q contains NUL", name))
	}
	top := &r.stack[len(r.stack)-1]
	if top.hasPrev {
		if name == top.prev {
			return "", r.fail(ErrDuplicateEntry, fmt.Sprintf("entry %q appears twice", name))
		}
		if name < top.prev {
			return "", r.fail(ErrNotSorted, fmt.Sprintf("entry %q after %q", name, top.prev))
		}
	}
	top.prev, top.hasPrev = name, true
	return name, nil
}

// expect reads a keyword token and refuses anything but want.
func (r *Reader) expect(want, what string) error {
	tag, err := r.tag(what)
	if err != nil {
		return err
	}
	if string(tag) != want {
		return r.fail(ErrUnexpectedToken, fmt.Sprintf("got %q, want %s", tag, what))
	}
	return nil
}

// tag reads a keyword token of at most maxTagLen bytes.
func (r *Reader) tag(what string) ([]byte, error) {
	n, err := r.length()
	if err != nil {
		return nil, err
	}
	if n > maxTagLen {
		return nil, r.fail(ErrTokenTooLong, fmt.Sprintf("token of %d bytes where %s is expected", n, what))
	}
	return r.bytes(n)
}

// length reads a u64 little-endian length.
func (r *Reader) length() (uint64, error) {
	if err := r.read(r.buf[:8]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(r.buf[:8]), nil
}

// bytes reads n (already bounded) bytes and their zero padding into r.buf.
func (r *Reader) bytes(n uint64) ([]byte, error) {
	total := (n + 7) &^ 7
	if err := r.read(r.buf[:total]); err != nil {
		return nil, err
	}
	for _, c := range r.buf[n:total] {
		if c != 0 {
			return nil, r.fail(ErrPadding, "non-zero padding after a token")
		}
	}
	return r.buf[:n], nil
}

// pad reads and checks n padding bytes.
func (r *Reader) pad(n uint64) error {
	if err := r.read(r.buf[:n]); err != nil {
		return err
	}
	for _, c := range r.buf[:n] {
		if c != 0 {
			return r.fail(ErrPadding, "non-zero padding after file contents")
		}
	}
	return nil
}

// read fills p from the source, counting it against MaxTotal.
func (r *Reader) read(p []byte) error {
	if r.off+uint64(len(p)) > r.lim.MaxTotal {
		return r.fail(ErrTooLarge, fmt.Sprintf("archive exceeds %d bytes", r.lim.MaxTotal))
	}
	n, err := io.ReadFull(r.src, p)
	r.off += uint64(n)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return r.fail(ErrTruncated, "end of input inside the archive")
	}
	if err != nil {
		return fmt.Errorf("nar: reading archive: %w", err)
	}
	return nil
}

func (r *Reader) fail(sentinel error, detail string) error {
	return &Error{Offset: r.off, Err: sentinel, Detail: detail}
}

// contents reads the current file's bytes, never past their end.
type contents struct{ r *Reader }

func (c *contents) Read(p []byte) (int, error) {
	r := c.r
	if r.err != nil {
		return 0, r.err
	}
	if r.st != stInFile || r.remain == 0 {
		return 0, io.EOF
	}
	if uint64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.src.Read(p)
	r.off += uint64(n)
	r.remain -= uint64(n)
	switch {
	case err == io.EOF && r.remain > 0:
		r.err = r.fail(ErrTruncated, fmt.Sprintf("end of input with %d content bytes missing", r.remain))
		return n, r.err
	case err == io.EOF:
		return n, nil
	case err != nil:
		r.err = fmt.Errorf("nar: reading file contents: %w", err)
		return n, r.err
	}
	return n, nil
}
