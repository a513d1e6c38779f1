package msg

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
)

// Length limits shared by the validators.
const (
	MaxStoreDir  = 1024 // bytes of a store directory
	MaxName      = 211  // bytes of a store path name (Nix's limit)
	HashPartLen  = 32   // nix32 characters of a store path's hash part
	MaxStorePath = MaxStoreDir + 1 + HashPartLen + 1 + MaxName
	MaxText      = 4 << 10 // error messages, log lines, refusals
	MaxShort     = 256     // user names, versions, key names
	MaxSig       = 1024    // one signature "name:base64"
	MaxCA        = 256     // a content address
)

// Nix32Alphabet is Nix's base-32 alphabet (no e, o, t, u).
const Nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// Character classes, as tables (validation runs on every path of every
// message, both ways).
var nix32Chars, nameChars = charTable(Nix32Alphabet),
	charTable("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-._?=")

func charTable(chars string) (t [256]bool) {
	for i := 0; i < len(chars); i++ {
		t[chars[i]] = true
	}
	return t
}

func isNix32(c byte) bool { return nix32Chars[c] }

// isNameChar reports whether c may appear in a store path name.
func isNameChar(c byte) bool { return nameChars[c] }

// ValidName checks a store path name: 1..MaxName characters of
// [A-Za-z0-9+-._?=], not starting with '.'.
func ValidName(name string) error {
	if name == "" || len(name) > MaxName {
		return fmt.Errorf("name length %d not in 1..%d", len(name), MaxName)
	}
	if name[0] == '.' {
		return fmt.Errorf("name %q starts with '.'", name)
	}
	for i := 0; i < len(name); i++ {
		if !isNameChar(name[i]) {
			return fmt.Errorf("name %q contains %q", name, name[i])
		}
	}
	return nil
}

// ValidHashPart checks a store path hash part: HashPartLen nix32 characters.
func ValidHashPart(h string) error {
	if len(h) != HashPartLen {
		return fmt.Errorf("hash part of %d characters, want %d", len(h), HashPartLen)
	}
	for i := 0; i < len(h); i++ {
		if !isNix32(h[i]) {
			return fmt.Errorf("hash part %q: %q is not nix32", h, h[i])
		}
	}
	return nil
}

// ValidBase checks "<32 nix32 chars>-<name>".
func ValidBase(base string) error {
	if len(base) < HashPartLen+2 || base[HashPartLen] != '-' {
		return fmt.Errorf("store path base %q is not <hash>-<name>", base)
	}
	if err := ValidHashPart(base[:HashPartLen]); err != nil {
		return err
	}
	return ValidName(base[HashPartLen+1:])
}

// ValidStoreDir checks a store directory: absolute, clean, not "/", no
// trailing '/', no NUL, at most MaxStoreDir bytes.
func ValidStoreDir(dir string) error {
	if p := lastStoreDir.Load(); p != nil && *p == dir {
		return nil // every path of a channel has the same directory
	}
	if err := checkStoreDir(dir); err != nil {
		return err
	}
	lastStoreDir.Store(&dir)
	return nil
}

// lastStoreDir is the last directory ValidStoreDir accepted.
var lastStoreDir atomic.Pointer[string]

func checkStoreDir(dir string) error {
	if len(dir) < 2 || len(dir) > MaxStoreDir || dir[0] != '/' || dir[len(dir)-1] == '/' {
		return fmt.Errorf("store dir %q is not an absolute directory of 2..%d bytes", dir, MaxStoreDir)
	}
	if strings.IndexByte(dir, 0) >= 0 || strings.Contains(dir, "//") ||
		strings.Contains(dir+"/", "/./") || strings.Contains(dir+"/", "/../") {
		return fmt.Errorf("store dir %q is not clean", dir)
	}
	return nil
}

// StorePath is an absolute store path "<dir>/<hash>-<name>". Validate checks
// its syntax; CheckStoreDir checks its directory.
type StorePath string

// Split returns the directory and the base of p (no checks).
func (p StorePath) Split() (dir, base string) {
	i := strings.LastIndexByte(string(p), '/')
	if i < 0 {
		return "", string(p)
	}
	return string(p[:i]), string(p[i+1:])
}

// Validate checks p's syntax in any store directory.
func (p StorePath) Validate() error {
	if len(p) > MaxStorePath {
		return fmt.Errorf("store path of %d bytes, at most %d", len(p), MaxStorePath)
	}
	dir, base := p.Split()
	if err := ValidStoreDir(dir); err != nil {
		return fmt.Errorf("store path %q: %w", string(p), err)
	}
	return ValidBase(base)
}

// ValidStorePath checks that p is a valid store path directly in dir.
func ValidStorePath(dir string, p StorePath) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if d, _ := p.Split(); d != dir {
		return fmt.Errorf("store path %q is not in %q", string(p), dir)
	}
	return nil
}

// validOptPath accepts the empty path (absent) or a valid one.
func validOptPath(p StorePath) error {
	if p == "" {
		return nil
	}
	return p.Validate()
}

var storePathType = reflect.TypeFor[StorePath]()

