package storepath

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"privnix/nix/nixhash"
)

// fixedOutputRE matches a fixed output of a .drv: ("out","<path>","[r:]algo","<hex>").
var fixedOutputRE = regexp.MustCompile(`\("([^"]+)","(/nix/store/[^"]+)","(r:)?([a-z0-9]+)","([0-9a-f]+)"\)`)

// TestVectorsFixedOutputPaths recomputes the paths of every fixed output in
// the derivation vectors; bad-ca-fixed-path.drv must not reproduce.
func TestVectorsFixedOutputPaths(t *testing.T) {
	d := Dir("/nix/store")
	files, _ := filepath.Glob(filepath.Join(vectorsDir(t), "libstore-derivation", "*", "*.drv"))
	top, _ := filepath.Glob(filepath.Join(vectorsDir(t), "libstore-derivation", "*.drv"))
	files = append(files, top...)
	good, bad := 0, 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range fixedOutputRE.FindAllStringSubmatch(string(b), -1) {
			want, err := d.Parse(m[2])
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			algo, err := nixhash.ParseAlgo(m[4])
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			h, err := nixhash.ParseAs(m[5], algo)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			method := Flat
			if m[3] != "" {
				method = Recursive
			}
			got, err := d.MakeFixedOutput(want.Name(), method, h, nil, false)
			if err != nil {
				t.Fatalf("%s: MakeFixedOutput: %v", f, err)
			}
			if filepath.Base(f) == "bad-ca-fixed-path.drv" {
				bad++
				if got == want {
					t.Errorf("%s: the bad path %s reproduced", f, m[2])
				}
				continue
			}
			good++
			if got != want {
				t.Errorf("%s: output %s: MakeFixedOutput = %s, drv says %s", f, m[1], d.String(got), m[2])
			}
		}
	}
	if good < 2 || bad != 1 {
		t.Errorf("checked %d good and %d bad fixed outputs, want >=2 and 1", good, bad)
	}
}

// outputRE matches an input-addressed output ("name","<path>","","").
var outputRE = regexp.MustCompile(`\("([^"]+)","(/nix/store/[^"]+)","",""\)`)

// TestVectorsInputAddressedOutputs recomputes the output paths of the
// input-addressed vectors that have no input derivations: their hash modulo is
// the SHA-256 of the file with every output path blanked.
func TestVectorsInputAddressedOutputs(t *testing.T) {
	d := Dir("/nix/store")
	files, _ := filepath.Glob(filepath.Join(vectorsDir(t), "libstore-derivation", "ia", "*.drv"))
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if !strings.Contains(text, ")],[],") { // the input derivation list is not empty
			continue
		}
		outs := outputRE.FindAllStringSubmatch(text, -1)
		masked := text
		for _, m := range outs {
			masked = strings.ReplaceAll(masked, `"`+m[2]+`"`, `""`)
		}
		sum := sha256.Sum256([]byte(masked))
		hm := nixhash.Hash{Algo: nixhash.SHA256, Digest: sum[:]}
		var meta struct{ Name string }
		jb, err := os.ReadFile(strings.TrimSuffix(f, ".drv") + ".json")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(jb, &meta); err != nil || meta.Name == "" {
			t.Fatalf("%s.json: no name: %v", f, err)
		}
		for _, m := range outs {
			got, err := d.MakeOutput(m[1], hm, meta.Name)
			if err != nil {
				t.Fatalf("%s: MakeOutput(%s): %v", f, m[1], err)
			}
			n++
			if d.String(got) != m[2] {
				t.Errorf("%s: output %s = %s, drv says %s", f, m[1], d.String(got), m[2])
			}
		}
	}
	if n < 3 {
		t.Errorf("only %d outputs checked, want the 3 of the two drvs without inputs", n)
	}
}

