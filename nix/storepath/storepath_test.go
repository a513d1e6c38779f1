package storepath

import (
	"encoding/json"
	"errors"
	"os"
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

const h32 = "g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q"

func TestParseBase(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		name string
	}{
		{h32 + "-foo", true, "foo"},
		{h32 + "-foo.drv", true, "foo.drv"},
		{h32 + "-A+b-c._?=9", true, "A+b-c._?=9"},
		{h32 + "-" + strings.Repeat("x", 211), true, strings.Repeat("x", 211)},
		{h32 + "-" + strings.Repeat("x", 212), false, ""},
		{h32 + "-", false, ""},
		{h32, false, ""},
		{h32 + "foo", false, ""},
		{h32[:31] + "-foo", false, ""},
		{"e" + h32[1:] + "-foo", false, ""},
		{"G" + h32[1:] + "-foo", false, ""},
		{h32 + "-.foo", false, ""},
		{h32 + "-.", false, ""},
		{h32 + "-..", false, ""},
		{h32 + "-foo/bar", false, ""},
		{h32 + "-foo/../" + h32 + "-bar", false, ""},
		{h32 + "-foo bar", false, ""},
		{h32 + "-foo\x00", false, ""},
		{h32 + "-héllo", false, ""},
		{h32 + "-foo:bar", false, ""},
		{"", false, ""},
	}
	for _, tt := range tests {
		p, err := ParseBase(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseBase(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if !tt.ok {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseBase(%q) error %v does not wrap ErrInvalid", tt.in, err)
			}
			continue
		}
		if p.Base() != tt.in || p.HashPart() != h32 || p.Name() != tt.name || p.IsZero() {
			t.Errorf("ParseBase(%q) = base %q hash %q name %q", tt.in, p.Base(), p.HashPart(), p.Name())
		}
		if p.IsDerivation() != strings.HasSuffix(tt.name, ".drv") {
			t.Errorf("IsDerivation(%q) = %v", tt.in, p.IsDerivation())
		}
	}
}

func TestNewDir(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"/nix/store", true},
		{"/tmp/x/store", true},
		{"/s", true},
		{"", false},
		{"/", false},
		{"nix/store", false},
		{"/nix/store/", false},
		{"/nix//store", false},
		{"/nix/./store", false},
		{"/nix/../store", false},
		{"/nix/st\x00ore", false},
		{"/nix:store", false},
	}
	for _, tt := range tests {
		_, err := NewDir(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("NewDir(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestDirParse(t *testing.T) {
	d := Dir("/nix/store")
	tests := []struct {
		in string
		ok bool
	}{
		{"/nix/store/" + h32 + "-foo", true},
		{"/nix/store/" + h32 + "-foo/", false},
		{"/nix/store/" + h32 + "-foo/bin/sh", false},
		{"/nix/storeX/" + h32 + "-foo", false},
		{"/nix/store" + h32 + "-foo", false},
		{"/nix/store//" + h32 + "-foo", false},
		{"/other/" + h32 + "-foo", false},
		{h32 + "-foo", false},
		{"/nix/store/", false},
	}
	for _, tt := range tests {
		p, err := d.Parse(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("Parse(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && d.String(p) != tt.in {
			t.Errorf("String(Parse(%q)) = %q", tt.in, d.String(p))
		}
	}
	if _, err := Dir("").Parse("/" + h32 + "-foo"); err == nil {
		t.Error("the empty Dir parsed a path")
	}
}

func TestZeroPath(t *testing.T) {
	var p Path
	if !p.IsZero() || p.HashPart() != "" || p.Name() != "" || p.IsDerivation() {
		t.Error("zero Path has contents")
	}
}

// TestVectorsStorePath parses the store paths of the common-protocol vectors.
func TestVectorsStorePath(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(vectorsDir(t), "libstore-common-protocol", "store-path.json"))
	if err != nil {
		t.Fatal(err)
	}
	var bases []string
	if err := json.Unmarshal(b, &bases); err != nil {
		t.Fatal(err)
	}
	if len(bases) == 0 {
		t.Fatal("no store paths in store-path.json")
	}
	for _, base := range bases {
		p, err := ParseBase(base)
		if err != nil {
			t.Errorf("ParseBase(%q): %v", base, err)
			continue
		}
		if p.Base() != base {
			t.Errorf("Base() = %q, want %q", p.Base(), base)
		}
	}
}

func FuzzParseBase(f *testing.F) {
	for _, s := range []string{h32 + "-foo", h32 + "-.foo", h32 + "-foo/bar", h32, "", h32 + "-a.drv"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseBase(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if p.Base() != s || p.HashPart()+"-"+p.Name() != s || len(p.Name()) > MaxNameLen {
			t.Fatalf("ParseBase(%q) = %q %q", s, p.HashPart(), p.Name())
		}
		if strings.ContainsAny(s, "/\x00") || strings.HasPrefix(p.Name(), ".") {
			t.Fatalf("ParseBase accepted %q", s)
		}
		d := Dir("/nix/store")
		if q, err := d.Parse(d.String(p)); err != nil || q != p {
			t.Fatalf("Dir.Parse(String(%q)) = %v, %v", s, q, err)
		}
	})
}
