package narinfofile

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"privnix/nix/nixhash"
	"privnix/nix/storepath"

	"privnix/nix/narinfo"
)

// nixEnv is a private local store for nix-bin, used directly (no daemon).
type nixEnv struct {
	t   *testing.T
	tmp string
	dir storepath.Dir
	env []string
}

func newNixEnv(t *testing.T) *nixEnv {
	t.Helper()
	for _, tool := range []string{"nix-store", "nix-instantiate", "nix"} {
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
	env := append(os.Environ(), "NIX_STORE_DIR="+tmp+"/store", "NIX_STATE_DIR="+tmp+"/var",
		"NIX_LOG_DIR="+tmp+"/log", "NIX_CONF_DIR="+tmp+"/etc", "NIX_REMOTE=", "XDG_CACHE_HOME="+tmp+"/cache-home")
	return &nixEnv{t: t, tmp: tmp, dir: storepath.Dir(tmp + "/store"), env: env}
}

// run runs a nix-bin tool and returns its trimmed stdout, or the error with stderr.
func (e *nixEnv) run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = e.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", &exec.Error{Name: name + " " + strings.Join(args, " ") + ": " + stderr.String(), Err: err}
	}
	return strings.TrimSpace(string(out)), nil
}

func (e *nixEnv) must(name string, args ...string) string {
	e.t.Helper()
	out, err := e.run(name, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

var nixCmd = []string{"--extra-experimental-features", "nix-command"}

// TestNixSignaturesVerifyHere signs with `nix store sign` and verifies with narinfo.VerifyAny.
func TestNixSignaturesVerifyHere(t *testing.T) {
	e := newNixEnv(t)
	skFile, pkFile := filepath.Join(e.tmp, "sk"), filepath.Join(e.tmp, "pk")
	e.must("nix-store", "--generate-binary-cache-key", "nix-key-1", skFile, pkFile)
	skText, _ := os.ReadFile(skFile)
	pkText, _ := os.ReadFile(pkFile)
	sk, err := narinfo.ParseSecretKey(string(skText))
	if err != nil {
		t.Fatalf("Nix's secret key: %v", err)
	}
	pk, err := narinfo.ParsePublicKey(string(pkText))
	if err != nil {
		t.Fatalf("Nix's public key: %v", err)
	}
	if sk.Public().String() != pk.String() {
		t.Fatalf("public half of Nix's secret key %s != %s", sk.Public(), pk)
	}
	src := filepath.Join(e.tmp, "dep")
	os.WriteFile(src, []byte("dependency\n"), 0o644)
	dep := e.must("nix-store", "--add", src)
	// A text path with a reference, so the fingerprint has a non-empty list.
	top := e.must("nix-instantiate", "--eval", "--read-write-mode", "-E",
		`builtins.toFile "top" "uses ${builtins.toFile "dep2" "x"} and ${builtins.path { path = `+src+`; }}"`)
	top = strings.Trim(top, `"`)
	for _, p := range []string{dep, top} {
		e.must("nix", append(nixCmd, "store", "sign", "-k", skFile, p)...)
		out := e.must("nix", append(nixCmd, "path-info", "--json", "--sigs", p)...)
		var infos []struct {
			Path, NarHash string
			NarSize       uint64
			References    []string
			Signatures    []string
		}
		if err := json.Unmarshal([]byte(out), &infos); err != nil || len(infos) != 1 {
			t.Fatalf("path-info: %v: %s", err, out)
		}
		in := infos[0]
		sp, err := e.dir.Parse(in.Path)
		if err != nil {
			t.Fatal(err)
		}
		nh, err := nixhash.Parse(in.NarHash)
		if err != nil {
			t.Fatal(err)
		}
		var refs []storepath.Path
		for _, r := range in.References {
			rp, err := e.dir.Parse(r)
			if err != nil {
				t.Fatal(err)
			}
			refs = append(refs, rp)
		}
		if p == top && len(refs) != 2 {
			t.Fatalf("%s has references %v, want 2", p, in.References)
		}
		var sigs []narinfo.Signature
		for _, s := range in.Signatures {
			sig, err := narinfo.ParseSignature(s)
			if err != nil {
				t.Fatalf("Nix's signature %q: %v", s, err)
			}
			sigs = append(sigs, sig)
		}
		fp := narinfo.Fingerprint(e.dir, sp, nh, in.NarSize, refs)
		if len(sigs) != 1 || !narinfo.VerifyAny(fp, sigs, []narinfo.PublicKey{pk}) {
			t.Errorf("%s: Nix's signatures %v do not verify over %q", p, in.Signatures, fp)
		}
		// Ed25519 is deterministic: our signature with Nix's key is the same bytes.
		if got := sk.Sign(fp).String(); len(sigs) == 1 && got != sigs[0].String() {
			t.Errorf("%s: our signature %s != Nix's %s", p, got, sigs[0])
		}
		if narinfo.VerifyAny(fp+"x", sigs, []narinfo.PublicKey{pk}) {
			t.Error("Nix's signature verified over a different fingerprint")
		}
	}
}

// TestOurSignaturesVerifyInNix writes a file:// binary cache with nix copy,
// re-signs its narinfo with our key (dropping CA so that signatures count) and
// asks `nix store verify` to check it; it also checks that Nix's narinfo
// files parse and print back byte for byte.
func TestOurSignaturesVerifyInNix(t *testing.T) {
	e := newNixEnv(t)
	src := filepath.Join(e.tmp, "payload")
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	os.WriteFile(filepath.Join(src, "bin", "tool"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	p := e.must("nix-store", "--add", src)
	cache := filepath.Join(e.tmp, "bincache")
	e.must("nix", append(nixCmd, "copy", "--to", "file://"+cache, p)...)
	sp, err := e.dir.Parse(p)
	if err != nil {
		t.Fatal(err)
	}
	niFile := filepath.Join(cache, sp.HashPart()+".narinfo")
	text, err := os.ReadFile(niFile)
	if err != nil {
		t.Fatal(err)
	}
	ni, err := Parse(e.dir, text)
	if err != nil {
		t.Fatalf("Nix's narinfo:\n%s: %v", text, err)
	}
	if ni.String(e.dir) != string(text) {
		t.Fatalf("String() =\n%s\nNix wrote\n%s", ni.String(e.dir), text)
	}
	if ni.CA == nil || ni.StorePath != sp {
		t.Fatalf("narinfo lacks CA or has the wrong path: %+v", ni)
	}
	sk, pk, err := narinfo.GenerateKey("privnix-test-1")
	if err != nil {
		t.Fatal(err)
	}
	ni.CA = nil
	ni.Sigs = []narinfo.Signature{sk.Sign(ni.Fingerprint(e.dir))}
	if err := os.WriteFile(niFile, []byte(ni.String(e.dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	verify := func(key string) error {
		_, err := e.run("nix", append(nixCmd, "store", "verify", "--store", "file://"+cache, "--trusted-public-keys", key, p)...)
		return err
	}
	if err := verify(pk.String()); err != nil {
		t.Errorf("nix store verify refused our signature: %v", err)
	}
	_, other, _ := narinfo.GenerateKey("privnix-test-1")
	if err := verify(other.String()); err == nil {
		t.Error("nix store verify accepted our signature under another key: the check proves nothing")
	}
}
