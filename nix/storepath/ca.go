package storepath

import (
	"fmt"
	"strings"

	"privnix/nix/nixhash"
)

// CAMethod is how a content address was computed: Text, Flat or Recursive.
// It is an alias of FileIngestion so that Flat and Recursive name both.
type CAMethod = FileIngestion

// ContentAddress is a store object's content address.
type ContentAddress struct {
	Method CAMethod
	Hash   nixhash.Hash
}

// ParseContentAddress parses "text:sha256:<hash>", "fixed:r:<algo>:<hash>" or
// "fixed:<algo>:<hash>"; the hash may be in any typed form nixhash.Parse takes.
func ParseContentAddress(s string) (ContentAddress, error) {
	prefix, rest, ok := strings.Cut(s, ":")
	if !ok {
		return ContentAddress{}, fmt.Errorf("%w: content address %q has no method prefix", ErrInvalid, s)
	}
	var m CAMethod
	switch prefix {
	case "text":
		m = Text
	case "fixed":
		m = Flat
		if r, ok := strings.CutPrefix(rest, "r:"); ok {
			m, rest = Recursive, r
		}
	default:
		return ContentAddress{}, fmt.Errorf("%w: content address %q has unknown method %q", ErrInvalid, s, prefix)
	}
	h, err := nixhash.Parse(rest)
	if err != nil {
		return ContentAddress{}, fmt.Errorf("content address %q: %w", s, err)
	}
	if m == Text && h.Algo != nixhash.SHA256 {
		return ContentAddress{}, fmt.Errorf("%w: text content address must use sha256, not %s", ErrInvalid, h.Algo)
	}
	return ContentAddress{Method: m, Hash: h}, nil
}

// String returns the canonical form, with the hash as "algo:<nixbase32>".
func (c ContentAddress) String() string {
	switch c.Method {
	case Text:
		return "text:" + c.Hash.String()
	case Flat:
		return "fixed:" + c.Hash.String()
	case Recursive:
		return "fixed:r:" + c.Hash.String()
	}
	return fmt.Sprintf("invalid-content-address(%d)", c.Method)
}

// MakeFromCA computes the path that content address ca implies for name with
// the given references (without the path itself) and self-reference.
func (d Dir) MakeFromCA(name string, ca ContentAddress, refs []Path, self bool) (Path, error) {
	switch ca.Method {
	case Text:
		if self {
			return Path{}, fmt.Errorf("%w: a text path cannot refer to itself", ErrInvalid)
		}
		return d.MakeText(name, ca.Hash, refs)
	case Flat, Recursive:
		return d.MakeFixedOutput(name, ca.Method, ca.Hash, refs, self)
	}
	return Path{}, fmt.Errorf("%w: unknown content-address method %d", ErrInvalid, ca.Method)
}
