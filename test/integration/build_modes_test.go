package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"privnix/internal/testenv"
)

// modesExprs writes the expressions of the build-mode scenario.
func modesExprs(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"det.nix": `derivation { name = "det"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/bin/mkdir $out; echo same > $out/file" ]; }`,
		"nondet.nix": `derivation { name = "nondet"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/bin/date +%s%N > $out" ]; }`,
		"modetrivial.nix": `derivation { name = "modetrivial"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "echo hi > $out" ]; }`,
		"repairdep.nix": `let dep = import ./modetrivial.nix; in derivation { name = "repairdep"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo ${dep} > $out" ]; }`,
		"quickfail.nix": `derivation { name = "quickfail"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo failing; exit 1" ]; }`,
		"slowok.nix": `derivation { name = "slowok"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "/bin/sleep 1; echo ok > $out" ]; }`,
		"feature.nix": `derivation { name = "feature"; system = "x86_64-linux"; builder = "/bin/sh";
  requiredSystemFeatures = [ "kvm" "gpu" ]; args = [ "-c" "echo hi > $out" ]; }`,
		"othersys.nix": `derivation { name = "othersys"; system = "aarch64-darwin"; builder = "/bin/sh";
  args = [ "-c" "echo hi > $out" ]; }`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(dir, 0o755)
}

// modesScenario runs the build-mode scenario and returns, per step, the
// output path(s) or the error text (ANSI codes stripped).
func modesScenario(t *testing.T, s *testenv.Store, in string) map[string]string {
	t.Helper()
	out := map[string]string{}
	run := func(step, user string, args ...string) testenv.Result {
		r := s.Run(t, user, nil, args[0], args[1:]...)
		out[step+" (stderr)"] = ansi.ReplaceAllString(r.Stderr, "")
		if r.Err != nil {
			out[step] = "error: " + lastError(r.Stderr)
		} else {
			out[step] = strings.TrimSpace(r.Stdout)
		}
		return r
	}
	a := testenv.Alice
	nb := func(step, user string, args ...string) testenv.Result {
		return run(step, user, append([]string{"nix-build", "--no-out-link"}, args...)...)
	}
	nb("check before build", a, "--check", filepath.Join(in, "det.nix"))
	nb("det", a, filepath.Join(in, "det.nix"))
	nb("check det", a, "--check", filepath.Join(in, "det.nix"))
	nb("nondet", a, filepath.Join(in, "nondet.nix"))
	nb("check nondet", a, "--check", filepath.Join(in, "nondet.nix"))
	nb("repair untrusted", a, "--repair", filepath.Join(in, "modetrivial.nix"))
	b := testenv.Bob
	nb("repair trusted missing", b, "--repair", filepath.Join(in, "modetrivial.nix"))
	nb("repair trusted intact", b, "--repair", filepath.Join(in, "modetrivial.nix"))
	corrupt(t, out["repair trusted intact"])
	nb("repair trusted corrupted", b, "--repair", filepath.Join(in, "modetrivial.nix"))
	c, _ := os.ReadFile(out["repair trusted corrupted"])
	out["repaired content"] = string(c)
	nb("repairdep", a, filepath.Join(in, "repairdep.nix"))
	corrupt(t, out["repair trusted intact"])
	nb("repair closure", b, "--repair", filepath.Join(in, "repairdep.nix"))
	c, _ = os.ReadFile(out["repair trusted intact"])
	out["closure repaired content"] = string(c)
	nb("feature", a, filepath.Join(in, "feature.nix"))
	nb("othersys", a, filepath.Join(in, "othersys.nix"))
	nb("keep failed", a, "-K", filepath.Join(in, "quickfail.nix"))
	run("instantiate quickfail", a, "nix-instantiate", filepath.Join(in, "quickfail.nix"))
	run("instantiate slowok", a, "nix-instantiate", filepath.Join(in, "slowok.nix"))
	run("realise no keep-going", a, "nix-store", "-r", out["instantiate quickfail"], out["instantiate slowok"])
	run("realise keep-going", a, "nix-store", "-r", "-k", out["instantiate quickfail"], out["instantiate slowok"])
	return out
}

