package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"privnix/internal/testenv"
)

// verifyLines keeps the lines of a client's stderr that verification
// prints (progress, findings, warnings, errors), without colours.
func verifyLines(stderr string) string {
	var out []string
	for _, l := range strings.Split(stripANSI(stderr), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// tamper rewrites a file of a store path as root (the store object is
// read-only and root's: a disk error or an admin's mistake).
func tamper(t *testing.T, file, text string) {
	t.Helper()
	dir := filepath.Dir(file)
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	os.Chmod(file, 0o644)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(file, 0o444)
	os.Chmod(dir, st.Mode().Perm())
}

// removeStorePath removes a store object behind the daemon's back.
func removeStorePath(t *testing.T, p string) {
	t.Helper()
	chmodWritableTree(p)
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
}

func chmodWritableTree(p string) {
	filepath.Walk(p, func(q string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			os.Chmod(q, 0o755)
		}
		return nil
	})
}

// verifyScenario runs nix-store --verify in its forms against whichever
// daemon serves s, on a store it damages step by step; it returns each
// step's exit status and stderr lines.
func verifyScenario(t *testing.T, s *testenv.Store, in string) map[string]string {
	t.Helper()
	out := map[string]string{}
	add := func(user, file string) string {
		t.Helper()
		r := s.Run(t, user, nil, "nix-store", "--add", filepath.Join(in, file))
		if r.Err != nil {
			t.Fatalf("add %s: %v %s", file, r.Err, r.Stderr)
		}
		return strings.TrimSpace(r.Stdout)
	}
	step := func(name, user string, args ...string) {
		t.Helper()
		r := s.Run(t, user, nil, "nix-store", args...)
		out[name] = fmt.Sprintf("failed=%v\n%s", r.Err != nil, verifyLines(r.Stderr))
	}
	a, b := testenv.Alice, testenv.Bob
	pa := add(a, "a.txt")
	pb := add(a, "b.txt")
	ptree := add(a, "tree")
	r := s.Run(t, a, nil, "nix-instantiate", filepath.Join(in, "chain.nix"))
	if r.Err != nil {
		t.Fatalf("instantiate: %v %s", r.Err, r.Stderr)
	}
	pdrv := strings.TrimSpace(r.Stdout)
	r = s.Run(t, a, nil, "nix-store", "-qR", pdrv)
	closure := strings.Fields(r.Stdout)
	var src1 string
	for _, p := range closure {
		if strings.HasSuffix(p, "-src1.txt") {
			src1 = p
		}
	}
	if src1 == "" {
		t.Fatalf("no source in the closure of %s: %v", pdrv, closure)
	}

	step("verify clean", a, "--verify")
	step("check contents clean", a, "--verify", "--check-contents")
	step("repair untrusted", a, "--verify", "--repair")

	tamper(t, pa, "not file a\n")
	tamper(t, filepath.Join(ptree, "sub", "y"), "changed deep inside\n")
	step("check contents modified", a, "--verify", "--check-contents")
	step("verify modified", a, "--verify")
	step("repair modified", b, "--verify", "--check-contents", "--repair")

	removeStorePath(t, pb)
	removeStorePath(t, src1)
	step("verify disappeared", a, "--verify")
	r = s.Run(t, a, nil, "nix-store", "--check-validity", pb, src1, pdrv)
	out["validity after"] = fmt.Sprintf("failed=%v\n%s", r.Err != nil, verifyLines(r.Stderr))
	step("repair disappeared", b, "--verify", "--repair")
	step("verify again", a, "--verify")
	out["entries"] = storeEntries(t, s)
	return out
}

// nix-store --verify [--check-contents] [--repair] through privnixd answers as
// nix-daemon 2.8 does on the same store contents: a clean store, a path whose
// files were changed ("was modified! expected hash …, got …"), repair refused
// to an untrusted user and impossible without a substituter or deriver, a
// vanished path without referrers dropped from the database, one with a valid
// referrer reported.
func TestVerifyMatchesNixDaemon(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireNix(t)
	s := testenv.NewStore(t, storeConf)
	in := filepath.Join(s.Root, "in")
	gcInputs(t, in)

	againstNixDaemon(t, s, in, verifyScenario, func(want map[string]string) {
		for step, w := range map[string]string{"check contents modified": "was modified! expected hash", "verify disappeared": "removing from database",
			"repair modified": "cannot repair path", "repair untrusted": "not privileged"} {
			if !strings.Contains(want[step], w) {
				t.Fatalf("nix-daemon's %s has no %q:\n%s", step, w, want[step])
			}
		}
	})
}