// TestVectorsContentAddress prints and re-parses the content-address vectors.
func TestVectorsContentAddress(t *testing.T) {
	root := vectorsDir(t)
	files, _ := filepath.Glob(filepath.Join(root, "libstore-content-address", "*.json"))
	files = append(files, filepath.Join(root, "libstore-common-protocol", "content-address.json"))
	methods := map[string]CAMethod{"text": Text, "flat": Flat, "nar": Recursive}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		type entry struct{ Hash, Method string }
		var list []entry
		if json.Unmarshal(b, &list) != nil {
			var one entry
			if err := json.Unmarshal(b, &one); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			list = []entry{one}
		}
		for _, e := range list {
			h, err := nixhash.Parse(e.Hash)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			ca := ContentAddress{Method: methods[e.Method], Hash: h}
			s := ca.String()
			prefix := map[string]string{"text": "text:", "flat": "fixed:", "nar": "fixed:r:"}[e.Method]
			if s != prefix+h.String() {
				t.Errorf("%s: String() = %q", f, s)
			}
			back, err := ParseContentAddress(s)
			if err != nil || back.Method != ca.Method || !back.Hash.Equal(h) {
				t.Errorf("ParseContentAddress(%q) = %v, %v", s, back, err)
			}
			n++
		}
	}
	if n < 5 {
		t.Errorf("only %d content addresses checked", n)
	}
}

func TestParseContentAddressRejects(t *testing.T) {
	nix32 := "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
	tests := []string{
		"",
		"text",
		"text:sha1:a9993e364706816aba3e25717850c26c9cd0d89d",
		"fixed:git:sha1:a9993e364706816aba3e25717850c26c9cd0d89d",
		"fixed:r:sha256:" + nix32 + "x",
		"fixed:r:r:sha256:" + nix32,
		"source:sha256:" + nix32,
		"fixed:" + nix32,
		"fixed:sha256:",
	}
	for _, s := range tests {
		if ca, err := ParseContentAddress(s); err == nil {
			t.Errorf("ParseContentAddress(%q) = %v, want an error", s, ca)
		}
	}
	ok := []string{"text:sha256:" + nix32, "fixed:sha256:" + nix32, "fixed:r:sha256:" + nix32, "fixed:r:sha1:a9993e364706816aba3e25717850c26c9cd0d89d"}
	for _, s := range ok {
		if _, err := ParseContentAddress(s); err != nil {
			t.Errorf("ParseContentAddress(%q): %v", s, err)
		}
	}
}

func TestMakeRefuses(t *testing.T) {
	d := Dir("/nix/store")
	sha1 := nixhash.Sum(nixhash.SHA1, []byte("x"))
	sha2 := nixhash.Sum(nixhash.SHA256, []byte("x"))
	ref, _ := ParseBase(h32 + "-dep")
	if _, err := d.MakeText("x", sha1, nil); err == nil {
		t.Error("MakeText took a sha1")
	}
	if _, err := d.MakeSource("x", sha1, nil, false); err == nil {
		t.Error("MakeSource took a sha1")
	}
	if _, err := d.MakeFixedOutput("x", Flat, sha2, []Path{ref}, false); err == nil {
		t.Error("a flat fixed output took references")
	}
	if _, err := d.MakeFixedOutput("x", Recursive, sha1, nil, true); err == nil {
		t.Error("a recursive sha1 fixed output took self")
	}
	if _, err := d.MakeFixedOutput("x", Text, sha2, nil, false); err == nil {
		t.Error("MakeFixedOutput took Text as an ingestion method")
	}
	if _, err := d.MakeSource(".x", sha2, nil, false); err == nil {
		t.Error("MakeSource took a bad name")
	}
	if _, err := d.MakeText("x", sha2, []Path{{}}); err == nil {
		t.Error("MakeText took a zero reference")
	}
	if _, err := d.MakeFromCA("x", ContentAddress{Method: Text, Hash: sha2}, nil, true); err == nil {
		t.Error("a text path took self")
	}
	if _, err := d.MakeOutput("o:ut", sha2, "x"); err == nil {
		t.Error("MakeOutput took a bad output name")
	}
	if _, err := d.MakePath("source", nixhash.Hash{Algo: nixhash.SHA256, Digest: []byte{1}}, "x"); err == nil {
		t.Error("MakePath took a short digest")
	}
}

