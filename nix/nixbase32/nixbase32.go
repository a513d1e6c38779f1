// Package nixbase32 is Nix's base-32 encoding: its own alphabet, no padding,
// and the most significant 5-bit group written first.
package nixbase32

import (
	"errors"
	"fmt"
)

// Alphabet is Nix's 32-symbol alphabet; it omits e, o, u and t.
const Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// ErrInvalid is wrapped by every decoding error.
var ErrInvalid = errors.New("invalid nixbase32")

// decodeMap maps a byte to its 5-bit value, or 0xff when it is not in Alphabet.
var decodeMap = func() [256]byte {
	var m [256]byte
	for i := range m {
		m[i] = 0xff
	}
	for i := 0; i < len(Alphabet); i++ {
		m[Alphabet[i]] = byte(i)
	}
	return m
}()

// EncodedLen returns the length of the encoding of n bytes: ⌈8n/5⌉.
func EncodedLen(n int) int {
	if n <= 0 {
		return 0
	}
	return (n*8-1)/5 + 1
}

// DecodedLen returns the number of bytes an encoding of n characters holds.
func DecodedLen(n int) int {
	if n <= 0 {
		return 0
	}
	return n * 5 / 8
}

// IsValidChar reports whether c is in Alphabet.
func IsValidChar(c byte) bool { return decodeMap[c] != 0xff }

// EncodeToString encodes src. Bit b of the input is bit b%8 of byte b/8; the
// last character holds bits 0–4.
func EncodeToString(src []byte) string {
	l := EncodedLen(len(src))
	out := make([]byte, l)
	for k := l - 1; k >= 0; k-- {
		b := k * 5
		i, j := b/8, uint(b%8)
		c := src[i] >> j
		if i+1 < len(src) {
			c |= src[i+1] << (8 - j)
		}
		out[l-1-k] = Alphabet[c&31]
	}
	return string(out)
}

// DecodeString decodes s strictly: it refuses characters outside Alphabet,
// lengths that no byte count encodes to, and non-zero bits beyond the last byte.
func DecodeString(s string) ([]byte, error) {
	n := DecodedLen(len(s))
	if EncodedLen(n) != len(s) {
		return nil, fmt.Errorf("%w: length %d is not the encoding of any byte count", ErrInvalid, len(s))
	}
	out := make([]byte, n)
	for k := 0; k < len(s); k++ {
		c := s[len(s)-1-k]
		d := decodeMap[c]
		if d == 0xff {
			return nil, fmt.Errorf("%w: character %q at offset %d is not in the alphabet", ErrInvalid, c, len(s)-1-k)
		}
		b := k * 5
		i, j := b/8, uint(b%8)
		out[i] |= d << j
		carry := d >> (8 - j)
		if i+1 < n {
			out[i+1] |= carry
		} else if carry != 0 {
			return nil, fmt.Errorf("%w: non-zero bits beyond the last byte", ErrInvalid)
		}
	}
	return out, nil
}

// ValidateString checks that s is the strict encoding of exactly n bytes.
func ValidateString(s string, n int) error {
	if len(s) != EncodedLen(n) {
		return fmt.Errorf("%w: length %d, want %d for %d bytes", ErrInvalid, len(s), EncodedLen(n), n)
	}
	_, err := DecodeString(s)
	return err
}
