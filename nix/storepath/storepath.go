// Package storepath is Nix store paths: the store directory, parsing and
// validating "<dir>/<hash>-<name>", and computing paths from fingerprints.
package storepath

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"privnix/nix/nixbase32"
)

// HashLen is the length of a store path's hash part in nixbase32 characters.
const HashLen = 32

// MaxNameLen is the longest name Nix accepts.
const MaxNameLen = 211

// ErrInvalid is wrapped by every refusal of a malformed store directory, path or name.
var ErrInvalid = errors.New("invalid store path")

// Dir is a store directory: absolute, clean, without a trailing '/'.
type Dir string

// NewDir validates s as a store directory.
func NewDir(s string) (Dir, error) {
	switch {
	case s == "" || s[0] != '/':
		return "", fmt.Errorf("%w: store directory %q is not absolute", ErrInvalid, s)
	case s == "/":
		return "", fmt.Errorf("%w: store directory may not be the root directory", ErrInvalid)
	case path.Clean(s) != s:
		return "", fmt.Errorf("%w: store directory %q is not clean (trailing '/', '//', '.' or '..')", ErrInvalid, s)
	case strings.ContainsAny(s, "\x00\n:"):
		return "", fmt.Errorf("%w: store directory %q contains NUL, newline or ':'", ErrInvalid, s)
	}
	return Dir(s), nil
}

// Path is a store path independent of the store directory. It is comparable;
// the zero value is not a valid path.
type Path struct {
	base string // "<32 nixbase32 chars>-<name>", validated
}

// ParseBase parses a base name "<32 nixbase32 chars>-<name>".
func ParseBase(base string) (Path, error) {
	if len(base) < HashLen+2 || base[HashLen] != '-' {
		return Path{}, fmt.Errorf("%w: %q is not <32-char hash>-<name>", ErrInvalid, base)
	}
	for i := 0; i < HashLen; i++ {
		if !nixbase32.IsValidChar(base[i]) {
			return Path{}, fmt.Errorf("%w: %q has character %q in its hash part", ErrInvalid, base, base[i])
		}
	}
	if err := ValidateName(base[HashLen+1:]); err != nil {
		return Path{}, err
	}
	return Path{base: base}, nil
}

// Parse parses an absolute store path "<d>/<base>" with nothing after the base name.
func (d Dir) Parse(abs string) (Path, error) {
	rest, ok := strings.CutPrefix(abs, string(d)+"/")
	if !ok || d == "" {
		return Path{}, fmt.Errorf("%w: %q is not in the store directory %q", ErrInvalid, abs, string(d))
	}
	return ParseBase(rest)
}

// String returns the absolute path of p in d.
func (d Dir) String(p Path) string { return string(d) + "/" + p.base }

// Base returns "<hash>-<name>".
func (p Path) Base() string { return p.base }

// HashPart returns the 32-character hash part.
func (p Path) HashPart() string {
	if p.base == "" {
		return ""
	}
	return p.base[:HashLen]
}

// Name returns the name after the hash part and '-'.
func (p Path) Name() string {
	if p.base == "" {
		return ""
	}
	return p.base[HashLen+1:]
}

// IsZero reports whether p is the zero (invalid) Path.
func (p Path) IsZero() bool { return p.base == "" }

// IsDerivation reports whether the name ends in ".drv".
func (p Path) IsDerivation() bool { return strings.HasSuffix(p.base, ".drv") }

// ValidateName checks a store path name: 1–211 characters from
// [A-Za-z0-9+-._?=], not starting with '.'.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: name is %d characters long, the limit is %d", ErrInvalid, len(name), MaxNameLen)
	case name[0] == '.':
		return fmt.Errorf("%w: name %q starts with '.'", ErrInvalid, name)
	}
	for i := 0; i < len(name); i++ {
		if !nameChar(name[i]) {
			return fmt.Errorf("%w: name %q contains the illegal character %q", ErrInvalid, name, name[i])
		}
	}
	return nil
}

func nameChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("+-._?=", c) >= 0
}
