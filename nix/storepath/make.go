package storepath

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"

	"privnix/nix/nixbase32"
	"privnix/nix/nixhash"
)

// FileIngestion is how file contents were hashed for a fixed-output path:
// Flat or Recursive. CAMethod is the same type, so the one set of constants
// serves both; Text is only meaningful as a CAMethod.
type FileIngestion uint8

// The ingestion and content-address methods.
const (
	Flat      FileIngestion = iota + 1 // the file's bytes; CA "fixed:algo:…"
	Recursive                          // the NAR serialisation; CA "fixed:r:algo:…"
	Text                               // CA "text:sha256:…" (not a FileIngestion)
)

// MakePath computes the path for fingerprint
// "<typ>:<algo>:<base16 inner>:<d>:<name>": sha256, compressed to 20 bytes, nixbase32.
func (d Dir) MakePath(typ string, inner nixhash.Hash, name string) (Path, error) {
	if err := ValidateName(name); err != nil {
		return Path{}, err
	}
	if !inner.Algo.Valid() || len(inner.Digest) != inner.Algo.Size() {
		return Path{}, fmt.Errorf("%w: inner hash for %q is not a valid %s digest", ErrInvalid, name, inner.Algo)
	}
	fp := typ + ":" + inner.Algo.String() + ":" + inner.Base16() + ":" + string(d) + ":" + name
	sum := sha256.Sum256([]byte(fp))
	return Path{base: nixbase32.EncodeToString(nixhash.Compress(sum[:], 20)) + "-" + name}, nil
}

// refsType appends ":<abs ref>" for each distinct reference in sorted order.
func (d Dir) refsType(typ string, refs []Path) (string, error) {
	abs := make([]string, 0, len(refs))
	for _, r := range refs {
		if r.IsZero() {
			return "", fmt.Errorf("%w: zero path among references", ErrInvalid)
		}
		abs = append(abs, d.String(r))
	}
	slices.Sort(abs)
	abs = slices.Compact(abs)
	var b strings.Builder
	b.WriteString(typ)
	for _, a := range abs {
		b.WriteString(":")
		b.WriteString(a)
	}
	return b.String(), nil
}

func requireSHA256(what string, h nixhash.Hash) error {
	if h.Algo != nixhash.SHA256 || len(h.Digest) != 32 {
		return fmt.Errorf("%w: %s must be a sha256 hash, got %s", ErrInvalid, what, h.Algo)
	}
	return nil
}

// MakeText computes a text path (derivations, builtins.toFile) from the
// SHA-256 of its contents and its references.
func (d Dir) MakeText(name string, contentSHA256 nixhash.Hash, refs []Path) (Path, error) {
	if err := requireSHA256("text content hash", contentSHA256); err != nil {
		return Path{}, err
	}
	typ, err := d.refsType("text", refs)
	if err != nil {
		return Path{}, err
	}
	return d.MakePath(typ, contentSHA256, name)
}

// MakeSource computes a source path (nix-store --add, recursive sha256) from
// the SHA-256 of its NAR, its references other than itself, and whether it
// refers to itself.
func (d Dir) MakeSource(name string, narSHA256 nixhash.Hash, refs []Path, self bool) (Path, error) {
	if err := requireSHA256("NAR hash of a source path", narSHA256); err != nil {
		return Path{}, err
	}
	typ, err := d.refsType("source", refs)
	if err != nil {
		return Path{}, err
	}
	if self {
		typ += ":self"
	}
	return d.MakePath(typ, narSHA256, name)
}

// MakeFixedOutput computes a fixed-output path. Recursive sha256 is a source
// path; anything else is "output:out" over sha256("fixed:out:[r:]algo:hex:"),
// which cannot have references.
func (d Dir) MakeFixedOutput(name string, m FileIngestion, h nixhash.Hash, refs []Path, self bool) (Path, error) {
	if !h.Algo.Valid() || len(h.Digest) != h.Algo.Size() {
		return Path{}, fmt.Errorf("%w: fixed-output hash for %q is not a valid %s digest", ErrInvalid, name, h.Algo)
	}
	var rec string
	switch m {
	case Recursive:
		if h.Algo == nixhash.SHA256 {
			return d.MakeSource(name, h, refs, self)
		}
		rec = "r:"
	case Flat:
	default:
		return Path{}, fmt.Errorf("%w: unknown file ingestion method %d", ErrInvalid, m)
	}
	if len(refs) > 0 || self {
		return Path{}, fmt.Errorf("%w: a fixed-output path other than recursive sha256 cannot have references", ErrInvalid)
	}
	inner := nixhash.Sum(nixhash.SHA256, []byte("fixed:out:"+rec+h.Algo.String()+":"+h.Base16()+":"))
	return d.MakePath("output:out", inner, name)
}

// MakeOutput computes the path of an input-addressed derivation output from
// the derivation's (masked) hash modulo. The name is drvName, plus
// "-<output>" unless output is "out".
func (d Dir) MakeOutput(output string, hashModulo nixhash.Hash, drvName string) (Path, error) {
	if err := ValidateName(output); err != nil {
		return Path{}, fmt.Errorf("output name: %w", err)
	}
	name := drvName
	if output != "out" {
		name += "-" + output
	}
	return d.MakePath("output:"+output, hashModulo, name)
}
