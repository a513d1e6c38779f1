package drv_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"privnix/nix/drv"
	"privnix/nix/drv/aterm"
	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// nixExpr instantiates derivations covering what the ATerm and the hashing
// rules have to get right: escapes and unicode in args and env, several
// outputs, flat and recursive fixed outputs of several algorithms, two FODs
// with the same output (merged in hash modulo), a chain of dependencies,
// sources, passAsFile and __structuredAttrs.
const nixExpr = `
let
  sys = "x86_64-linux";
  mk = attrs: builtins.derivation ({ system = sys; builder = "/bin/sh"; } // attrs);
  ctl = builtins.fromJSON "\"c\\u0001\\u001f\\u007f\"";
  a = mk { name = "a"; outputs = [ "out" "dev" "lib" ];
    args = [ "-c" "echo \"q\" \\ \n\t x" "" "é ☃" ];
    v = "quote\" back\\ nl\n tab\t cr\r uni é ☃ ${ctl}"; flag = true; none = null; num = 42; };
  fod = mk { name = "fod"; outputHash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; outputHashMode = "flat"; };
  fodr = mk { name = "fodr"; outputHashAlgo = "sha256"; outputHashMode = "recursive";
    outputHash = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"; };
  fod1 = mk { name = "fod1"; outputHashAlgo = "sha1"; outputHash = "da39a3ee5e6b4b0d3255bfef95601890afd80709"; };
  fodr512 = mk { name = "fodr512"; outputHashMode = "recursive";
    outputHash = "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg=="; };
  twinA = mk { name = "twin"; args = [ "A" ]; outputHashAlgo = "sha256"; outputHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; };
  twinB = mk { name = "twin"; args = [ "B" ]; outputHashAlgo = "sha256"; outputHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; };
  src = builtins.toFile "src.sh" "echo hi\n";
  b = mk { name = "b"; deps = [ a.dev a fod fodr fod1 fodr512 src ]; passAsFile = [ "big" ]; big = "x\ny"; };
  c = mk { name = "c"; __structuredAttrs = true; dep = b; list = [ 1 2 "x\"\\" ]; outputs = [ "out" "bin" ]; };
  d = mk { name = "d"; deps = [ c.bin twinA twinB a.lib ]; };
in { inherit a fod fodr fod1 fodr512 twinA twinB b c d; }
`

// nixStoreWithDrvs runs nix-instantiate on nixExpr in a private store and
// returns the environment and the store directory.
func nixStoreWithDrvs(t *testing.T) ([]string, string) {
	t.Helper()
	if _, err := exec.LookPath("nix-instantiate"); err != nil {
		t.Fatal("nix-instantiate not found: these differential tests need Nix 2.8 (apt-get install nix-bin)")
	}
	tmp := t.TempDir()
	for _, d := range []string{"etc", "store", "var", "log"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "etc", "nix.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	expr := filepath.Join(tmp, "drvs.nix")
	if err := os.WriteFile(expr, []byte(nixExpr), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "NIX_STORE_DIR="+tmp+"/store", "NIX_STATE_DIR="+tmp+"/var",
		"NIX_LOG_DIR="+tmp+"/log", "NIX_CONF_DIR="+tmp+"/etc")
	cmd := exec.Command("nix-instantiate", expr)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nix-instantiate: %v\n%s", err, out)
	}
	return env, tmp + "/store"
}

// TestAgainstNix checks every .drv that nix-instantiate 2.8 wrote: it parses,
// prints back byte for byte, its computed .drv path is its real path, and
// its declared outputs (checked against `nix-store -q --outputs`) are the
// computed ones, with input hashes computed bottom-up.
func TestAgainstNix(t *testing.T) {
	env, store := nixStoreWithDrvs(t)
	dir, err := storepath.NewDir(store)
	if err != nil {
		t.Fatal(err)
	}
	drvFiles, _ := filepath.Glob(store + "/*.drv")
	if len(drvFiles) != 10 {
		t.Fatalf("nix-instantiate wrote %d .drv files, want 10", len(drvFiles))
	}
	memo := map[storepath.Path]nixhash.Hash{}
	var lookup drv.HashLookup
	lookup = func(p storepath.Path) (nixhash.Hash, error) {
		if h, ok := memo[p]; ok {
			return h, nil
		}
		b, err := os.ReadFile(dir.String(p))
		if err != nil {
			return nixhash.Hash{}, err
		}
		d, err := aterm.Parse(b)
		if err != nil {
			return nixhash.Hash{}, err
		}
		h, err := drv.HashModulo(dir, d, false, lookup)
		memo[p] = h
		return h, err
	}
	for _, f := range drvFiles {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			d, err := aterm.Parse(in)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			out, err := d.ATerm()
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("print: %v\n got %q\nwant %q", err, out, in)
			}
			p, err := dir.Parse(f)
			if err != nil {
				t.Fatal(err)
			}
			name, err := drv.NameOf(p)
			if err != nil {
				t.Fatal(err)
			}
			computed, err := drv.Path(dir, name, d)
			if err != nil || computed != p {
				t.Fatalf("computed .drv path %s (%v), nix wrote %s", dir.String(computed), err, f)
			}
			if err := drv.Check(dir, name, d, lookup); err != nil {
				t.Fatalf("check: %v", err)
			}
			paths, err := drv.OutputPaths(dir, name, d, lookup)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range d.Outputs {
				got = append(got, dir.String(paths[o.Name]))
			}
			cmd := exec.Command("nix-store", "-q", "--outputs", f)
			cmd.Env = env
			nixOut, err := cmd.Output()
			if err != nil {
				t.Fatalf("nix-store -q --outputs: %v", err)
			}
			want := strings.Fields(string(nixOut))
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("output paths %v, nix-store says %v", got, want)
			}
		})
	}
}
