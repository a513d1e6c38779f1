package nixbase32

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestEncodeKnown(t *testing.T) {
	tests := []struct {
		hex, want string
	}{
		{"", ""},
		{"00", "00"},
		{"ff", "7z"},
		{"01", "01"},
		{"1f", "0z"},
		{"20", "10"},
		{"0000000000", "00000000"},
		{"ffffffffff", "zzzzzzzz"},
		// sha256("abc"), as `nix-hash --type sha256 --to-base32` prints it.
		{"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"},
	}
	for _, tt := range tests {
		src, _ := hex.DecodeString(tt.hex)
		if got := EncodeToString(src); got != tt.want {
			t.Errorf("EncodeToString(%s) = %q, want %q", tt.hex, got, tt.want)
		}
		back, err := DecodeString(tt.want)
		if err != nil || !bytes.Equal(back, src) {
			t.Errorf("DecodeString(%q) = %x, %v; want %s", tt.want, back, err, tt.hex)
		}
	}
}

func TestLens(t *testing.T) {
	tests := []struct{ n, enc int }{{0, 0}, {1, 2}, {2, 4}, {5, 8}, {16, 26}, {20, 32}, {32, 52}, {64, 103}}
	for _, tt := range tests {
		if got := EncodedLen(tt.n); got != tt.enc {
			t.Errorf("EncodedLen(%d) = %d, want %d", tt.n, got, tt.enc)
		}
		if got := DecodedLen(tt.enc); got != tt.n {
			t.Errorf("DecodedLen(%d) = %d, want %d", tt.enc, got, tt.n)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct{ name, in string }{
		{"letter e", "0e"},
		{"letter o", "0o"},
		{"letter u", "u0"},
		{"letter t", "0t"},
		{"upper case", "0A"},
		{"NUL", "0\x00"},
		{"length 1", "0"},
		{"length 3", "000"},
		{"excess bits 1 byte", "80"},
		{"excess bits 1 byte max", "z0"},
		{"excess bits sha256", "2" + strings.Repeat("0", 51)},
		{"sha1 length with a bad char", strings.Repeat("0", 31) + "!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := DecodeString(tt.in); !errors.Is(err, ErrInvalid) {
				t.Fatalf("DecodeString(%q) = %x, %v; want ErrInvalid", tt.in, b, err)
			}
		})
	}
}

func TestValidateString(t *testing.T) {
	tests := []struct {
		in string
		n  int
		ok bool
	}{
		{strings.Repeat("0", 32), 20, true},
		{strings.Repeat("z", 32), 20, true},
		{strings.Repeat("0", 52), 32, true},
		{"1" + strings.Repeat("0", 51), 32, true},
		{"2" + strings.Repeat("0", 51), 32, false},
		{strings.Repeat("0", 32), 32, false},
		{strings.Repeat("0", 33), 20, false},
		{strings.Repeat("0", 31) + "e", 20, false},
	}
	for _, tt := range tests {
		err := ValidateString(tt.in, tt.n)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateString(%q, %d) = %v, want ok=%v", tt.in, tt.n, err, tt.ok)
		}
	}
}

// TestAgainstNixHash compares random digests with `nix-hash --to-base32`.
func TestAgainstNixHash(t *testing.T) {
	nixHash, err := exec.LookPath("nix-hash")
	if err != nil {
		t.Fatalf("nix-hash (Debian nix-bin) is required for this differential test: %v", err)
	}
	for _, algo := range []struct {
		name string
		size int
	}{{"md5", 16}, {"sha1", 20}, {"sha256", 32}, {"sha512", 64}} {
		var hexes []string
		var digests [][]byte
		for i := 0; i < 50; i++ {
			d := make([]byte, algo.size)
			rand.Read(d)
			switch i {
			case 0:
				d = bytes.Repeat([]byte{0}, algo.size)
			case 1:
				d = bytes.Repeat([]byte{0xff}, algo.size)
			}
			digests = append(digests, d)
			hexes = append(hexes, hex.EncodeToString(d))
		}
		out, err := exec.Command(nixHash, append([]string{"--type", algo.name, "--to-base32"}, hexes...)...).Output()
		if err != nil {
			t.Fatalf("nix-hash --to-base32: %v", err)
		}
		lines := strings.Fields(string(out))
		if len(lines) != len(hexes) {
			t.Fatalf("nix-hash printed %d lines for %d hashes", len(lines), len(hexes))
		}
		for i, want := range lines {
			if got := EncodeToString(digests[i]); got != want {
				t.Errorf("%s %s: EncodeToString = %q, nix-hash = %q", algo.name, hexes[i], got, want)
			}
			back, err := DecodeString(want)
			if err != nil || !bytes.Equal(back, digests[i]) {
				t.Errorf("%s DecodeString(%q) = %x, %v; want %s", algo.name, want, back, err, hexes[i])
			}
		}
	}
}

func FuzzDecodeString(f *testing.F) {
	for _, s := range []string{"", "00", "7z", "80", "0e", "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := DecodeString(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if enc := EncodeToString(b); enc != s {
			t.Fatalf("DecodeString(%q) = %x, which encodes to %q", s, b, enc)
		}
		if err := ValidateString(s, len(b)); err != nil {
			t.Fatalf("ValidateString(%q, %d) = %v after a good decode", s, len(b), err)
		}
	})
}

func FuzzEncodeToString(f *testing.F) {
	for _, s := range [][]byte{{}, {0}, {0xff}, bytes.Repeat([]byte{0xa5}, 32)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := EncodeToString(b)
		if len(s) != EncodedLen(len(b)) {
			t.Fatalf("len(EncodeToString(%x)) = %d, want %d", b, len(s), EncodedLen(len(b)))
		}
		back, err := DecodeString(s)
		if err != nil || !bytes.Equal(back, b) {
			t.Fatalf("round trip of %x via %q gave %x, %v", b, s, back, err)
		}
	})
}