// CheckStoreDir checks that every non-empty StorePath in m, at any depth, is
// directly in dir. It assumes m has been validated (so each path's syntax is
// right already).
func CheckStoreDir(m Message, dir string) error {
	return checkDir(reflect.ValueOf(m), dir)
}

func checkDir(v reflect.Value, dir string) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return checkDir(v.Elem(), dir)
	case reflect.Struct:
		for _, i := range pathFields(v.Type()) {
			if err := checkDir(v.Field(i), dir); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if !holdsPaths(v.Type().Elem()) {
			return nil
		}
		for i := 0; i < v.Len(); i++ {
			if err := checkDir(v.Index(i), dir); err != nil {
				return err
			}
		}
	case reflect.String:
		if v.Type() == storePathType && v.Len() > 0 {
			if d, _ := StorePath(v.String()).Split(); d != dir {
				return fmt.Errorf("store path %q is not in %q", v.String(), dir)
			}
		}
	}
	return nil
}

// pathFieldsOf caches, per struct type, the indices of its exported fields
// that may hold a StorePath.
var pathFieldsOf sync.Map // reflect.Type → []int

func pathFields(t reflect.Type) []int {
	if f, ok := pathFieldsOf.Load(t); ok {
		return f.([]int)
	}
	var idx []int
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.IsExported() && holdsPaths(f.Type) {
			idx = append(idx, i)
		}
	}
	pathFieldsOf.Store(t, idx)
	return idx
}

// holdsPaths reports whether a value of type t may contain a StorePath.
func holdsPaths(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String:
		return t == storePathType
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return holdsPaths(t.Elem())
	case reflect.Interface:
		return true
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if f := t.Field(i); f.IsExported() && holdsPaths(f.Type) {
				return true
			}
		}
	}
	return false
}

// hashLens gives, per algorithm, the digest length in base16 and nix32.
var hashLens = map[string][2]int{
	"md5":    {32, 26},
	"sha1":   {40, 32},
	"sha256": {64, 52},
	"sha512": {128, 103},
}

// ValidHash checks "<algo>:<digest>" with the digest in lowercase base16 or
// in nix32 (non-zero excess bits refused). If algo is not empty, the hash
// must use it.
func ValidHash(s, algo string) error {
	a, digest, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("hash %q has no algorithm", s)
	}
	if algo != "" && a != algo {
		return fmt.Errorf("hash %q is not %s", s, algo)
	}
	l, ok := hashLens[a]
	if !ok {
		return fmt.Errorf("hash %q: unknown algorithm", s)
	}
	switch len(digest) {
	case l[0]:
		for i := 0; i < len(digest); i++ {
			if c := digest[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return fmt.Errorf("hash %q: %q is not base16", s, c)
			}
		}
		return nil
	case l[1]:
		for i := 0; i < len(digest); i++ {
			if !isNix32(digest[i]) {
				return fmt.Errorf("hash %q: %q is not nix32", s, digest[i])
			}
		}
		// The first character carries the top 5 bits of l[1]*5 bits, of
		// which only size*8 are used.
		size := l[0] / 2
		excess := l[1]*5 - size*8
		if v := strings.IndexByte(Nix32Alphabet, digest[0]); v>>(5-excess) != 0 { // nix32 already checked
			return fmt.Errorf("hash %q: non-zero excess bits", s)
		}
		return nil
	}
	return fmt.Errorf("hash %q: digest of %d characters", s, len(digest))
}

// ValidCA checks a content address: "text:sha256:…", "fixed:r:<hash>" or
// "fixed:<hash>".
func ValidCA(s string) error {
	if len(s) > MaxCA {
		return fmt.Errorf("content address of %d bytes", len(s))
	}
	if h, ok := strings.CutPrefix(s, "text:"); ok {
		return ValidHash(h, "sha256")
	}
	if h, ok := strings.CutPrefix(s, "fixed:"); ok {
		h, _ = strings.CutPrefix(h, "r:")
		return ValidHash(h, "")
	}
	return fmt.Errorf("content address %q: unknown method", s)
}

// ValidSig checks the shape of a signature "<key name>:<base64>".
func ValidSig(s string) error {
	if len(s) > MaxSig {
		return fmt.Errorf("signature of %d bytes", len(s))
	}
	name, sig, ok := strings.Cut(s, ":")
	if !ok || name == "" || sig == "" || len(name) > MaxShort {
		return fmt.Errorf("signature %q is not <name>:<base64>", s)
	}
	if err := Printable(name, MaxShort); err != nil {
		return fmt.Errorf("signature key name: %w", err)
	}
	for i := 0; i < len(sig); i++ {
		c := sig[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=') {
			return fmt.Errorf("signature %q: %q is not base64", s, c)
		}
	}
	return nil
}

// MaxLen checks that s has at most max bytes (any bytes: these are escaped
// when logged).
func MaxLen(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%d bytes, at most %d", len(s), max)
	}
	return nil
}

// Printable checks that s has at most max bytes and no ASCII control
// characters (no NUL, no newline).
func Printable(s string, max int) error {
	if err := MaxLen(s, max); err != nil {
		return err
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return fmt.Errorf("%q contains control character %#02x", s, s[i])
		}
	}
	return nil
}

// field prefixes an error with the field it concerns.
func field(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
