package refscan

import (
	"bytes"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"testing"
)

const (
	h1 = "0c3y4xmlp6l2y9dmvgz9p7vjd4xqnfnp"
	h2 = "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
	h3 = "00000000000000000000000000000000"
)

// naive finds every wanted string at every offset of data.
func naive(data []byte, want []string) []string {
	var out []string
	for _, h := range want {
		nix32 := strings.Trim(h, alphabet) == ""
		if len(h) == HashLen && nix32 && bytes.Contains(data, []byte(h)) && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func scan(want []string, chunks ...[]byte) []string {
	s := NewScanner(want)
	for _, c := range chunks {
		if n, err := s.Write(c); n != len(c) || err != nil {
			panic("short write")
		}
	}
	return s.Found()
}

func TestScanner(t *testing.T) {
	all := []string{h1, h2, h3}
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"empty", "", nil},
		{"alone", h1, []string{h1}},
		{"in a path", "/nix/store/" + h1 + "-hello-2.12/bin/hello", []string{h1}},
		{"two", h1 + h3, []string{h1, h3}},
		{"overlapping run", "0" + h3 + "0", []string{h3}},
		{"inside a longer nix32 run", "abc" + h2 + "abc", []string{h2}},
		{"one char short", h1[:31], nil},
		{"broken by e", h1[:10] + "e" + h1[11:], nil},
		{"uppercase is not nix32", strings.ToUpper(h1), nil},
		{"not wanted", "11111111111111111111111111111111", nil},
		{"many", strings.Repeat("x", 100) + h1 + "\x00" + h2 + "\n" + h3, []string{h1, h2, h3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := scan(all, []byte(tc.data))
			if !slices.Equal(got, sorted(tc.want)) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestEveryOffset places a hash at every offset of a buffer.
func TestEveryOffset(t *testing.T) {
	for off := 0; off < 100; off++ {
		data := bytes.Repeat([]byte{'-'}, 140)
		copy(data[off:], h1)
		if got := scan([]string{h1}, data); !slices.Equal(got, []string{h1}) {
			t.Fatalf("offset %d: got %v", off, got)
		}
	}
}

// TestSplitAcrossWrites splits a hash at every position across two writes,
// and across three writes with a tiny middle one.
func TestSplitAcrossWrites(t *testing.T) {
	prefixes := []string{"", "-", strings.Repeat("a", 40), strings.Repeat("/", 31)}
	for _, pre := range prefixes {
		data := []byte(pre + h1 + "-end")
		for cut := 0; cut <= len(data); cut++ {
			if got := scan([]string{h1}, data[:cut], data[cut:]); !slices.Equal(got, []string{h1}) {
				t.Fatalf("prefix %q, split at %d: got %v", pre, cut, got)
			}
			for mid := cut; mid <= len(data) && mid <= cut+3; mid++ {
				if got := scan([]string{h1}, data[:cut], data[cut:mid], data[mid:]); !slices.Equal(got, []string{h1}) {
					t.Fatalf("prefix %q, splits at %d,%d: got %v", pre, cut, mid, got)
				}
			}
		}
	}
}

func TestByteAtATime(t *testing.T) {
	data := []byte("xx" + h1 + "yy" + h3)
	s := NewScanner([]string{h1, h2, h3})
	for i := range data {
		s.Write(data[i : i+1])
	}
	if got := s.Found(); !slices.Equal(got, sorted([]string{h1, h3})) {
		t.Fatalf("got %v", got)
	}
}

// TestRandomAgainstNaive compares random nix32-heavy streams in random chunks.
func TestRandomAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for iter := 0; iter < 300; iter++ {
		want := make([]string, 5)
		for i := range want {
			b := make([]byte, HashLen)
			for j := range b {
				b[j] = alphabet[r.Intn(4)] // a small alphabet makes near-misses common
			}
			want[i] = string(b)
		}
		data := make([]byte, r.Intn(3000))
		for i := range data {
			if r.Intn(50) == 0 {
				data[i] = '-'
			} else {
				data[i] = alphabet[r.Intn(4)]
			}
		}
		if r.Intn(2) == 0 && len(data) > HashLen {
			at := r.Intn(len(data) - HashLen)
			copy(data[at:], want[r.Intn(len(want))])
		}
		var chunks [][]byte
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+r.Intn(70))
			chunks, rest = append(chunks, rest[:n]), rest[n:]
		}
		if got, exp := scan(want, chunks...), naive(data, want); !slices.Equal(got, exp) {
			t.Fatalf("iteration %d: got %v, want %v", iter, got, exp)
		}
	}
}

func BenchmarkScan(b *testing.B) {
	data := make([]byte, 64<<20)
	r := rand.New(rand.NewSource(1))
	r.Read(data)
	s := NewScanner([]string{h1, h2, h3})
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for off := 0; off < len(data); off += 1 << 20 {
			s.Write(data[off : off+1<<20])
		}
	}
}

// FuzzScanner compares the scanner with a naive search, writing the input in
// two pieces split at cut and looking for hash parts taken from the input.
func FuzzScanner(f *testing.F) {
	f.Add([]byte("/nix/store/"+h1+"-x"), uint16(15), uint16(11))
	f.Add([]byte(h2+h3), uint16(32), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, cut, at uint16) {
		want := []string{h1, h2, h3}
		if len(data) >= HashLen {
			k := int(at) % (len(data) - HashLen + 1)
			want = append(want, string(data[k:k+HashLen]))
		}
		c := int(cut) % (len(data) + 1)
		if got, exp := scan(want, data[:c], data[c:]), naive(data, want); !slices.Equal(got, exp) {
			t.Fatalf("got %v, want %v", got, exp)
		}
	})
}
