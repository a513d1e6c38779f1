package nar

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"privnix/internal/testvectors"
)

// vectorsDir finds ../shared/vectors/nix beside the repository root.
func vectorsDir(t testing.TB) string {
	return testvectors.Dir(t)
}

// op is one call on a Writer.
type op func(w *Writer) error

func file(exec bool, data string) op {
	return func(w *Writer) error { return w.File(exec, uint64(len(data)), strings.NewReader(data)) }
}
func sized(size uint64, data string) op {
	return func(w *Writer) error { return w.File(false, size, strings.NewReader(data)) }
}
func link(t string) op  { return func(w *Writer) error { return w.Symlink(t) } }
func start() op         { return func(w *Writer) error { return w.StartDir() } }
func entry(n string) op { return func(w *Writer) error { return w.Entry(n) } }
func end() op           { return func(w *Writer) error { return w.EndDir() } }
func closeW() op        { return func(w *Writer) error { return w.Close() } }

func run(ops []op) ([]byte, error) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, o := range ops {
		if err := o(w); err != nil {
			return buf.Bytes(), err
		}
	}
	return buf.Bytes(), nil
}

func TestWriterVectors(t *testing.T) {
	tests := []struct {
		vector string
		ops    []op
	}{
		{"libutil-fuzz-nars/simple.nar", []op{start(),
			entry("empty-subdir"), start(), end(),
			entry("emptyfile"), file(false, ""),
			entry("hello"), file(false, "hello\x00world\n\n"),
			entry("link"), link("somelink"),
			end(), closeW()}},
		{"libutil-fuzz-nars/empty-dir.nar", []op{start(), end(), closeW()}},
		{"libutil-fuzz-nars/empty-subdir.nar", []op{start(), entry("empty-subdir"), start(), end(), end(), closeW()}},
		{"libutil-nars/regular-one-byte-zero-padding.nar", []op{file(false, "x"), closeW()}},
	}
	for _, tc := range tests {
		t.Run(tc.vector, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(vectorsDir(t), tc.vector))
			if err != nil {
				t.Fatal(err)
			}
			got, err := run(tc.ops)
			if err != nil {
				t.Fatalf("writer failed: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("writer output differs from %s:\n got %q\nwant %q", tc.vector, got, want)
			}
		})
	}
}

func TestWriterRefuses(t *testing.T) {
	big := strings.Repeat("a", 40<<10)
	tests := []struct {
		name string
		ops  []op
		want error
	}{
		{"empty name", []op{start(), entry("")}, ErrName},
		{"dot", []op{start(), entry(".")}, ErrName},
		{"dotdot", []op{start(), entry("..")}, ErrName},
		{"slash", []op{start(), entry("a/b")}, ErrName},
		{"nul", []op{start(), entry("a\x00b")}, ErrName},
		{"long name", []op{start(), entry(strings.Repeat("n", 256))}, ErrName},
		{"unsorted", []op{start(), entry("b"), file(false, ""), entry("a")}, ErrNotSorted},
		{"duplicate", []op{start(), entry("a"), file(false, ""), entry("a")}, ErrNotSorted},
		{"empty target", []op{link("")}, ErrTarget},
		{"nul target", []op{link("a\x00")}, ErrTarget},
		{"long target", []op{link(strings.Repeat("t", 4096))}, ErrTarget},
		{"short file", []op{sized(5, "abc")}, ErrShortFile},
		{"long file", []op{sized(2, "abc")}, ErrLongFile},
		{"short big file", []op{sized(50<<10, big)}, ErrShortFile},
		{"long big file", []op{sized(39<<10, big)}, ErrLongFile},
		{"entry at top", []op{entry("a")}, ErrState},
		{"node without entry", []op{start(), file(false, "")}, ErrState},
		{"end without start", []op{end()}, ErrState},
		{"two roots", []op{file(false, ""), file(false, "")}, ErrState},
		{"close early", []op{start(), closeW()}, ErrIncomplete},
		{"close empty", []op{closeW()}, ErrIncomplete},
		{"entry without node", []op{start(), entry("a"), end()}, ErrState},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(tc.ops)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestWriterLargeFile(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16+1)
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.File(true, uint64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	// magic, "(", "type", "regular", "executable", "", "contents", then the length.
	header := 24 + 16 + 16 + 16 + 24 + 8 + 16 + 8
	if !bytes.Equal(out[header:header+len(data)], data) {
		t.Fatal("contents not copied verbatim")
	}
	if len(out) != header+len(data)+16 { // no padding (len%8 == 0), then ")"
		t.Fatalf("archive is %d bytes, want %d", len(out), header+len(data)+16)
	}
}

func TestWriterSticky(t *testing.T) {
	w := NewWriter(&bytes.Buffer{})
	if err := w.StartDir(); err != nil {
		t.Fatal(err)
	}
	if err := w.Entry(""); !errors.Is(err, ErrName) {
		t.Fatalf("Entry(\"\") = %v, want ErrName", err)
	}
	for name, call := range map[string]func() error{"EndDir": w.EndDir, "Close": w.Close, "Entry": func() error { return w.Entry("a") }} {
		if err := call(); !errors.Is(err, ErrWriterError) {
			t.Errorf("%s after a failure = %v, want ErrWriterError", name, err)
		}
	}
}
