package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"privnix/nix/narinfo"
)

var hsNixCmd = []string{"--extra-experimental-features", "nix-command"}

// hsPathInfo is what `nix path-info --json --sigs` says about one path.
type hsPathInfo struct {
	Path, NarHash string
	NarSize       uint64
	References    []string
	Signatures    []string
}

func (e *hsEnv) pathInfo(p string) hsPathInfo {
	e.t.Helper()
	out := e.must("nix", append(hsNixCmd, "path-info", "--json", "--sigs", p)...)
	var infos []hsPathInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil || len(infos) != 1 {
		e.t.Fatalf("path-info %s: %v: %s", p, err, out)
	}
	return infos[0]
}

// addTextWithRefs makes a text path referring to two other paths.
func (e *hsEnv) addTextWithRefs() string {
	e.t.Helper()
	src := filepath.Join(e.tmp, "src-file")
	os.WriteFile(src, []byte("source\n"), 0o644)
	out := e.must("nix-instantiate", "--eval", "--read-write-mode", "-E",
		`builtins.toFile "top" "uses ${builtins.toFile "dep" "x"} and ${builtins.path { path = `+src+`; }}"`)
	return strings.Trim(strings.TrimSpace(out), `"`)
}

func (info hsPathInfo) refArgs() []string {
	var args []string
	for _, r := range info.References {
		args = append(args, "--ref", r)
	}
	return args
}

func TestKeyGenerate(t *testing.T) {
	e := newHSEnv(t)
	lines := strings.Split(strings.TrimSpace(e.must("privnix", "key", "generate", "cache.example.org-1")), "\n")
	if len(lines) != 2 {
		t.Fatalf("key generate printed %d lines, want secret and public", len(lines))
	}
	sk, err := narinfo.ParseSecretKey(lines[0])
	if err != nil {
		t.Fatal(err)
	}
	pk, err := narinfo.ParsePublicKey(lines[1])
	if err != nil {
		t.Fatal(err)
	}
	if sk.Name != "cache.example.org-1" || sk.Public().String() != pk.String() {
		t.Errorf("keys %s / %s do not belong together", sk.Name, pk)
	}
	skFile, pkFile := filepath.Join(e.tmp, "sk"), filepath.Join(e.tmp, "pk")
	if out := e.must("privnix", "key", "generate", "--secret-file", skFile, "--public-file", pkFile, "k2"); out != "" {
		t.Errorf("key generate with files printed %q", out)
	}
	st, err := os.Stat(skFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("secret key file: %v, mode %v; want 0600", err, st.Mode())
	}
	e.refuse("privnix", "key", "generate", "--secret-file", skFile, "k3")
	e.refuse("privnix", "key", "generate", "bad:name")
	e.refuse("privnix", "key", "generate", "")
}

// TestKeyVerifiesNixSignatures signs with `nix store sign` and a key from
// `nix-store --generate-binary-cache-key`, then verifies with privnix; and
// privnix signing with that key gives the same signature bytes.
func TestKeyVerifiesNixSignatures(t *testing.T) {
	e := newHSEnv(t)
	skFile, pkFile := filepath.Join(e.tmp, "nix-sk"), filepath.Join(e.tmp, "nix-pk")
	e.must("nix-store", "--generate-binary-cache-key", "nix-made-1", skFile, pkFile)
	pkText, _ := os.ReadFile(pkFile)
	pk := strings.TrimSpace(string(pkText))
	top := e.addTextWithRefs()
	e.must("nix", append(hsNixCmd, "store", "sign", "-k", skFile, top)...)
	info := e.pathInfo(top)
	if len(info.Signatures) != 1 || len(info.References) != 2 {
		t.Fatalf("path-info: %+v", info)
	}
	sig := info.Signatures[0]
	explicit := []string{"--nar-hash", info.NarHash, "--nar-size", strconv.FormatUint(info.NarSize, 10)}
	e.must("privnix", append(append([]string{"key", "verify", "--public-key", pk, "--sig", sig, top}, explicit...), info.refArgs()...)...)
	// Without --nar-hash/--nar-size they are computed from the path on disk.
	e.must("privnix", append([]string{"key", "verify", "--public-key", pk, "--sig", sig, top}, info.refArgs()...)...)
	ours := strings.TrimSpace(e.must("privnix", append([]string{"key", "sign", "--key-file", skFile, top}, info.refArgs()...)...))
	if ours != sig {
		t.Errorf("privnix key sign with Nix's key = %s, nix store sign = %s", ours, sig)
	}
	_, other, _ := narinfo.GenerateKey("nix-made-1")
	e.refuse("privnix", append([]string{"key", "verify", "--public-key", other.String(), "--sig", sig, top}, info.refArgs()...)...)
	e.refuse("privnix", "key", "verify", "--public-key", pk, "--sig", sig, top) // references left out
	e.refuse("privnix", append([]string{"key", "verify", "--public-key", pk, "--sig", sig, top,
		"--nar-hash", info.NarHash, "--nar-size", strconv.FormatUint(info.NarSize+1, 10)}, info.refArgs()...)...)
}

