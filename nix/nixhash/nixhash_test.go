package nixhash

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"privnix/internal/testvectors"
)

// vectorsDir returns <repo root>/../shared/vectors/nix, the root being the
// nearest directory above the test holding go.mod.
func vectorsDir(t testing.TB) string {
	return testvectors.Dir(t)
}

func readJSONString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s
}

// TestVectorsLibutilHash checks Nix's hash vectors: the SHA-256 one is the
// hash of "asdf" (as in Nix's tests); blake3 is not an algorithm Nix 2.8 has.
func TestVectorsLibutilHash(t *testing.T) {
	dir := filepath.Join(vectorsDir(t), "libutil-hash")
	sri := readJSONString(t, filepath.Join(dir, "sha256.json"))
	h, err := Parse(sri)
	if err != nil {
		t.Fatalf("Parse(%q): %v", sri, err)
	}
	if want := Sum(SHA256, []byte("asdf")); !h.Equal(want) {
		t.Errorf("sha256.json = %s, want sha256(\"asdf\") = %s", h.SRI(), want.SRI())
	}
	if h.SRI() != sri {
		t.Errorf("SRI() = %q, want %q", h.SRI(), sri)
	}
	// sha512.json holds an SRI string too (upstream stores a sha256 in it).
	s512 := readJSONString(t, filepath.Join(dir, "sha512.json"))
	if h, err := Parse(s512); err != nil || h.SRI() != s512 {
		t.Errorf("Parse(%q) = %v, %v; want it to round-trip", s512, h.SRI(), err)
	}
	b3 := readJSONString(t, filepath.Join(dir, "blake3.json"))
	if _, err := Parse(b3); !errors.Is(err, ErrInvalid) {
		t.Errorf("Parse(%q) = %v, want ErrInvalid (blake3 is not supported)", b3, err)
	}
}

// TestVectorsContentAddress parses the SRI hashes of the content-address vectors.
func TestVectorsContentAddress(t *testing.T) {
	root := vectorsDir(t)
	files, _ := filepath.Glob(filepath.Join(root, "libstore-content-address", "*.json"))
	more, _ := filepath.Glob(filepath.Join(root, "libstore-common-protocol", "content-address.json"))
	files = append(files, more...)
	if len(files) < 3 {
		t.Fatalf("expected content-address vectors, found %v", files)
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var list []struct{ Hash string }
		if err := json.Unmarshal(b, &list); err != nil {
			var one struct{ Hash string }
			if err := json.Unmarshal(b, &one); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			list = append(list, one)
		}
		for _, e := range list {
			h, err := Parse(e.Hash)
			if err != nil {
				t.Errorf("%s: Parse(%q): %v", f, e.Hash, err)
				continue
			}
			n++
			for _, form := range []string{h.Algo.String() + ":" + h.Base16(), h.String(), h.Algo.String() + ":" + h.Base64()} {
				if h2, err := Parse(form); err != nil || !h2.Equal(h) || h2.SRI() != e.Hash {
					t.Errorf("Parse(%q) = %v, %v; want %s", form, h2.SRI(), err, e.Hash)
				}
			}
		}
	}
	if n < 4 {
		t.Errorf("only %d hashes checked", n)
	}
}

func TestParseForms(t *testing.T) {
	abc := Sum(SHA256, []byte("abc"))
	tests := []struct{ in string }{
		{"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"},
		{"sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"},
		{"sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="},
		{"sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="},
	}
	for _, tt := range tests {
		h, err := Parse(tt.in)
		if err != nil || !h.Equal(abc) {
			t.Errorf("Parse(%q) = %x, %v; want %x", tt.in, h.Digest, err, abc.Digest)
		}
	}
	if abc.String() != "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s" {
		t.Errorf("String() = %q", abc.String())
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"no prefix", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"unknown algo", "sha3:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"blake3 SRI", "blake3-nnDuFEmWX7YtBJBAoe0G7Dd0MNpuwTFz58T//NKL6YA="},
		{"short base16", "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a"},
		{"long base16", "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0"},
		{"bad hex", "sha256:za7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"sha1 length for sha256", "sha256:a9993e364706816aba3e25717850c26c9cd0d89d"},
		{"nix32 bad char", "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5e"},
		{"nix32 excess bits", "sha256:2b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"},
		{"base64 bad padding bits", "sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa1="},
		{"base64 no padding", "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0"},
		{"SRI in hex", "sha256-ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"SRI in nix32", "sha256-1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"},
		{"SRI url alphabet", "sha256-ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0="},
		{"trailing newline", "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\n"},
		{"upper algo", "SHA256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if h, err := Parse(tt.in); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) = %x, %v; want ErrInvalid", tt.in, h.Digest, err)
			}
		})
	}
}

