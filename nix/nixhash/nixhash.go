// Package nixhash is Nix's typed hashes: algorithms, digests and their
// base16, nixbase32, base64 and SRI string forms.
package nixhash

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"

	"privnix/nix/nixbase32"
)

// Algo is a hash algorithm Nix knows. The zero value is not a valid Algo.
type Algo uint8

// The algorithms, in Nix's order.
const (
	MD5 Algo = iota + 1
	SHA1
	SHA256
	SHA512
)

// ErrInvalid is wrapped by every parse error of this package.
var ErrInvalid = errors.New("invalid hash")

var algoNames = [...]string{MD5: "md5", SHA1: "sha1", SHA256: "sha256", SHA512: "sha512"}
var algoSizes = [...]int{MD5: md5.Size, SHA1: sha1.Size, SHA256: sha256.Size, SHA512: sha512.Size}

// ParseAlgo parses "md5", "sha1", "sha256" or "sha512".
func ParseAlgo(s string) (Algo, error) {
	for a := MD5; a <= SHA512; a++ {
		if algoNames[a] == s {
			return a, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown hash algorithm %q", ErrInvalid, s)
}

// Valid reports whether a is one of the known algorithms.
func (a Algo) Valid() bool { return a >= MD5 && a <= SHA512 }

// String returns Nix's name of the algorithm.
func (a Algo) String() string {
	if !a.Valid() {
		return fmt.Sprintf("Algo(%d)", uint8(a))
	}
	return algoNames[a]
}

// Size returns the digest length in bytes, or 0 for an invalid Algo.
func (a Algo) Size() int {
	if !a.Valid() {
		return 0
	}
	return algoSizes[a]
}

// New returns a new hash.Hash computing a. It panics for an invalid Algo.
func (a Algo) New() hash.Hash {
	switch a {
	case MD5:
		return md5.New()
	case SHA1:
		return sha1.New()
	case SHA256:
		return sha256.New()
	case SHA512:
		return sha512.New()
	}
	panic("nixhash: New on invalid " + a.String())
}

// Hash is a digest together with its algorithm.
type Hash struct {
	Algo   Algo
	Digest []byte
}

// Sum hashes data with a.
func Sum(a Algo, data []byte) Hash {
	h := a.New()
	h.Write(data)
	return Hash{Algo: a, Digest: h.Sum(nil)}
}

// Parse parses a typed hash: "algo:<base16|nixbase32|base64>" (the encoding
// is told by the length) or SRI "algo-<base64>".
func Parse(s string) (Hash, error) {
	if name, rest, ok := strings.Cut(s, ":"); ok {
		a, err := ParseAlgo(name)
		if err != nil {
			return Hash{}, err
		}
		return ParseAs(rest, a)
	}
	if name, rest, ok := strings.Cut(s, "-"); ok {
		a, err := ParseAlgo(name)
		if err != nil {
			return Hash{}, err
		}
		return parseBase64(rest, a)
	}
	return Hash{}, fmt.Errorf("%w: %q has no algorithm prefix (\"algo:\" or SRI \"algo-\")", ErrInvalid, s)
}

// ParseAs parses a bare digest of algorithm a in base16, nixbase32 or base64,
// told apart by length.
func ParseAs(s string, a Algo) (Hash, error) {
	if !a.Valid() {
		return Hash{}, fmt.Errorf("%w: invalid algorithm %s", ErrInvalid, a)
	}
	n := a.Size()
	switch len(s) {
	case 2 * n:
		d, err := hex.DecodeString(s)
		if err != nil {
			return Hash{}, fmt.Errorf("%w: bad base16 %s digest: %v", ErrInvalid, a, err)
		}
		return Hash{Algo: a, Digest: d}, nil
	case nixbase32.EncodedLen(n):
		d, err := nixbase32.DecodeString(s)
		if err != nil {
			return Hash{}, fmt.Errorf("%w: bad nixbase32 %s digest: %v", ErrInvalid, a, err)
		}
		return Hash{Algo: a, Digest: d}, nil
	case base64.StdEncoding.EncodedLen(n):
		return parseBase64(s, a)
	}
	return Hash{}, fmt.Errorf("%w: a %s digest of length %d is neither base16 (%d), nixbase32 (%d) nor base64 (%d)",
		ErrInvalid, a, len(s), 2*n, nixbase32.EncodedLen(n), base64.StdEncoding.EncodedLen(n))
}

func parseBase64(s string, a Algo) (Hash, error) {
	n := a.Size()
	if len(s) != base64.StdEncoding.EncodedLen(n) {
		return Hash{}, fmt.Errorf("%w: base64 %s digest has length %d, want %d", ErrInvalid, a, len(s), base64.StdEncoding.EncodedLen(n))
	}
	d, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(d) != n {
		return Hash{}, fmt.Errorf("%w: bad base64 %s digest %q", ErrInvalid, a, s)
	}
	return Hash{Algo: a, Digest: d}, nil
}

// Base16 returns the digest in lowercase hex.
func (h Hash) Base16() string { return hex.EncodeToString(h.Digest) }

// Nix32 returns the digest in nixbase32.
func (h Hash) Nix32() string { return nixbase32.EncodeToString(h.Digest) }

// Base64 returns the digest in padded standard base64.
func (h Hash) Base64() string { return base64.StdEncoding.EncodeToString(h.Digest) }

// SRI returns "algo-<base64>".
func (h Hash) SRI() string { return h.Algo.String() + "-" + h.Base64() }

// String returns "algo:<nixbase32>", the form path info and narinfo show.
func (h Hash) String() string { return h.Algo.String() + ":" + h.Nix32() }

// IsZero reports whether h is the zero Hash.
func (h Hash) IsZero() bool { return h.Algo == 0 && len(h.Digest) == 0 }

// Equal reports whether h and o have the same algorithm and digest.
func (h Hash) Equal(o Hash) bool { return h.Algo == o.Algo && string(h.Digest) == string(o.Digest) }

// Compress folds digest into n bytes by XOR: byte i goes into out[i%n].
func Compress(digest []byte, n int) []byte {
	out := make([]byte, n)
	if n == 0 {
		return out
	}
	for i, b := range digest {
		out[i%n] ^= b
	}
	return out
}
