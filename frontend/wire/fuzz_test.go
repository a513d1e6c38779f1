package wire

import (
	"bytes"
	"io"
	"reflect"
	"testing"
)

// Every fuzz target checks that decoding never panics and that what it returns respects the caps.

func FuzzPrimitives(f *testing.F) {
	f.Add(cat(le(2), []byte("hi\x00\x00\x00\x00\x00\x00"), le(1, 0)))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		for {
			s, err := r.String(64, "s")
			if err != nil {
				return
			}
			if len(s) > 64 {
				t.Fatalf("string of %d bytes passed a cap of 64", len(s))
			}
			ss, err := r.StringSet(4, 16, "set")
			if err != nil {
				return
			}
			if len(ss) > 4 {
				t.Fatalf("%d elements passed a cap of 4", len(ss))
			}
			if _, err := r.Pairs(4, 16, 16, "map"); err != nil {
				return
			}
			if v, err := r.Uint(255, "u8"); err != nil || v > 255 {
				return
			}
		}
	})
}

func FuzzFramedReader(f *testing.F) {
	f.Add(cat(le(3), []byte("abc"), le(0)), uint64(0))
	f.Add(cat(le(1<<40), []byte("abc")), uint64(1<<20))
	f.Fuzz(func(t *testing.T, data []byte, max uint64) {
		got, _ := io.ReadAll(NewFramedReader(NewReader(bytes.NewReader(data)), max))
		if max != 0 && uint64(len(got)) > max {
			t.Fatalf("read %d bytes past a cap of %d", len(got), max)
		}
		if len(got) > len(data) {
			t.Fatalf("read %d payload bytes from %d input bytes", len(got), len(data))
		}
	})
}

func FuzzStderrMessage(f *testing.F) {
	f.Add(uint8(34), le(StderrLast))
	f.Add(uint8(25), cat(le(StderrError, 4), []byte("boom\x00\x00\x00\x00"), le(1)))
	f.Fuzz(func(t *testing.T, minor uint8, data []byte) {
		r := NewReader(bytes.NewReader(data))
		for {
			if _, err := r.StderrMessage(V(uint32(minor))); err != nil {
				return
			}
		}
	})
}

func FuzzCopyNAR(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		if err := CopyNAR(&out, NewReader(bytes.NewReader(data))); err != nil {
			return
		}
		if !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatal("a copied NAR differs from the input")
		}
	})
}

func FuzzValidPathInfo(f *testing.F) {
	f.Add(uint8(16), []byte{})
	f.Fuzz(func(t *testing.T, minor uint8, data []byte) {
		v := V(uint32(minor))
		info, err := ReadValidPathInfo(NewReader(bytes.NewReader(data)), v)
		if err != nil {
			return
		}
		var b bytes.Buffer
		w := NewWriter(&b)
		WriteValidPathInfo(w, v, info)
		_ = w.Flush()
		again, err := ReadValidPathInfo(NewReader(&b), v)
		if err != nil || again.Path != info.Path || again.NarHash != info.NarHash || len(again.References) != len(info.References) {
			t.Fatalf("re-encoded info does not decode to itself: %v", err)
		}
	})
}

func FuzzBuildResult(f *testing.F) {
	f.Add(uint8(29), false, []byte{})
	f.Fuzz(func(t *testing.T, minor uint8, pathNotHash bool, data []byte) {
		v := V(uint32(minor))
		b, err := ReadKeyedBuildResult(NewReader(bytes.NewReader(data)), v, pathNotHash)
		if err != nil {
			return
		}
		var out bytes.Buffer
		w := NewWriter(&out)
		WriteKeyedBuildResult(w, v, pathNotHash, b)
		_ = w.Flush()
		if _, err := ReadKeyedBuildResult(NewReader(&out), v, pathNotHash); err != nil {
			t.Fatalf("re-encoded result does not decode: %v", err)
		}
	})
}

func FuzzClientOptions(f *testing.F) {
	f.Add(uint8(34), make([]byte, 13*8))
	f.Fuzz(func(t *testing.T, minor uint8, data []byte) {
		v := V(uint32(minor))
		o, err := ReadClientOptions(NewReader(bytes.NewReader(data)), v)
		if err != nil {
			return
		}
		if len(o.Overrides) > MaxOverrides {
			t.Fatalf("%d overrides passed the cap", len(o.Overrides))
		}
		var out bytes.Buffer
		w := NewWriter(&out)
		WriteClientOptions(w, v, o)
		_ = w.Flush()
		again, err := ReadClientOptions(NewReader(&out), v)
		if err != nil || !reflect.DeepEqual(again, o) {
			t.Fatalf("re-encoded options decode to %+v, %v; want %+v", again, err, o)
		}
	})
}

func FuzzDerivedPath(f *testing.F) {
	f.Add(uint8(30), "/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-bar.drv!x,y")
	f.Fuzz(func(t *testing.T, minor uint8, s string) {
		v := V(uint32(minor))
		d, err := ParseDerivedPath(s, v)
		if err != nil {
			return
		}
		again, err := ParseDerivedPath(d.Format(v), v)
		if err != nil || again.Format(v) != d.Format(v) || again.Built != d.Built {
			t.Fatalf("%q → %q does not parse back: %v", s, d.Format(v), err)
		}
	})
}
