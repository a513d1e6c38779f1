package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"privnix/nix/drv"
	"privnix/nix/storepath"
)

// drvTestExpr has the derivation shapes show-derivation prints differently:
// input-addressed with several outputs, flat and recursive fixed outputs,
// inputs and sources, structured attrs, and every kind of byte in strings.
const drvTestExpr = `
let
  mk = attrs: builtins.derivation ({ system = "x86_64-linux"; builder = "/bin/sh"; } // attrs);
  ctl = builtins.fromJSON "\"c\\u0001\\u001f\\u007f\\u0008\\u000c\"";
  a = mk { name = "a"; outputs = [ "out" "dev" ]; args = [ "-c" "echo \"q\" \\ \n\t\r x" "é ☃" ];
    v = "quote\" back\\ nl\n tab\t cr\r uni é ☃ ${ctl} </>&'"; };
  fod = mk { name = "fod"; outputHash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; };
  fodr = mk { name = "fodr"; outputHashMode = "recursive"; outputHash = "sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk="; };
  b = mk { name = "b"; deps = [ a.dev a fod fodr (builtins.toFile "s" "x") ]; passAsFile = [ "big" ]; big = "y"; };
  c = mk { name = "c"; __structuredAttrs = true; dep = b; outputs = [ "out" "bin" ]; };
in { inherit a fod fodr b c; }
`

// TestDrvShowAgainstNix compares `privnix drv show` with `nix show-derivation`
// of Nix 2.8 on every .drv of a private store, byte for byte.
func TestDrvShowAgainstNix(t *testing.T) {
	for _, tool := range []string{"nix-instantiate", "nix"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: this differential test needs Nix 2.8 (apt-get install nix-bin)", tool)
		}
	}
	tmp := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tmp, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "etc", "nix.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	expr := filepath.Join(tmp, "e.nix")
	if err := os.WriteFile(expr, []byte(drvTestExpr), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "NIX_STORE_DIR="+tmp+"/store", "NIX_STATE_DIR="+tmp+"/var",
		"NIX_LOG_DIR="+tmp+"/log", "NIX_CONF_DIR="+tmp+"/etc")
	run := func(name string, args ...string) []byte {
		cmd := exec.Command(name, args...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		return out
	}
	run("nix-instantiate", expr)
	files, _ := filepath.Glob(tmp + "/store/*.drv")
	if len(files) != 5 {
		t.Fatalf("nix-instantiate wrote %d .drv files, want 5", len(files))
	}
	want := run("nix", append([]string{"--extra-experimental-features", "nix-command", "show-derivation"}, files...)...)

	dir, err := storepath.NewDir(tmp + "/store")
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]*drv.Derivation{}
	for _, f := range files {
		p, d, err := drvRead(dir, f)
		if err != nil {
			t.Fatal(err)
		}
		shown[dir.String(p)] = d
	}
	var got bytes.Buffer
	w := bufio.NewWriter(&got)
	drvWriteJSON(w, shown)
	w.Flush()
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("privnix drv show differs from nix show-derivation:\n got %s\nwant %s", got.Bytes(), want)
	}

	// A .drv copied under another store name is refused, as is a file not named .drv.
	b, _ := os.ReadFile(files[0])
	for name, wantErr := range map[string]string{
		"00000000000000000000000000000000-x.drv": "its contents give the store path",
		"x.txt":                                  "must end in .drv",
	} {
		f := filepath.Join(tmp, "store", name)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := drvRead(dir, f); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, wantErr)
		}
	}
}
