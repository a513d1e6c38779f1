package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"privnix/internal/narfs/narfstest"

	"privnix/internal/testvectors"
)

var (
	narBinOnce sync.Once
	narBinPath string
	narBinErr  error
)

// privnixBin builds the privnix binary once per test run.
func privnixBin(t testing.TB) string {
	t.Helper()
	narBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "privnix-nar-test")
		if err != nil {
			narBinErr = err
			return
		}
		narBinPath = filepath.Join(dir, "privnix")
		goTool, err := exec.LookPath("go")
		if err != nil {
			narBinErr = fmt.Errorf("the go tool is needed to build privnix for the CLI tests: %v", err)
			return
		}
		out, err := exec.Command(goTool, "build", "-o", narBinPath, ".").CombinedOutput()
		if err != nil {
			narBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if narBinErr != nil {
		t.Fatal(narBinErr)
	}
	return narBinPath
}

// runTool runs a command with stdin and returns stdout, failing on error.
func runTool(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, stderr, err := tryTool(stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return out
}

func tryTool(stdin []byte, name string, args ...string) ([]byte, string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	return out.Bytes(), stderr.String(), err
}

// nixBin returns the path of a nix-bin tool or fails with how to get it.
func nixBin(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install Debian's nix-bin (Nix 2.8) to run the differential tests: %v", name, err)
	}
	return p
}

