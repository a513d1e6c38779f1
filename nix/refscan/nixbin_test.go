package refscan

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"privnix/internal/narfs"
)

// refsDrv builds an output that refers to its inputs in file contents, a file
// name and a symlink target, mentions one only by 31 of its 32 hash chars,
// and refers to itself.
const refsDrv = `
let
  inContents = builtins.toFile "in-contents" "a";
  inName = builtins.toFile "in-name" "b";
  inTarget = builtins.toFile "in-target" "c";
  partial = builtins.toFile "partial" "d";
  unused = builtins.toFile "unused" "e";
  hashOf = p: builtins.substring 11 32 p;
in derivation {
  name = "refscan-test";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  PATH = "/bin:/usr/bin";
  args = [ "-c" ''
    mkdir $out
    printf 'x%sy' ${inContents} > $out/contents
    touch $out/${hashOf inName}-file
    ln -s ${inTarget}/z $out/link
    echo ${builtins.substring 11 31 partial} > $out/partial
    echo $out > $out/self
    : ${unused}
  '' ];
}
`

func nixCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install Debian's nix-bin (Nix 2.8) to run the differential tests: %v", name, err)
	}
	out, err := exec.Command(path, args...).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

func hashPart(storePath string) string {
	return strings.TrimPrefix(storePath, "/nix/store/")[:HashLen]
}

// TestScannerMatchesNixBuild builds a derivation in a private chroot store and
// compares the references Nix registered with what the scanner finds in the
// output's NAR, given the same candidates (the inputs and the output).
func TestScannerMatchesNixBuild(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	expr := filepath.Join(dir, "refs.nix")
	if err := os.WriteFile(expr, []byte(refsDrv), 0o644); err != nil {
		t.Fatal(err)
	}
	drv := nixCmd(t, "nix-instantiate", "--store", store, expr)
	out := nixCmd(t, "nix-build", "--store", store, "--no-out-link",
		"--option", "extra-sandbox-paths", "/bin /lib /lib64 /usr", drv)
	inputs := strings.Fields(nixCmd(t, "nix-store", "--store", store, "-q", "--references", drv))
	if len(inputs) != 5 {
		t.Fatalf("derivation has inputs %v, want the 5 files", inputs)
	}
	want := strings.Fields(nixCmd(t, "nix-store", "--store", store, "-q", "--references", out))

	candidates := []string{hashPart(out)}
	byHash := map[string]string{hashPart(out): out}
	for _, p := range inputs {
		candidates = append(candidates, hashPart(p))
		byHash[hashPart(p)] = p
	}
	s := NewScanner(candidates)
	if err := narfs.DumpPath(s, filepath.Join(store, out)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range s.Found() {
		got = append(got, byHash[h])
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("scanner found %v, Nix registered %v", got, want)
	}
	if len(want) != 4 { // in-contents, in-name, in-target, self
		t.Fatalf("Nix registered %d references (%v), the test expects 4", len(want), want)
	}
}
