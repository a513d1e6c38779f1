// Package wire reads and writes the Nix worker protocol's primitives and shared types, with a size cap on everything it allocates.
package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Handshake magic numbers (docs/nix-protocol.md §2.2).
const (
	Magic1 = 0x6e697863 // client hello, "cxin"
	Magic2 = 0x6478696f // daemon hello, "oixd"
)

// Caps used by callers that have no better bound; every read takes its own cap.
const (
	MaxPathLen     = 4096     // a store path or any other file name
	MaxSmallString = 4096     // hashes, names, content addresses, signatures, option values
	MaxCount       = 1 << 20  // elements of one list, set or map
	MaxTextLen     = 64 << 20 // AddTextToStore text, error messages
	MaxFeatures    = 128      // protocol feature names offered in the ≥1.38 handshake
)

// ErrProtocol marks every error caused by bytes the peer sent that break the protocol.
var ErrProtocol = errors.New("protocol violation")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// Version is a protocol version word, major<<8 | minor.
type Version uint32

// V returns protocol version 1.minor.
func V(minor uint32) Version { return Version(1<<8 | minor) }

// Major returns the major version.
func (v Version) Major() uint32 { return uint32(v) >> 8 }

// Minor returns the minor version.
func (v Version) Minor() uint32 { return uint32(v) & 0xff }

// AtLeast reports whether v is 1.minor or newer.
func (v Version) AtLeast(minor uint32) bool { return v >= V(minor) }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major(), v.Minor()) }

// smallAlloc is the largest buffer allocated up front; longer strings grow as bytes arrive.
const smallAlloc = 64 << 10

// Reader decodes protocol values from a buffered stream.
type Reader struct {
	br     *bufio.Reader
	budget int64 // bytes strings may still allocate; <0 = unlimited
}

// NewReader returns a Reader buffering r.
func NewReader(r io.Reader) *Reader { return &Reader{br: bufio.NewReaderSize(r, 32<<10), budget: -1} }

// SetBudget caps the total bytes that the strings read from now on may allocate
// (one operation's arguments); n < 0 removes the cap.
func (r *Reader) SetBudget(n int64) { r.budget = n }

// Read reads raw bytes (framed payloads, inline NARs).
func (r *Reader) Read(p []byte) (int, error) { return r.br.Read(p) }