func TestNarCLIMatchesNix(t *testing.T) {
	bin := privnixBin(t)
	nixStore, nixHash, nix := nixBin(t, "nix-store"), nixBin(t, "nix-hash"), nixBin(t, "nix")
	base := t.TempDir()
	for seed := int64(100); seed < 106; seed++ {
		src := filepath.Join(base, fmt.Sprint(seed))
		narfstest.GenTree(t, src, seed, seed == 100)
		for _, p := range []string{src, filepath.Join(src, "dangling-abs"), filepath.Join(src, "exec-only-user")} {
			want := runTool(t, nil, nixStore, "--dump", p)
			if got := runTool(t, nil, bin, "nar", "dump", p); !bytes.Equal(got, want) {
				t.Fatalf("privnix nar dump %s differs from nix-store --dump", p)
			}
			hashes := []struct{ ours, nixs []string }{
				{[]string{"hash", "path", p}, []string{nixHash, "--type", "sha256", "--base32", p}},
				{[]string{"hash", "path", "--base16", p}, []string{nixHash, "--type", "sha256", p}},
				{[]string{"hash", "path", "--type", "sha512", "--base32", p}, []string{nixHash, "--type", "sha512", "--base32", p}},
				{[]string{"hash", "path", "--type", "md5", "--base16", p}, []string{nixHash, "--type", "md5", p}},
				{[]string{"hash", "path", "--sri", p}, []string{nix, "--extra-experimental-features", "nix-command", "hash", "path", "--type", "sha256", "--sri", p}},
			}
			for _, h := range hashes {
				got, want := runTool(t, nil, bin, h.ours...), runTool(t, nil, h.nixs[0], h.nixs[1:]...)
				if !bytes.Equal(got, want) {
					t.Fatalf("privnix %s = %q, %s gives %q", strings.Join(h.ours, " "), got, strings.Join(h.nixs, " "), want)
				}
			}
		}
		nixNar := runTool(t, nil, nixStore, "--dump", src)
		// Our restore of nix's dump dumps back identically, by both tools.
		ours := filepath.Join(base, fmt.Sprintf("ours%d", seed))
		runTool(t, nixNar, bin, "nar", "restore", ours)
		if got := runTool(t, nil, nixStore, "--dump", ours); !bytes.Equal(got, nixNar) {
			t.Fatalf("seed %d: nix-store --dump of our restore differs", seed)
		}
		// nix-store --restore of our dump, dumped by us, equals our dump.
		ourNar := runTool(t, nil, bin, "nar", "dump", src)
		theirs := filepath.Join(base, fmt.Sprintf("nix%d", seed))
		runTool(t, ourNar, nixStore, "--restore", theirs)
		if got := runTool(t, nil, bin, "nar", "dump", theirs); !bytes.Equal(got, ourNar) {
			t.Fatalf("seed %d: our dump of nix's restore differs", seed)
		}
		// Listings, from a file and from stdin.
		narFile := filepath.Join(base, fmt.Sprintf("%d.nar", seed))
		if err := os.WriteFile(narFile, nixNar, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, flags := range [][]string{nil, {"-R"}, {"-l"}, {"-R", "-l"}} {
			for _, inner := range []string{"/", "/empty-dir", "/exec-only-user", "/dangling-abs"} {
				args := append(append([]string{"nar", "ls"}, flags...), narFile, inner)
				want := runTool(t, nil, nix, append([]string{"--extra-experimental-features", "nix-command"}, args...)...)
				if got := runTool(t, nil, bin, args...); !bytes.Equal(got, want) {
					t.Fatalf("privnix %s:\n%s\nnix:\n%s", strings.Join(args, " "), got, want)
				}
			}
			want := runTool(t, nil, nix, append(append([]string{"--extra-experimental-features", "nix-command", "nar", "ls"}, flags...), narFile, "/")...)
			if got := runTool(t, nixNar, bin, append([]string{"nar", "ls"}, flags...)...); !bytes.Equal(got, want) {
				t.Fatalf("privnix nar ls %v < nar differs from nix nar ls", flags)
			}
		}
	}
}

func TestNarCLIRefuses(t *testing.T) {
	bin := privnixBin(t)
	vec := filepath.Join(narVectorsDir(t), "libutil-nars")
	good, err := os.ReadFile(filepath.Join(vec, "regular-one-byte-zero-padding.nar"))
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	tests := []struct {
		name   string
		stdin  []byte
		args   []string
		stderr string
	}{
		{"restore dotdot", nil, []string{"nar", "restore", filepath.Join(base, "a")}, `entry name "." or ".."`},
		{"restore executable after contents", nil, []string{"nar", "restore", filepath.Join(base, "b")}, "executable marker after contents"},
		{"restore trailing data", append(append([]byte{}, good...), 'x'), []string{"nar", "restore", filepath.Join(base, "c")}, "trailing data"},
		{"restore into existing", good, []string{"nar", "restore", base}, "file exists"},
		{"ls missing path", nil, []string{"nar", "ls", filepath.Join(vec, "regular-one-byte-zero-padding.nar"), "/nope"}, "does not exist"},
		{"ls relative path", good, []string{"nar", "ls", filepath.Join(vec, "regular-one-byte-zero-padding.nar"), "x"}, "not an absolute path"},
		{"ls bad nar", nil, []string{"nar", "ls", filepath.Join(vec, "slash.nar")}, "contains '/'"},
		{"dump missing", nil, []string{"nar", "dump", filepath.Join(base, "missing")}, "no such file"},
		{"hash missing", nil, []string{"hash", "path", filepath.Join(base, "missing")}, "no such file"},
	}
	files := map[string]string{"restore dotdot": "dotdot.nar", "restore executable after contents": "executable-after-contents.nar"}
	for _, tc := range tests {
		stdin := tc.stdin
		if f, ok := files[tc.name]; ok {
			if stdin, err = os.ReadFile(filepath.Join(vec, f)); err != nil {
				t.Fatal(err)
			}
		}
		_, stderr, err := tryTool(stdin, bin, tc.args...)
		if err == nil {
			t.Errorf("%s: privnix %v succeeded, want a failure", tc.name, tc.args)
			continue
		}
		if !strings.Contains(stderr, tc.stderr) {
			t.Errorf("%s: stderr %q does not mention %q", tc.name, stderr, tc.stderr)
		}
	}
}

// narVectorsDir finds ../shared/vectors/nix beside the repository root.
func narVectorsDir(t testing.TB) string {
	return testvectors.Dir(t)
}