// nixStore is a private local store for nix-bin, used directly (no daemon).
type nixStore struct {
	t   *testing.T
	dir Dir
	env []string
}

func newNixStore(t *testing.T) *nixStore {
	t.Helper()
	for _, tool := range []string{"nix-store", "nix-hash", "nix-instantiate", "nix"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s (Debian nix-bin) is required for this differential test: %v", tool, err)
		}
	}
	tmp := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tmp, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "etc", "nix.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := Dir(filepath.Join(tmp, "store"))
	env := append(os.Environ(), "NIX_STORE_DIR="+string(dir), "NIX_STATE_DIR="+tmp+"/var",
		"NIX_LOG_DIR="+tmp+"/log", "NIX_CONF_DIR="+tmp+"/etc", "NIX_REMOTE=")
	return &nixStore{t: t, dir: dir, env: env}
}

func (s *nixStore) run(name string, args ...string) string {
	s.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = s.env
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		s.t.Fatalf("%s %v: %v\n%s", name, args, err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// TestFixedPathsAgainstNix compares MakeFixedOutput with `nix-store --print-fixed-path`.
func TestFixedPathsAgainstNix(t *testing.T) {
	s := newNixStore(t)
	names := []string{"x", "hello-1.0.tar.gz", "A+b-c._?=9", strings.Repeat("n", 211)}
	i := 0
	for _, a := range []nixhash.Algo{nixhash.MD5, nixhash.SHA1, nixhash.SHA256, nixhash.SHA512} {
		for _, m := range []FileIngestion{Flat, Recursive} {
			for j := 0; j < 3; j++ {
				digest := make([]byte, a.Size())
				rand.Read(digest)
				h := nixhash.Hash{Algo: a, Digest: digest}
				name := names[i%len(names)]
				i++
				args := []string{"--print-fixed-path"}
				if m == Recursive {
					args = append(args, "--recursive")
				}
				want := s.run("nix-store", append(args, a.String(), h.Base16(), name)...)
				got, err := s.dir.MakeFixedOutput(name, m, h, nil, false)
				if err != nil {
					t.Fatal(err)
				}
				if s.dir.String(got) != want {
					t.Errorf("%s %d %s: MakeFixedOutput = %s, nix-store says %s", a, m, name, s.dir.String(got), want)
				}
				ca := ContentAddress{Method: m, Hash: h}
				viaCA, err := s.dir.MakeFromCA(name, ca, nil, false)
				if err != nil || viaCA != got {
					t.Errorf("MakeFromCA(%s) = %v, %v; want %v", ca, viaCA, err, got)
				}
			}
		}
	}
}

// TestAddedPathsAgainstNix adds files and trees with nix-store and recomputes
// their paths from nix-hash output and from the ca field nix path-info shows.
func TestAddedPathsAgainstNix(t *testing.T) {
	s := newNixStore(t)
	src := t.TempDir()
	tree := filepath.Join(src, "tree")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o755)
	os.WriteFile(filepath.Join(tree, "sub", "f"), []byte("contents\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "exe"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("sub/f", filepath.Join(tree, "link"))
	file := filepath.Join(src, "file.txt")
	os.WriteFile(file, []byte("hello\n"), 0o644)

	for _, p := range []string{tree, file} {
		want := s.run("nix-store", "--add", p)
		narHash, err := nixhash.ParseAs(s.run("nix-hash", "--type", "sha256", p), nixhash.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.dir.MakeSource(filepath.Base(p), narHash, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if s.dir.String(got) != want {
			t.Errorf("MakeSource(%s) = %s, nix-store --add says %s", p, s.dir.String(got), want)
		}
		s.checkCA(want, nil)
	}
	for _, a := range []string{"sha1", "sha256", "sha512"} {
		want := s.run("nix-store", "--add-fixed", a, file)
		s.checkCA(want, nil)
		want = s.run("nix-store", "--add-fixed", "--recursive", a, tree)
		s.checkCA(want, nil)
	}
}

// checkCA reads path's ca from `nix path-info --json` and recomputes the path.
func (s *nixStore) checkCA(abs string, refs []Path) {
	t := s.t
	t.Helper()
	out := s.run("nix", "--extra-experimental-features", "nix-command", "path-info", "--json", abs)
	var info []struct {
		Path string
		CA   string
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info) != 1 {
		t.Fatalf("path-info %s: %v (%s)", abs, err, out)
	}
	ca, err := ParseContentAddress(info[0].CA)
	if err != nil {
		t.Fatalf("ParseContentAddress(%q): %v", info[0].CA, err)
	}
	if ca.String() != info[0].CA {
		t.Errorf("ContentAddress.String() = %q, nix says %q", ca.String(), info[0].CA)
	}
	want, err := s.dir.Parse(abs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.dir.MakeFromCA(want.Name(), ca, refs, false)
	if err != nil || got != want {
		t.Errorf("MakeFromCA(%s) = %s, %v; nix made %s", ca, s.dir.String(got), err, abs)
	}
}

// TestTextPathsAgainstNix makes text paths with builtins.toFile, with and
// without references, and recomputes them with MakeText.
func TestTextPathsAgainstNix(t *testing.T) {
	s := newNixStore(t)
	eval := func(expr string) string {
		out := s.run("nix-instantiate", "--eval", "--read-write-mode", "-E", expr)
		var p string
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("eval %s: %q: %v", expr, out, err)
		}
		return p
	}
	leafExpr := `builtins.toFile "leaf" "hello\n"`
	leaf2Expr := `builtins.toFile "leaf2" "bye"`
	leaf, leaf2 := eval(leafExpr), eval(leaf2Expr)
	tests := []struct {
		name, contentsExpr, contents string
		refs                         []string
	}{
		{"leaf", `"hello\n"`, "hello\n", nil},
		{"leaf2", `"bye"`, "bye", nil},
		{"one-ref", `"${` + leafExpr + `}"`, leaf, []string{leaf}},
		{"two-refs", `"${` + leaf2Expr + `} and ${` + leafExpr + `}"`, leaf2 + " and " + leaf, []string{leaf, leaf2}},
	}
	for _, tt := range tests {
		want := eval(fmt.Sprintf("builtins.toFile %q %s", tt.name, tt.contentsExpr))
		var refs []Path
		for _, r := range tt.refs {
			p, err := s.dir.Parse(r)
			if err != nil {
				t.Fatal(err)
			}
			refs = append(refs, p)
		}
		sum := sha256.Sum256([]byte(tt.contents))
		got, err := s.dir.MakeText(tt.name, nixhash.Hash{Algo: nixhash.SHA256, Digest: sum[:]}, refs)
		if err != nil {
			t.Fatal(err)
		}
		if s.dir.String(got) != want {
			t.Errorf("MakeText(%s) = %s, nix says %s", tt.name, s.dir.String(got), want)
		}
		s.checkCA(want, refs)
	}
}

func FuzzParseContentAddress(f *testing.F) {
	for _, s := range []string{
		"text:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
		"fixed:r:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
		"fixed:sha1:a9993e364706816aba3e25717850c26c9cd0d89d",
		"fixed:git:sha1:a9993e364706816aba3e25717850c26c9cd0d89d",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ca, err := ParseContentAddress(s)
		if err != nil {
			return
		}
		back, err := ParseContentAddress(ca.String())
		if err != nil || back.Method != ca.Method || !back.Hash.Equal(ca.Hash) {
			t.Fatalf("%q -> %q -> %v, %v", s, ca.String(), back, err)
		}
		if _, err := Dir("/nix/store").MakeFromCA("x", ca, nil, false); err != nil {
			t.Fatalf("MakeFromCA(%s): %v", ca, err)
		}
	})
}