// TestBuildModes: nix-build --check of a deterministic and of a
// nondeterministic derivation, --repair refused to an untrusted user and,
// for a trusted one, of missing, intact and corrupted outputs and of a
// corrupted path in an output's closure, keep-failed, requiredSystemFeatures
// and system mismatches, nix-store -r with and without --keep-going:
// privnixd's answers equal nix-daemon's.
func TestBuildModes(t *testing.T) {
	s, in := newBuildStore(t, buildConf)
	modesExprs(t, in)
	testenv.StartPrivnixd(t, s)
	start := time.Now()
	got := modesScenario(t, s, in)
	t.Logf("privnixd: scenario in %v", time.Since(start))
	checkKept(t, s, keptDir(got["keep failed (stderr)"]))
	s.Reset(t)
	nd := testenv.StartNixDaemon(t, s)
	start = time.Now()
	want := modesScenario(t, s, in)
	t.Logf("nix-daemon: scenario in %v", time.Since(start))
	nd.Stop(t)
	if d := keptDir(want["keep failed (stderr)"]); strings.HasPrefix(d, "/tmp/nix-build-quickfail.drv-") {
		os.RemoveAll(d) // nix-daemon's, in /tmp
	}
	for step, w := range want {
		switch step {
		case "repair untrusted (stderr)":
			// privnixd refuses an untrusted repair already when
			// nix-build adds the .drv with repair set (nix-daemon 2.8 lets
			// that upload repair); the error text is the same.
			continue
		case "keep failed (stderr)":
			// nix-daemon 2.8 keeps it in /tmp (mode 0755, the build user's);
			// privnixd where only root reaches it (checkKept).
			got[step] = keptNote.ReplaceAllString(got[step], "$1<dir>'")
			w = keptNote.ReplaceAllString(w, "$1<dir>'")
		case "realise no keep-going (stderr)", "realise keep-going (stderr)":
			// Two builds start at once: their lines come in any order.
			got[step], w = sortedLines(got[step]), sortedLines(w)
		}
		if got[step] != w {
			t.Errorf("%s:\nprivnixd:   %q\nnix-daemon: %q", step, got[step], w)
		}
	}
	if !strings.Contains(got["check nondet"], "may not be deterministic") || !strings.HasSuffix(got["check det"], "-det") {
		t.Errorf("check: %q / %q", got["check nondet"], got["check det"])
	}
	if got["repaired content"] != "hi\n" || got["closure repaired content"] != "hi\n" {
		t.Errorf("repair: output now %q, after repairing a referrer %q", got["repaired content"], got["closure repaired content"])
	}
	if !strings.Contains(got["realise no keep-going"], "build of '") || strings.Contains(got["realise keep-going"], "build of '") {
		t.Errorf("keep-going: %q / %q", got["realise no keep-going"], got["realise keep-going"])
	}
}

// corrupt changes a store file's contents behind the daemon's back.
func corrupt(t *testing.T, path string) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("corrupted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o444)
}

var keptNote = regexp.MustCompile(`(note: keeping build directory ')[^']*'`)

// keptDir is the directory a client was told was kept ("" if none).
func keptDir(stderr string) string {
	m := keptNote.FindString(stderr)
	return strings.TrimSuffix(strings.TrimPrefix(m, "note: keeping build directory '"), "'")
}

// checkKept: privnixd's kept build directory exists, is the build user's,
// and only root reaches it (its parents are root's, mode 0700): the user
// who asked cannot read it and no one else can write into it.
func checkKept(t *testing.T, s *testenv.Store, dir string) {
	t.Helper()
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatalf("kept build directory %q: %v", dir, err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid == 0 || !fi.IsDir() {
		t.Errorf("kept build directory: uid %d, mode %v", st.Uid, fi.Mode())
	}
	for _, p := range []string{filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: uid %d, mode %v: not root's alone", p, st.Uid, fi.Mode())
		}
	}
	if r := s.Run(t, testenv.Alice, nil, "/bin/ls", dir); r.Err == nil {
		t.Errorf("alice can list the kept build directory")
	}
}
