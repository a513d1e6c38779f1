package msg

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// List maxima. A frame (MaxBody) usually binds first: about 1,500 store paths
// of typical length fit in one; senders split longer lists.
const (
	MaxStrings = 1024 // Strings
	MaxPaths   = 8192 // StorePaths
	MaxSigs    = 64   // signatures on one path
)

// lener is what a decoder's reader offers when it reads from memory
// (*bytes.Reader): the number of bytes left.
type lener interface{ Len() int }

// DecodeList decodes a msgpack array into *dst, refusing a count above max or
// above the bytes left in the frame (each element takes at least one byte)
// before allocating anything. Named list types call it from DecodeMsgpack:
//
//	type Attrs []Attr
//	func (a *Attrs) DecodeMsgpack(d *msgpack.Decoder) error { return DecodeList(d, MaxAttrs, (*[]Attr)(a)) }
func DecodeList[T any](d *msgpack.Decoder, max int, dst *[]T) error {
	n, err := d.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n < 0 { // nil
		*dst = nil
		return nil
	}
	if n > max {
		return fmt.Errorf("msg: list of %d elements, at most %d allowed", n, max)
	}
	// Without an in-memory reader we cannot know the bytes left; refuse
	// rather than trust the count.
	l, ok := d.Buffered().(lener)
	if !ok {
		return fmt.Errorf("msg: list decoded from a stream")
	}
	if n > l.Len() {
		return fmt.Errorf("msg: list of %d elements in %d bytes", n, l.Len())
	}
	out := make([]T, n)
	for i := range out {
		if err := d.Decode(&out[i]); err != nil {
			return err
		}
	}
	*dst = out
	return nil
}

// Strings is a list of at most MaxStrings strings.
type Strings []string

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *Strings) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxStrings, (*[]string)(s))
}

// StorePaths is a list of at most MaxPaths store paths.
type StorePaths []StorePath

// DecodeMsgpack implements msgpack.CustomDecoder.
func (s *StorePaths) DecodeMsgpack(d *msgpack.Decoder) error {
	return DecodeList(d, MaxPaths, (*[]StorePath)(s))
}

// Validate checks the count and every path.
func (s StorePaths) Validate() error {
	if len(s) > MaxPaths {
		return fmt.Errorf("%d paths, at most %d", len(s), MaxPaths)
	}
	for i, p := range s {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("[%d]: %w", i, err)
		}
	}
	return nil
}

// Validate checks that s has at most max elements and that each passes check.
func (s Strings) Validate(max int, check func(string) error) error {
	if len(s) > max || len(s) > MaxStrings {
		return fmt.Errorf("%d strings, at most %d", len(s), min(max, MaxStrings))
	}
	for i, e := range s {
		if err := check(e); err != nil {
			return fmt.Errorf("[%d]: %w", i, err)
		}
	}
	return nil
}