// TestKeySignaturesVerifyInNix signs with privnix key and has
// `nix store verify` check the signature in a file:// binary cache whose
// narinfo lost its CA line (so that only signatures can make it trusted).
func TestKeySignaturesVerifyInNix(t *testing.T) {
	e := newHSEnv(t)
	skFile, pkFile := filepath.Join(e.tmp, "sk"), filepath.Join(e.tmp, "pk")
	e.must("privnix", "key", "generate", "--secret-file", skFile, "--public-file", pkFile, "privnix-made-1")
	pkText, _ := os.ReadFile(pkFile)
	pk := string(pkText)
	top := e.addTextWithRefs()
	info := e.pathInfo(top)
	sig := strings.TrimSpace(e.must("privnix", append([]string{"key", "sign", "--key-file", skFile, top}, info.refArgs()...)...))

	cache := filepath.Join(e.tmp, "bincache")
	e.must("nix", append(hsNixCmd, "copy", "--to", "file://"+cache, top)...)
	hashPart := strings.SplitN(filepath.Base(top), "-", 2)[0]
	niFile := filepath.Join(cache, hashPart+".narinfo")
	text, err := os.ReadFile(niFile)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.SplitAfter(string(text), "\n") {
		if !strings.HasPrefix(line, "CA: ") {
			kept = append(kept, line)
		}
	}
	if len(kept) == len(strings.SplitAfter(string(text), "\n")) {
		t.Fatalf("narinfo had no CA line:\n%s", text)
	}
	if err := os.WriteFile(niFile, []byte(strings.Join(kept, "")+"Sig: "+sig+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	verify := func(key string) error {
		_, _, err := e.run("nix", append(hsNixCmd, "store", "verify", "--store", "file://"+cache, "--trusted-public-keys", key, top)...)
		return err
	}
	if err := verify(pk); err != nil {
		t.Errorf("nix store verify refused privnix's signature %s: %v", sig, err)
	}
	_, other, _ := narinfo.GenerateKey("privnix-made-1")
	if err := verify(other.String()); err == nil {
		t.Error("nix store verify accepted the signature under another key, so the check proves nothing")
	}
}

func TestKeyRefuses(t *testing.T) {
	e := newHSEnv(t)
	skFile, pkFile := filepath.Join(e.tmp, "sk"), filepath.Join(e.tmp, "pk")
	e.must("privnix", "key", "generate", "--secret-file", skFile, "--public-file", pkFile, "k")
	f := e.writeRandomFiles(4)[0]
	p := strings.TrimSpace(e.must("nix-store", "--add", f))
	hash := "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
	tests := [][]string{
		{"key", "sign", "--key-file", pkFile, p},
		{"key", "sign", "--key-file", filepath.Join(e.tmp, "missing"), p},
		{"key", "sign", "--key-file", skFile, f},
		{"key", "sign", "--key-file", skFile, "--nar-hash", hash, p},
		{"key", "sign", "--key-file", skFile, "--nar-hash", hash, "--nar-size", "5", p, p},
		{"key", "sign", "--key-file", skFile, "--nar-hash", "sha1:a9993e364706816aba3e25717850c26c9cd0d89d", "--nar-size", "5", p},
		{"key", "sign", "--key-file", skFile, "--ref", "not-a-path", p},
		{"key", "verify", "--public-key", "k:short", "--sig", "k:" + strings.Repeat("A", 86) + "==", p},
		{"key", "verify", "--public-key", strings.Fields(e.must("privnix", "key", "generate", "k"))[1], "--sig", "bad", p},
	}
	for _, args := range tests {
		e.refuse("privnix", args...)
	}
}
