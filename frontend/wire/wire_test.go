package wire

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func le(vs ...uint64) []byte {
	var b bytes.Buffer
	w := NewWriter(&b)
	for _, v := range vs {
		w.U64(v)
	}
	_ = w.Flush()
	return b.Bytes()
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestStringErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		max     int
		want    string
		wantErr string
	}{
		{"ok", cat(le(2), []byte("hi\x00\x00\x00\x00\x00\x00")), 8, "hi", ""},
		{"empty", le(0), 0, "", ""},
		{"exact8", cat(le(8), []byte("abcdefgh")), 8, "abcdefgh", ""},
		{"over cap", cat(le(9), []byte("abcdefghi")), 8, "", "exceeds the limit of 8"},
		{"huge length", le(1 << 62), MaxTextLen, "", "exceeds the limit"},
		{"non-zero padding", cat(le(2), []byte("hi\x00\x00\x00\x00\x01\x00")), 8, "", "non-zero padding"},
		{"truncated", cat(le(5), []byte("abc")), 8, "", "unexpected EOF"},
		{"truncated padding", cat(le(5), []byte("abcde\x00")), 8, "", "unexpected EOF"},
		{"long grows", cat(le(smallAlloc+3), make([]byte, smallAlloc+3+5)), MaxTextLen, strings.Repeat("\x00", smallAlloc+3), ""},
		{"long truncated", cat(le(smallAlloc+3), make([]byte, 10)), MaxTextLen, "", "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewReader(bytes.NewReader(tt.in)).String(tt.max, "test")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestCountsAndRanges(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		read    func(r *Reader) error
		wantErr string
	}{
		{"list over cap", le(3), func(r *Reader) error { _, err := r.Strings(2, 8, "refs"); return err }, "refs: 3 elements exceed the limit of 2"},
		{"list claims 2^60", le(1 << 60), func(r *Reader) error { _, err := r.Strings(MaxCount, 8, "refs"); return err }, "exceed the limit"},
		{"list short", le(2, 0), func(r *Reader) error { _, err := r.Strings(2, 8, "refs"); return err }, "unexpected EOF"},
		{"pairs over cap", le(5), func(r *Reader) error { _, err := r.Pairs(4, 8, 8, "opts"); return err }, "exceed the limit of 4"},
		{"uint range", le(256), func(r *Reader) error { _, err := r.Uint(255, "status"); return err }, "status: serialised integer 256 is larger than 255"},
		{"build mode", le(3), func(r *Reader) error { _, err := ReadBuildMode(r); return err }, "build mode"},
		{"set dedupes", cat(le(3), le(1), []byte("b\x00\x00\x00\x00\x00\x00\x00"), le(1), []byte("a\x00\x00\x00\x00\x00\x00\x00"), le(1), []byte("b\x00\x00\x00\x00\x00\x00\x00")),
			func(r *Reader) error {
				s, err := r.StringSet(3, 1, "set")
				if err == nil && strings.Join(s, ",") != "a,b" {
					return errors.New("set is " + strings.Join(s, ","))
				}
				return err
			}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.read(NewReader(bytes.NewReader(tt.in)))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestFramed(t *testing.T) {
	payload := []byte("nix-archive-1 and some more bytes that do not fit in one frame")
	tests := []struct {
		name  string
		sizes []int
		max   uint64
		err   string
	}{
		{"one frame", []int{len(payload)}, 0, ""},
		{"byte frames", slices.Repeat([]int{1}, len(payload)), 0, ""},
		{"mixed", []int{3, 30, len(payload) - 33}, 0, ""},
		{"empty", nil, 0, ""},
		{"over cap", []int{10, len(payload) - 10}, 20, "exceeds the limit of 20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewWriter(&buf)
			fw := NewFramedWriter(w)
			off := 0
			for _, n := range tt.sizes {
				_, _ = fw.Write(payload[off : off+n])
				off += n
			}
			if err := fw.Close(); err != nil {
				t.Fatal(err)
			}
			w.U64(42) // the next op
			_ = w.Flush()
			r := NewReader(&buf)
			fr := NewFramedReader(r, tt.max)
			got, err := io.ReadAll(fr)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, payload[:off]) {
				t.Fatalf("got %q, %v", got, err)
			}
			if next, err := r.U64(); err != nil || next != 42 {
				t.Fatalf("after the payload: %d, %v", next, err)
			}
		})
	}
}

func TestFramedDrainAfterPartialRead(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	fw := NewFramedWriter(w)
	_, _ = fw.Write([]byte("first frame"))
	_, _ = fw.Write([]byte("second frame"))
	_ = fw.Close()
	w.U64(7)
	_ = w.Flush()
	r := NewReader(&buf)
	fr := NewFramedReader(r, 0)
	p := make([]byte, 4)
	if _, err := fr.Read(p); err != nil {
		t.Fatal(err)
	}
	if err := fr.Drain(); err != nil || !fr.Done() {
		t.Fatalf("drain: %v, done %v", err, fr.Done())
	}
	if next, _ := r.U64(); next != 7 {
		t.Fatalf("next op %d, want 7", next)
	}
}

func TestTunnelReader(t *testing.T) {
	data := []byte("tunnelled bytes of a NAR")
	// The client's answers to each STDERR_READ: chunks then an empty string (end).
	var answers bytes.Buffer
	aw := NewWriter(&answers)
	aw.Bytes(data[:10])
	aw.Bytes(data[10:])
	aw.Bytes(nil)
	_ = aw.Flush()
	var requests bytes.Buffer
	tr := NewTunnelReader(NewReader(&answers), NewWriter(&requests), 16, nil)
	got, err := io.ReadAll(tr)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("got %q, %v", got, err)
	}
	rr := NewReader(&requests)
	for i := 0; i < 3; i++ {
		m, err := rr.StderrMessage(V(34))
		if err != nil || m.Kind != StderrRead || m.N == 0 || m.N > 16 {
			t.Fatalf("request %d: %v %v", i, m, err)
		}
	}
}

