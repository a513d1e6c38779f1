package narreader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"privnix/nix/nar"

	"privnix/internal/testvectors"
)

// vectorsDir finds ../shared/vectors/nix beside the repository root.
func vectorsDir(t testing.TB) string {
	return testvectors.Dir(t)
}

// roundTrip parses data and writes it back with nar.Writer.
func roundTrip(data []byte, lim Limits) ([]byte, error) {
	var out bytes.Buffer
	w := nar.NewWriter(&out)
	if err := Restore(bytes.NewReader(data), w, lim); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func TestVectors(t *testing.T) {
	huge := Limits{MaxTotal: ^uint64(0)}
	tests := []struct {
		file string
		lim  Limits
		want error // nil: must round-trip byte-identically
	}{
		{"libutil-nars/dot.nar", Limits{}, ErrDotName},
		{"libutil-nars/dotdot.nar", Limits{}, ErrDotName},
		{"libutil-nars/empty.nar", Limits{}, ErrEmptyName},
		{"libutil-nars/executable-after-contents.nar", Limits{}, ErrExecutableAfterContents},
		{"libutil-nars/invalid-tag-instead-of-contents.nar", Limits{}, ErrUnexpectedToken},
		{"libutil-nars/name-after-node.nar", Limits{}, ErrUnexpectedToken},
		{"libutil-nars/nul-character.nar", Limits{}, ErrNULName},
		{"libutil-nars/regular-one-byte-non-zero-padding.nar", Limits{}, ErrPadding},
		{"libutil-nars/regular-one-byte-zero-padding.nar", Limits{}, nil},
		{"libutil-nars/regular-truncated-large-contents.nar", Limits{}, ErrTooLarge},
		{"libutil-nars/regular-truncated-large-contents.nar", huge, ErrTruncated},
		{"libutil-nars/regular-truncated-padding.nar", Limits{}, ErrTruncated},
		{"libutil-nars/slash.nar", Limits{}, ErrSlashName},
		{"libutil-fuzz-nars/case-collision.nar", Limits{}, nil},
		{"libutil-fuzz-nars/case.nar", Limits{}, nil},
		{"libutil-fuzz-nars/dot.nar", Limits{}, ErrDotName},
		{"libutil-fuzz-nars/dotdot.nar", Limits{}, ErrDotName},
		{"libutil-fuzz-nars/empty-dir.nar", Limits{}, nil},
		{"libutil-fuzz-nars/empty-subdir.nar", Limits{}, nil},
		{"libutil-fuzz-nars/empty.nar", Limits{}, ErrEmptyName},
		{"libutil-fuzz-nars/executable-after-contents.nar", Limits{}, ErrExecutableAfterContents},
		{"libutil-fuzz-nars/invalid-tag-instead-of-contents.nar", Limits{}, ErrUnexpectedToken},
		{"libutil-fuzz-nars/name-after-node.nar", Limits{}, ErrUnexpectedToken},
		{"libutil-fuzz-nars/nul-character.nar", Limits{}, ErrNULName},
		{"libutil-fuzz-nars/regular-one-byte-non-zero-padding.nar", Limits{}, ErrPadding},
		{"libutil-fuzz-nars/regular-one-byte-zero-padding.nar", Limits{}, nil},
		{"libutil-fuzz-nars/regular-truncated-large-contents.nar", Limits{}, ErrTooLarge},
		{"libutil-fuzz-nars/regular-truncated-padding.nar", Limits{}, ErrTruncated},
		{"libutil-fuzz-nars/simple.nar", Limits{}, nil},
		{"libutil-fuzz-nars/slash.nar", Limits{}, ErrSlashName},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		seen[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(vectorsDir(t), tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := roundTrip(data, tc.lim)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("good NAR refused: %v", err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("round trip differs: %d bytes in, %d out", len(data), len(got))
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			assertOwnError(t, err, tc.want)
		})
	}
	// Every vector file must be listed above.
	for _, dir := range []string{"libutil-nars", "libutil-fuzz-nars"} {
		files, err := filepath.Glob(filepath.Join(vectorsDir(t), dir, "*.nar"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no vectors in %s: %v", dir, err)
		}
		for _, f := range files {
			if name := dir + "/" + filepath.Base(f); !seen[name] {
				t.Errorf("vector %s has no expectation", name)
			}
		}
	}
}

// sentinels lists every refusal, to check an error matches exactly one.
var sentinels = []error{ErrMagic, ErrUnexpectedToken, ErrTokenTooLong, ErrUnknownType, ErrMissingContents,
	ErrExecutableValue, ErrExecutableAfterContents, ErrEmptyName, ErrDotName, ErrSlashName, ErrNULName,
	ErrNameTooLong, ErrNotSorted, ErrDuplicateEntry, ErrEmptyTarget, ErrNULTarget, ErrTargetTooLong,
	ErrPadding, ErrTruncated, ErrTooDeep, ErrTooManyEntries, ErrTooLarge}

func assertOwnError(t *testing.T, err, want error) {
	t.Helper()
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Errorf("error %v also matches %v", err, s)
		}
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("error %v is not a *Error", err)
	}
}

// tok encodes tokens as NAR strings; raw bytes can be spliced with rawTok.
func tok(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
		b = append(b, make([]byte, (8-len(s)%8)%8)...)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func u64(n uint64) []byte { return binary.LittleEndian.AppendUint64(nil, n) }

var (
	magic = tok("nix-archive-1")
	dirOp = tok("(", "type", "directory")
	cl    = tok(")")
)

func fileNode(data string) []byte { return tok("(", "type", "regular", "contents", data, ")") }
func ent(name string, node []byte) []byte {
	return cat(tok("entry", "(", "name", name, "node"), node, cl)
}
func dir(entries ...[]byte) []byte { return cat(dirOp, cat(entries...), cl) }

// TestHostile covers the hostile corpus of docs/go-nix-evaluation.md §3 and more.
func TestHostile(t *testing.T) {
	validDir := cat(magic, dir(ent("a", fileNode("x")), ent("b", fileNode("y"))))
	padTok := tok("(")
	padTok[9] = 1 // non-zero padding in a keyword
	badContentPad := cat(magic, tok("(", "type", "regular", "contents"), u64(1), []byte("x\x00\x00\x01\x00\x00\x00\x00"), cl)
	tests := []struct {
		name string
		data []byte
		lim  Limits
		want error
	}{
		{"00 valid dir", validDir, Limits{}, nil},
		{"01 dotdot", cat(magic, dir(ent("..", fileNode("")))), Limits{}, ErrDotName},
		{"02 dot", cat(magic, dir(ent(".", fileNode("")))), Limits{}, ErrDotName},
		{"03 empty", cat(magic, dir(ent("", fileNode("")))), Limits{}, ErrEmptyName},
		{"04 slash", cat(magic, dir(ent("a/b", fileNode("")))), Limits{}, ErrSlashName},
		{"05 nul", cat(magic, dir(ent("a\x00", fileNode("")))), Limits{}, ErrNULName},
		{"06 unsorted", cat(magic, dir(ent("b", fileNode("")), ent("a", fileNode("")))), Limits{}, ErrNotSorted},
		{"07 duplicate file", cat(magic, dir(ent("a", fileNode("")), ent("a", fileNode("")))), Limits{}, ErrDuplicateEntry},
		{"08 duplicate dir", cat(magic, dir(ent("a", dir()), ent("a", dir()))), Limits{}, ErrDuplicateEntry},
		{"09 file then dir", cat(magic, dir(ent("a", fileNode("")), ent("a", dir()))), Limits{}, ErrDuplicateEntry},
		{"10 token padding", cat(magic, padTok, tok("type", "directory"), cl), Limits{}, ErrPadding},
		{"11 contents padding", badContentPad, Limits{}, ErrPadding},
		{"12 huge contents then EOF", cat(magic, tok("(", "type", "regular", "contents"), u64(1<<62), make([]byte, 16)), Limits{MaxTotal: ^uint64(0)}, ErrTruncated},
		{"12b huge contents default limit", cat(magic, tok("(", "type", "regular", "contents"), u64(1<<62), make([]byte, 16)), Limits{}, ErrTooLarge},
		{"13 name length 2^40", cat(magic, dirOp, tok("entry", "(", "name"), u64(1<<40)), Limits{}, ErrNameTooLong},
		{"14 cut before root )", validDir[:len(validDir)-16], Limits{}, ErrTruncated},
		{"14b cut inside a length", validDir[:len(validDir)-12], Limits{}, ErrTruncated},
		{"15 cut inside contents", cat(magic, tok("(", "type", "regular", "contents"), u64(10), []byte("abc")), Limits{}, ErrTruncated},
		{"16 root ( type )", cat(magic, tok("(", "type", ")")), Limits{}, ErrUnknownType},
		{"17 entry ( type )", cat(magic, dirOp, tok("entry", "(", "name", "a", "node", "(", "type", ")")), Limits{}, ErrUnknownType},
		{"18 junk in dir", cat(magic, dirOp, tok("junk"), cl), Limits{}, ErrUnexpectedToken},
		{"20 fifo", cat(magic, tok("(", "type", "fifo", ")")), Limits{}, ErrUnknownType},
		{"21 empty target", cat(magic, tok("(", "type", "symlink", "target", "", ")")), Limits{}, ErrEmptyTarget},
		{"22 nul target", cat(magic, tok("(", "type", "symlink", "target", "a\x00b", ")")), Limits{}, ErrNULTarget},
		{"22b long target", cat(magic, tok("(", "type", "symlink", "target", strings.Repeat("t", 4096), ")")), Limits{}, ErrTargetTooLong},
		{"22c target length 2^50", cat(magic, tok("(", "type", "symlink", "target"), u64(1<<50)), Limits{}, ErrTargetTooLong},
		{"23 executable value", cat(magic, tok("(", "type", "regular", "executable", "1", "contents", "", ")")), Limits{}, ErrExecutableValue},
		{"24 magic 2", cat(tok("nix-archive-2"), fileNode("")), Limits{}, ErrMagic},
		{"24b long magic", cat(tok("nix-archive-1-and-much-more"), fileNode("")), Limits{}, ErrMagic},
		{"24c empty input", nil, Limits{}, ErrTruncated},
		{"25 256-byte name", cat(magic, dir(ent(strings.Repeat("n", 256), fileNode("")))), Limits{}, ErrNameTooLong},
		{"25b 255-byte name", cat(magic, dir(ent(strings.Repeat("n", 255), fileNode("")))), Limits{}, nil},
		{"26 dotdot dir with passwd", cat(magic, dir(ent("..", dir(ent("passwd", fileNode("root")))))), Limits{}, ErrDotName},
		{"missing contents", cat(magic, tok("(", "type", "regular", ")")), Limits{}, ErrMissingContents},
		{"executable twice", cat(magic, tok("(", "type", "regular", "executable", "", "executable", "", "contents", "", ")")), Limits{}, ErrUnexpectedToken},
		{"contents twice", cat(magic, tok("(", "type", "regular", "contents", "", "contents", "", ")")), Limits{}, ErrUnexpectedToken},
		{"type twice", cat(magic, tok("(", "type", "type", "regular", "contents", "", ")")), Limits{}, ErrUnknownType},
		{"missing (", cat(magic, tok("type", "regular", "contents", "", ")")), Limits{}, ErrUnexpectedToken},
		{"long keyword", cat(magic, tok("(", "type", "regular-but-much-longer")), Limits{}, ErrTokenTooLong},
		{"symlink extra field", cat(magic, tok("(", "type", "symlink", "target", "x", "target", "y", ")")), Limits{}, ErrUnexpectedToken},
		{"entry without name", cat(magic, dirOp, tok("entry", "(", "node"), fileNode(""), cl, cl), Limits{}, ErrUnexpectedToken},
		{"entry not closed", cat(magic, dirOp, tok("entry", "(", "name", "a", "node"), fileNode(""), tok("entry")), Limits{}, ErrUnexpectedToken},
		{"depth limit", cat(magic, dir(ent("a", dir(ent("b", dir()))))), Limits{MaxDepth: 2}, ErrTooDeep},
		{"depth ok", cat(magic, dir(ent("a", dir(ent("b", dir()))))), Limits{MaxDepth: 3}, nil},
		{"entry limit", cat(magic, dir(ent("a", fileNode("")), ent("b", fileNode("")))), Limits{MaxEntries: 1}, ErrTooManyEntries},
		{"name limit", cat(magic, dir(ent("abc", fileNode("")))), Limits{MaxNameLen: 2}, ErrNameTooLong},
		{"target limit", cat(magic, tok("(", "type", "symlink", "target", "abc", ")")), Limits{MaxTargetLen: 2}, ErrTargetTooLong},
		{"total limit", validDir, Limits{MaxTotal: uint64(len(validDir) - 1)}, ErrTooLarge},
		{"total exact", validDir, Limits{MaxTotal: uint64(len(validDir))}, nil},
		{"file over total", cat(magic, fileNode(strings.Repeat("x", 100))), Limits{MaxTotal: 150}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := roundTrip(tc.data, tc.lim)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !bytes.Equal(got, tc.data) {
					t.Fatal("round trip differs")
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			assertOwnError(t, err, tc.want)
		})
	}
}

func TestTruncatedIsUnexpectedEOF(t *testing.T) {
	data := cat(magic, dir(ent("a", fileNode("hello")), ent("b", tok("(", "type", "symlink", "target", "x", ")"))))
	for n := 0; n < len(data); n++ {
		_, err := roundTrip(data[:n], Limits{})
		if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, ErrTruncated) {
			t.Fatalf("prefix of %d bytes: got %v, want ErrTruncated", n, err)
		}
	}
}

// TestStopsAtRoot checks that nothing after the root ")" is read (case 19).
func TestStopsAtRoot(t *testing.T) {
	data := cat(magic, fileNode("abc"), []byte("trailing"))
	src := bytes.NewReader(data)
	rd := NewReader(src, Limits{})
	var kinds []Kind
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, ev.Kind)
	}
	if len(kinds) != 1 || kinds[0] != KindFile {
		t.Fatalf("events %v, want one file", kinds)
	}
	if src.Len() != len("trailing") {
		t.Fatalf("%d bytes left unread, want %d", src.Len(), len("trailing"))
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("Next after the end = %v, want io.EOF", err)
	}
}

