package aterm

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"privnix/nix/drv"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"

	"privnix/internal/testvectors"
)

// vectorsDir finds <repo root>/../shared/vectors/nix, the root being the
// first directory upwards holding go.mod.
func vectorsDir(t testing.TB) string {
	return testvectors.Dir(t)
}

func readVector(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorsDir(t), rel))
	if err != nil {
		t.Fatalf("reading test vector: %v", err)
	}
	return b
}

// TestVectors parses every derivation vector: the canonical ones must print
// back byte for byte, the others must be refused for their own reason.
func TestVectors(t *testing.T) {
	const ok = ""
	cases := map[string]string{
		"libstore-derivation/simple-derivation.drv":                                ok,
		"libstore-derivation/bad-ca-fixed-path.drv":                                ok, // well-formed; drv.Check refuses its path
		"libstore-derivation/ca/advanced-attributes.drv":                           ok,
		"libstore-derivation/ca/advanced-attributes-defaults.drv":                  ok,
		"libstore-derivation/ca/advanced-attributes-structured-attrs.drv":          ok,
		"libstore-derivation/ca/advanced-attributes-structured-attrs-defaults.drv": ok,
		"libstore-derivation/ia/advanced-attributes.drv":                           ok,
		"libstore-derivation/ia/advanced-attributes-defaults.drv":                  ok,
		"libstore-derivation/ia/advanced-attributes-structured-attrs.drv":          ok,
		"libstore-derivation/ia/advanced-attributes-structured-attrs-defaults.drv": ok,
		"libstore-derivation/hash-modulo/source-first.drv":                         ok,
		"libstore-derivation/hash-modulo/source-second.drv":                        ok,
		"libstore-derivation/hash-modulo/intermediate-first.drv":                   ok,
		"libstore-derivation/hash-modulo/intermediate-second.drv":                  ok,
		"libstore-derivation/hash-modulo/parent-joined.drv":                        ok,
		"libstore-derivation/hash-modulo/parent-split.drv":                         ok,
		"libstore-fuzz-derivations/hello.drv":                                      ok,
		"libstore-fuzz-derivations/hello-not-structured.drv":                       ok,
		// The *-modulo files are hash-modulo intermediates: hex keys, not paths.
		"libstore-derivation/hash-modulo/intermediate-first-modulo.drv":  `path "42cfa58b`,
		"libstore-derivation/hash-modulo/intermediate-second-modulo.drv": `path "42cfa58b`,
		"libstore-derivation/hash-modulo/parent-joined-modulo.drv":       `path "6df335a6`,
		"libstore-derivation/hash-modulo/parent-split-modulo.drv":        `path "6df335a6`,
		// Anonymised to aaaa… hashes, which left their inputs out of order.
		"libstore-derivation/hello.drv":   `not canonical: input derivation "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-2.12.2.tar.gz.drv" is not after`,
		"libstore-derivation/firefox.drv": `not canonical: input derivation`,
		// Newer or invalid formats.
		"libstore-derivation/bad-version.drv":               `unknown derivation version "invalid-version"`,
		"libstore-fuzz-derivations/bad-version.drv":         `unknown derivation version "invalid-version"`,
		"libstore-derivation/bad-old-version-dyn-deps.drv":  `dynamic-derivation form`,
		"libstore-derivation/dyn-dep-derivation.drv":        `"xp-dyn-drv" (experimental dynamic derivations) is not supported`,
		"libstore-fuzz-derivations/dyn-dep-derivation.drv":  `"xp-dyn-drv" (experimental dynamic derivations) is not supported`,
		"libstore-fuzz-derivations/unterminated-string.drv": `unterminated string`,
	}
	// Every .drv vector must be in the table, so none is silently skipped.
	for _, sub := range []string{"libstore-derivation", "libstore-fuzz-derivations"} {
		err := filepath.WalkDir(filepath.Join(vectorsDir(t), sub), func(p string, de os.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, ".drv") {
				rel, _ := filepath.Rel(vectorsDir(t), p)
				if _, listed := cases[rel]; !listed {
					t.Errorf("vector %s has no expectation in this test", rel)
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for rel, wantErr := range cases {
		t.Run(rel, func(t *testing.T) {
			in := readVector(t, rel)
			d, err := Parse(in)
			if wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			out, err := d.ATerm()
			if err != nil {
				t.Fatalf("print: %v", err)
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("printed form differs:\n got %q\nwant %q", out, in)
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	in := `Derive([("dev","/s/aaaa-x-dev","",""),("out","/s/aaaa-x","r:sha256","00")],` +
		`[("/s/bbbb-y.drv",["a","b"])],["/s/cccc-src"],"sys\t1","/bin/sh",` +
		`["-c","q\" b\\ n\n r\r t\t é"],[("k","v\"\\\n\r\t"),("out","")])`
	want := &drv.Derivation{
		Outputs: []drv.Output{
			{Name: "dev", Path: "/s/aaaa-x-dev"},
			{Name: "out", Path: "/s/aaaa-x", HashAlgo: "r:sha256", Hash: "00"},
		},
		InputDrvs: []drv.InputDrv{{Path: "/s/bbbb-y.drv", Outputs: []string{"a", "b"}}},
		InputSrcs: []string{"/s/cccc-src"},
		Platform:  "sys\t1",
		Builder:   "/bin/sh",
		Args:      []string{"-c", "q\" b\\ n\n r\r t\t é"},
		Env:       []drv.EnvVar{{Key: "k", Value: "v\"\\\n\r\t"}, {Key: "out", Value: ""}},
	}
	d, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if !equal(d, want) {
		t.Fatalf("parsed %+v\nwant %+v", d, want)
	}
	out, err := want.ATerm()
	if err != nil || string(out) != in {
		t.Fatalf("printed %q (%v), want %q", out, err, in)
	}
}

func equal(a, b *drv.Derivation) bool {
	x, err1 := a.ATerm()
	y, err2 := b.ATerm()
	return err1 == nil && err2 == nil && bytes.Equal(x, y) &&
		len(a.Outputs) == len(b.Outputs) && len(a.Env) == len(b.Env) && len(a.Args) == len(b.Args)
}

// TestRefuses covers each way an ATerm can be malformed or non-canonical.
func TestRefuses(t *testing.T) {
	const (
		head = `Derive([("out","/s/x","","")],[("/s/a.drv",["out"])],["/s/src"],"sys","/bin/sh",["a"],[("k","v")])`
	)
	if _, err := Parse([]byte(head)); err != nil {
		t.Fatalf("the unmodified base case must parse: %v", err)
	}
	cases := []struct{ name, in, want string }{
		{"empty", ``, `input ends where "Derive(" was expected`},
		{"other constructor", `Derivation([],[],[],"","",[],[])`, `expected "Derive("`},
		{"space", `Derive( [],[],[],"","",[],[])`, `expected "["`},
		{"trailing newline", head + "\n", `1 trailing bytes`},
		{"trailing junk", head + "x", `1 trailing bytes`},
		{"truncated", head[:len(head)-1], `input ends where ")" was expected`},
		{"2-field output", `Derive([("out","/s/x")],[],[],"","",[],[])`, `expected ","`},
		{"paren as list", `Derive([],(),[],"","",[],[])`, `expected "["`},
		{"env without value", `Derive([],[],[],"","",[],[("name")])`, `expected ","`},
		{"trailing comma", `Derive([],[],[],"","",["a",],[])`, `expected "\""`},
		{"unquoted", `Derive([],[],[],sys,"",[],[])`, `expected "\""`},
		{"relative output path", `Derive([("out","s/x","","")],[],[],"","",[],[])`, `output path "s/x" is not absolute`},
		{"relative input drv", `Derive([],[("a.drv",["out"])],[],"","",[],[])`, `path "a.drv" is not absolute`},
		{"relative source", `Derive([],[],["src"],"","",[],[])`, `path "src" is not absolute`},
		{"unknown escape", `Derive([],[],[],"\a","",[],[])`, `unknown escape`},
		{"escaped slash", `Derive([],[],[],"\/","",[],[])`, `unknown escape`},
		{"raw newline", "Derive([],[],[],\"a\nb\",\"\",[],[])", `raw byte '\n'`},
		{"raw tab", "Derive([],[],[],\"\",\"\",[\"\t\"],[])", `raw byte '\t'`},
		{"raw CR", "Derive([],[],[],\"\",\"\",[],[(\"k\",\"\r\")])", `raw byte '\r'`},
		{"NUL", "Derive([],[],[],\"\x00\",\"\",[],[])", `raw byte '\x00'`},
		{"backslash at end", `Derive([],[],[],"\`, `unterminated string`},
		{"unsorted outputs", `Derive([("out","","",""),("dev","","","")],[],[],"","",[],[])`, `output "dev" is not after "out"`},
		{"duplicate outputs", `Derive([("out","","",""),("out","","","")],[],[],"","",[],[])`, `output "out" is not after "out"`},
		{"unsorted inputs", `Derive([],[("/s/b.drv",["out"]),("/s/a.drv",["out"])],[],"","",[],[])`, `input derivation "/s/a.drv" is not after`},
		{"duplicate inputs", `Derive([],[("/s/a.drv",["out"]),("/s/a.drv",["dev"])],[],"","",[],[])`, `input derivation "/s/a.drv" is not after`},
		{"unsorted input outputs", `Derive([],[("/s/a.drv",["out","dev"])],[],"","",[],[])`, `"dev" is not after "out"`},
		{"duplicate input outputs", `Derive([],[("/s/a.drv",["out","out"])],[],"","",[],[])`, `"out" is not after "out"`},
		{"input without outputs", `Derive([],[("/s/a.drv",[])],[],"","",[],[])`, `names no outputs`},
		{"unsorted sources", `Derive([],[],["/s/b","/s/a"],"","",[],[])`, `"/s/a" is not after "/s/b"`},
		{"duplicate sources", `Derive([],[],["/s/a","/s/a"],"","",[],[])`, `"/s/a" is not after "/s/a"`},
		{"unsorted env", `Derive([],[],[],"","",[],[("b",""),("a","")])`, `env key "a" is not after "b"`},
		{"duplicate env", `Derive([],[],[],"","",[],[("a","1"),("a","2")])`, `env key "a" is not after "a"`},
		{"dynamic input", `Derive([],[("/s/a.drv",(["out"],[]))],[],"","",[],[])`, `dynamic-derivation form`},
		{"xp-dyn-drv", `DrvWithVersion("xp-dyn-drv",[],[],[],"","",[],[])`, `"xp-dyn-drv"`},
		{"other version", `DrvWithVersion("2",[],[],[],"","",[],[])`, `unknown derivation version "2"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Parse([]byte(c.in))
			if err == nil {
				t.Fatalf("accepted %q as %+v", c.in, d)
			}
			var ae *Error
			if !errors.As(err, &ae) {
				t.Errorf("error %v is not an *aterm.Error", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got error %q, want one containing %q", err, c.want)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	in := []byte(`Derive([],[],[],"","",["a","b","c"],[("k","v")])`)
	if _, err := ParseLimits(in, Limits{MaxSize: len(in), MaxItems: 4}); err != nil {
		t.Fatalf("within limits: %v", err)
	}
	if _, err := ParseLimits(in, Limits{MaxSize: len(in) - 1, MaxItems: 4}); err == nil || !strings.Contains(err.Error(), "more than the limit") {
		t.Fatalf("size limit not enforced: %v", err)
	}
	if _, err := ParseLimits(in, Limits{MaxSize: len(in), MaxItems: 3}); err == nil || !strings.Contains(err.Error(), "more than 3 list elements") {
		t.Fatalf("item limit not enforced: %v", err)
	}
}

const fuzzStore = storepath.Dir("/nix/store")

// FuzzParse checks that whatever the parser accepts prints back to the same
// bytes, so accepted input is always canonical, and that validation, the
// .drv path and Check never panic on it.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"libstore-derivation", "libstore-derivation/hash-modulo", "libstore-derivation/ca", "libstore-derivation/ia", "libstore-fuzz-derivations"} {
		ents, err := os.ReadDir(filepath.Join(vectorsDir(f), dir))
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".drv") {
				f.Add(readVector(f, filepath.Join(dir, e.Name())))
			}
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := Parse(in)
		if err != nil {
			return
		}
		out, err := d.ATerm()
		if err != nil {
			t.Fatalf("accepted %q but cannot print it: %v", in, err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("accepted non-canonical input\n in %q\nout %q", in, out)
		}
		// The typed layer must refuse or handle whatever parses, never panic.
		if d.Validate(fuzzStore) != nil {
			return
		}
		if _, err := drv.Path(fuzzStore, "x", d); err != nil {
			t.Fatalf("valid derivation %q has no .drv path: %v", in, err)
		}
		lookup := func(storepath.Path) (nixhash.Hash, error) { return nixhash.Sum(nixhash.SHA256, nil), nil }
		_ = drv.Check(fuzzStore, "x", d, lookup)
	})
}
