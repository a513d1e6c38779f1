package main

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"privnix/nix/nixhash"
)

var (
	hsBuildOnce sync.Once
	hsBin       string
	hsBuildErr  error
)

// hsPrivnix returns the privnix binary: $PRIVNIX_BIN/privnix when set, else
// one built from this package for the whole test binary.
func hsPrivnix(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("PRIVNIX_BIN"); d != "" {
		return filepath.Join(d, "privnix")
	}
	hsBuildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "privnix-cli-")
		if err != nil {
			hsBuildErr = err
			return
		}
		hsBin = filepath.Join(dir, "privnix")
		out, err := exec.Command("go", "build", "-o", hsBin, ".").CombinedOutput()
		if err != nil {
			hsBuildErr = &exec.Error{Name: "go build: " + string(out), Err: err}
		}
	})
	if hsBuildErr != nil {
		t.Fatal(hsBuildErr)
	}
	return hsBin
}

// hsEnv is a private Nix store (no daemon) and the environment for both tools.
type hsEnv struct {
	t        *testing.T
	tmp      string
	storeDir string
	env      []string
}

func newHSEnv(t *testing.T) *hsEnv {
	t.Helper()
	for _, tool := range []string{"nix-store", "nix-hash", "nix-instantiate", "nix"} {
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
	env := append(os.Environ(), "NIX_STORE_DIR="+tmp+"/store", "NIX_STATE_DIR="+tmp+"/var",
		"NIX_LOG_DIR="+tmp+"/log", "NIX_CONF_DIR="+tmp+"/etc", "NIX_REMOTE=", "XDG_CACHE_HOME="+tmp+"/xdg-cache")
	return &hsEnv{t: t, tmp: tmp, storeDir: tmp + "/store", env: env}
}

// run runs a command in the environment and returns stdout, stderr and the error.
func (e *hsEnv) run(name string, args ...string) (string, string, error) {
	if name == "privnix" {
		name = hsPrivnix(e.t)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = e.env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// must runs a command that has to succeed and returns its stdout.
func (e *hsEnv) must(name string, args ...string) string {
	e.t.Helper()
	out, stderr, err := e.run(name, args...)
	if err != nil {
		e.t.Fatalf("%s %q: %v\n%s", name, args, err, stderr)
	}
	return out
}

// refuse runs a command that has to fail with a message on stderr and nothing on stdout.
func (e *hsEnv) refuse(name string, args ...string) {
	e.t.Helper()
	out, stderr, err := e.run(name, args...)
	// Usage errors print the usage on stdout (kong.UsageOnError), never a result.
	if err == nil || strings.TrimSpace(stderr) == "" || (out != "" && !strings.HasPrefix(out, "Usage:")) {
		e.t.Errorf("%s %q: err %v, stdout %q, stderr %q; want a failure explained on stderr", name, args, err, out, stderr)
	}
}

// writeRandomFiles writes files of the given sizes with random contents.
func (e *hsEnv) writeRandomFiles(sizes ...int) []string {
	var files []string
	for i, n := range sizes {
		b := make([]byte, n)
		rand.Read(b)
		f := filepath.Join(e.tmp, "file-"+string(rune('a'+i)))
		if err := os.WriteFile(f, b, 0o644); err != nil {
			e.t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// TestHashFileAgainstNixHash compares `privnix hash file` with `nix-hash --flat`.
func TestHashFileAgainstNixHash(t *testing.T) {
	e := newHSEnv(t)
	files := e.writeRandomFiles(0, 1, 55, 56, 64, 4096, 1<<20+7)
	for _, algo := range []string{"md5", "sha1", "sha256", "sha512"} {
		for _, enc := range [][]string{nil, {"--base32"}, {"--base16"}} {
			args := append(append([]string{"--type", algo}, enc...), files...)
			nixArgs := args
			if len(enc) == 1 && enc[0] == "--base16" { // nix-hash 2.8 knows only its default
				nixArgs = append([]string{"--type", algo}, files...)
			}
			want := e.must("nix-hash", append([]string{"--flat"}, nixArgs...)...)
			got := e.must("privnix", append([]string{"hash", "file"}, args...)...)
			if got != want {
				t.Errorf("hash file %v:\n%s\nnix-hash --flat:\n%s", args[:len(args)-len(files)], got, want)
			}
		}
		// nix-hash 2.8 has no --base64/--sri: convert its base16 output instead.
		hex := strings.Fields(e.must("nix-hash", append([]string{"--flat", "--type", algo}, files...)...))
		for _, enc := range []string{"base64", "sri"} {
			got := strings.Fields(e.must("privnix", append([]string{"hash", "file", "--type", algo, "--" + enc}, files...)...))
			want := strings.Fields(e.must("nix", append([]string{"--extra-experimental-features", "nix-command", "hash", "to-" + enc, "--type", algo}, hex...)...))
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("hash file --%s --type %s = %v, nix hash to-%s says %v", enc, algo, got, enc, want)
			}
		}
	}
}

// TestHashConvertAgainstNix compares `privnix hash convert` with `nix hash to-*`.
func TestHashConvertAgainstNix(t *testing.T) {
	e := newHSEnv(t)
	for _, a := range []nixhash.Algo{nixhash.MD5, nixhash.SHA1, nixhash.SHA256, nixhash.SHA512} {
		var typed, bare []string
		for i := 0; i < 6; i++ {
			d := make([]byte, a.Size())
			rand.Read(d)
			h := nixhash.Hash{Algo: a, Digest: d}
			typed = append(typed, []string{a.String() + ":" + h.Base16(), h.String(), a.String() + ":" + h.Base64(), h.SRI()}[i%4])
			bare = append(bare, []string{h.Base16(), h.Nix32(), h.Base64()}[i%3])
		}
		for _, to := range []string{"base16", "base32", "base64", "sri"} {
			nixArgs := []string{"--extra-experimental-features", "nix-command", "hash", "to-" + to}
			for _, in := range []struct {
				typeArgs []string
				hashes   []string
			}{{nil, typed}, {[]string{"--type", a.String()}, typed}, {[]string{"--type", a.String()}, bare}} {
				want := e.must("nix", append(append(nixArgs, in.typeArgs...), in.hashes...)...)
				got := e.must("privnix", append(append([]string{"hash", "convert", "--to", to}, in.typeArgs...), in.hashes...)...)
				if got != want {
					t.Errorf("convert --to %s %v %v:\n%s\nnix says:\n%s", to, in.typeArgs, in.hashes, got, want)
				}
			}
		}
		nix32 := e.must("privnix", append([]string{"hash", "convert", "--to", "nix32"}, typed...)...)
		base32 := e.must("privnix", append([]string{"hash", "convert", "--to", "base32"}, typed...)...)
		if nix32 != base32 {
			t.Errorf("--to nix32 and --to base32 differ: %q %q", nix32, base32)
		}
	}
}

// TestHashCLIRefuses checks that bad input fails with a message on stderr.
func TestHashCLIRefuses(t *testing.T) {
	e := newHSEnv(t)
	f := e.writeRandomFiles(10)[0]
	tests := [][]string{
		{"hash", "file", filepath.Join(e.tmp, "missing")},
		{"hash", "file", "--type", "sha3", f},
		{"hash", "file", "--base32", "--base16", f},
		{"hash", "file", e.tmp},
		{"hash", "convert", "--to", "base16", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"hash", "convert", "--to", "base16", "--type", "sha256", "sha1:a9993e364706816aba3e25717850c26c9cd0d89d"},
		{"hash", "convert", "--to", "base16", "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5e"},
		{"hash", "convert", "--to", "hex", "sha1:a9993e364706816aba3e25717850c26c9cd0d89d"},
		{"hash", "convert", "--to", "sri", "--type", "sha256", "a9993e364706816aba3e25717850c26c9cd0d89d"},
	}
	for _, args := range tests {
		e.refuse("privnix", args...)
	}
}