func TestEvents(t *testing.T) {
	data := cat(magic, dir(
		ent("d", dir(ent("x", tok("(", "type", "regular", "executable", "", "contents", "hi", ")")))),
		ent("l", tok("(", "type", "symlink", "target", "/abs", ")"))))
	rd := NewReader(bytes.NewReader(data), Limits{})
	var got []string
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		s := ev.Kind.String()
		switch ev.Kind {
		case KindEntry:
			s += " " + ev.Name
		case KindSymlink:
			s += " " + ev.Target
		case KindFile:
			b, err := io.ReadAll(ev.Contents)
			if err != nil {
				t.Fatal(err)
			}
			s += " " + string(b)
			if ev.Executable {
				s += " x"
			}
		}
		got = append(got, s)
	}
	want := "directory start|entry d|directory start|entry x|file hi x|directory end|entry l|symlink /abs|directory end"
	if strings.Join(got, "|") != want {
		t.Fatalf("events\n %s\nwant\n %s", strings.Join(got, "|"), want)
	}
}

// TestDeepNestingMemory parses 100,000 nested directories; memory must not
// grow with the square of the depth (go-nix needed 7 GB here).
func TestDeepNestingMemory(t *testing.T) {
	const depth = 100000
	var b bytes.Buffer
	b.Write(magic)
	open := cat(dirOp, tok("entry", "(", "name", strings.Repeat("n", 200), "node"))
	for i := 0; i < depth; i++ {
		b.Write(open)
	}
	b.Write(fileNode("leaf"))
	for i := 0; i < depth; i++ {
		b.Write(cat(cl, cl))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rd := NewReader(bytes.NewReader(b.Bytes()), Limits{MaxDepth: depth + 1})
	n := 0
	for {
		_, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	runtime.ReadMemStats(&after)
	if n != 3*depth+1 {
		t.Fatalf("%d events, want %d", n, 3*depth+1)
	}
	// 200-byte names are the only per-level state: about 20 MB for 100,000 levels.
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 64<<20 {
		t.Fatalf("allocated %d bytes for depth %d", grown, depth)
	}
	if _, err := NewReader(bytes.NewReader(b.Bytes()), Limits{}).Next(); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultLimitStopsDeepNesting(t *testing.T) {
	var b bytes.Buffer
	b.Write(magic)
	for i := 0; i < DefaultLimits.MaxDepth+1; i++ {
		b.Write(cat(dirOp, tok("entry", "(", "name", "a", "node")))
	}
	_, err := roundTrip(b.Bytes(), Limits{})
	if !errors.Is(err, ErrTooDeep) {
		t.Fatalf("got %v, want ErrTooDeep", err)
	}
}

// FuzzReader parses arbitrary input; whatever is accepted must be written
// back byte for byte by nar.Writer (the archive is canonical).
func FuzzReader(f *testing.F) {
	f.Add(cat(magic, dir(ent("a", fileNode("x")), ent("b", tok("(", "type", "symlink", "target", "t", ")")))))
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := Limits{MaxDepth: 64, MaxEntries: 1000, MaxTotal: 1 << 20}
		src := bytes.NewReader(data)
		var out bytes.Buffer
		w := nar.NewWriter(&out)
		err := Restore(src, w, lim)
		if err == nil {
			err = w.Close()
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("refusal %v is not a *Error", err)
			}
			return
		}
		consumed := data[:len(data)-src.Len()]
		if !bytes.Equal(out.Bytes(), consumed) {
			t.Fatalf("accepted input is not canonical: read %d bytes, wrote back %d different ones", len(consumed), out.Len())
		}
	})
}