func TestStderrRoundTrip(t *testing.T) {
	u := uint64(5)
	tests := []struct {
		name  string
		v     Version
		write func(w *Writer)
		check func(m StderrMsg) bool
	}{
		{"next", V(34), func(w *Writer) { w.StderrNext("hello\n") }, func(m StderrMsg) bool { return m.Kind == StderrNext && m.Text == "hello\n" }},
		{"last", V(34), func(w *Writer) { w.StderrLast() }, func(m StderrMsg) bool { return m.Kind == StderrLast }},
		{"read", V(18), func(w *Writer) { w.StderrRead(4096) }, func(m StderrMsg) bool { return m.Kind == StderrRead && m.N == 4096 }},
		{"write", V(18), func(w *Writer) { w.StderrWrite([]byte("xyz")) }, func(m StderrMsg) bool { return m.Text == "xyz" }},
		{"error old", V(25), func(w *Writer) { w.StderrError(V(25), ErrorInfo{Message: "boom", Status: 100}) },
			func(m StderrMsg) bool { return m.Err.Message == "boom" && m.Err.Status == 100 }},
		{"error structured", V(26), func(w *Writer) { w.StderrError(V(26), ErrorInfo{Message: "boom", Traces: []string{"t1"}}) },
			func(m StderrMsg) bool {
				return m.Err.Message == "boom" && len(m.Err.Traces) == 1 && m.Err.Traces[0] == "t1"
			}},
		{"start", V(20), func(w *Writer) {
			w.StartActivity(Activity{ID: 9, Level: 3, Type: 105, Text: "building", Fields: []Field{StringField("x"), IntField(u)}, Parent: 1})
		}, func(m StderrMsg) bool {
			a := m.Activity
			return a.ID == 9 && a.Type == 105 && a.Text == "building" && len(a.Fields) == 2 && a.Fields[0].Str == "x" && a.Fields[1].Int == 5 && a.Parent == 1
		}},
		{"stop", V(20), func(w *Writer) { w.StopActivity(9) }, func(m StderrMsg) bool { return m.Kind == StderrStopActivity && m.N == 9 }},
		{"result", V(20), func(w *Writer) { w.Result(9, 101, []Field{StringField("line")}) },
			func(m StderrMsg) bool { return m.N == 9 && m.Type == 101 && m.Fields[0].Str == "line" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			w := NewWriter(&b)
			tt.write(w)
			_ = w.Flush()
			r := NewReader(&b)
			m, err := r.StderrMessage(tt.v)
			if err != nil || !tt.check(m) {
				t.Fatalf("decoded %+v, %v", m, err)
			}
			if r.Buffered() != 0 {
				t.Fatalf("%d bytes left over", r.Buffered())
			}
		})
	}
}