// Buffered returns how many bytes are already buffered.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// U64 reads one little-endian u64.
func (r *Reader) U64() (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(r.br, b[:]); err != nil {
		return 0, eof(err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// Uint reads a u64 and refuses values above max; what names the field in the error.
func (r *Reader) Uint(max uint64, what string) (uint64, error) {
	n, err := r.U64()
	if err != nil {
		return 0, err
	}
	if n > max {
		return 0, protoErr("%s: serialised integer %d is larger than %d", what, n, max)
	}
	return n, nil
}

// Bool reads a u64 boolean (non-zero is true).
func (r *Reader) Bool() (bool, error) {
	n, err := r.U64()
	return n != 0, err
}

// Bytes reads a padded byte string of at most max bytes.
func (r *Reader) Bytes(max int, what string) ([]byte, error) {
	n, err := r.U64()
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, protoErr("%s: string of %d bytes exceeds the limit of %d", what, n, max)
	}
	if r.budget >= 0 {
		if int64(n) > r.budget {
			return nil, protoErr("%s: the arguments exceed their total limit", what)
		}
		r.budget -= int64(n)
	}
	b, err := r.readN(int(n))
	if err != nil {
		return nil, err
	}
	return b, r.padding(n, what)
}

// readN reads n bytes, allocating only as the bytes arrive once n is large.
func (r *Reader) readN(n int) ([]byte, error) {
	if n <= smallAlloc {
		b := make([]byte, n)
		_, err := io.ReadFull(r.br, b)
		return b, eof(err)
	}
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r.br, int64(n)); err != nil {
		return nil, eof(err)
	}
	return buf.Bytes(), nil
}

func (r *Reader) padding(n uint64, what string) error {
	pad := (8 - n%8) % 8
	if pad == 0 {
		return nil
	}
	var b [8]byte
	if _, err := io.ReadFull(r.br, b[:pad]); err != nil {
		return eof(err)
	}
	for _, c := range b[:pad] {
		if c != 0 {
			return protoErr("%s: non-zero padding", what)
		}
	}
	return nil
}

// String reads a padded string of at most max bytes.
func (r *Reader) String(max int, what string) (string, error) {
	b, err := r.Bytes(max, what)
	return string(b), err
}

// count reads a container length and refuses more than max elements.
func (r *Reader) count(max int, what string) (int, error) {
	n, err := r.U64()
	if err != nil {
		return 0, err
	}
	if n > uint64(max) {
		return 0, protoErr("%s: %d elements exceed the limit of %d", what, n, max)
	}
	return int(n), nil
}

// Strings reads a list of at most maxCount strings of at most maxLen bytes each.
func (r *Reader) Strings(maxCount, maxLen int, what string) ([]string, error) {
	n, err := r.count(maxCount, what)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, min(n, 1024))
	for range n {
		s, err := r.String(maxLen, what)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// StringSet reads a string set: like Strings, returned sorted without duplicates.
func (r *Reader) StringSet(maxCount, maxLen int, what string) ([]string, error) {
	ss, err := r.Strings(maxCount, maxLen, what)
	if err != nil {
		return nil, err
	}
	slices.Sort(ss)
	return slices.Compact(ss), nil
}

// Pair is one entry of a string→string map, kept in wire order.
type Pair struct{ Key, Value string }

// Pairs reads a string→string map as a list of at most maxCount pairs.
func (r *Reader) Pairs(maxCount, maxKey, maxValue int, what string) ([]Pair, error) {
	n, err := r.count(maxCount, what)
	if err != nil {
		return nil, err
	}
	out := make([]Pair, 0, min(n, 1024))
	for range n {
		k, err := r.String(maxKey, what)
		if err != nil {
			return nil, err
		}
		v, err := r.String(maxValue, what)
		if err != nil {
			return nil, err
		}
		out = append(out, Pair{k, v})
	}
	return out, nil
}

// eof turns a short read into io.ErrUnexpectedEOF so callers can tell it from a clean close.
func eof(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Writer encodes protocol values into a buffer sent by Flush. The first error sticks.
type Writer struct {
	bw  *bufio.Writer
	err error
}

// NewWriter returns a Writer buffering w.
func NewWriter(w io.Writer) *Writer { return &Writer{bw: bufio.NewWriterSize(w, 32<<10)} }

// Write writes raw bytes (a NAR after NarFromPath, frame contents).
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.bw.Write(p)
	w.err = err
	return n, err
}

// U64 writes one little-endian u64.
func (w *Writer) U64(v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	_, _ = w.Write(b[:])
}

// Bool writes 1 or 0.
func (w *Writer) Bool(b bool) {
	if b {
		w.U64(1)
	} else {
		w.U64(0)
	}
}

var zeros [8]byte

// Bytes writes a padded byte string.
func (w *Writer) Bytes(b []byte) {
	w.U64(uint64(len(b)))
	_, _ = w.Write(b)
	_, _ = w.Write(zeros[:(8-len(b)%8)%8])
}

// String writes a padded string.
func (w *Writer) String(s string) {
	w.U64(uint64(len(s)))
	if w.err == nil {
		_, w.err = w.bw.WriteString(s)
	}
	_, _ = w.Write(zeros[:(8-len(s)%8)%8])
}

// Strings writes a list of strings in the given order.
func (w *Writer) Strings(ss []string) {
	w.U64(uint64(len(ss)))
	for _, s := range ss {
		w.String(s)
	}
}

// StringSet writes a set of strings sorted byte-wise, without duplicates.
func (w *Writer) StringSet(ss []string) {
	s := slices.Clone(ss)
	slices.Sort(s)
	w.Strings(slices.Compact(s))
}

// Pairs writes a string→string map in the given order.
func (w *Writer) Pairs(ps []Pair) {
	w.U64(uint64(len(ps)))
	for _, p := range ps {
		w.String(p.Key)
		w.String(p.Value)
	}
}

// Flush sends everything buffered and returns the first error seen.
func (w *Writer) Flush() error {
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	return w.err
}

// Err returns the first write error.
func (w *Writer) Err() error { return w.err }