func TestAlgo(t *testing.T) {
	tests := []struct {
		name string
		a    Algo
		size int
	}{{"md5", MD5, 16}, {"sha1", SHA1, 20}, {"sha256", SHA256, 32}, {"sha512", SHA512, 64}}
	for _, tt := range tests {
		a, err := ParseAlgo(tt.name)
		if err != nil || a != tt.a || a.String() != tt.name || a.Size() != tt.size || a.New().Size() != tt.size {
			t.Errorf("ParseAlgo(%q) = %v, %v (size %d)", tt.name, a, err, a.Size())
		}
	}
	for _, bad := range []string{"", "SHA256", "sha-256", "blake3", "sha384"} {
		if _, err := ParseAlgo(bad); err == nil {
			t.Errorf("ParseAlgo(%q) succeeded", bad)
		}
	}
	if Algo(0).Size() != 0 || Algo(9).Valid() {
		t.Error("invalid Algo values look valid")
	}
}

func TestCompress(t *testing.T) {
	d := make([]byte, 32)
	for i := range d {
		d[i] = byte(i + 1)
	}
	got := Compress(d, 20)
	for i := 0; i < 20; i++ {
		want := byte(i + 1)
		if i+20 < 32 {
			want ^= byte(i + 21)
		}
		if got[i] != want {
			t.Fatalf("Compress byte %d = %d, want %d", i, got[i], want)
		}
	}
	if !bytes.Equal(Compress([]byte{1, 2}, 4), []byte{1, 2, 0, 0}) {
		t.Error("Compress of a short digest should pad with zeros")
	}
}

// TestAgainstNixHashConvert converts random hashes with `nix hash to-*` and compares.
func TestAgainstNixHashConvert(t *testing.T) {
	nix, err := exec.LookPath("nix")
	if err != nil {
		t.Fatalf("nix (Debian nix-bin) is required for this differential test: %v", err)
	}
	for _, a := range []Algo{MD5, SHA1, SHA256, SHA512} {
		var hs []Hash
		var in []string
		for i := 0; i < 12; i++ {
			d := make([]byte, a.Size())
			rand.Read(d)
			h := Hash{Algo: a, Digest: d}
			hs = append(hs, h)
			in = append(in, []string{h.Algo.String() + ":" + h.Base16(), h.String(), h.SRI()}[i%3])
		}
		for _, conv := range []struct {
			sub string
			enc func(Hash) string
		}{
			{"to-base16", Hash.Base16}, {"to-base32", Hash.Nix32}, {"to-base64", Hash.Base64}, {"to-sri", Hash.SRI},
		} {
			args := append([]string{"--extra-experimental-features", "nix-command", "hash", conv.sub}, in...)
			out, err := exec.Command(nix, args...).Output()
			if err != nil {
				t.Fatalf("nix hash %s: %v", conv.sub, err)
			}
			lines := strings.Fields(string(out))
			if len(lines) != len(hs) {
				t.Fatalf("nix hash %s printed %d lines for %d", conv.sub, len(lines), len(hs))
			}
			for i, want := range lines {
				if got := conv.enc(hs[i]); got != want {
					t.Errorf("%s of %s: got %q, nix says %q", conv.sub, in[i], got, want)
				}
				h, err := ParseAs(strings.TrimPrefix(want, a.String()+"-"), a)
				if err != nil || !h.Equal(hs[i]) {
					t.Errorf("ParseAs(%q, %s) = %x, %v", want, a, h.Digest, err)
				}
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
		"sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
		"sha1:a9993e364706816aba3e25717850c26c9cd0d89d",
		"md5:900150983cd24fb0d6963f7d28e17f72",
		"sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
		"blake3-nnDuFEmWX7YtBJBAoe0G7Dd0MNpuwTFz58T//NKL6YA=",
		"sha256:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if len(h.Digest) != h.Algo.Size() {
			t.Fatalf("Parse(%q) gave %d bytes for %s", s, len(h.Digest), h.Algo)
		}
		for _, form := range []string{h.String(), h.SRI(), h.Algo.String() + ":" + h.Base16(), h.Algo.String() + ":" + h.Base64()} {
			h2, err := Parse(form)
			if err != nil || !h2.Equal(h) {
				t.Fatalf("Parse(%q) = %v, %v; re-parse of %q's %q", form, h2, err, s, form)
			}
		}
	})
}