func TestHandshakeVectors(t *testing.T) {
	dir := filepath.Join(vectorDir(t), "libstore-worker-protocol")
	tests := []struct {
		file    string
		v       Version
		version []string
		trust   []uint64
	}{
		{"client-handshake-info_1_30.bin", V(30), nil, nil},
		{"client-handshake-info_1_33.bin", V(33), []string{"foo", "bar"}, []uint64{0, 0}},
		{"client-handshake-info_1_35.bin", V(35), []string{"foo", "bar"}, []uint64{NotTrusted, Trusted}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			bin, err := os.ReadFile(filepath.Join(dir, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			w := NewWriter(&out)
			r := NewReader(bytes.NewReader(bin))
			for i := range tt.version {
				s, tr, err := ReadHandshakeInfo(r, tt.v)
				if err != nil || s != tt.version[i] || tr != tt.trust[i] {
					t.Fatalf("info %d: %q %d %v", i, s, tr, err)
				}
				WriteHandshakeInfo(w, tt.v, s, tr)
			}
			_ = w.Flush()
			if !bytes.Equal(out.Bytes(), bin) {
				t.Fatalf("re-encoded %x, want %x", out.Bytes(), bin)
			}
		})
	}
	bin, err := os.ReadFile(filepath.Join(dir, "handshake-to-client.bin"))
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(bytes.NewReader(bin))
	if m, _ := r.U64(); m != Magic2 {
		t.Fatalf("magic %x", m)
	}
	if v, _ := r.U64(); Version(v).String() != "1.10" {
		t.Fatalf("version %s", Version(v))
	}
}

func TestCopyNAR(t *testing.T) {
	dir := filepath.Join(vectorDir(t), "libutil-fuzz-nars")
	// CopyNAR only follows the structure; the strict reader rejects the rest later.
	structural := map[string]string{
		"executable-after-contents.nar":         `expected ")"`,
		"invalid-tag-instead-of-contents.nar":   "expected \\\"contents\\\"",
		"name-after-node.nar":                   `expected "name"`,
		"regular-one-byte-non-zero-padding.nar": "non-zero padding",
		"regular-truncated-large-contents.nar":  "NAR contents", // runs into the bytes after it
		"regular-truncated-padding.nar":         "NAR contents",
		"empty.nar":                             "",
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.nar"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no NARs in %s: %v", dir, err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src := bytes.NewReader(append(append([]byte{}, in...), le(99)...))
			r := NewReader(src)
			var out bytes.Buffer
			err = CopyNAR(&out, r)
			want := structural[name]
			if want != "" {
				if err == nil || !strings.Contains(err.Error(), strings.ReplaceAll(want, `\"`, `"`)) {
					t.Fatalf("err = %v, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), in) {
				t.Fatalf("copied %d bytes, input has %d", out.Len(), len(in))
			}
			if next, err := r.U64(); err != nil || next != 99 {
				t.Fatalf("stream after the NAR: %d %v", next, err)
			}
		})
	}
}

func TestBudget(t *testing.T) {
	in := cat(le(4), []byte("abcd\x00\x00\x00\x00"), le(4), []byte("efgh\x00\x00\x00\x00"))
	tests := []struct {
		budget  int64
		wantErr bool
	}{{-1, false}, {8, false}, {7, true}, {0, true}}
	for _, tt := range tests {
		r := NewReader(bytes.NewReader(in))
		r.SetBudget(tt.budget)
		_, err1 := r.String(8, "first")
		_, err2 := r.String(8, "second")
		err := errors.Join(err1, err2)
		if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrProtocol)) {
			t.Fatalf("budget %d: %v", tt.budget, err)
		}
	}
}
